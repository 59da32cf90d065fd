"""The manager's worker heartbeats: ping the workers that have gone quiet, find new ones.

A dead host sends no RST, so a call to it just waits. Every ``heartbeat`` seconds a thread
pings, in parallel and with a short timeout, each worker of the run that has said nothing
for a heartbeat, busy ones first (the answers that flow anyway are the heartbeats of busy,
short-task workers, so those cost nothing more; an idle worker is pinged so that it knows
the run still holds it). A busy worker silent for ``lost_after`` seconds is declared lost.
One dead host with many workers costs one ping timeout per round, not one per worker. Apart
from that, a second thread asks the nameserver for workers that appeared or were restarted
since the run began, so a worker that comes back is used again; a slow nameserver never
delays the pings.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

import Pyro5.errors
from Pyro5.api import Proxy

from clusterfarm.errors import ClusterFarmError
from clusterfarm.manager.dispatcher import WorkerLink
from clusterfarm.wire.access import Access
from clusterfarm.wire.nameserver import WorkerEntry
from clusterfarm.wire.protocol import RunSpec

LOG = logging.getLogger("clusterfarm.heartbeats")
MAX_PINGS_AT_ONCE = 32


class HeartbeatHost(Protocol):
    """What the heartbeats need from the manager (the manager implements it)."""

    done: threading.Event
    spec: RunSpec
    access: Access

    def links(self) -> list[WorkerLink]: ...
    def seen(self, link: WorkerLink) -> None: ...
    def declare_lost(self, link: WorkerLink, reason: str) -> None: ...
    def offer(self, *entries: WorkerEntry) -> None: ...


class WorkerHeartbeats:
    """The manager's heartbeat and discovery threads; they own their proxies."""

    def __init__(
        self,
        host: HeartbeatHost,
        heartbeat: float,
        lost_after: float,
        discover: Callable[[], list[WorkerEntry]] | None,
    ) -> None:
        self.host = host
        self.heartbeat = heartbeat
        self.lost_after = lost_after
        self.discover = discover
        self.ping_timeout = max(0.2, min(heartbeat, lost_after / 3))
        self._proxies: dict[str, Proxy] = {}
        self._threads = [
            threading.Thread(target=self._beat, name="heartbeats", daemon=True),
            threading.Thread(target=self._watch_directory, name="discover", daemon=True),
        ]
        self._nameserver_trouble = False

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def join(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    # -- heartbeats -------------------------------------------------------------------------

    def _beat(self) -> None:
        done = self.host.done
        with ThreadPoolExecutor(MAX_PINGS_AT_ONCE, thread_name_prefix="ping") as pool:
            while not done.wait(self.heartbeat):
                try:
                    quiet = self._quiet_links(time.monotonic())
                    for link, alive in zip(quiet, pool.map(self._ping, quiet), strict=True):
                        self._judge(link, alive)
                except Exception:  # never let a bug here end the heartbeats silently
                    LOG.exception("heartbeat round failed")
        for proxy in self._proxies.values():
            proxy._pyroClaimOwnership()  # the last ping may have been another pool thread's
            proxy._pyroRelease()

    def _quiet_links(self, now: float) -> list[WorkerLink]:
        """Live workers that have not answered for a heartbeat, busy ones first (an idle one
        is pinged too, so it knows this run still holds it: a pool started for one run
        leaves after a silence)."""
        quiet = [
            link
            for link in self.host.links()
            if link.usable and now - link.last_seen >= self.heartbeat
        ]
        return sorted(quiet, key=lambda link: not link.inflight)

    def _judge(self, link: WorkerLink, alive: bool) -> None:
        if alive:
            self.host.seen(link)
        elif link.inflight and time.monotonic() - link.last_seen > self.lost_after:
            self.host.declare_lost(link, f"no answer to heartbeats for {self.lost_after:g} s")

    def _ping(self, link: WorkerLink) -> bool:
        uri = link.entry.uri
        proxy = self._proxies.get(uri)
        if proxy is None:
            proxy = self._proxies[uri] = self.host.access.proxy(uri)
            proxy._pyroTimeout = self.ping_timeout
        proxy._pyroClaimOwnership()  # pool threads take turns with it
        try:
            proxy.ping(self.host.spec.run_id)
            return True
        except Pyro5.errors.PyroError:
            proxy._pyroRelease()  # reconnect next time: the old connection may be dead
            return False

    # -- discovery --------------------------------------------------------------------------

    def _watch_directory(self) -> None:
        if self.discover is None:
            return
        while not self.host.done.wait(self.heartbeat):
            try:
                entries = self.discover()
            except (ClusterFarmError, Pyro5.errors.PyroError) as exc:
                if not self._nameserver_trouble:  # once, not every heartbeat
                    LOG.warning("cannot list workers (%s); going on with those known", exc)
                self._nameserver_trouble = True
                continue
            if self._nameserver_trouble:
                LOG.info("the nameserver answers again")
            self._nameserver_trouble = False
            self.host.offer(*entries)
