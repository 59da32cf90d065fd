"""Run a batch of cells inside the task process, and measure what each one cost.

:func:`run_cells` is the task process's whole job for one batch: it builds what the cells
share once (the task, its folders, its logger), runs each cell, and turns each outcome into a
wire answer (:mod:`clusterfarm.wire.protocol`). After a cell it ends any process the task left
running (the task process is a subreaper, so even a double-forked grandchild is found), and
it checks that the task's summary is a small plain dict.

What each cell cost is measured by :class:`clusterfarm.worker.usage.Meter` in this same process.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import os
import signal
import time
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from clusterfarm.errors import InputError
from clusterfarm.record.ledger import file_checksum, input_identity
from clusterfarm.tasks.registry import TaskContext, TaskSpec, get_task
from clusterfarm.wire.protocol import ErrorKind, complete, failed
from clusterfarm.worker.usage import Meter

LOG = logging.getLogger("clusterfarm.executor")

# CLUSTERFARM_RECORD=off: no usage measured (only bench/trace_cost.py sets it, to show what
# the record costs)
RECORD = os.environ.get("CLUSTERFARM_RECORD", "on") != "off"
MAX_SUMMARY_BYTES = 64 * 1024  # a summary is a few figures; bulk results belong in output
_PR_SET_CHILD_SUBREAPER = 36
# a cell quicker than this cannot have started a process worth looking for
_SPAWN_SECONDS = 0.002


def become_subreaper() -> None:
    """Adopt orphaned descendants (Linux), so a task's daemonised children stay findable."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


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
        if answer[1] >= _SPAWN_SECONDS:
            end_descendants()
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
    return dict(json.loads(text))


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def end_descendants() -> None:
    """Kill every process this one started that is still running, and reap them."""
    pids = _children(os.getpid())
    seen: set[int] = set()
    while pids:
        pid = pids.pop()
        if pid in seen:
            continue
        seen.add(pid)
        pids.extend(_children(pid))  # their children first noted, then all killed
    for pid in seen:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    for pid in seen:
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(pid, 0)
    if seen:
        LOG.warning("ended %d process(es) the task left running", len(seen))


def _children(pid: int) -> list[int]:
    found: list[int] = []
    try:
        threads = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for tid in threads:
        with contextlib.suppress(OSError), open(f"/proc/{pid}/task/{tid}/children") as handle:
            found.extend(int(p) for p in handle.read().split())
    return found
