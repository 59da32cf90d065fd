"""The wire between manager and workers, with real processes: runs sharing a pool never cross,
a worker that answers garbage is set aside, a worker without the run's task is passed by,
and resume trusts the workers' record of the inputs."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import Pyro5.api
import pytest

from clusterfarm.wire.gate import GatedDaemon
from tests.harness.cli import (
    FAST_LIVENESS,
    PLUGIN_SETTINGS,
    cli_env,
    finish,
    run_cli,
    start_run,
    write_settings,
)
from tests.harness.secret import ACCESS

FAST = FAST_LIVENESS.replace("[run]\n", "[run]\nretries = 1\n")


def cluster_settings(path: Path, port: int, data: Path, results: Path, extra: str = "") -> Path:
    return write_settings(
        path,
        PLUGIN_SETTINGS
        + FAST.replace("[run]\n", f'[run]\ndata_dir = "{data}"\nresults_dir = "{results}"\n')
        + extra
        + f'[nameserver]\nport = {port}\n[[hosts]]\nname = "test"\n',
    )


def make_data(folder: Path, marker: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "marker.txt").write_text(marker)
    return folder


def run_write_paths(tmp_path: Path, port: int, members: str) -> tuple[str, sqlite3.Connection]:
    """A cluster run of ``write_paths`` over 2000 × ``members``: its output and its state."""
    data = make_data(tmp_path / "data", "real")
    cluster_settings(tmp_path / "clusterfarm.toml", port, data, tmp_path / "out")
    args = ("--task", "write_paths", "--years", "2000", "--members", members)
    process = start_run(tmp_path, *args, "--progress", "plain", as_json=False)
    out, err = process.communicate(timeout=180)
    assert process.returncode == 0, err
    return out, sqlite3.connect(tmp_path / "clusterfarm-run" / "state.sqlite")


def outputs(results: Path) -> list[dict[str, str]]:
    return [json.loads(p.read_text()) for p in sorted(results.rglob("write_paths_*.nc"))]


@pytest.mark.slow
def test_two_runs_over_one_pool_each_get_exactly_their_own_results(
    tmp_path, nameserver, start_worker
):
    for n in range(3):
        start_worker(f"pool.{n}")
    runs = []
    for name in ("a", "b"):
        folder = tmp_path / name
        folder.mkdir()
        data, results = make_data(folder / "data", f"data of {name}"), folder / "results"
        cluster_settings(folder / "clusterfarm.toml", nameserver.port, data, results)
        args = ("--task", "write_paths", "--years", "2000-2001", "--members", "0-4")
        runs.append((folder, data, results, start_run(folder, *args)))
        time.sleep(1)  # the second starts while the first holds the workers
    for folder, data, results, process in runs:
        code, report, err = finish(process, timeout=180)
        assert code == 0, err
        assert report["complete"] == 10
        made = outputs(results)
        assert len(made) == 10
        assert {m["data_dir"] for m in made} == {str(data)}
        assert {m["results_dir"] for m in made} == {str(results)}
        assert {m["marker"] for m in made} == {f"data of {folder.name}"}


class GarbageWorker:
    """Joins like a worker, then answers batches in one of the malformed ways."""

    def __init__(self, name: str, how: str) -> None:
        self.name, self.how = name, how
        self.hung, self.cancelled = threading.Event(), threading.Event()

    @Pyro5.api.expose
    def join(self, spec):
        tasks = {name: "1" for name in spec["tasks"]}
        return {"worker": self.name, "host": "fake", "version": "0.1.0", "tasks": tasks}

    @Pyro5.api.expose
    def do_batch(self, run_id, task, cells):
        if self.how == "hangs once" and not self.hung.is_set():
            self.hung.set()
            self.cancelled.wait(60)  # until the manager gives up on it and cancels
            return ("+", "0.01 - - - - - - -", {})
        time.sleep(0.05)
        n = len(cells.split(";"))
        if self.how == "hangs once":  # afterwards it answers well (its cells complete)
            return ("+" * n, " ".join(["0.01 - - - - - - -"] * n), {})
        if self.how == "short list":
            return ("+" * (n - 1), " ".join(["0.01 - - - -"] * (n - 1)), {})
        if self.how == "not a tuple":
            return [{"status": "complete"} for _ in range(n)]
        if self.how == "elapsed abc":
            return ("+" * n, " ".join(["abc - - - -"] * n), {})
        if self.how == "bad details":
            return ("F" * n, " ".join(["0.01 - - - -"] * n), {0: ["no such kind", 5]})
        raise RuntimeError("a worker that raises")

    @Pyro5.api.expose
    def ping(self, run_id=None):
        return {"name": self.name, "busy": False}

    @Pyro5.api.expose
    def release(self, run_id):
        return True

    @Pyro5.api.expose
    def cancel(self, run_id=None):
        self.cancelled.set()
        return self.hung.is_set()


@pytest.mark.parametrize(
    "how", ["short list", "not a tuple", "elapsed abc", "bad details", "raises"]
)
@pytest.mark.slow
def test_a_worker_answering_garbage_is_set_aside_and_the_run_completes(
    tmp_path, nameserver, start_worker, how
):
    daemon = GatedDaemon(host="127.0.0.1", access=ACCESS)  # it knows the secret: a worker gone bad
    name = "clusterfarm.worker.fake.0"
    uri = daemon.register(GarbageWorker(name, how), objectId=name)
    threading.Thread(target=daemon.requestLoop, daemon=True).start()
    try:
        with ACCESS.proxy(nameserver.uri) as ns:
            ns.register(name, uri, metadata={"clusterfarm.worker", "host=fake"})
        start_worker("good.0")
        start_worker("good.1")
        out, db = run_write_paths(tmp_path, nameserver.port, "0-7")
        assert "fake.0 left: set aside:" in out, out
        assert db.execute("SELECT group_concat(status, '') FROM cells").fetchone()[0] == "+" * 8
        hosts = {host for (host,) in db.execute("SELECT DISTINCT host FROM cells")}
        assert "fake" not in hosts
    finally:
        daemon.shutdown()


@pytest.mark.slow
def test_a_call_unanswered_past_its_guard_times_out_its_cell_and_the_worker_is_asked_to_stop(
    tmp_path, nameserver, start_worker
):
    """The manager's own time limit on a call (the task's limit plus a guard): the cell
    times out (an attempt), is retried elsewhere, and the silent worker is asked to cancel."""
    fake = GarbageWorker("clusterfarm.worker.fake.0", "hangs once")
    daemon = GatedDaemon(host="127.0.0.1", access=ACCESS)  # it knows the secret: a worker gone bad
    uri = daemon.register(fake, objectId=fake.name)
    threading.Thread(target=daemon.requestLoop, daemon=True).start()
    try:
        with ACCESS.proxy(nameserver.uri) as ns:
            ns.register(fake.name, uri, metadata={"clusterfarm.worker", "host=fake"})
        start_worker("good.0")
        data = make_data(tmp_path / "data", "real")
        run = f'[run]\ntimeout = 0.5\ndata_dir = "{data}"\nresults_dir = "{tmp_path / "out"}"\n'
        write_settings(
            tmp_path / "clusterfarm.toml",
            PLUGIN_SETTINGS
            + FAST.replace("[run]\n", run)
            + f'[nameserver]\nport = {nameserver.port}\n[[hosts]]\nname = "test"\n',
        )
        began = time.monotonic()
        args = ("--task", "write_paths", "--years", "2000", "--members", "0-19")
        code, report, err = finish(start_run(tmp_path, *args), timeout=120)
        assert code == 0, err
        assert fake.hung.is_set() and fake.cancelled.is_set()
        assert time.monotonic() - began > 10  # the call's limit: the task's, and at least 10 s more
        assert report["complete"] == 20
        db = sqlite3.connect(tmp_path / "clusterfarm-run" / "state.sqlite")
        (error,) = db.execute("SELECT error FROM attempts WHERE error_kind = 'timeout'").fetchone()
        assert error.startswith("no answer from clusterfarm.worker.fake.0 within 10.5 s"), error
    finally:
        daemon.shutdown()


@pytest.mark.slow
def test_a_worker_without_the_runs_task_is_passed_by(tmp_path, nameserver, start_worker):
    start_worker("bare.0", settings_text="")  # no plugin module: no write_paths there
    start_worker("full.0")
    start_worker("full.1")
    out, db = run_write_paths(tmp_path, nameserver.port, "0-5")
    assert "bare.0" in out and "no task 'write_paths'" in out, out
    rows = db.execute("SELECT status, attempts, worker FROM cells").fetchall()
    assert {(status, attempts) for status, attempts, _ in rows} == {("+", 1)}
    assert all("bare" not in worker for _, _, worker in rows)


@pytest.mark.slow
def test_when_no_worker_has_the_task_the_run_stops_with_one_line(
    tmp_path, nameserver, start_worker
):
    start_worker("bare.0", settings_text="")
    data = make_data(tmp_path / "data", "real")
    cluster_settings(tmp_path / "clusterfarm.toml", nameserver.port, data, tmp_path / "out")
    result = run_cli(
        "run", "--task", "write_paths", "--years", "2000", "--members", "0-1", cwd=tmp_path
    )
    assert result.code == 3
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: no worker can run write_paths")
    assert "bare.0" in lines[0] and "Traceback" not in result.err


@pytest.mark.skipif(
    shutil.which("unshare") is None or os.geteuid() != 0,
    reason="a mount namespace needs root and unshare (util-linux)",
)
@pytest.mark.hosts
def test_resume_on_a_manager_that_cannot_see_the_data_recomputes_nothing(
    tmp_path, nameserver, start_worker
):
    start_worker("pool.0")
    start_worker("pool.1")
    data = make_data(tmp_path / "data", "real")
    settings = cluster_settings(
        tmp_path / "clusterfarm.toml", nameserver.port, data, tmp_path / "out"
    )
    args = ["run", "--json", "--task", "write_paths", "--years", "2000", "--members", "0-3"]
    first = run_cli(*args, cwd=tmp_path)
    assert first.code == 0, first.err
    # the same command from a manager whose machine has no data mount: an empty tmpfs
    # hides data_dir in its own mount namespace (the workers still see the data)
    command = " ".join([sys.executable, "-m", "clusterfarm", "--settings", str(settings), *args])
    done = subprocess.run(
        ["unshare", "-m", "sh", "-c", f"mount -t tmpfs none {data} && ls -A {data} && {command}"],
        cwd=tmp_path,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    listing, _, report_line = done.stdout.partition("{")
    assert listing.strip() == ""  # the manager really saw no data
    report = json.loads("{" + report_line)
    assert report["ran"] == 0 and report["skipped"] == 4
    # and a real change of the inputs is still noticed, by the workers
    (data / "marker.txt").write_text("changed")
    again = run_cli(*args, cwd=tmp_path)
    assert again.code == 0 and json.loads(again.out)["ran"] == 4
