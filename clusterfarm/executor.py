"""Run tasks in a warm child process that the worker can kill.

The worker daemon keeps one child (``python -m clusterfarm.executor``) and sends it one job at
a time over a pipe. A timeout or cancel kills the child's whole process group and a fresh child
is started in the background, so the daemon never dies with its task. The child's stdin is a
lifeline: when the daemon goes away (even by SIGKILL) the child sees end-of-file and exits.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import traceback
from multiprocessing.connection import Connection, Pipe
from pathlib import Path
from typing import Any

from clusterfarm import usage
from clusterfarm.errors import InputError
from clusterfarm.ledger import file_checksum, input_identity

LOG = logging.getLogger("clusterfarm.executor")


class Executor:
    """The daemon's handle on its child process: run one job at a time, kill on demand."""

    def __init__(self, task_modules: tuple[str, ...] = (), log_stream: Any = None) -> None:
        self._task_modules = task_modules
        self._log_stream = log_stream
        self._lock = threading.Lock()  # guards the child handle, not the job
        self._child: subprocess.Popen[bytes] | None = None
        self._conn: Connection | None = None
        self._ready = threading.Event()
        self._killed_reason: str | None = None
        self._spawn_in_background()

    # -- child lifecycle --------------------------------------------------------------------

    def _spawn_in_background(self) -> None:
        self._ready.clear()
        threading.Thread(target=self._spawn, name="executor-spawn", daemon=True).start()

    def _spawn(self) -> None:
        parent_end, child_end = Pipe()
        command = [sys.executable, "-m", "clusterfarm.executor", str(child_end.fileno())]
        command += list(self._task_modules)
        child = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=self._log_stream,
            stderr=self._log_stream,
            pass_fds=(child_end.fileno(),),
            start_new_session=True,  # its own process group, so a kill takes its children too
        )
        child_end.close()
        try:
            _receive(parent_end, None)  # the child says hello once its imports are done
        except (EOFError, OSError):
            LOG.error("task process %d died while starting", child.pid)
        with self._lock:
            self._child, self._conn = child, parent_end
        self._ready.set()

    def wait_ready(self, timeout: float | None = None) -> bool:
        return self._ready.wait(timeout)

    @property
    def pid(self) -> int | None:
        return self._child.pid if self._child else None

    def kill(self, reason: str) -> None:
        """Kill the running job's process group (timeout, cancel or shutdown)."""
        with self._lock:
            child = self._child
            self._killed_reason = reason
        if child is not None and child.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.pid, signal.SIGKILL)

    def close(self) -> None:
        """Stop the child for good."""
        self._ready.wait(10)
        self.kill("shutdown")
        with self._lock:
            if self._child is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self._child.wait(5)
                if self._child.stdin:
                    self._child.stdin.close()
            if self._conn is not None:
                self._conn.close()

    # -- running a job ----------------------------------------------------------------------

    def new_job(self) -> None:
        """Forget earlier kills: a kill from now on is meant for the next job."""
        with self._lock:
            self._killed_reason = None

    def run(self, job: dict[str, Any], timeout: float) -> dict[str, Any]:
        """Run one job; see :meth:`run_batch`."""
        return self.run_batch([job], timeout)[0]

    def run_batch(self, jobs: list[dict[str, Any]], timeout: float) -> list[dict[str, Any]]:
        """Run ``jobs`` one after another in the child; return one outcome per job.

        The child answers each job as it finishes, so ``timeout`` holds for every job on its
        own. When a job times out, crashes or is cancelled, the jobs after it are answered
        ``not_started``. Call :meth:`new_job` first; a kill between the two cancels the batch
        before it starts. Never raises for task trouble.
        """
        started = time.monotonic()
        if not self._ready.wait(max(timeout, 30.0)):
            return _unfinished(
                jobs, _outcome("failure", "crash", "task process did not start", started)
            )
        with self._lock:
            conn, child, reason = self._conn, self._child, self._killed_reason
        assert conn is not None and child is not None
        if reason is not None:  # cancelled while the child was still starting
            return _unfinished(jobs, _outcome("failure", reason, f"task {reason}", started))
        outcomes: list[dict[str, Any]] = []
        try:
            conn.send(jobs)
            for _ in jobs:
                outcome = _receive(conn, time.monotonic() + timeout)
                if outcome is None:
                    self.kill("timeout")
                    break
                outcomes.append(outcome)
            else:
                return outcomes
        except (EOFError, OSError):
            pass  # the child died: killed by us, or crashed
        return outcomes + _unfinished(jobs[len(outcomes) :], self._replace_child(child, timeout))

    def _replace_child(self, child: subprocess.Popen[bytes], timeout: float) -> dict[str, Any]:
        """Start a fresh child after ``child`` died; describe why the running job ended."""
        started = time.monotonic()
        reason = self._killed_reason
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(5)
        self._spawn_in_background()
        if reason == "timeout":
            message = f"task exceeded its time limit of {timeout:g} s"
            return _outcome("timeout", "timeout", message, started - timeout)
        if reason is not None:
            return _outcome("failure", reason, f"task {reason}", started)
        message = f"task process died (exit code {child.returncode})"
        return _outcome("failure", "crash", message, started)


def _unfinished(jobs: list[dict[str, Any]], first: dict[str, Any]) -> list[dict[str, Any]]:
    """The outcomes of jobs that did not finish: ``first`` for the one that was running."""
    if not jobs:
        return []
    rest = _outcome(
        "failure",
        "not_started",
        "not started: an earlier task in its batch ended the task process",
        time.monotonic(),
    )
    rest["elapsed"] = 0.0
    return [first] + [dict(rest) for _ in jobs[1:]]


def _receive(conn: Connection, deadline: float | None) -> Any:
    """The child's next answer, passing on its log records; None when ``deadline`` passes."""
    while True:
        if deadline is not None and not conn.poll(max(0.0, deadline - time.monotonic())):
            return None
        message = conn.recv()
        if isinstance(message, tuple) and message[0] == LOG_LINE:
            _, level, logger, text = message
            logging.getLogger(logger).log(level, "%s", text)
            continue
        return message


# The task process's log records go to the daemon as ("log", level, logger, text), so each
# worker has one log file with one writer (rotation stays safe). A plain tuple, not a class:
# the child runs as __main__, whose classes the daemon could not unpickle.
LOG_LINE = "log"


class _PipeHandler(logging.Handler):
    """Sends the task process's log records to the daemon, over the job pipe."""

    def __init__(self, conn: Connection) -> None:
        super().__init__()
        self.conn = conn

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.conn.send((LOG_LINE, record.levelno, record.name, self.format(record)))
        except (OSError, ValueError):
            self.handleError(record)


def _outcome(status: str, kind: str, error: str, started: float) -> dict[str, Any]:
    return {
        "status": status,
        "error_kind": kind,
        "error": error,
        "output": None,
        "summary": None,
        "elapsed": time.monotonic() - started,
    }


# -- the child side -----------------------------------------------------------------------


def run_job(job: dict[str, Any]) -> dict[str, Any]:
    """Run one job in this process and describe how it went (used by the child)."""
    start = usage.begin()
    outcome = _run_job(job)
    outcome["usage"] = usage.since(start)  # CPU, peak RSS, I/O, packed (clusterfarm.usage)
    return outcome


def _run_job(job: dict[str, Any]) -> dict[str, Any]:
    from clusterfarm.tasks.registry import TaskContext, get_task

    started = time.monotonic()
    spec = get_task(job["task"])
    results_dir = Path(job["results_dir"])
    data_dir = Path(job["data_dir"])
    inputs = input_identity(spec.input_files(job["year"], job["member"], job["params"], data_dir))
    output_path = spec.output_path(results_dir, job["year"], job["member"])
    scratch_root = job.get("scratch_dir")
    ctx = TaskContext(
        task=spec.name,
        params=job["params"],
        data_dir=data_dir,
        results_dir=results_dir,
        output_path=output_path,
        log=logging.getLogger(f"clusterfarm.task.{spec.name}"),
        scratch_root=Path(scratch_root) if scratch_root else None,
        members=job.get("members"),
        run_id=job.get("run_id"),
    )
    try:
        summary = spec.fn(job["year"], job["member"], ctx)
    except InputError as exc:
        return _outcome("failure", "input", _one_line(exc), started)
    except Exception as exc:
        LOG.error(
            "%s %s m%s failed:\n%s", spec.name, job["year"], job["member"], traceback.format_exc()
        )
        return _outcome("failure", "task", _one_line(exc), started)
    finally:
        ctx.remove_workdir()
    output = str(output_path) if spec.writes_output and output_path.exists() else None
    return {
        "status": "complete",
        "error_kind": None,
        "error": None,
        "output": output,
        "output_sum": file_checksum(output_path) if output else None,
        "inputs": inputs,
        "summary": _plain(summary),
        "elapsed": time.monotonic() - started,
    }


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _plain(summary: Any) -> dict[str, Any] | None:
    """Make a task's summary wire-safe: plain JSON types only (numpy scalars become numbers)."""
    if not summary:
        return None

    def convert(value: Any) -> Any:
        for method in ("item", "tolist"):
            if hasattr(value, method):
                return getattr(value, method)()
        return str(value)

    return dict(json.loads(json.dumps(dict(summary), default=convert)))


def _watch_lifeline() -> None:
    # the daemon never writes to our stdin: end-of-file means it is gone
    with contextlib.suppress(OSError):
        while os.read(0, 1024):
            pass
    os._exit(1)


def main(argv: list[str]) -> None:
    """The child process: receive jobs, run them, send outcomes, until the daemon goes."""
    from clusterfarm.tasks.registry import load_task_modules

    threading.Thread(target=_watch_lifeline, name="lifeline", daemon=True).start()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    conn = Connection(int(argv[0]))
    root = logging.getLogger()
    root.addHandler(_PipeHandler(conn))
    root.setLevel(logging.INFO)
    load_task_modules(tuple(argv[1:]))
    conn.send("ready")
    while True:
        try:
            jobs = conn.recv()
        except (EOFError, OSError):
            return
        for job in jobs:
            conn.send(run_job(job))


if __name__ == "__main__":
    main(sys.argv[1:])
