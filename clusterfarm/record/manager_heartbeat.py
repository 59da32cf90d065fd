"""Tell a live run from a dead one: the manager's heartbeat, and how ``status`` reads it.

While ``run`` dispatches, a small thread (:class:`ManagerHeartbeat`) writes the time into the
invocation's row every :data:`BEAT_SECONDS`, on a connection of its own. ``status`` calls an
invocation still marked running *gone* when its heartbeat is older than
:data:`STALE_AFTER`, or at once when its pid is no longer alive on this same host (a
``kill -9`` leaves the row as it was).
"""

from __future__ import annotations

import logging
import os
import socket
import sqlite3
import threading
import time
from pathlib import Path
from types import TracebackType

from clusterfarm.errors import StateError
from clusterfarm.record.state import RunState

LOG = logging.getLogger("clusterfarm.manager_heartbeat")
BEAT_SECONDS = 2.0  # also how precisely "gone since" and the elapsed time of a dead run are known
STALE_AFTER = 5 * BEAT_SECONDS  # a few missed beats: a busy or network disk can delay some


class ManagerHeartbeat:
    """While the ``with`` block runs, beat for ``invocation`` in ``run_dir``'s state."""

    def __init__(self, run_dir: Path, invocation: int, interval: float = BEAT_SECONDS) -> None:
        self._run_dir, self._invocation, self._interval = run_dir, invocation, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="manager-heartbeat", daemon=True)

    def __enter__(self) -> ManagerHeartbeat:
        self._state = RunState(self._run_dir, create=False)
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join()
        self._state.close()

    def _loop(self) -> None:
        failing = False
        while not self._stop.wait(self._interval):
            try:
                self._state.beat(self._invocation)
                failing = False
            except (sqlite3.Error, StateError) as exc:  # the run itself reports a dead disk
                if not failing:
                    LOG.warning("cannot record the manager's heartbeat: %s", exc)
                failing = True


def gone_since(
    pid: int | None, host: str | None, heartbeat: float | None, now: float | None = None
) -> float | None:
    """When the manager of an invocation still marked running was last known alive, if it
    is gone; None while it looks alive (or, without a heartbeat, cannot be told)."""
    now = time.time() if now is None else now
    on_this_host = host is not None and host == socket.gethostname()
    if heartbeat is None:  # recorded by a version without heartbeats
        return None
    if on_this_host and pid is not None and not pid_alive(pid):
        return heartbeat
    if now - heartbeat > STALE_AFTER:
        return heartbeat
    return None


def pid_alive(pid: int) -> bool:
    """True if process ``pid`` runs on this host (a zombie, killed but not reaped, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:  # no /proc (macOS): kill(0) is all we know
        return True
    return stat.rsplit(")", 1)[1].split()[0] != "Z"
