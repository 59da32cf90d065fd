"""What a command writes where the user says: never over the run's own files, and every
place that cannot take it (a folder, a path under a file, a full disk, /proc, a closed pipe)
is one ``Error:`` line and its exit code, never a traceback. Real commands, real run dirs."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from clusterfarm.analysis import Track, result_path, write_tracks
from tests.harness.cli import cli_env, run_cli

USAGE, INFRA = 2, 3


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished local run (its state, logs, provenance) with vort_track results to export."""
    work = tmp_path_factory.mktemp("outputs")
    ran = run_cli("run", "--local", "1", "--task", "noop", "--years", "2000", "--members", "0-1",
                  "--progress", "none", cwd=work)  # fmt: skip
    assert ran.code == 0, ran.err
    path = result_path(work / "clusterfarm-run" / "results", 2000, 0)
    path.parent.mkdir(parents=True)
    k = np.arange(8.0)
    track = Track(6 * k, 50 + 0.5 * k, 10 + 3 * k, (4 + k) * 1e-5)
    write_tracks(path, [track], time_units="hours since 2000-01-01 00:00:00")
    (work / "a_file").write_text("not a folder")
    return work


def one_error_line(result, code: int) -> str:
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.err
    assert "Traceback" not in result.err
    assert result.code == code, result.err
    return lines[0]


COMMANDS = {
    "report": ("report", "--out"),
    "export": ("export", "--format", "csv", "--out"),
}
PLACES = [
    ("a folder", ".", USAGE, "that is a folder"),
    ("a path under a file", "a_file/out.x", USAGE, "a_file is a file, not a folder"),
    ("a full disk", "/dev/full", INFRA, "No space left on device"),
    ("/proc", "/proc/clusterfarm-out", USAGE, "No such file or directory"),
]


@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.parametrize(("label", "out", "code", "says"), PLACES, ids=[p[0] for p in PLACES])
def test_an_output_place_that_cannot_take_it_is_one_error_line(
    project, command, label, out, code, says
):
    line = one_error_line(run_cli(*COMMANDS[command], out, cwd=project), code)
    assert says in line and out in line


def test_a_plot_under_a_file_is_one_error_line(project):
    line = one_error_line(run_cli("plot", "--year", "2000", "--out", "a_file/map.png", cwd=project),
                          USAGE)  # fmt: skip
    assert "a_file is a file, not a folder" in line


@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.parametrize(
    "own", ["state.sqlite", "state.sqlite-wal", "logs/manager.log", "provenance.json", "run.lock"]
)
def test_an_output_over_the_runs_own_files_is_refused_and_the_run_stays_intact(
    project, command, own
):
    state = project / "clusterfarm-run" / "state.sqlite"
    before = hashlib.sha256(state.read_bytes()).hexdigest()
    target = f"clusterfarm-run/{own}"
    line = one_error_line(run_cli(*COMMANDS[command], target, cwd=project), USAGE)
    assert "the run's own" in line and "give a path outside it" in line
    assert hashlib.sha256(state.read_bytes()).hexdigest() == before
    status = run_cli("status", "--json", cwd=project)
    assert status.code == 0 and '"complete": 2' in status.out, status.err


@pytest.mark.parametrize("command", [("trace",), ("status",), ("status", "--json")])
def test_standard_output_on_a_full_disk_is_one_error_line(project, command):
    with open("/dev/full", "w") as full:
        done = subprocess.run(
            [sys.executable, "-m", "clusterfarm", *command], cwd=project, env=cli_env(),
            stdout=full, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "standard output" in lines[0] and "No space left" in lines[0]
    assert done.returncode == INFRA


def test_a_reader_that_goes_away_is_one_error_line(project):
    process = subprocess.Popen(
        [sys.executable, "-m", "clusterfarm", "trace", "--format", "json"], cwd=project,
        env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert process.stdout is not None and process.stderr is not None
    process.stdout.close()  # the reader is gone before the first byte
    err = process.stderr.read()
    assert process.wait() == USAGE
    assert err.count("\n") == 1 and "broken pipe" in err and "Traceback" not in err


def test_a_report_replaces_an_earlier_one_whole(project):
    out = project / "report.html"
    out.write_text("an old report")
    assert run_cli("report", "--out", str(out), cwd=project).code == 0
    assert out.read_text().startswith("<!DOCTYPE html>")
    assert not list(project.glob(".report.html.*"))  # no temporary left beside it
