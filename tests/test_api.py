"""The Python API: ``Farm`` runs through the CLI's code path, from pytest and from a script."""

import json
import subprocess
import sys
import textwrap

import netCDF4
import numpy as np
import pandas
import pytest

from clusterfarm import ClusterFarmError, Farm, open_tracks
from clusterfarm.analysis import read_tracks, write_sample_data
from clusterfarm.analysis.gather import gather_tracks
from clusterfarm.errors import SettingsError, StateError, UsageError
from tests.harness.cli import PLUGIN_SETTINGS, cli_env, write_settings


@pytest.fixture(scope="module")
def tracked(tmp_path_factory):
    """Sample data for 2000-2001 x 4 members and a Farm that ran vort_track over it."""
    work = tmp_path_factory.mktemp("api")
    write_sample_data(work / "data", years=[2000, 2001], members=4, size="small")
    farm = Farm(run_dir=work / "run", data_dir=str(work / "data"))
    report = farm.run("vort_track", years="2000-2001", members="0-3", local=2, progress="none")
    return farm, report


@pytest.mark.slow
def test_farm_run_completes_the_8_cells_with_the_figures_of_run_json(tracked):
    farm, report = tracked
    assert report.complete == 8 and report.failure == 0 and report.failures == []
    assert report.to_json()["progress"] == {"vort_track": {"2000": "++++", "2001": "++++"}}
    assert farm.status().complete == 8


def test_open_tracks_returns_the_tracks_of_the_netcdf_files(tracked):
    farm, _ = tracked
    files = sorted((farm.run_dir / "results/vort_track").glob("*/*.nc"))
    assert len(files) == 8
    ds = open_tracks(farm.run_dir)
    starts = np.r_[0, np.cumsum(ds.row_size.values)]
    k = 0
    for path in files:
        year, member = int(path.parent.name), int(path.stem[-3:])
        for track in read_tracks(path).tracks:
            assert (ds.year.values[k], ds.member.values[k]) == (year, member)
            obs = slice(starts[k], starts[k + 1])
            np.testing.assert_allclose(ds.lat.values[obs], track.lat)
            np.testing.assert_allclose(ds.lon.values[obs], track.lon)
            np.testing.assert_allclose(ds.vorticity.values[obs], track.vorticity)
            k += 1
    assert k == ds.sizes["track"] > 0
    some = open_tracks(farm.run_dir, years=2000, members=[1, 2])
    assert set(some.year.values) == {2000} and set(some.member.values) == {1, 2}
    assert some.time.dtype.kind == "M" and str(some.time.values[0]).startswith("2000")


def test_result_files_carry_the_run_id_of_the_run(tracked):
    farm, _ = tracked
    ds = open_tracks(farm.run_dir)
    for path in (farm.run_dir / "results/vort_track").glob("*/*.nc"):
        with netCDF4.Dataset(path) as nc:
            assert nc.run_id == ds.attrs["run_id"] and len(nc.run_id) == 32


def test_trace_is_a_dataframe_with_one_row_per_attempt(tracked):
    farm, _ = tracked
    frame = farm.trace()
    assert isinstance(frame, pandas.DataFrame) and len(frame) == 8
    assert set(frame.status) == {"complete"}
    assert str(frame.started.dtype).startswith("datetime64") and frame.cpu.gt(0).all()
    provenance = json.loads((farm.run_dir / "provenance.json").read_text())
    assert provenance["invocations"][-1]["argv"][0] == "clusterfarm.api"
    assert any(f["path"].endswith("u850_2000.nc") for f in provenance["inputs"]["files"])


def test_without_xarray_open_tracks_gives_one_structured_array_per_track(tracked):
    farm, _ = tracked
    path = farm.run_dir / "results/vort_track/2001/vort_track_2001_m002.nc"
    arrays = gather_tracks([(2001, 2, path)])
    assert len(arrays) == len(read_tracks(path).tracks)
    assert set(arrays[0].dtype.names) >= {"year", "member", "track_id", "time", "lat", "lon"}


def test_errors_are_the_clusterfarm_error_classes(tmp_path):
    with pytest.raises(UsageError, match="unknown \\[run\\] key"):
        Farm(colour="blue")
    with pytest.raises(StateError, match="no clusterfarm run here"):
        Farm(run_dir=tmp_path / "nothing").status()
    with pytest.raises(SettingsError):
        Farm(tmp_path / "missing.toml")
    farm = Farm(run_dir=tmp_path / "run")
    with pytest.raises(ClusterFarmError, match="unknown task"):
        farm.run("no_such_task", years=2000, members=0, local=1, progress="none")
    with pytest.raises(UsageError, match="progress"):
        farm.run("noop", years=2000, members=0, local=1, progress="fancy")


@pytest.mark.slow
def test_a_script_runs_a_farm_in_a_subprocess(tmp_path):
    settings = write_settings(tmp_path / "farm.toml", PLUGIN_SETTINGS)
    script = textwrap.dedent(
        f"""
        import json
        from clusterfarm import Farm
        farm = Farm({str(settings)!r}, run_dir={str(tmp_path / "run")!r}, retries=0)
        report = farm.run("fail_member", years="2000-2001", members=range(3), local=2)
        rows = farm.trace()
        print(json.dumps({{"complete": report.complete, "failure": report.failure,
                          "attempts": len(rows), "failed": int((rows.status == "failure").sum())}}))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], env=cli_env(), capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert lines[0].startswith("[")  # the plain progress blocks (stdout is not a terminal)
    assert json.loads(lines[-1]) == {"complete": 4, "failure": 2, "attempts": 6, "failed": 2}


@pytest.mark.parametrize(
    ("make", "named"),
    [
        (lambda tmp: Farm(run_dir=123), "run_dir"),
        (lambda tmp: Farm(timeout="1"), "timeout"),
        (lambda tmp: Farm(retries=True), "retries"),
        (lambda tmp: Farm(settings=42), "settings"),
        (lambda tmp: Farm(run_dir=tmp).run("noop", years=2000.5), "years"),
        (lambda tmp: Farm(run_dir=tmp).run("noop", years=2000, members=[0, "1"]), "members"),
        (lambda tmp: Farm(run_dir=tmp).run("noop", years=2000, members=0, local="2"), "local"),
        (lambda tmp: Farm(run_dir=tmp).run(3, years=2000, members=0), "task"),
        (lambda tmp: Farm(run_dir=tmp).run("noop", years="2000-1999", members=0), "years"),
    ],
)
def test_a_wrong_argument_is_a_usage_error_naming_the_parameter(tmp_path, make, named):
    with pytest.raises(UsageError) as refused:
        make(tmp_path)
    message = str(refused.value)
    assert named in message and f"--{named}" not in message


@pytest.mark.slow
def test_two_farms_run_at_once_from_threads_each_with_its_own_workers(tmp_path):
    """Neither thread is the main one (no signal handler may be set there), and each run's
    nameserver and workers take only that run's secret."""
    import threading

    write_settings(tmp_path / "farm.toml", "[tasks.sleep]\nseconds = 0.3\n")  # built in
    reports: dict[str, object] = {}

    def run(name: str) -> None:
        try:
            farm = Farm(tmp_path / "farm.toml", run_dir=tmp_path / name)
            reports[name] = farm.run("sleep", years=2000, members="0-5", local=1, progress="none")
        except BaseException as exc:  # noqa: BLE001 - the test reports what went wrong
            reports[name] = exc

    threads = [threading.Thread(target=run, args=(name,)) for name in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    for name in ("a", "b"):
        report = reports[name]
        assert not isinstance(report, BaseException), f"{name}: {report!r}"
        assert report.complete == 6 and report.failures == []  # type: ignore[attr-defined]
