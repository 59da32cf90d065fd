"""vort_track through the farm: sample data, a local run, score and plot from the CLI."""

import json
import subprocess
import sys

import pytest

from clusterfarm.config.settings import default_settings_path
from tests.harness.cli import cli_env, run_cli

DEFAULT_SETTINGS = default_settings_path()


@pytest.fixture(scope="module")
def tracked(tmp_path_factory):
    work = tmp_path_factory.mktemp("vort")
    made = run_cli(
        "sample-data", "--out", "data", "--years", "2000-2001", "--members", "3", cwd=work
    )
    assert made.code == 0, made.err
    ran = run_cli(
        "run",
        "--local",
        "2",
        "--task",
        "vort_track",
        "--years",
        "2000-2001",
        "--members",
        "0-2",
        "--json",
        cwd=work,
    )
    assert ran.code == 0, ran.err
    return work, json.loads(ran.out)


@pytest.mark.slow
def test_every_cell_completes_with_a_track_count(tracked):
    work, report = tracked
    assert report["complete"] == 6
    output = work / "clusterfarm-run/results/vort_track/2001/vort_track_2001_m002.nc"
    assert output.stat().st_size > 0


def test_score_finds_the_true_tracks(tracked):
    work, _ = tracked
    result = run_cli("score", "--truth", "data", "--json", cwd=work)
    assert result.code == 0, result.err
    figures = json.loads(result.out)
    assert figures["recall"] >= 0.95 and figures["precision"] >= 0.95
    assert figures["error_km"]["mean"] <= 100
    assert figures["truth_tracks"] == figures["found_tracks"] > 0


def test_plot_writes_a_png(tracked):
    work, _ = tracked
    result = run_cli("plot", "--year", "2000", "--out", "map.png", cwd=work)
    assert result.code == 0, result.err
    assert (work / "map.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_of_a_year_without_results_is_a_clear_error(tracked):
    work, _ = tracked
    result = run_cli("plot", "--year", "1990", "--out", "x.png", cwd=work)
    assert result.code == 2 and "no vort_track results for year 1990" in result.err


def test_impossible_parameter_stops_the_run_before_any_cell(tmp_path):
    (tmp_path / "clusterfarm.toml").write_text("[tasks.vort_track]\nlink_km = -5.0\n")
    result = run_cli("run", "--local", "1", "--years", "2000", "--members", "0", cwd=tmp_path)
    assert result.code == 2
    assert "[tasks.vort_track] link_km = -5.0: must be positive" in result.err


def test_missing_data_dir_is_one_line_before_any_cell(tmp_path):
    result = run_cli("run", "--local", "1", "--years", "2000", "--members", "0", cwd=tmp_path)
    assert result.code == 2
    assert result.err.strip() == (
        "Error: data_dir './data' does not exist (from "
        f"{DEFAULT_SETTINGS}); point [run] data_dir at the input data, or make sample data: "
        "clusterfarm sample-data --out ./data"
    )


def test_missing_input_fails_the_cell_as_input_after_one_attempt(tmp_path):
    (tmp_path / "data").mkdir()  # the folder is there, the year's files are not
    result = run_cli(
        "run", "--local", "1", "--years", "2000", "--members", "0", "--json", cwd=tmp_path
    )
    assert result.code == 1
    (failure,) = json.loads(result.out)["failures"]
    assert failure["error_kind"] == "input" and failure["attempts"] == 1
    assert "u850_2000.nc" in failure["error"]


def test_the_manager_of_a_vort_track_run_never_imports_numpy_netcdf4_or_cftime(tracked):
    """The manager lists the inputs (provenance, the kept results' check in local mode) but
    never reads them: the science loads only in the task processes."""
    work, _ = tracked
    # the command line's own main, then every module the process ended up with
    script = (
        "import json, sys\n"
        "from clusterfarm.cli import main\n"
        "try:\n"
        "    main(sys.argv[2:])\n"
        "finally:\n"
        "    open(sys.argv[1], 'w').write(json.dumps(sorted(sys.modules)))\n"
    )
    args = ["run", "--local", "1", "--task", "vort_track", "--years", "2000", "--members", "0-1"]
    args += ["--run-dir", "imports", "--progress", "none"]
    done = subprocess.run(
        [sys.executable, "-c", script, str(work / "modules.json"), *args],
        cwd=work,
        env=cli_env(),
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    loaded = set(json.loads((work / "modules.json").read_text()))
    assert "clusterfarm.tasks.vort_track" in loaded  # the run's inputs were listed here
    science = {name for name in loaded if name.split(".")[0] in ("numpy", "netCDF4", "cftime")}
    assert not science
    provenance = json.loads((work / "imports" / "provenance.json").read_text())
    assert "u850_2000.nc" in json.dumps(provenance)
