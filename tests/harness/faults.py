"""Fault injection for the tests: find, kill, freeze and thaw the processes of a run."""

from __future__ import annotations

import os
import signal
import sqlite3
import time
from pathlib import Path

from tests.harness.processes import alive, descendants


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def worker_daemons(manager_pid: int) -> dict[str, int]:
    """The worker daemons a local-mode manager started, by worker name."""
    found = {}
    for pid in descendants(manager_pid):
        words = cmdline(pid).split()
        if "worker" in words and "--name" in words:
            found[words[words.index("--name") + 1]] = pid
    return found


def task_processes(daemon_pid: int) -> set[int]:
    """The task processes of a worker daemon."""
    found = {p for p in descendants(daemon_pid) if "clusterfarm.worker.task_process" in cmdline(p)}
    assert found, f"worker daemon {daemon_pid} has no task process"
    return found


def kill(pid: int) -> None:
    """SIGKILL: the process dies at once; the kernel closes its sockets (peers see a reset)."""
    os.kill(pid, signal.SIGKILL)


def freeze(pid: int) -> None:
    """SIGSTOP: the process keeps its sockets but answers nothing, like a host cut off the
    network: peers get no reset, their calls just wait."""
    os.kill(pid, signal.SIGSTOP)


def thaw(pid: int) -> None:
    os.kill(pid, signal.SIGCONT)


def wait_gone(pids: set[int] | list[int], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while any(alive(pid) for pid in pids):
        assert time.monotonic() < deadline, f"still running: {[p for p in pids if alive(p)]}"
        time.sleep(0.05)


def complete_cells(run_dir: Path) -> int:
    """Complete cells in a run's state database (0 while the run is still creating it)."""
    try:  # read-only: never create the database the run is about to make
        db = sqlite3.connect(f"file:{run_dir / 'state.sqlite'}?mode=ro", uri=True)
    except sqlite3.OperationalError:
        return 0
    try:
        return int(db.execute("SELECT count(*) FROM cells WHERE status='+'").fetchone()[0])
    except sqlite3.OperationalError:
        return 0
    finally:
        db.close()


def busy_on(run_dir: Path, worker: str) -> bool:
    """True when the run's state shows ``worker`` working on a cell."""
    try:
        db = sqlite3.connect(f"file:{run_dir / 'state.sqlite'}?mode=ro", uri=True)
    except sqlite3.OperationalError:
        return False
    try:
        row = db.execute(
            "SELECT 1 FROM cells WHERE status='W' AND worker=?", (f"clusterfarm.worker.{worker}",)
        ).fetchone()
        return row is not None
    except sqlite3.OperationalError:
        return False
    finally:
        db.close()


def rss_kb(pid: int) -> int:
    """Resident memory of ``pid`` in kB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")
