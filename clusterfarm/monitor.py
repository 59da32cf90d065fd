"""Liveness: ping the workers on connections of their own, and notice new workers.

A dead host sends no RST, so a call to it just waits. Every ``heartbeat`` seconds the monitor
pings each worker with a short timeout; a busy worker silent for ``lost_after`` seconds is
declared lost (an idle one is pinged so that it knows the manager is there). It also asks the
nameserver for workers that appeared or were restarted since the run began, so a worker that
comes back is used again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import Pyro5.errors
from Pyro5.api import Proxy

from clusterfarm.errors import ClusterFarmError
from clusterfarm.nameserver import WorkerEntry

if TYPE_CHECKING:
    from clusterfarm.dispatcher import WorkerLink
    from clusterfarm.manager import Manager

LOG = logging.getLogger("clusterfarm.monitor")


class Monitor(threading.Thread):
    """The manager's heartbeat thread; it owns its proxies, one per worker it pings."""

    def __init__(
        self,
        manager: Manager,
        heartbeat: float,
        lost_after: float,
        discover: Callable[[], list[WorkerEntry]] | None,
    ) -> None:
        super().__init__(name="monitor", daemon=True)
        self.manager = manager
        self.heartbeat = heartbeat
        self.lost_after = lost_after
        self.discover = discover
        self.ping_timeout = max(0.2, min(heartbeat, lost_after / 3))
        self._proxies: dict[str, Proxy] = {}

    def run(self) -> None:
        done = self.manager.done
        while not done.wait(self.heartbeat):
            try:
                self._check_busy()
                self._look_for_workers()
            except Exception:  # never let a monitor bug end liveness checks silently
                LOG.exception("monitor round failed")
        for proxy in self._proxies.values():
            proxy._pyroRelease()

    def _check_busy(self) -> None:
        # idle workers are pinged too (after the busy ones, which may be lost): a pool started
        # for one run leaves after a silence
        for link in sorted(self.manager.live_links(), key=lambda link: not link.cells):
            if self._ping(link):
                self.manager.seen(link)
            elif link.cells and time.monotonic() - link.last_seen > self.lost_after:
                reason = f"no answer to heartbeats for {self.lost_after:g} s"
                self.manager.declare_lost(link, reason)

    def _ping(self, link: WorkerLink) -> bool:
        uri = link.entry.uri
        proxy = self._proxies.get(uri)
        if proxy is None:
            proxy = self._proxies[uri] = Proxy(uri)
            proxy._pyroTimeout = self.ping_timeout
        try:
            proxy.ping()
            return True
        except Pyro5.errors.CommunicationError:
            proxy._pyroRelease()  # reconnect next time: the old connection may be dead
            return False

    def _look_for_workers(self) -> None:
        if self.discover is None:
            return
        try:
            entries = self.discover()
        except (ClusterFarmError, Pyro5.errors.PyroError) as exc:
            LOG.warning("cannot list workers: %s", exc)
            return
        for entry in entries:
            self.manager.offer(entry)
