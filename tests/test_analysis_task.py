"""The vort_track task wrapper: registration, parameters, output file and errors."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import netCDF4
import pytest

import clusterfarm.tasks.vort_track as vort_track_module
from clusterfarm.analysis import read_tracks, write_sample_data
from clusterfarm.errors import InputError, SettingsError
from clusterfarm.tasks.registry import TaskContext, get_task

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("data")
    write_sample_data(path, 2000, 2, seed=1)
    return path


def run(data: Path, results: Path, member: int = 0, **params: Any) -> tuple[dict, Path]:
    spec = get_task("vort_track")
    output = spec.output_path(results, 2000, member)
    ctx = TaskContext(
        task="vort_track",
        params=spec.resolve_params(params),
        data_dir=data,
        results_dir=results,
        output_path=output,
        log=logging.getLogger("test"),
    )
    return spec.fn(2000, member, ctx) or {}, output


def test_vort_track_is_registered_with_its_parameters() -> None:
    spec = get_task("vort_track")
    assert spec.version == vort_track_module.VERSION == "2"
    assert spec.defaults["threshold"] == 1e-5
    assert spec.defaults["box"] == [-80.0, 80.0, 0.0, 360.0]
    assert (spec.defaults["suppress_km"], spec.defaults["link_km"]) == (1100.0, 750.0)
    assert (spec.defaults["max_gap"], spec.defaults["max_missing"]) == (1, 0.05)
    assert spec.defaults["min_steps"] == 6
    assert spec.defaults["u_path"] == "{year}/u850_{year}.nc"
    assert {"u_var", "v_var", "time_dim", "member_dim", "lat_dim", "lon_dim"} <= set(spec.defaults)
    with pytest.raises(SettingsError, match="unknown parameter"):
        spec.resolve_params({"treshold": 1e-5})


def test_task_writes_a_cf_track_file_and_returns_its_counts(data_dir: Path, tmp_path: Path) -> None:
    summary, output = run(data_dir, tmp_path, member=1)
    assert output == tmp_path / "vort_track" / "2000" / "vort_track_2000_m001.nc"
    tracks = read_tracks(output)
    assert summary == {
        "n_tracks": len(tracks.tracks),
        "n_points": sum(len(t) for t in tracks.tracks),
    }
    assert summary["n_tracks"] >= 8
    assert tracks.time_units == "hours since 1800-01-01 00:00:00"
    attrs = tracks.attrs
    assert (attrs["year"], attrs["member"], attrs["task"]) == (2000, 1, "vort_track")
    assert attrs["task_version"] == "2"
    assert attrs["clusterfarm_version"]
    assert attrs["param_link_km"] == 750.0
    assert list(attrs["param_box"]) == [-80.0, 80.0, 0.0, 360.0]
    assert attrs["param_u_path"] == "{year}/u850_{year}.nc"
    assert [p for p in output.parent.iterdir() if p.name.endswith(".tmp")] == []


def test_box_parameter_limits_the_search(data_dir: Path, tmp_path: Path) -> None:
    summary, output = run(data_dir, tmp_path, box=[-80.0, 0.0, 0.0, 360.0])
    tracks = read_tracks(output).tracks
    assert summary["n_tracks"] >= 2
    assert all((t.lat <= 0).all() for t in tracks)


def test_no_cyclones_still_gives_a_valid_file(data_dir: Path, tmp_path: Path) -> None:
    summary, output = run(data_dir, tmp_path, threshold=1.0)
    assert summary == {"n_tracks": 0, "n_points": 0}
    with netCDF4.Dataset(output) as ds:
        assert ds.featureType == "trajectory"
        assert len(ds.dimensions["track"]) == 0


@pytest.mark.parametrize(
    ("params", "key"),
    [
        ({"link_km": -5.0}, "link_km"),
        ({"suppress_km": -1.0}, "suppress_km"),
        ({"threshold": float("nan")}, "threshold"),
        ({"min_steps": 0}, "min_steps"),
        ({"max_gap": -1}, "max_gap"),
        ({"min_dip": 1.5}, "min_dip"),
        ({"max_missing": 2.0}, "max_missing"),
        ({"predict_km": 0.0}, "predict_km"),
        ({"box": [10.0, -10.0, 0.0, 360.0]}, "box"),
        ({"box": [0.0, 10.0, 20.0]}, "box"),
        ({"box": [0.0, "north", 0.0, 360.0]}, "box"),
        ({"u_path": "{year}/u850_{yr}.nc"}, "u_path"),
        ({"v_var": ""}, "v_var"),
    ],
)
def test_impossible_parameter_values_are_settings_errors(
    data_dir: Path, tmp_path: Path, params: dict[str, Any], key: str
) -> None:
    with pytest.raises(SettingsError, match=rf"\[tasks\.vort_track\] {key} = "):
        run(data_dir, tmp_path, **params)


def test_missing_input_is_an_input_error_and_leaves_no_output(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"u850_2000\.nc: file not found"):
        run(tmp_path / "nowhere", tmp_path / "results")
    assert not (tmp_path / "results" / "vort_track" / "2000" / "vort_track_2000_m000.nc").exists()


def split_by_member(data_dir: Path, out_dir: Path, members: int) -> None:
    """Copy 2000's files into one file per member, keeping a member axis of length one."""
    for member in range(members):
        for var in ("u850", "v850"):
            target = out_dir / f"m{member}" / f"{var}.nc"
            target.parent.mkdir(parents=True, exist_ok=True)
            with (
                netCDF4.Dataset(data_dir / "2000" / f"{var}_2000.nc") as src,
                netCDF4.Dataset(target, "w") as dst,
            ):
                for name, dim in src.dimensions.items():
                    dst.createDimension(name, 1 if name == "member" else len(dim))
                for name, source in src.variables.items():
                    copy = dst.createVariable(name, source.dtype, source.dimensions)
                    copy.setncatts({k: source.getncattr(k) for k in source.ncattrs()})
                    if name == var:
                        copy[:] = source[:, member : member + 1]
                    else:
                        copy[:] = [member] if name == "member" else source[:]


def test_one_file_per_member_via_path_templates(data_dir: Path, tmp_path: Path) -> None:
    split_by_member(data_dir, tmp_path / "split", members=2)
    templates = {"u_path": "m{member}/u850.nc", "v_path": "m{member}/v850.nc"}
    _, split = run(tmp_path / "split", tmp_path / "a", member=1, **templates)
    _, whole = run(data_dir, tmp_path / "b", member=1)
    _, other = run(data_dir, tmp_path / "c", member=0)
    split_lats = [t.lat.tolist() for t in read_tracks(split).tracks]
    assert split_lats == [t.lat.tolist() for t in read_tracks(whole).tracks]
    assert split_lats != [t.lat.tolist() for t in read_tracks(other).tracks]


def test_importing_the_task_module_does_not_import_numpy() -> None:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    code = (
        "import sys, clusterfarm.tasks.vort_track\n"
        "heavy = [m for m in ('numpy', 'netCDF4', 'matplotlib') if m in sys.modules]\n"
        "print(','.join(heavy))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == ""


@pytest.mark.parametrize(
    "template", ["/etc/{year}.nc", "../{year}/u850_{year}.nc", "{year}/../../secret.nc"]
)
def test_path_templates_may_not_leave_data_dir(template):
    with pytest.raises(SettingsError, match="must be a path inside data_dir"):
        get_task("vort_track").resolve_params({"u_path": template})
