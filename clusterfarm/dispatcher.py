"""One worker's dispatch lanes: the threads that own its proxies and keep cells flowing.

Each worker gets ``LANES`` threads, each with a proxy (a Pyro5 proxy belongs to one thread).
A lane joins the worker to the run, then takes cells from the :class:`DispatchHost` (the
manager), calls ``do_batch`` and hands the checked answers back. With two lanes a worker
always has its next batch waiting while the manager reads the last one's answers. When the
worker is lost the lane waits and joins again, so a worker that comes back is used again.

A lane never dies of what a worker sends: a malformed answer sets the worker aside for the
run (its cells go back without using an attempt), and any bug here does the same and is
logged. What an answer means for the schedule is the host's business; the lane only carries.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
from dataclasses import dataclass, field
from typing import Any, Protocol

import Pyro5.errors
from Pyro5.api import Proxy

from clusterfarm.nameserver import WorkerEntry
from clusterfarm.protocol import (
    Answer,
    ErrorKind,
    JoinAnswer,
    ProtocolError,
    RunSpec,
    failed,
    pack_cells,
    parse_answers,
)
from clusterfarm.schedule import Task
from clusterfarm.transport import CALL_TIMEOUT, authenticate, tls_problem

LOG = logging.getLogger("clusterfarm.manager")
LANES = 2  # calls in flight per worker: one runs, the next waits there


@dataclass(eq=False)
class Batch:
    """Cells sent in one call, with the attempt each had when sent."""

    task: str
    cells: list[Task]
    tokens: list[int]


@dataclass(eq=False)
class WorkerLink:
    """The manager's view of one worker. Guarded by the manager's lock (see manager.py),
    except ``proxies``, which belong to the lane threads; :meth:`cut` only closes them."""

    entry: WorkerEntry
    inflight: list[Batch] = field(default_factory=list)
    last_seen: float = 0.0  # time.monotonic() of its last sign of life
    lost: bool = True  # until it has joined the run
    aside: str | None = None  # why it is set aside for the rest of the run
    note: str | None = None  # what keeps it from working now (leased, short of disk...)
    tasks: frozenset[str] = frozenset()  # the run's tasks it can run
    lacks: dict[str, str] = field(default_factory=dict)  # the run's tasks it cannot, and why
    proxies: dict[int, Proxy] = field(default_factory=dict)  # lane -> its proxy

    @property
    def name(self) -> str:
        return self.entry.name

    @property
    def host(self) -> str:
        return self.entry.host

    @property
    def usable(self) -> bool:
        return not self.lost and self.aside is None

    def cells_in_flight(self) -> int:
        return sum(len(batch.cells) for batch in self.inflight)

    def cut(self) -> None:
        """Unblock the lanes' calls at once (they would wait for their guard time)."""
        for proxy in list(self.proxies.values()):
            connection = getattr(proxy, "_pyroConnection", None)
            if connection is not None:
                with contextlib.suppress(OSError, AttributeError):
                    connection.sock.shutdown(socket.SHUT_RDWR)


class DispatchHost(Protocol):
    """What a lane needs from the manager (the manager implements it)."""

    done: threading.Event
    spec: RunSpec
    guard: float
    heartbeat: float

    def joined(self, link: WorkerLink, answer: JoinAnswer) -> bool: ...
    def leased(self, link: WorkerLink, holder: str) -> None: ...
    def claim(self, link: WorkerLink) -> Batch | None: ...
    def finish(self, link: WorkerLink, batch: Batch, answers: list[Answer]) -> ErrorKind | None: ...
    def lose(self, link: WorkerLink, reason: str) -> None: ...
    def left(self, link: WorkerLink, reason: str) -> None: ...
    def set_aside(self, link: WorkerLink, reason: str) -> None: ...


class Lane:
    """One thread's body: join, then claim-call-finish until the run is done."""

    def __init__(self, host: DispatchHost, link: WorkerLink, number: int) -> None:
        self.host = host
        self.link = link
        self.number = number

    def serve(self) -> None:
        host, link = self.host, self.link
        try:
            while not host.done.is_set() and link.aside is None:
                proxy = self._join()
                if proxy is not None:
                    with proxy:
                        self._dispatch(proxy)
                        if host.done.is_set() and self.number == 0:
                            self._release(proxy)
                host.done.wait(host.heartbeat)  # then try again
        except Exception as exc:  # a bug here must not hang the run: log it, go on without
            LOG.exception("lane %d of %s failed", self.number, link.name)
            host.set_aside(link, f"dispatcher error ({type(exc).__name__}; see manager.log)")
        finally:
            self.link.proxies.pop(self.number, None)

    def _join(self) -> Proxy | None:
        host, link = self.host, self.link
        proxy = Proxy(link.entry.uri)
        proxy._pyroTimeout = CALL_TIMEOUT
        authenticate(proxy)
        try:
            answer = JoinAnswer.from_wire(proxy.join(host.spec.to_wire()))
        except Pyro5.errors.CommunicationError as exc:
            proxy._pyroRelease()
            if not link.last_seen:  # never reached; a lost one was reported when lost
                host.left(link, f"unreachable ({tls_problem(exc) or exc})")
            return None
        except (ProtocolError, Pyro5.errors.PyroError) as exc:
            proxy._pyroRelease()
            host.set_aside(link, f"answered join with {exc}")
            return None
        if answer.leased_by is not None:
            proxy._pyroRelease()
            host.leased(link, answer.leased_by)
            return None
        if not host.joined(link, answer):
            proxy._pyroRelease()
            return None
        link.proxies[self.number] = proxy
        return proxy

    def _release(self, proxy: Proxy) -> None:
        """The run is over: let the next run have the worker at once (best effort)."""
        try:
            proxy._pyroTimeout = 2
            proxy.release(self.host.spec.run_id)
        except Pyro5.errors.PyroError:
            pass  # the lease lapses by itself after lost_after

    def _dispatch(self, proxy: Proxy) -> None:
        host, link = self.host, self.link
        while (batch := host.claim(link)) is not None:
            answers = self._call(proxy, batch)
            if answers is None:
                return
            kind = host.finish(link, batch, answers)
            if kind in (ErrorKind.UNKNOWN_RUN, ErrorKind.LEASED, ErrorKind.STOPPING):
                return  # join again (or wait for it to come back)
            if kind in (ErrorKind.BUSY, ErrorKind.RESOURCE, ErrorKind.DRAINING):
                host.done.wait(min(1.0, host.heartbeat))

    def _call(self, proxy: Proxy, batch: Batch) -> list[Answer] | None:
        """Send ``batch``; its checked answers, or None when the worker is gone or set aside."""
        host, link = self.host, self.link
        cells = batch.cells
        timeout = host.guard + host.spec.timeout * (link.cells_in_flight() - 1)
        if proxy._pyroTimeout != timeout:  # each change is a system call on the socket
            proxy._pyroTimeout = timeout
        sent = pack_cells(
            [(c.year, c.member, token) for c, token in zip(cells, batch.tokens, strict=True)]
        )
        try:
            raw = proxy.do_batch(host.spec.run_id, batch.task, sent)
        except Pyro5.errors.TimeoutError:
            cancel_aside(link.entry, host.spec.run_id)
            error = f"no answer from {link.name} within {proxy._pyroTimeout:g} s"
            return [failed(ErrorKind.TIMEOUT, error)] * len(cells)
        except Pyro5.errors.CommunicationError as exc:
            host.lose(link, str(exc))
            return None
        except Pyro5.errors.PyroError as exc:  # an exception crossed the wire: not our worker
            host.set_aside(link, f"raised {type(exc).__name__} instead of answering")
            return None
        try:
            return parse_answers(raw, len(cells))
        except ProtocolError as exc:
            host.set_aside(link, f"answered garbage ({exc})")
            return None


def check_results_on(
    entry: WorkerEntry, spec: RunSpec, cells: list[Task]
) -> list[str | None] | None:
    """Ask one worker whether earlier results still hold where it sees the files.

    None when the worker cannot be asked (unreachable, another run's, or it answers
    nonsense); otherwise one reason (or None: still good) per cell.
    """
    chunk = 5000
    reasons: list[str | None] = []
    try:
        with Proxy(entry.uri) as proxy:
            proxy._pyroTimeout = CALL_TIMEOUT + 0.01 * min(len(cells), chunk)
            authenticate(proxy)
            answer = JoinAnswer.from_wire(proxy.join(spec.to_wire()))
            if answer.leased_by is not None or answer.error is not None:
                return None
            for start in range(0, len(cells), chunk):
                part = cells[start : start + chunk]
                items = [[c.task, c.year, c.member, c.inputs, c.output, c.output_sum] for c in part]
                got = proxy.check_results(spec.run_id, items)
                if not isinstance(got, list) or len(got) != len(part):
                    return None
                reasons += [None if r is None else str(r) for r in got]
    except (Pyro5.errors.PyroError, ProtocolError) as exc:
        LOG.warning("%s could not check earlier results: %s", entry.name, exc)
        return None
    return reasons


def cancel_aside(entry: WorkerEntry, run_id: str | None = None) -> None:
    """Ask a worker to stop its task, on a connection of its own (best effort)."""
    call_aside(entry, "cancel", run_id)


def quarantine_aside(entry: WorkerEntry, seconds: float) -> None:
    """Tell a worker it is quarantined, so ``clusterfarm workers`` shows it (best effort)."""
    call_aside(entry, "quarantine", seconds)


def call_aside(entry: WorkerEntry, method: str, *args: Any) -> None:
    """Call ``method`` on a worker over a short-lived connection of its own; ignore failure."""
    try:
        with Proxy(entry.uri) as proxy:
            proxy._pyroTimeout = 5
            authenticate(proxy)
            getattr(proxy, method)(*args)
    except Pyro5.errors.PyroError:
        pass
