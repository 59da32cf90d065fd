"""The task process: the worker daemon's warm child, where tasks run (``python -m`` this).

:func:`main` is its whole life: it loads the task modules once, then receives batches over
the pipe from the daemon (:class:`~clusterfarm.worker.executor.Executor`) until the daemon
goes. :func:`run_cells` is its job for one batch: it builds what the cells share once (the
task, its folders, its logger), runs each cell, measures what it cost
(:class:`~clusterfarm.worker.usage.Meter`) and turns its outcome into a wire answer
(:mod:`clusterfarm.wire.protocol`). After a cell it ends any process the task left running
(this process is a subreaper, so even a double-forked grandchild is found), and it checks
that the task's summary is a small plain dict.

Answers are sent together, at the end of the batch or whenever one has waited
``FLUSH_SECONDS``, so a slow cell never holds back the news of those before it. The log
records of tasks travel over the same pipe to the daemon's log.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Iterator
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from clusterfarm.config.settings import RECORD
from clusterfarm.errors import InputError
from clusterfarm.tasks.files import file_checksum, input_identity
from clusterfarm.tasks.registry import TaskContext, TaskSpec, get_task, load_task_modules
from clusterfarm.wire.protocol import ErrorKind, complete, failed, non_finite
from clusterfarm.worker.process_tree import become_subreaper, end_children
from clusterfarm.worker.usage import Meter

LOG = logging.getLogger("clusterfarm.task_process")

# The child's answers wait at most this long before they are sent; the daemon allows a cell
# its time limit from the last news it had, so this is also the slack of that limit.
FLUSH_SECONDS = 0.05

# what the child sends besides answers: ("log", level, logger, text) and ("done", [answers]);
# plain tuples, not classes: the child runs as __main__, whose classes the daemon can't load
LOG_LINE = "log"
DONE = "done"
READY = "ready"

MAX_SUMMARY_BYTES = 64 * 1024  # a summary is a few figures; bulk results belong in output
# a cell quicker than this cannot have started a process worth looking for
_SPAWN_SECONDS = 0.002


def run_cells(context: dict[str, Any], cells: list[tuple[int, int]]) -> Iterator[tuple[Any, ...]]:
    """Run ``cells`` of the task in ``context``; yield one wire answer per cell, in order.

    ``context``: ``task``, ``params``, ``data_dir``, ``results_dir``, ``scratch_dir``,
    ``members`` (for a per-year task), ``run_id``.
    """
    spec = get_task(context["task"])
    shared = _Shared(spec, context)
    meter = _meter() if RECORD else None
    for year, member in cells:
        if meter is not None:
            meter.start()
        answer = _run_one(shared, year, member)
        usage = meter.stop(answer[1]) if meter is not None else None
        if answer[1] >= _SPAWN_SECONDS and (ended := end_children()):
            LOG.warning("ended %d process(es) the task left running", ended)
        STREAMS.restore()
        yield (*answer[:2], usage, *answer[3:])


_meters: list[Meter] = []


def _meter() -> Meter:
    """This process's meter (made once: it keeps the /proc files open)."""
    if not _meters:
        _meters.append(Meter())
    return _meters[0]


class _Shared:
    """What every cell of a batch shares: built once per batch, not per cell."""

    def __init__(self, spec: TaskSpec, context: dict[str, Any]) -> None:
        self.spec = spec
        self.params: dict[str, Any] = context["params"]
        self.data_dir = Path(context["data_dir"])
        self.results_dir = Path(context["results_dir"])
        scratch = context.get("scratch_dir")
        self.scratch_root = Path(scratch) if scratch else None
        self.members = context.get("members") if spec.per_year else None
        self.run_id = context.get("run_id")
        self.log = logging.getLogger(f"clusterfarm.task.{spec.name}")
        self._dirs: dict[int, Path] = {}  # each year's output folder (pathlib is slow)

    def context(self, year: int, member: int) -> TaskContext:
        folder = self._dirs.get(year)
        if folder is None:
            folder = self._dirs[year] = self.spec.output_dir(self.results_dir, year)
        return TaskContext(
            task=self.spec.name,
            params=self.params,
            data_dir=self.data_dir,
            results_dir=self.results_dir,
            output_path=folder / self.spec.output_name(year, member),
            log=self.log,
            scratch_root=self.scratch_root,
            members=self.members,
            run_id=self.run_id,
        )


def _run_one(shared: _Shared, year: int, member: int) -> tuple[Any, ...]:
    spec = shared.spec
    started = time.monotonic()
    inputs = None
    if spec.inputs is not None:
        inputs = input_identity(spec.input_files(year, member, shared.params, shared.data_dir))
    ctx = shared.context(year, member)
    try:
        summary = spec.fn(year, member, ctx)
    except InputError as exc:
        return failed(ErrorKind.INPUT, _one_line(exc), time.monotonic() - started).to_wire()
    except Exception as exc:
        LOG.error("%s %s m%s failed:\n%s", spec.name, year, member, traceback.format_exc())
        return failed(ErrorKind.TASK, _one_line(exc), time.monotonic() - started).to_wire()
    finally:
        ctx.remove_workdir()
    elapsed = time.monotonic() - started
    try:
        plain = plain_summary(summary)
    except ValueError as exc:
        return failed(ErrorKind.TASK, f"{spec.name}: {exc}", elapsed).to_wire()
    output = ctx.output_path if spec.writes_output and ctx.output_path.exists() else None
    if output is None and inputs is None and plain is None:
        return complete(elapsed).to_wire()
    checksum = file_checksum(output) if output else None
    path = str(output) if output else None
    return complete(elapsed, None, path, checksum, inputs, plain).to_wire()


def plain_summary(summary: Any) -> dict[str, Any] | None:
    """A task's summary made wire-safe: a dict of plain JSON values, at most a few kB.

    numpy scalars and arrays become numbers and lists. Raises ValueError, saying what is
    wrong, for anything else than a dict or None, or for one too big to keep.
    """
    if summary is None:
        return None
    if not isinstance(summary, dict):
        raise ValueError(f"returned a {type(summary).__name__}, not a dict or None")
    if not summary:
        return None

    def convert(value: Any) -> Any:
        for method in ("item", "tolist"):
            if hasattr(value, method):
                return getattr(value, method)()
        return str(value)

    try:
        text = json.dumps(summary, default=convert)
    except (TypeError, ValueError) as exc:  # keys that are not strings, circular values
        raise ValueError(f"its summary is not plain data ({exc})") from None
    if len(text) > MAX_SUMMARY_BYTES:
        raise ValueError(
            f"its summary is {len(text):,} bytes, over the limit of {MAX_SUMMARY_BYTES:,}; "
            "write bulk results to the output file"
        )
    plain = dict(json.loads(text))
    if (where := non_finite(plain)) is not None:
        raise ValueError(
            f"its summary holds NaN or an infinity at {where}; a summary holds finite numbers "
            "only (None for a value that is missing)"
        )
    return plain


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


# -- the process: batches in, answers out ------------------------------------------------


class _Outbox:
    """The child's answers on their way to the daemon: sent together, never held long."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self._pending: list[tuple[Any, ...]] = []
        self._since = 0.0
        self._cond = threading.Condition()
        threading.Thread(target=self._flush_late, name="outbox", daemon=True).start()

    def send(self, message: Any) -> None:
        with self._cond:
            self.conn.send(message)

    def add(self, answer: tuple[Any, ...]) -> None:
        with self._cond:
            if not self._pending:
                self._since = time.monotonic()
                self._cond.notify()
            self._pending.append(answer)

    def flush(self) -> None:
        with self._cond:
            if self._pending:
                self.conn.send((DONE, self._pending))
                self._pending = []

    def _flush_late(self) -> None:
        with self._cond:
            while True:
                if not self._pending:
                    self._cond.wait()
                    continue
                late = self._since + FLUSH_SECONDS - time.monotonic()
                if late > 0:
                    self._cond.wait(late)
                    continue
                with contextlib.suppress(OSError, ValueError):
                    self.conn.send((DONE, self._pending))
                self._pending = []


class _PipeHandler(logging.Handler):
    """Sends the task process's log records to the daemon, over the job pipe."""

    def __init__(self, outbox: _Outbox) -> None:
        super().__init__()
        self.outbox = outbox

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.outbox.send((LOG_LINE, record.levelno, record.name, self.format(record)))
        except (OSError, ValueError):
            self.handleError(record)


class _Streams:
    """Standard input, output and error as the task process got them, put back after each
    cell: a task that closes or redirects them must not break the cells after it."""

    def __init__(self) -> None:
        self.saved: dict[int, int] = {}

    def save(self) -> None:
        self.saved = {fd: os.dup(fd) for fd in (0, 1, 2)}  # close-on-exec copies

    def restore(self) -> None:
        """Put them back (after every cell: a few microseconds)."""
        for fd, copy in self.saved.items():
            try:
                os.dup2(copy, fd)
            except OSError:
                pass
        for name, first, fd, mode in _SYS_STREAMS:
            stream = getattr(sys, name)
            if stream is None or stream.closed or stream is not getattr(sys, first):
                original = getattr(sys, first)
                if original is None or original.closed:
                    original = open(fd, mode, buffering=1 if mode == "w" else -1, closefd=False)
                    setattr(sys, first, original)
                setattr(sys, name, original)


# sys's streams: name, the name of the one it started with, descriptor, mode
_SYS_STREAMS = (
    ("stdout", "__stdout__", 1, "w"),
    ("stderr", "__stderr__", 2, "w"),
    ("stdin", "__stdin__", 0, "r"),
)


STREAMS = _Streams()


def _watch_lifeline(stdin: int) -> None:
    # the daemon never writes to our stdin: end-of-file means it is gone (read from a copy
    # of it, which no task can close)
    with contextlib.suppress(OSError):
        while os.read(stdin, 1024):
            pass
    os._exit(1)


def main(argv: list[str]) -> None:
    """The child process: receive batches, run them, send answers, until the daemon goes."""
    STREAMS.save()
    lifeline = STREAMS.saved[0]
    threading.Thread(target=_watch_lifeline, args=(lifeline,), name="lifeline", daemon=True).start()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    become_subreaper()  # a task's orphaned grandchildren become ours, so we can end them
    outbox = _Outbox(Connection(int(argv[0])))
    root = logging.getLogger()
    root.addHandler(_PipeHandler(outbox))
    root.setLevel(logging.INFO)
    load_task_modules(tuple(argv[1:]))
    outbox.send(READY)
    while True:
        try:
            context, cells = outbox.conn.recv()
        except (EOFError, OSError):
            return
        for answer in run_cells(context, cells):
            outbox.add(answer)
        outbox.flush()


if __name__ == "__main__":
    main(sys.argv[1:])
