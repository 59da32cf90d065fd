"""A process and everything it started: find them, end them, whatever they did to detach.

A process that starts others becomes their *subreaper* (Linux): a descendant whose parent
dies, even one that called ``setsid`` and forked again to leave its session, is adopted by
the nearest subreaper above it instead of by init, so it stays below us and findable. The
task process is one (a task's leftovers are ended when its cell ends), and so is the worker
daemon (what a killed task process leaves is ended before the next one starts). Processes
that leave through a service manager, another host or another PID namespace are out of reach.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
from collections.abc import Iterable

_PR_SET_CHILD_SUBREAPER = 36


def become_subreaper() -> None:
    """Adopt orphaned descendants (Linux), so that they stay findable (see the module)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def children(pid: int) -> list[int]:
    """The children of ``pid`` (of all its threads), from /proc; [] when it is gone."""
    found: list[int] = []
    try:
        threads = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for tid in threads:
        with contextlib.suppress(OSError), open(f"/proc/{pid}/task/{tid}/children") as handle:
            found.extend(int(p) for p in handle.read().split())
    return found


def descendants(pids: Iterable[int]) -> set[int]:
    """Every process below ``pids`` (children, grandchildren...), ``pids`` not included."""
    todo = [child for pid in pids for child in children(pid)]
    seen: set[int] = set()
    while todo:
        pid = todo.pop()
        if pid not in seen:
            seen.add(pid)
            todo.extend(children(pid))
    return seen


def kill_all(pids: Iterable[int]) -> None:
    """SIGKILL each of ``pids`` (gone ones are fine)."""
    for pid in pids:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)


def end_children(keep: Iterable[int] = ()) -> int:
    """Kill every process below this one but those in ``keep`` (and theirs), reap those that
    are (or have become, as their parents died) our children; return how many were ended."""
    kept = set(keep)
    doomed = [pid for pid in children(os.getpid()) if pid not in kept]
    ended = {*doomed, *descendants(doomed)}  # noted first, then all killed at once
    kill_all(ended)
    for pid in ended:
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(pid, 0)
    return len(ended)
