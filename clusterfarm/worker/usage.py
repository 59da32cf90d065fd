"""What one cell cost the task process: CPU seconds, peak RSS, bytes read and written.

Runs in the task process (:func:`clusterfarm.worker.task_process.run_cells`), around each cell.
The process is kept warm between cells, so every figure is a difference: CPU from ``getrusage``
(the process and its reaped children), I/O from ``/proc/self/io`` (``rchar``/``wchar``: every
byte through read and write calls; ``read_bytes``/``write_bytes``: what reached the disk), and
the peak RSS of the cell alone by resetting the kernel's high-water mark (``5`` into
``/proc/self/clear_refs``) and reading ``VmHWM`` afterwards (not ``ru_maxrss``: the kernel folds
the high-water mark into it for good whenever a thread exits). The ``/proc`` files stay open and
are re-read with ``pread``.

A cell shorter than ``DETAIL_SECONDS`` pays only two reads of its process's CPU clock: the
``/proc`` reads and ``getrusage`` of its children would be a large share of a no-op cell, and a
cell that short neither grows the peak nor moves bytes worth telling. Its peak is the last one
read (an upper bound of what it used) and its byte counts are unknown (None); the next longer
cell's counts include what the short ones before it did. Where ``/proc`` is missing (not Linux)
the peak falls back to ``ru_maxrss`` and the byte counts are unknown.
"""

from __future__ import annotations

import os
import resource
import sys
import time

from clusterfarm.wire.protocol import Usage

# ru_maxrss is in kilobytes on Linux, in bytes on macOS
_MAXRSS_UNIT = 1 if sys.platform == "darwin" else 1024
DETAIL_SECONDS = 0.002

_IO_NAMES = [b"rchar:", b"wchar:", b"syscr:", b"syscw:", b"read_bytes:", b"write_bytes:"]


class _ProcFiles:
    """The ``/proc/self`` files, opened once per process (None where unavailable)."""

    def __init__(self) -> None:
        self.clear_refs = _open("/proc/self/clear_refs", os.O_WRONLY)
        self.status = _open("/proc/self/status", os.O_RDONLY)
        self.io = _open("/proc/self/io", os.O_RDONLY)
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


def _open(path: str, flags: int) -> int | None:
    try:
        return os.open(path, flags)
    except OSError:
        return None


def _children() -> tuple[float, int]:
    """CPU seconds of this process's reaped children, and their peak RSS in bytes."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return children.ru_utime + children.ru_stime, children.ru_maxrss * _MAXRSS_UNIT


class Meter:
    """Measures cell after cell in one process: :meth:`start`, run the cell, :meth:`stop`."""

    def __init__(self) -> None:
        self._files = _ProcFiles()
        self._fresh = self._files.reset_peak()  # the high-water mark counts from here
        self._peak = self._files.peak_rss() or _own_maxrss()
        self._io = self._files.io_counts()
        self._started = self._cpu = 0.0
        # children only change while a cell runs: the last cell's end is the next one's start
        self._kids_cpu, self._kids_peak = _children()

    def start(self) -> None:
        if not self._fresh:  # the last cell read the mark: start this one's afresh
            self._fresh = self._files.reset_peak()
        self._started = time.time()
        self._cpu = time.process_time()

    def stop(self, elapsed: float) -> Usage:
        """The cost of the cell since :meth:`start` (``elapsed``: its duration)."""
        cpu = time.process_time() - self._cpu
        read: tuple[int, int, int, int] | None = None
        kids_grew = 0  # the peak of a child it started and reaped, when above all before
        if elapsed >= DETAIL_SECONDS:
            kids_cpu, kids_peak = _children()
            cpu += kids_cpu - self._kids_cpu
            if kids_peak > self._kids_peak:
                kids_grew = kids_peak
            self._kids_cpu, self._kids_peak = kids_cpu, kids_peak
            if self._fresh:
                self._peak = self._files.peak_rss() or _own_maxrss()
                self._fresh = False
            now, before = self._files.io_counts(), self._io
            if now is not None and before is not None:
                read = tuple(a - b for a, b in zip(now, before, strict=True))  # type: ignore[assignment]
            self._io = now
        bytes_moved = read or (None, None, None, None)
        return (round(self._started, 3), round(cpu, 6), max(kids_grew, self._peak), *bytes_moved)


def _own_maxrss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * _MAXRSS_UNIT
