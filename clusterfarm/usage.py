"""Measure what one job cost the task process: CPU seconds, peak RSS, bytes read and written.

Runs in the task child (:func:`clusterfarm.executor.run_job`), around each job. The child is
kept warm between jobs, so every figure is a difference: CPU from ``getrusage`` (the process
and its reaped children), I/O from ``/proc/self/io``, and the peak RSS of the job alone by
resetting the kernel's high-water mark (``5`` into ``/proc/self/clear_refs``) before the job and
reading ``VmHWM`` after it (not ``ru_maxrss``: the kernel folds the high-water mark into it
for good whenever a thread exits). The ``/proc`` files stay open and are re-read with
``pread``, so a job pays about 10 µs. Where ``/proc`` is missing (not Linux) the peak falls
back to ``ru_maxrss`` (the process's peak so far, an upper bound) and the byte counts are
unknown. The figures travel packed in one string (:func:`since`, :func:`unpack`).
"""

from __future__ import annotations

import os
import resource
import sys
import time
from typing import Any, NamedTuple

# ru_maxrss is in kilobytes on Linux, in bytes on macOS
_MAXRSS_UNIT = 1 if sys.platform == "darwin" else 1024


class _ProcFiles:
    """The ``/proc/self`` files, opened once per process (None where unavailable)."""

    def __init__(self) -> None:
        self.clear_refs = _open("/proc/self/clear_refs", os.O_WRONLY)
        self.status = _open("/proc/self/status", os.O_RDONLY)
        self.io = _open("/proc/self/io", os.O_RDONLY)
        self.pid = os.getpid()
        if self.io is not None and os.pread(self.io, 512, 0).split()[0:12:2] != _IO_NAMES:
            self.io = None  # not the layout we know: rather no figures than wrong ones

    def reset_peak(self) -> bool:
        """Start a new peak RSS measurement; False when the kernel does not allow it."""
        if self.clear_refs is None:
            return False
        try:
            os.write(self.clear_refs, b"5")
        except OSError:
            self.clear_refs = None
            return False
        return True

    def peak_rss(self) -> int | None:
        """VmHWM in bytes."""
        if self.status is None:
            return None
        text = os.pread(self.status, 8192, 0)
        start = text.find(b"VmHWM:")
        if start < 0:
            return None
        return int(text[start + 6 : text.index(b"kB", start)]) * 1024

    def io_counts(self) -> tuple[int, int, int, int] | None:
        """``rchar``, ``wchar``, ``read_bytes`` and ``write_bytes`` of this process."""
        if self.io is None:
            return None
        words = os.pread(self.io, 512, 0).split()  # fixed order: see _IO_NAMES
        return int(words[1]), int(words[3]), int(words[9]), int(words[11])


_IO_NAMES = [b"rchar:", b"wchar:", b"syscr:", b"syscw:", b"read_bytes:", b"write_bytes:"]


def _open(path: str, flags: int) -> int | None:
    try:
        return os.open(path, flags)
    except OSError:
        return None


_files: _ProcFiles | None = None


def _proc() -> _ProcFiles:
    global _files
    if _files is None or _files.pid != os.getpid():  # a fork must not read its parent's files
        _files = _ProcFiles()
    return _files


def _cpu_seconds() -> tuple[float, int]:
    """CPU seconds of this process and its reaped children; their peak RSS in bytes."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime
    return cpu, children.ru_maxrss * _MAXRSS_UNIT


class Start(NamedTuple):
    """The counters when a job started."""

    wall: float
    cpu: float
    children_peak: int
    io: tuple[int, int, int, int] | None
    peak_reset: bool


def begin() -> Start:
    """Take the counters before a job."""
    files = _proc()
    reset = files.reset_peak()
    cpu, children_peak = _cpu_seconds()
    return Start(time.time(), cpu, children_peak, files.io_counts(), reset)


def since(start: Start) -> str:
    """What the job since ``start`` cost, packed in one short string for the wire.

    The figures (see :data:`FIELDS` and :func:`unpack`): ``started`` and ``ended`` (epoch
    seconds on the worker's clock, to the millisecond), ``cpu`` (s), ``peak_rss`` (bytes, to
    the KiB), ``rchar``, ``wchar``, ``read_bytes``, ``write_bytes`` (bytes; empty when
    unknown). One short string is one token for serpent's decoder: eight keyed numbers per
    cell would cost the manager about 80 µs more to parse, a third of what dispatching a noop
    cell costs it.
    """
    ended = time.time()
    files = _proc()
    cpu, children_peak = _cpu_seconds()
    peak = files.peak_rss() if start.peak_reset else None
    if peak is None:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * _MAXRSS_UNIT
    if children_peak > start.children_peak:  # a subprocess of the task peaked higher
        peak = max(peak, children_peak)
    # the wire's fields: started (ms), duration, cpu, peak KiB: fewer characters to parse
    head = f"{start.wall:.3f},{ended - start.wall:.4g},{cpu - start.cpu:.4g},{peak >> 10:d}"
    io, before = files.io_counts(), start.io
    if io is None or before is None:
        return head + ",,,,"
    return (
        f"{head},{io[0] - before[0]:d},{io[1] - before[1]:d},"
        f"{io[2] - before[2]:d},{io[3] - before[3]:d}"
    )


FIELDS = ("started", "ended", "cpu", "peak_rss", "rchar", "wchar", "read_bytes", "write_bytes")


def unpack(packed: str | None) -> dict[str, Any]:
    """The figures of a :func:`since` string by name ({} for None or a malformed one)."""
    if not isinstance(packed, str):
        return {}
    values = packed.split(",")
    if len(values) != len(FIELDS):
        return {}
    try:
        figures = {name: _number(value) for name, value in zip(FIELDS, values, strict=True)}
    except ValueError:
        return {}
    if figures["started"] is not None and figures["ended"] is not None:
        figures["ended"] += figures["started"]  # sent as the duration
    if figures["peak_rss"] is not None:
        figures["peak_rss"] = int(figures["peak_rss"]) << 10  # sent in KiB
    return figures


def _number(text: str) -> float | int | None:
    if not text:
        return None
    return float(text) if "." in text or "e" in text else int(text)
