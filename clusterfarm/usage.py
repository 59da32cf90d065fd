"""Measure what one job cost the task process: CPU seconds, peak RSS, bytes read and written.

Runs in the task child (:func:`clusterfarm.executor.run_job`), around each job. The child is
kept warm between jobs, so every figure is a difference: CPU from ``getrusage`` (the process
and its reaped children), I/O from ``/proc/self/io``, and the peak RSS of the job alone by
resetting the kernel's high-water mark (``5`` into ``/proc/self/clear_refs``) before the job and
reading ``VmHWM`` after it. The ``/proc`` files stay open and are re-read with ``pread``, so a
job pays about 10 µs. Where ``/proc`` is missing (not Linux) the peak falls back to
``ru_maxrss`` (the process's peak so far, an upper bound) and the byte counts are None.
"""

from __future__ import annotations

import os
import resource
import sys
import time
from dataclasses import dataclass
from typing import Any

# ru_maxrss is in kilobytes on Linux, in bytes on macOS
_MAXRSS_UNIT = 1 if sys.platform == "darwin" else 1024


class _ProcFiles:
    """The ``/proc/self`` files, opened once per process (None where unavailable)."""

    def __init__(self) -> None:
        self.clear_refs = _open("/proc/self/clear_refs", os.O_WRONLY)
        self.status = _open("/proc/self/status", os.O_RDONLY)
        self.io = _open("/proc/self/io", os.O_RDONLY)
        self.pid = os.getpid()

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

    def io_counts(self) -> dict[str, int]:
        """``rchar``, ``wchar``, ``read_bytes`` and ``write_bytes`` of this process."""
        if self.io is None:
            return {}
        counts = {}
        for line in os.pread(self.io, 1024, 0).split(b"\n"):
            name, _, value = line.partition(b": ")
            if name in _IO_FIELDS:
                counts[name.decode()] = int(value)
        return counts


_IO_FIELDS = {b"rchar", b"wchar", b"read_bytes", b"write_bytes"}


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


@dataclass(frozen=True)
class Start:
    """The counters when a job started."""

    wall: float
    cpu: float
    children_peak: int
    io: dict[str, int]
    peak_reset: bool


def begin() -> Start:
    """Take the counters before a job."""
    files = _proc()
    reset = files.reset_peak()
    cpu, children_peak = _cpu_seconds()
    return Start(time.time(), cpu, children_peak, files.io_counts(), reset)


def since(start: Start) -> dict[str, Any]:
    """What the job since ``start`` cost: the ``usage`` entry of a job's outcome.

    Keys: ``started`` and ``ended`` (epoch seconds on the worker's clock), ``cpu`` (s),
    ``peak_rss`` (bytes), ``rchar``, ``wchar``, ``read_bytes``, ``write_bytes`` (bytes; None
    when unknown).
    """
    ended = time.time()
    files = _proc()
    cpu, children_peak = _cpu_seconds()
    peak = files.peak_rss() if start.peak_reset else None
    if peak is None:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * _MAXRSS_UNIT
    if children_peak > start.children_peak:  # a subprocess of the task peaked higher
        peak = max(peak, children_peak)
    usage: dict[str, Any] = {
        "started": start.wall,
        "ended": ended,
        "cpu": round(cpu - start.cpu, 6),
        "peak_rss": peak,
    }
    io = files.io_counts()
    for name in ("rchar", "wchar", "read_bytes", "write_bytes"):
        before, after = start.io.get(name), io.get(name)
        usage[name] = after - before if before is not None and after is not None else None
    return usage


FIELDS = ("started", "ended", "cpu", "peak_rss", "rchar", "wchar", "read_bytes", "write_bytes")


def pack(figures: dict[str, Any]) -> str:
    """The figures of :func:`since` as one short string, for the wire.

    A string is one token for serpent's decoder; eight numbers with their keys would make
    the manager parse about 80 µs more per cell, a third of a noop cell's dispatch cost.
    """
    return ",".join(_text(figures.get(name)) for name in FIELDS)


def unpack(packed: str | None) -> dict[str, Any]:
    """The figures of a :func:`pack` string ({} for None or a malformed one)."""
    if not isinstance(packed, str):
        return {}
    values = packed.split(",")
    if len(values) != len(FIELDS):
        return {}
    try:
        return {name: _number(value) for name, value in zip(FIELDS, values, strict=True)}
    except ValueError:
        return {}


def _number(text: str) -> float | int | None:
    if not text:
        return None
    return float(text) if "." in text or "e" in text else int(text)


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6f}" if value > 1e6 else f"{value:.6g}"
    return str(int(value))
