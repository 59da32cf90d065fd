"""Task dependencies end to end: vort_track then year_summary, failures, the ledger."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3

import pytest

from clusterfarm.errors import UnknownTaskError
from clusterfarm.tasks.registry import load_task_modules, task, with_prerequisites
from tests.harness.cli import run_cli

YEARS, MEMBERS = "2000-2002", "0-3"


@pytest.fixture
def project(tmp_path_factory):
    work = tmp_path_factory.mktemp("deps")
    made = run_cli("sample-data", "--out", "data", "--years", YEARS, "--members", "4", cwd=work)
    assert made.code == 0, made.err
    return work


def run_both(work, *extra):
    result = run_cli(
        "run",
        "--local",
        "2",
        "--task",
        "vort_track,year_summary",
        "--years",
        YEARS,
        "--members",
        MEMBERS,
        "--json",
        *extra,
        cwd=work,
    )
    return result.code, json.loads(result.out) if result.out else result.err


def cell_times(work, column="finished"):
    db = sqlite3.connect(work / "clusterfarm-run/state.sqlite")
    rows = db.execute(f"SELECT task, year, member, {column} FROM cells").fetchall()
    db.close()
    return {(t, y, m): f for t, y, m, f in rows}


@pytest.mark.slow
def test_each_year_summary_comes_after_its_members_and_before_the_last_tracking(project):
    code, report = run_both(project)
    assert code == 0, report
    assert report["complete"] == 12 + 3
    assert report["progress"]["year_summary"] == {"2000": "+", "2001": "+", "2002": "+"}
    times = cell_times(project)
    results = project / "clusterfarm-run/results"
    for year in (2000, 2001, 2002):
        summary = results / f"year_summary/{year}/year_summary_{year}.nc"
        members = [results / f"vort_track/{year}/vort_track_{year}_m{m:03d}.nc" for m in range(4)]
        assert summary.stat().st_mtime_ns >= max(m.stat().st_mtime_ns for m in members)
    # the first year's summary started while later years were still being tracked (it may
    # end after them: their cells may be on the way to the workers already)
    last_tracking = max(f for (t, _, _), f in times.items() if t == "vort_track")
    assert cell_times(project, "started")[("year_summary", 2000, -1)] < last_tracking


@pytest.mark.slow
def test_summary_file_holds_the_ensemble_statistics(project):
    import netCDF4

    assert run_both(project)[0] == 0
    path = project / "clusterfarm-run/results/year_summary/2001/year_summary_2001.nc"
    with netCDF4.Dataset(path) as ds:
        counts = ds["track_count"][:]
        assert list(ds["member"][:]) == [0, 1, 2, 3]
        assert float(ds["track_count_mean"][...]) == pytest.approx(counts.mean())
        assert ds["track_density"].shape == (4, 36, 72)
        # every track passes through at least one box, so each member's boxes hold its tracks
        assert (ds["track_density"][:].reshape(4, -1).sum(axis=1) >= counts).all()
        assert ds.Conventions == "CF-1.8"


@pytest.mark.slow
def test_corrupt_year_fails_its_cells_and_summary_and_a_fixed_rerun_does_exactly_those(project):
    u_file = project / "data/2001/u850_2001.nc"
    shutil.copy(u_file, project / "u850_backup.nc")
    u_file.write_bytes(b"this is not netCDF" * 100)
    code, report = run_both(project)
    assert code == 1
    assert report["progress"]["vort_track"]["2001"] == "FFFF"
    assert report["progress"]["year_summary"] == {"2000": "+", "2001": "F", "2002": "+"}
    kinds = {(f["task"], f["year"]): f["error_kind"] for f in report["failures"]}
    assert kinds == {("vort_track", 2001): "input", ("year_summary", 2001): "dependency"}
    summary_failure = next(f for f in report["failures"] if f["task"] == "year_summary")
    assert summary_failure["error"].startswith("needs vort_track 2001 m")
    assert all(f["attempts"] == 1 for f in report["failures"] if f["task"] == "vort_track")

    shutil.copy(project / "u850_backup.nc", u_file)
    code, report = run_both(project)
    assert code == 0 and report["ran"] == 5 and report["skipped"] == 10


@pytest.mark.slow
def test_changed_parameter_reruns_everything_it_affects_and_says_why(project):
    assert run_both(project)[0] == 0
    (project / "clusterfarm.toml").write_text("[tasks.vort_track]\nthreshold = 1.2e-5\n")
    status = run_cli("status", "--plan", cwd=project)
    assert "15 complete cell(s) will run again on the next run:" in status.out
    assert "vort_track 2000 m000: parameters changed" in status.out
    assert "year_summary 2000: needs vort_track 2000 m000, which will run again" in status.out
    code, report = run_both(project)
    assert code == 0 and report["ran"] == 15
    code, report = run_both(project)
    assert code == 0 and report["ran"] == 0 and report["skipped"] == 15


@pytest.mark.slow
def test_changed_input_file_reruns_that_year(project):
    assert run_both(project)[0] == 0
    v_file = project / "data/2002/v850_2002.nc"
    stat = v_file.stat()
    os.utime(v_file, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    # inputs are checked where the data is, when the run starts: status cannot tell
    assert json.loads(run_cli("status", "--plan", "--json", cwd=project).out)["stale"] == []
    code, report = run_both(project)
    assert code == 0 and report["ran"] == 5


@pytest.mark.slow
def test_summary_alone_brings_in_the_tracking_it_needs(project):
    result = run_cli(
        "run",
        "--local",
        "2",
        "--task",
        "year_summary",
        "--years",
        "2000",
        "--members",
        "0-1",
        "--json",
        cwd=project,
    )
    assert result.code == 0, result.err
    assert json.loads(result.out)["progress"] == {
        "vort_track": {"2000": "++"},
        "year_summary": {"2000": "+"},
    }


def test_prerequisites_are_ordered_and_cycles_refused(monkeypatch):
    from clusterfarm.tasks import registry

    load_task_modules()
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))  # restored afterwards
    assert with_prerequisites(["year_summary"]) == ["vort_track", "year_summary"]
    task("cycle_a", after="cycle_b")(lambda year, member, ctx: None)
    task("cycle_b", after="cycle_a")(lambda year, member, ctx: None)
    with pytest.raises(UnknownTaskError, match="cycle: cycle_a -> cycle_b -> cycle_a"):
        with_prerequisites(["cycle_a"])
    task("orphan", after="nowhere")(lambda year, member, ctx: None)
    with pytest.raises(UnknownTaskError, match="'orphan' runs after 'nowhere'"):
        with_prerequisites(["orphan"])
