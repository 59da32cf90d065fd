"""``status`` does not mislead: a dead manager, another directory, a read-only run dir."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time

import pytest

from clusterfarm.record.manager_heartbeat import STALE_AFTER, gone_since
from tests.harness.cli import PLUGIN_SETTINGS, cli_env, run_cli
from tests.harness.processes import alive, descendants


def status_json(run_dir, cwd):
    result = run_cli("status", "--run-dir", str(run_dir), "--json", cwd=cwd)
    assert result.code in (0, 1), result.err
    return json.loads(result.out)


@pytest.mark.slow
def test_status_of_a_killed_run_says_the_manager_is_gone(tmp_path):
    (tmp_path / "clusterfarm.toml").write_text("[tasks.sleep]\nseconds = 120\n")
    manager = subprocess.Popen(
        [sys.executable, "-m", "clusterfarm", "run", "--local", "2", "--task", "sleep",
         "--years", "2000", "--members", "0-3", "--progress", "none"],
        cwd=tmp_path, env=cli_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    started_by_it: set[int] = set()
    try:
        deadline = time.monotonic() + 60
        while True:
            assert manager.poll() is None and time.monotonic() < deadline, "no cell started"
            if (tmp_path / "clusterfarm-run/state.sqlite").exists():
                report = status_json("clusterfarm-run", tmp_path)
                if "W" in report["progress"]["sleep"]["2000"]:
                    break
            time.sleep(0.2)
        assert report["state"] == "running"
        started_by_it = descendants(manager.pid)
        manager.send_signal(signal.SIGKILL)
        manager.wait()

        db = sqlite3.connect(tmp_path / "clusterfarm-run/state.sqlite")
        (working,) = db.execute("SELECT count(*) FROM cells WHERE status='W'").fetchone()
        db.close()
        assert working >= 1
        result = run_cli("status", cwd=tmp_path)
        assert result.code == 0, result.err
        assert "manager gone since " in result.out and "run again to resume" in result.out
        assert f"the {working} cell(s) it was working on show as -" in result.out
        assert "2000: ----" in result.out.splitlines()
        first = status_json("clusterfarm-run", tmp_path)
        time.sleep(1.1)
        again = status_json("clusterfarm-run", tmp_path)
        assert first["state"] == "manager gone" and "gone_since" in first
        assert again["elapsed"] == first["elapsed"]  # stopped with the manager, not growing
        assert first["outstanding"] == 4 and first["progress"]["sleep"]["2000"] == "----"
    finally:
        if manager.poll() is None:
            manager.kill()
            manager.wait()
        for pid in started_by_it:  # workers die with the manager's pipe; make sure of it
            deadline = time.monotonic() + 10
            while alive(pid) and time.monotonic() < deadline:
                time.sleep(0.1)
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_a_stale_heartbeat_or_a_dead_pid_means_the_manager_is_gone():
    now = time.time()
    here = socket.gethostname()
    assert gone_since(os.getpid(), here, now - 1, now) is None
    assert gone_since(os.getpid(), "elsewhere", now - 1, now) is None
    assert gone_since(os.getpid(), "elsewhere", now - STALE_AFTER - 1, now) == now - STALE_AFTER - 1
    assert gone_since(_ended_pid(), here, now - 1, now) == now - 1
    assert gone_since(None, None, None, now) is None  # an older version's row: cannot tell


def _ended_pid() -> int:
    """The pid of a process that has just ended (and been reaped)."""
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


@pytest.mark.slow
def test_status_from_another_directory_resolves_paths_from_where_the_run_started(tmp_path):
    project, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    project.mkdir()
    elsewhere.mkdir()
    settings = project / "clusterfarm.toml"
    settings.write_text(PLUGIN_SETTINGS + '[run]\nresults_dir = "results"\n')
    ran = run_cli("run", "--local", "1", "--task", "write_file", "--members", "0-1", cwd=project)
    assert ran.code == 0, ran.err
    # ./results is the project's, not elsewhere/results: the results did not move
    shown = run_cli(
        "--settings", str(settings), "status", "--run-dir", str(project / "clusterfarm-run"),
        "--plan", "--json", cwd=elsewhere,
    )  # fmt: skip
    assert shown.code == 0, shown.err
    report = json.loads(shown.out)
    assert report["complete"] == 26 and report["stale"] == []


def test_status_writes_nothing_and_works_on_a_read_only_run_dir(tmp_path, mounts):
    ran = run_cli("run", "--local", "1", "--task", "noop", "--years", "2000", cwd=tmp_path)
    assert ran.code == 0, ran.err
    run_dir = tmp_path / "clusterfarm-run"
    before = _listing(run_dir)
    assert run_cli("status", cwd=tmp_path).code == 0
    assert _listing(run_dir) == before  # not a byte, not a -wal or -shm file
    mounts.read_only(run_dir)
    result = run_cli("status", "--json", cwd=tmp_path)
    assert result.code == 0, result.err
    assert json.loads(result.out)["complete"] == 56


def test_status_on_an_empty_state_file_leaves_it_empty(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run/state.sqlite").touch()
    result = run_cli("status", "--run-dir", "run", cwd=tmp_path)
    assert result.code == 2 and "not a clusterfarm state database" in result.err
    assert _listing(tmp_path / "run") == {"state.sqlite": hashlib.sha256(b"").hexdigest()}


def _listing(folder):
    return {
        path.name: hashlib.sha256(path.read_bytes()).hexdigest()
        for path in folder.iterdir()
        if path.is_file()
    }
