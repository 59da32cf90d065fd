"""The worker daemon's handle on its task process: run one batch at a time, kill on demand.

The daemon keeps one warm child (``python -m clusterfarm.worker.task_process``; that module
is the child's side) and sends it one batch at a time over a pipe. The child's answers come
back together, at the end of the batch or whenever one has waited ``FLUSH_SECONDS``, so the
daemon always knows which cell is running and allows each cell its time limit from the last
news. A timeout or cancel kills the child's whole process group and a fresh child is started
in the background, so the daemon never dies with its task. The child's stdin is a lifeline:
when the daemon goes away (even by SIGKILL) the child sees end-of-file and exits.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from multiprocessing.connection import Connection, Pipe
from pathlib import Path
from typing import Any

from clusterfarm.wire.protocol import ErrorKind, failed
from clusterfarm.worker.process_tree import become_subreaper, descendants, end_children, kill_all
from clusterfarm.worker.task_process import DONE, FLUSH_SECONDS, LOG_LINE

LOG = logging.getLogger("clusterfarm.executor")


# why the daemon killed the child, as the error kind of the cell that was running
_KILL_KINDS = {
    "timeout": ErrorKind.TIMEOUT,
    "cancelled": ErrorKind.CANCELLED,
    "abandoned": ErrorKind.ABANDONED,
    "shutdown": ErrorKind.STOPPING,
    "draining": ErrorKind.DRAINING,
}


class _TaskProcesses:
    """The task processes of this process's executors (a process may host many workers):
    every other process below this one is something a killed task process left."""

    def __init__(self) -> None:
        self._pids: set[int] = set()
        self._lock = threading.Lock()  # a task process is noted before anyone looks below

    def start(self, command: list[str], **options: Any) -> subprocess.Popen[bytes]:
        with self._lock:
            child = subprocess.Popen(command, **options)
            self._pids.add(child.pid)
        return child

    def forget(self, pid: int) -> None:
        with self._lock:
            self._pids.discard(pid)

    def end_leftovers(self) -> int:
        """End every process below this one but the task processes and theirs; how many."""
        with self._lock:
            return end_children(keep=self._pids)


_TASK_PROCESSES = _TaskProcesses()


class Executor:
    """The daemon's handle on its child process: run one batch at a time, kill on demand."""

    def __init__(self, task_modules: tuple[str, ...] = (), output: int | None = None) -> None:
        become_subreaper()  # what a killed task process leaves is adopted here, then ended
        self._task_modules = task_modules
        self._output = output  # where the child's stdout and stderr go (None: the daemon's)
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
        command = [sys.executable, "-m", "clusterfarm.worker.task_process", str(child_end.fileno())]
        command += list(self._task_modules)
        output = self._output
        child = _TASK_PROCESSES.start(
            command,
            stdin=subprocess.PIPE,
            stdout=output,
            stderr=subprocess.STDOUT if output is not None else None,
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
        """Kill the running job (timeout, cancel, shutdown...): the task process, its group,
        and every process below it, however it detached (the task process is their
        subreaper, so they are below it)."""
        with self._lock:
            child = self._child
            self._killed_reason = reason
        if child is not None and child.poll() is None:
            below = descendants([child.pid])
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.pid, signal.SIGKILL)
            kill_all(below)

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
                _TASK_PROCESSES.forget(self._child.pid)
            if self._conn is not None:
                self._conn.close()
        _TASK_PROCESSES.end_leftovers()

    # -- running a batch --------------------------------------------------------------------

    def new_job(self) -> None:
        """Forget earlier kills: a kill from now on is meant for the next batch."""
        with self._lock:
            self._killed_reason = None

    def run_batch(
        self, context: dict[str, Any], cells: list[tuple[int, int]], timeout: float
    ) -> list[tuple[Any, ...]]:
        """Run ``cells`` of one task one after another in the child; one wire answer each.

        ``context`` holds what the cells share (see
        :func:`~clusterfarm.worker.task_process.run_cells`). ``timeout`` holds
        for every cell on its own, counted from the last news of the child. When a cell
        times out, crashes or is cancelled, the cells after it are answered ``not_started``.
        Call :meth:`new_job` first; a kill between the two cancels the batch before it
        starts. Never raises for task trouble.
        """
        started = time.monotonic()
        if not self._ready.wait(max(timeout, 30.0)):
            first = failed(ErrorKind.CRASH, "task process did not start").to_wire()
            return _unfinished(len(cells), first)
        with self._lock:
            conn, child, reason = self._conn, self._child, self._killed_reason
        assert conn is not None and child is not None
        if reason is not None:  # cancelled while the child was still starting
            kind = _KILL_KINDS.get(reason, ErrorKind.CANCELLED)
            return _unfinished(len(cells), failed(kind, f"task {reason}").to_wire())
        answers: list[tuple[Any, ...]] = []
        try:
            conn.send((context, cells))
            while len(answers) < len(cells):
                news = _receive(conn, time.monotonic() + timeout + FLUSH_SECONDS)
                if news is None:
                    self.kill("timeout")
                    break
                answers.extend(news)
                started = time.monotonic()
            else:
                return answers
        except (EOFError, OSError):
            pass  # the child died: killed by us, or crashed
        running = cells[len(answers)]
        first = self._replace_child(child, timeout, started)
        _remove_partial_output(context, running, child.pid)
        return answers + _unfinished(len(cells) - len(answers), first)

    def _replace_child(
        self, child: subprocess.Popen[bytes], timeout: float, started: float
    ) -> tuple[Any, ...]:
        """Start a fresh child after ``child`` died; describe why the running cell ended."""
        reason = self._killed_reason
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(5)
        _TASK_PROCESSES.forget(child.pid)
        # what the dead task process left (forked while it was being killed) was adopted by
        # this process, a subreaper: end it before the next task process starts
        if ended := _TASK_PROCESSES.end_leftovers():
            LOG.warning("ended %d process(es) a killed task process left", ended)
        self._spawn_in_background()
        elapsed = time.monotonic() - started
        if reason == "timeout":
            message = f"task exceeded its time limit of {timeout:g} s"
            return failed(ErrorKind.TIMEOUT, message, elapsed).to_wire()
        if reason is not None:
            kind = _KILL_KINDS.get(reason, ErrorKind.CANCELLED)
            return failed(kind, f"task {reason}", elapsed).to_wire()
        message = f"task process died (exit code {child.returncode})"
        return failed(ErrorKind.CRASH, message, elapsed).to_wire()


def _unfinished(count: int, first: tuple[Any, ...]) -> list[tuple[Any, ...]]:
    """The answers of ``count`` cells that did not finish: ``first`` for the running one."""
    if not count:
        return []
    rest = failed(
        ErrorKind.NOT_STARTED, "not started: an earlier cell of its batch ended the task process"
    ).to_wire()
    return [first] + [rest] * (count - 1)


def _remove_partial_output(context: dict[str, Any], cell: tuple[int, int], pid: int) -> None:
    """Remove the temporary output a killed cell may have left (see ``atomic_output``)."""
    from clusterfarm.tasks.registry import get_task, temporary_output

    try:
        spec = get_task(context["task"])
        final = spec.output_path(Path(context["results_dir"]), cell[0], cell[1])
        temporary_output(final, pid).unlink(missing_ok=True)
    except Exception:  # best effort: a leftover is untidy, not wrong
        LOG.debug("could not look for a partial output of %s", cell, exc_info=True)


def _receive(conn: Connection, deadline: float | None) -> Any:
    """The child's next news, passing on its log records; None when ``deadline`` passes."""
    while True:
        if deadline is not None and not conn.poll(max(0.0, deadline - time.monotonic())):
            return None
        message = conn.recv()
        if isinstance(message, tuple) and message[0] == LOG_LINE:
            _, level, logger, text = message
            logging.getLogger(logger).log(level, "%s", text)
            continue
        if isinstance(message, tuple) and message[0] == DONE:
            return message[1]
        return message
