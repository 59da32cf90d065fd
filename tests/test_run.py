"""``clusterfarm run`` end to end in local mode: real nameserver, workers, state."""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from tests.harness.cli import PLUGIN_SETTINGS, cli_env, run_cli, write_settings
from tests.harness.faults import complete_cells
from tests.harness.processes import alive, descendants


@pytest.fixture
def project(tmp_path):
    """A working directory with settings that load the test plugin tasks."""
    write_settings(tmp_path / "clusterfarm.toml", PLUGIN_SETTINGS)
    return tmp_path


def run_json(project, *args):
    result = run_cli("run", "--local", "2", "--json", *args, cwd=project)
    assert result.err == "" or "Error" not in result.err, result.err
    return result.code, json.loads(result.out)


@pytest.mark.slow
def test_run_completes_every_cell_and_rerun_redoes_nothing(project):
    code, first = run_json(project, "--task", "noop", "--years", "2000-2002", "--members", "0-9")
    assert code == 0
    assert first["complete"] == 30 and first["ran"] == 30 and first["skipped"] == 0
    assert first["progress"]["noop"] == {str(y): "+" * 10 for y in (2000, 2001, 2002)}
    code, second = run_json(project, "--task", "noop", "--years", "2000-2002", "--members", "0-9")
    assert code == 0 and second["ran"] == 0 and second["skipped"] == 30


@pytest.mark.slow
def test_a_run_whose_cells_outlast_the_heartbeat_ends_without_a_thread_traceback(project):
    """The heartbeats ping quiet busy workers from a pool of threads; at the end their
    connections are closed by the heartbeat thread, which must own them first."""
    write_settings(
        project / "clusterfarm.toml",
        PLUGIN_SETTINGS + "[run]\nheartbeat = 0.3\n[tasks.sleep]\nseconds = 1.0\n",
    )
    result = run_cli(
        "run",
        "--local",
        "2",
        "--task",
        "sleep",
        "--years",
        "2000",
        "--members",
        "0-3",
        "--progress",
        "none",
        cwd=project,
    )
    assert result.code == 0
    assert "Traceback" not in result.err and "Exception in thread" not in result.err, result.err


@pytest.mark.slow
def test_extending_the_years_runs_only_the_new_cells(project):
    run_json(project, "--task", "noop", "--years", "2000", "--members", "0-4")
    code, wider = run_json(project, "--task", "noop", "--years", "2000-2001", "--members", "0-4")
    assert code == 0 and wider["ran"] == 5 and wider["skipped"] == 5


@pytest.mark.slow
def test_plain_progress_prints_year_strings_and_a_final_block(project):
    result = run_cli(
        "run",
        "--local",
        "2",
        "--task",
        "sleep",
        "--years",
        "2000-2001",
        "--members",
        "0-5",
        "--progress",
        "plain",
        cwd=project,
    )
    assert result.code == 0, result.err
    blocks = [line for line in result.out.splitlines() if line.startswith("[")]
    assert blocks and blocks[-1].endswith("12/12 complete, 0 working, 0 failed, 0 timeout")
    assert "2000: ++++++" in result.out and "2001: ++++++" in result.out
    assert "ran 12, skipped 0" in result.out


@pytest.mark.slow
def test_failing_task_ends_F_after_all_attempts_and_exit_1(project):
    code, report = run_json(
        project, "--task", "fail_always", "--years", "2000", "--members", "0-1", "--retries", "2"
    )
    assert code == 1
    assert report["progress"]["fail_always"]["2000"] == "FF"
    assert report["failure"] == 2
    failure = report["failures"][0]
    assert failure == {
        "task": "fail_always",
        "year": 2000,
        "member": 0,
        "status": "F",
        "attempts": 3,
        "error_kind": "task",
        "error": "RuntimeError: boom in 2000 m0",
    }


@pytest.mark.slow
def test_bad_input_fails_after_one_attempt(project):
    code, report = run_json(project, "--task", "bad_input", "--years", "2000", "--members", "0")
    assert code == 1
    assert report["failures"][0]["attempts"] == 1
    assert report["failures"][0]["error_kind"] == "input"


@pytest.mark.slow
def test_a_task_that_fails_once_is_retried_to_success(project, tmp_path):
    markers = tmp_path / "markers"
    markers.mkdir()
    write_settings(
        project / "clusterfarm.toml", PLUGIN_SETTINGS + f'[tasks.flaky]\nmarker_dir = "{markers}"\n'
    )
    code, report = run_json(project, "--task", "flaky", "--years", "2000", "--members", "0-3")
    assert code == 0 and report["complete"] == 4 and report["ran"] == 4


@pytest.mark.slow
def test_failed_cells_get_fresh_attempts_on_rerun(project):
    run_json(project, "--task", "bad_input", "--years", "2000", "--members", "0-1")
    code, again = run_json(project, "--task", "bad_input", "--years", "2000", "--members", "0-1")
    assert code == 1 and again["ran"] == 2 and again["skipped"] == 0


@pytest.mark.slow
def test_timeout_marks_T(project):
    code, report = run_json(
        project,
        "--task",
        "hang",
        "--years",
        "2000",
        "--members",
        "0",
        "--timeout",
        "0.5",
        "--retries",
        "0",
    )
    assert code == 1 and report["progress"]["hang"]["2000"] == "T"
    assert report["failures"][0]["error_kind"] == "timeout"


@pytest.mark.slow
def test_task_output_lands_in_results_dir(project):
    code, report = run_json(project, "--task", "write_file", "--years", "2001", "--members", "3")
    assert code == 0
    output = project / "clusterfarm-run/results/write_file/2001/write_file_2001_m003.nc"
    assert output.read_text() == "2001 3\n"
    assert not list(output.parent.glob(".*tmp"))


class RunningManager:
    """``clusterfarm run`` in the background, with what it started."""

    def __init__(self, project, members="0-79"):
        self.run_dir = project / "clusterfarm-run"
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "clusterfarm",
                "run",
                "--local",
                "2",
                "--task",
                "sleep",
                "--years",
                "2000",
                "--members",
                members,
                "--progress",
                "plain",
            ],
            cwd=project,
            env=cli_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def wait_for_progress(self, cells=6, timeout=30):
        deadline = time.monotonic() + timeout
        while not (self.run_dir / "state.sqlite").exists() or complete_cells(self.run_dir) < cells:
            assert self.process.poll() is None, self.process.communicate()
            assert time.monotonic() < deadline, "the run made no progress"
            time.sleep(0.05)
        return descendants(self.process.pid)


def wait_gone(pids, timeout=10):
    deadline = time.monotonic() + timeout
    while any(alive(pid) for pid in pids):
        assert time.monotonic() < deadline, f"still running: {[p for p in pids if alive(p)]}"
        time.sleep(0.05)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
@pytest.mark.slow
def test_interrupt_exits_130_stops_everything_and_resume_does_the_rest(project, signum):
    manager = RunningManager(project)
    started = manager.wait_for_progress()
    assert len(started) >= 4  # 2 workers and their task processes
    manager.process.send_signal(signum)
    out, err = manager.process.communicate(timeout=30)
    assert manager.process.returncode == 130, err
    assert err.strip().splitlines()[-1].startswith("Interrupted: state saved in")
    wait_gone(started)
    done = complete_cells(manager.run_dir)
    assert 0 < done < 80
    code, report = run_json(project, "--task", "sleep", "--years", "2000", "--members", "0-79")
    assert code == 0 and report["complete"] == 80
    assert report["ran"] == 80 - done and report["skipped"] == done


@pytest.mark.slow
def test_sigkill_of_manager_takes_local_workers_down_and_resume_does_the_rest(project):
    manager = RunningManager(project)
    started = manager.wait_for_progress()
    os.kill(manager.process.pid, signal.SIGKILL)
    manager.process.communicate(timeout=30)
    wait_gone(started)
    done = complete_cells(manager.run_dir)
    code, report = run_json(project, "--task", "sleep", "--years", "2000", "--members", "0-79")
    assert code == 0 and report["complete"] == 80
    assert report["ran"] == 80 - done


@pytest.mark.slow
def test_status_reads_a_live_run_from_another_process(project):
    manager = RunningManager(project)
    manager.wait_for_progress(cells=2)
    live = run_cli("status", "--json", cwd=project)
    assert live.code == 0, live.err
    report = json.loads(live.out)
    assert report["state"] == "running"
    line = report["progress"]["sleep"]["2000"]
    assert len(line) == 80 and "+" in line and "-" in line
    manager.process.communicate(timeout=60)
    assert manager.process.returncode == 0
    final = run_cli("status", cwd=project)
    assert "2000: " + "+" * 80 in final.out and "80/80 complete" in final.out


@pytest.mark.slow
def test_second_manager_on_the_same_run_dir_is_refused(project):
    manager = RunningManager(project)
    manager.wait_for_progress(cells=1)
    second = run_cli(
        "run",
        "--local",
        "1",
        "--task",
        "sleep",
        "--years",
        "2000",
        "--members",
        "0-79",
        cwd=project,
    )
    assert second.code == 2 and "another clusterfarm run" in second.err
    manager.process.send_signal(signal.SIGINT)
    manager.process.communicate(timeout=30)


def test_task_scratch_dir_is_under_the_worker_workdir_and_removed(project):
    workdir = project / "workerdir"
    write_settings(
        project / "clusterfarm.toml", PLUGIN_SETTINGS + f'[workers]\nworkdir = "{workdir}"\n'
    )
    code, report = run_json(project, "--task", "write_file", "--years", "2000", "--members", "0")
    assert code == 0
    db = sqlite3.connect(project / "clusterfarm-run/state.sqlite")
    (summary,) = db.execute("SELECT summary FROM cells").fetchone()
    db.close()
    scratch = json.loads(summary)["workdir_was"]
    assert scratch.startswith(str(workdir / "scratch") + "/")
    assert list((workdir / "scratch").iterdir()) == []


@pytest.mark.slow
def test_status_still_shows_progress_when_it_cannot_plan_the_next_run(project):
    run_json(project, "--task", "noop", "--years", "2000", "--members", "0-2")
    write_settings(project / "clusterfarm.toml", '[tasks]\nmodules = ["no_such_plugin"]\n')
    shown = run_cli("status", "--plan", cwd=project)
    assert shown.code == 0, shown.err
    assert "2000: +++" in shown.out
    assert "(cannot tell which cells the next run redoes: tasks.modules: cannot import" in shown.out
