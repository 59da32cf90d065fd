"""One worker's dispatcher: the thread that owns its proxy and keeps one call outstanding.

It connects (sending the run settings), takes cells from the manager, calls ``do_work`` or
``do_batch`` on its worker, and hands the answers back; when the worker is lost it waits and
connects again, so a worker that comes back is used again. What a cell's answer means for the
schedule is the manager's business (:meth:`Manager.finish`); the thread only carries it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import Pyro5.errors
from Pyro5.api import Proxy

from clusterfarm.nameserver import WorkerEntry
from clusterfarm.schedule import Task
from clusterfarm.transport import CALL_TIMEOUT, tls_problem

if TYPE_CHECKING:
    from clusterfarm.manager import Manager

LOG = logging.getLogger("clusterfarm.manager")


@dataclass(eq=False)
class WorkerLink:
    """The manager's view of one worker: what it runs now and when it last answered."""

    entry: WorkerEntry
    cells: list[Task] = field(default_factory=list)
    tokens: list[int] = field(default_factory=list)  # attempt of each cell when sent
    last_seen: float = 0.0  # time.monotonic() of its last sign of life
    lost: bool = True  # until it has answered configure
    proxy: Proxy | None = None  # the dispatcher thread's; the monitor only cuts it

    @property
    def name(self) -> str:
        return self.entry.name

    @property
    def host(self) -> str:
        return self.entry.host


class Dispatcher:
    """The thread body for one worker (see the module docstring)."""

    def __init__(self, manager: Manager, link: WorkerLink) -> None:
        self.manager = manager
        self.link = link

    def serve(self) -> None:
        manager, link = self.manager, self.link
        try:
            while not manager.done.is_set():
                if self._connect():
                    self._dispatch()
                manager.done.wait(manager.config.heartbeat)  # then try to reconnect
        except Exception:  # a bug here must not hang the run: log it, let the others go on
            LOG.exception("dispatcher of %s failed", link.name)
            manager.lose(link, "dispatcher error (see manager.log)")

    def _connect(self) -> bool:
        manager, link = self.manager, self.link
        proxy = Proxy(link.entry.uri)
        proxy._pyroTimeout = CALL_TIMEOUT
        try:
            answer = proxy.configure(manager.run_settings())
        except Pyro5.errors.CommunicationError as exc:
            proxy._pyroRelease()
            if not link.last_seen:  # never reached; a lost one was reported when lost
                manager.left(link, f"unreachable ({tls_problem(exc) or exc})")
            return False
        if not answer.get("ok"):
            proxy._pyroRelease()
            manager.left(link, f"refused the run settings: {answer.get('error')}")
            return False
        manager.joined(link, proxy)
        return True

    def _dispatch(self) -> None:
        manager, link = self.manager, self.link
        proxy = link.proxy
        assert proxy is not None
        config = manager.config
        params = config.params
        with proxy:
            while cells := manager.claim(link):
                task = cells[0].task
                LOG.debug("%s runs %s (%d cell(s) in this call)", link.name, cells[0], len(cells))
                proxy._pyroTimeout = config.guard + config.timeout * (len(cells) - 1)
                try:
                    if len(cells) == 1:
                        cell = cells[0]
                        answers = [proxy.do_work(cell.year, cell.member, task, params[task])]
                    else:
                        cells_sent = [[c.year, c.member] for c in cells]
                        answers = proxy.do_batch(task, params[task], cells_sent)
                except Pyro5.errors.TimeoutError:
                    cancel_aside(link.entry)
                    error = f"no answer from {link.name} within {proxy._pyroTimeout:g} s"
                    answers = [{"status": "timeout", "error_kind": "timeout", "error": error}]
                    answers *= len(cells)
                except Pyro5.errors.CommunicationError as exc:
                    manager.lose(link, str(exc))
                    return
                manager.finish(link, cells, answers)
                kind = answers[0].get("error_kind")
                if kind == "stopping":  # it is going away: send nothing more until it is back
                    manager.left(link, "worker stopping")
                    return
                if kind == "busy":  # still finishing a task from before it was declared lost
                    manager.done.wait(min(1.0, config.heartbeat))


def cancel_aside(entry: WorkerEntry) -> None:
    """Ask a worker to stop its task, on a connection of its own (best effort)."""
    call_aside(entry, "cancel")


def quarantine_aside(entry: WorkerEntry, seconds: float) -> None:
    """Tell a worker it is quarantined, so ``clusterfarm workers`` shows it (best effort)."""
    call_aside(entry, "quarantine", seconds)


def call_aside(entry: WorkerEntry, method: str, *args: Any) -> None:
    """Call ``method`` on a worker over a short-lived connection of its own; ignore failure."""
    try:
        with Proxy(entry.uri) as proxy:
            proxy._pyroTimeout = 5
            getattr(proxy, method)(*args)
    except Pyro5.errors.PyroError:
        pass
