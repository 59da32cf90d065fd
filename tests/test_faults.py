"""Faults with real processes: killed, frozen and stopped workers, hung tasks, soak."""

from __future__ import annotations

import json
import re
import signal
import sqlite3
import threading
import time

import pytest

from tests.harness.cli import (
    FAST_LIVENESS,
    PLUGIN_SETTINGS,
    finish,
    run_cli,
    start_run,
    write_settings,
)
from tests.harness.faults import (
    busy_on,
    complete_cells,
    freeze,
    kill,
    rss_kb,
    task_processes,
    thaw,
    wait_gone,
    worker_daemons,
)
from tests.harness.processes import wait_until
from tests.harness.secret import ACCESS


def wait_busy_worker(process, cwd, name):
    """Wait until the run is under way; return the pids of its local worker ``name``."""
    wait_until(lambda: complete_cells(cwd / "clusterfarm-run") >= 2, what="progress")
    daemon = worker_daemons(process.pid)[name]
    return daemon, task_processes(daemon)


@pytest.fixture
def cluster(tmp_path, nameserver):
    """Settings for cluster mode against the test nameserver (workers started by the test)."""

    def settings(extra=""):
        return write_settings(
            tmp_path / "clusterfarm.toml",
            PLUGIN_SETTINGS
            + FAST_LIVENESS
            + extra
            + f'[nameserver]\nport = {nameserver.port}\n[[hosts]]\nname = "test"\n',
        )

    return settings


@pytest.mark.slow
def test_worker_killed_mid_task_run_completes_and_its_task_process_is_gone(tmp_path):
    write_settings(
        tmp_path / "clusterfarm.toml",
        PLUGIN_SETTINGS + FAST_LIVENESS + "[tasks.sleep]\nseconds = 0.2\n",
    )
    run = start_run(
        tmp_path, "--local", "2", "--task", "sleep", "--years", "2000", "--members", "0-19"
    )
    daemon, tasks = wait_busy_worker(run, tmp_path, "local.1")
    kill(daemon)
    code, report, err = finish(run)
    assert code == 0, err
    assert report["progress"]["sleep"]["2000"] == "+" * 20 and report["ran"] == 20
    wait_gone(tasks)


@pytest.mark.slow
def test_hanging_task_times_out_and_the_worker_goes_on(tmp_path):
    write_settings(tmp_path / "clusterfarm.toml", PLUGIN_SETTINGS + "[tasks.hang_on]\nmember = 1\n")
    began = time.monotonic()
    code, report, err = finish(
        start_run(
            tmp_path,
            "--local",
            "1",
            "--task",
            "hang_on",
            "--years",
            "2000",
            "--members",
            "0-3",
            "--timeout",
            "1",
            "--retries",
            "0",
        )
    )
    assert code == 1, err
    assert report["progress"]["hang_on"]["2000"] == "+T++"
    assert report["failures"][0]["error_kind"] == "timeout"
    assert time.monotonic() - began < 1 + 8  # the timeout plus start-up, not much more


@pytest.mark.slow
def test_task_that_kills_its_worker_ends_F_instead_of_looping(tmp_path):
    write_settings(tmp_path / "clusterfarm.toml", PLUGIN_SETTINGS + FAST_LIVENESS)
    code, report, err = finish(
        start_run(
            tmp_path,
            "--local",
            "3",
            "--task",
            "kill_worker",
            "--years",
            "2000",
            "--members",
            "0",
            "--retries",
            "1",
        )
    )
    assert code == 1, err
    (failure,) = report["failures"]
    assert failure["attempts"] == 2 and failure["error_kind"] == "lost"


@pytest.mark.slow
def test_frozen_worker_is_declared_lost_its_cell_redone_and_it_comes_back(
    tmp_path, cluster, start_worker
):
    cluster("[tasks.sleep]\nseconds = 0.3\n")
    frozen = start_worker("test.0")
    start_worker("test.1")
    run = start_run(tmp_path, "--task", "sleep", "--years", "2000", "--members", "0-29")
    wait_until(lambda: busy_on(tmp_path / "clusterfarm-run", "test.0"), what="test.0 busy")
    freeze(frozen.pid)  # no reset: its calls just hang, as with a cut network
    frozen_at = time.monotonic()
    time.sleep(3)
    thaw(frozen.pid)
    code, report, err = finish(run)
    assert code == 0, err
    assert report["progress"]["sleep"]["2000"] == "+" * 30
    log = (tmp_path / "clusterfarm-run/logs/manager.log").read_text()
    assert "worker clusterfarm.worker.test.0 lost: no answer to heartbeats for 1.5 s" in log
    import sqlite3

    db = sqlite3.connect(tmp_path / "clusterfarm-run/state.sqlite")
    used_after = db.execute(
        "SELECT count(*) FROM cells WHERE worker='clusterfarm.worker.test.0' AND started > ?",
        (time.time() - (time.monotonic() - frozen_at) + 3,),
    ).fetchone()[0]
    assert used_after > 0, "the worker that came back was not used again"


@pytest.mark.slow
def test_stopped_worker_hands_its_cell_back_without_using_an_attempt(
    tmp_path, cluster, start_worker, nameserver
):
    cluster("[tasks.sleep]\nseconds = 0.5\n")
    leaving = start_worker("test.0")
    start_worker("test.1")
    run = start_run(
        tmp_path, "--task", "sleep", "--years", "2000", "--members", "0-9", "--retries", "0"
    )
    wait_until(lambda: (tmp_path / "clusterfarm-run/state.sqlite").exists(), what="state")
    time.sleep(0.8)
    leaving.send_signal(signal.SIGTERM)
    assert leaving.wait(10) == 0
    code, report, err = finish(run)
    assert code == 0, err  # with retries = 0, a counted attempt would have ended F
    assert report["complete"] == 10
    from clusterfarm.wire.nameserver import list_workers, locate

    names = [w.name for w in list_workers(locate(nameserver.host, nameserver.port, ACCESS))]
    assert names == ["clusterfarm.worker.test.1"]


@pytest.mark.slow
def test_soak_worker_killed_and_restarted_every_two_seconds(tmp_path, cluster, start_worker):
    cluster("[tasks.sleep]\nseconds = 0.001\n")
    start_worker("test.0")
    victim = [start_worker("test.1")]
    run = start_run(tmp_path, "--task", "sleep", "--years", "1000-1019", "--members", "0-999")
    memory: list[int] = []
    restarts = 0
    stop = threading.Event()

    def chaos():
        nonlocal restarts
        while not stop.wait(2.0):
            kill(victim[0].pid)
            victim[0].wait()
            victim[0] = start_worker("test.1")
            restarts += 1

    chaos_thread = threading.Thread(target=chaos)
    chaos_thread.start()
    try:
        while run.poll() is None:
            memory.append(rss_kb(run.pid))
            time.sleep(0.5)
    finally:
        stop.set()
        chaos_thread.join()
    code, report, err = finish(run)
    assert code == 0, err
    assert report["complete"] == 20_000 and report["ran"] == 20_000
    assert restarts >= 2
    log = (tmp_path / "clusterfarm-run/logs/manager.log").read_text()
    assert re.search(r"run ended: \d+ cells sent in \d+ calls, 20000 completions", log)  # once each
    # memory: after start-up, the manager does not grow with the cells it has done
    settled = memory[len(memory) // 4 :]
    print(
        f"manager RSS kB: first {memory[0]}, settled {settled[0]}..{max(settled)}, "
        f"restarts {restarts}"
    )
    assert max(settled) - settled[0] < 20_000


@pytest.mark.slow
def test_worker_short_of_disk_hands_cells_back_without_using_attempts(tmp_path):
    write_settings(tmp_path / "clusterfarm.toml", "[workers]\nmin_free_mb = 1e12\n")
    process = start_run(
        tmp_path, "--local", "2", "--task", "noop", "--years", "2000", "--members", "0-3"
    )
    log = tmp_path / "clusterfarm-run" / "logs" / "manager.log"
    wait_until(
        lambda: log.exists() and "below [workers] min_free_mb" in log.read_text(),
        what="the manager saying why the workers take no cells",
    )
    time.sleep(1.5)  # a few more refusals: none may use an attempt
    process.send_signal(signal.SIGINT)
    code, _, _ = finish(process)
    assert code == 130
    db = sqlite3.connect(tmp_path / "clusterfarm-run" / "state.sqlite")
    rows = db.execute("SELECT status, attempts FROM cells").fetchall()
    assert rows == [("-", 0)] * 4


def test_disk_check_asks_the_file_systems_at_most_once_a_second(tmp_path):
    from clusterfarm.worker.service import DiskCheck, Own

    check = DiskCheck()
    own = Own(str(tmp_path), str(tmp_path), str(tmp_path), 10.0, 1e12)
    assert "only" in check.problem(own, str(tmp_path))
    plenty = Own(str(tmp_path), str(tmp_path), str(tmp_path), 10.0, 0)
    # plenty now, but the answer is a second old at most
    assert check.problem(plenty, str(tmp_path)) is not None


@pytest.mark.slow
def test_host_that_keeps_failing_is_quarantined_and_shown_so(
    tmp_path, cluster, start_worker, nameserver
):
    settings = cluster()
    settings.write_text(
        settings.read_text().replace(
            "[run]\n", "[run]\nquarantine_after = 3\nquarantine_for = 60\n", 1
        )
    )
    start_worker("bad.0", env={"CF_TEST_BAD_HOST": "1"})
    start_worker("good.0")
    process = start_run(
        tmp_path,
        "--task",
        "fails_on_bad_host",
        "--years",
        "2000",
        "--members",
        "0-19",
        "--retries",
        "5",
        "--progress",
        "plain",
        as_json=False,
    )
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err  # every cell ended up on the good host
    assert "host bad quarantined for 60 s after 3 failures in a row" in out
    assert "+" * 20 in out
    shown = run_cli("workers", "--json", cwd=tmp_path)
    states = {w["name"]: w["state"] for w in json.loads(shown.out)}
    assert states == {
        "clusterfarm.worker.bad.0": "quarantined",
        "clusterfarm.worker.good.0": "idle",
    }
