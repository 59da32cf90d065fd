"""The dispatcher: one thread that keeps every worker's calls flowing.

Each worker gets ``LANES`` connections (lanes), so it always has its next batch waiting
while the manager reads the last one's answers. A lane is joined to the run by a small pool
of helper threads (connect, authenticate, ``join``: blocking, but rare); then its socket
becomes a :class:`~clusterfarm.wire.channel.Channel`, and the dispatch thread drives every
channel from one selector: it takes cells from the :class:`DispatchHost` (the manager),
sends ``do_batch``, reads the reply and hands the checked answers back. Threads do not
decide the manager's cost, calls per second do: a thousand workers are two thousand
sockets, not two thousand threads waking for the GIL.

A call that passes its time limit times its cells out (the worker is asked to stop them);
a broken connection loses the worker (its cells go back); a lost or paused worker's lanes
join again after a heartbeat, so a worker that comes back is used again.

Replies are served a few at a time. When the dispatch thread has slept, waking costs far
more than the work it wakes for: meanwhile the task processes have run, and the
interpreter's code and data come back from memory (``docs/architecture.rst`` has the
figures). So when the replies that woke it come from workers whose
next calls are already queued there, it lets more gather, for at most ``MAX_GATHER`` (and a
quarter of those next calls), and serves them together: no worker idles for it, and a call
costs the manager far less CPU. A busy thread (replies waiting already) and the end of a
run, where workers have one call each, serve replies at once.

A lane never dies of what a worker sends: a malformed answer sets the worker aside for the
run (its cells go back without using an attempt), and any bug here does the same and is
logged. What an answer means for the schedule is the host's business; the lane only carries.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import logging
import math
import queue
import selectors
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import Pyro5.errors
from Pyro5.api import Proxy

from clusterfarm.record.schedule import Cell
from clusterfarm.wire.access import Access
from clusterfarm.wire.channel import Channel, ChannelClosed, Reply
from clusterfarm.wire.nameserver import WorkerEntry
from clusterfarm.wire.protocol import (
    Answer,
    ErrorKind,
    JoinAnswer,
    ProtocolError,
    RunSpec,
    failed,
    pack_cells,
    parse_answers,
)
from clusterfarm.wire.pyro import CALL_TIMEOUT, tls_problem
from clusterfarm.wire.worker_calls import cancel_aside

LOG = logging.getLogger("clusterfarm.dispatcher")
LANES = 2  # calls in flight per worker: one runs, the next waits there
HELPERS = 16  # threads that join workers, ask them to cancel, report losses (they block)
IDLE_ROUND = 0.25  # seconds: idle lanes look for cells at least this often
WIND_DOWN_SECONDS = 10.0  # at the end, how long answers still in flight are awaited
RELEASE_SECONDS = 2.0  # and then the workers' goodbyes
MAX_GATHER = 0.1  # seconds that replies may gather before they are served (see above)
# what a worker's hand-back asks of its lane
_JOIN_AGAIN = frozenset({ErrorKind.UNKNOWN_RUN, ErrorKind.LEASED, ErrorKind.STOPPING})
_PAUSE = frozenset({ErrorKind.BUSY, ErrorKind.RESOURCE, ErrorKind.DRAINING})


@dataclass(eq=False)
class Batch:
    """Cells sent in one call, with the attempt each had when sent."""

    task: str
    cells: list[Cell]
    tokens: list[int]
    seconds: float = 0.0  # how long it should run, from the task's cells so far (0: unknown)


@dataclass(eq=False)
class WorkerLink:
    """The manager's view of one worker. Guarded by the manager's lock (see manager.py),
    except ``proxies``, which belong to the dispatch thread; :meth:`cut` only breaks them."""

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
        """Break the lanes' connections at once (the dispatch thread then finds them closed)."""
        for proxy in list(self.proxies.values()):
            connection = getattr(proxy, "_pyroConnection", None)
            if connection is not None:
                with contextlib.suppress(OSError, AttributeError):
                    connection.sock.shutdown(socket.SHUT_RDWR)


class DispatchHost(Protocol):
    """What the dispatcher needs from the manager (the manager implements it)."""

    done: threading.Event
    spec: RunSpec
    access: Access
    call_limit: float
    heartbeat: float

    def work_mark(self) -> int: ...
    def backlog(self) -> bool: ...
    def joined(self, link: WorkerLink, answer: JoinAnswer) -> bool: ...
    def leased(self, link: WorkerLink, holder: str) -> None: ...
    def claim(self, link: WorkerLink) -> Batch | None: ...
    def finish(self, link: WorkerLink, batch: Batch, answers: list[Answer]) -> ErrorKind | None: ...
    def lose(self, link: WorkerLink, reason: str) -> None: ...
    def left(self, link: WorkerLink, reason: str) -> None: ...
    def set_aside(self, link: WorkerLink, reason: str) -> None: ...


@dataclass(eq=False)
class Lane:
    """One connection to a worker, with at most one call on it."""

    link: WorkerLink
    number: int
    channel: Channel | None = None
    batch: Batch | None = None  # the call in flight, if any
    timeout: float = 0.0  # that call's time limit
    deadline: float = math.inf  # and when it passes
    rest_until: float = 0.0  # the worker asked for a pause (busy, short of disk, draining)
    releasing: bool = False  # the call in flight is the run's goodbye
    joined: bool = False  # its worker has joined the run (another lane joined it, or this)


class Dispatcher:
    """Every worker's lanes, driven by one thread (see the module's docstring)."""

    def __init__(self, host: DispatchHost) -> None:
        self.host = host
        self._selector = selectors.DefaultSelector()
        self._wake_in, self._wake_out = socket.socketpair()
        self._wake_in.setblocking(False)
        self._wake_out.setblocking(False)
        self._selector.register(self._wake_in, selectors.EVENT_READ, None)
        self._jobs: queue.SimpleQueue[Callable[[], object] | None] = queue.SimpleQueue()
        self._helpers = [
            threading.Thread(target=self._help, name=f"dispatch-helper{n}", daemon=True)
            for n in range(HELPERS)
        ]
        self._arrived: queue.SimpleQueue[tuple[Lane, Channel | None]] = queue.SimpleQueue()
        self._lanes: set[Lane] = set()  # connected ones
        self._idle: list[Lane] = []  # connected, no call on them
        self._later: list[tuple[float, int, Lane]] = []  # joins to try again, a heap
        self._order = itertools.count()  # ties in the heap
        self._mark = -1  # the host's work mark when the idle lanes last found nothing
        self._next_round = 0.0  # see _step
        self._thread = threading.Thread(target=self._serve, name="dispatch", daemon=True)

    # -- other threads ----------------------------------------------------------------------

    def start(self) -> None:
        """Start the helper threads, then the dispatch thread (before any worker is added:
        starting threads while others want the GIL is slow)."""
        for thread in self._helpers:
            thread.start()
        self._thread.start()

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)

    def add(self, links: list[WorkerLink]) -> None:
        """Join the ``links``' workers to the run (from any thread). Each worker's first
        lane joins it; the others open once it has (connecting is the costly part of a
        start: every worker should have its first cells before any has its second lane)."""
        for link in links:
            self._join_soon(Lane(link, 0))

    def wake(self) -> None:
        """Have the dispatch thread look again: cells came free, or the run is over."""
        with contextlib.suppress(OSError):  # a full pipe is awake already
            self._wake_out.send(b"!")

    def _join_soon(self, lane: Lane) -> None:
        self._submit(self._join, lane)

    def _submit(self, job: Callable[..., object], *args: Any) -> None:
        """Have a helper thread do ``job(*args)`` (something that blocks)."""
        self._jobs.put(lambda: job(*args))

    def _help(self) -> None:
        """A helper thread: joins, cancels, losses (a launcher may take seconds to say why)."""
        while (job := self._jobs.get()) is not None:
            try:
                job()
            except Exception:  # a bug in one job must not take the helper with it
                LOG.exception("a dispatcher helper's job failed")

    def _join(self, lane: Lane) -> None:
        """A helper thread's job: connect, join the run (blocking), hand the lane over."""
        channel = None
        try:
            host, link = self.host, lane.link
            proxy = connect(link, host.access) if lane.joined else join_worker(host, link)
            if proxy is not None:
                channel = Channel(proxy)
        except Exception as exc:  # a bug here must not strand the lane: log it, set aside
            LOG.exception("joining %s failed", lane.link.name)
            self.host.set_aside(lane.link, bug(exc))
        self._arrived.put((lane, channel))
        self.wake()

    # -- the dispatch thread ----------------------------------------------------------------

    def _serve(self) -> None:
        try:
            while not self.host.done.is_set():
                self._step()
            self._wind_down()
        except Exception as exc:  # a bug in the loop must not hang the run
            LOG.exception("the dispatcher failed")
            for lane in list(self._lanes):
                self.host.set_aside(lane.link, bug(exc))
        finally:
            for lane in list(self._lanes):
                self._close(lane)
            for _ in self._helpers:
                self._jobs.put(None)
            self._selector.close()
            self._wake_in.close()
            self._wake_out.close()

    def _step(self, wait: float = IDLE_ROUND) -> None:
        """Serve what the sockets have (after a sleep, once more have gathered: see
        :meth:`_gather_for`); then, every IDLE_ROUND, what the clock decides: calls
        past their time limit (at least 10 s: a quarter second late is nothing), and idle
        lanes whose host's rest or worker's pause has ended."""
        now = time.monotonic()
        wait = min(wait, self._next_round - now)
        if self._later:
            wait = min(wait, self._later[0][0] - now)
        ready = self._selector.select(0)  # replies waiting already: busy, serve them now
        if not ready and wait > 0:
            ready = self._selector.select(wait)  # idle: sleep until the next
            gather = self._gather_for(ready) if ready else 0.0
            if gather:
                self.host.done.wait(gather)
                ready = self._selector.select(0)  # those that woke us, and those come since
        for key, events in ready:
            lane = key.data
            if lane is None:
                with contextlib.suppress(OSError):
                    self._wake_in.recv(4096)
            elif lane.channel is not None:
                self._serve_lane(lane, events)
        while not self._arrived.empty():
            self._arrive(*self._arrived.get())
        now = time.monotonic()
        due = now >= self._next_round
        if due:
            self._next_round = now + IDLE_ROUND
            self._expire(now)
        self._retry_joins(now)
        self._feed_idle(now, due)

    def _gather_for(self, ready: list[tuple[selectors.SelectorKey, int]]) -> float:
        """How long the replies that woke the thread may wait for others (see the module's
        docstring); 0: serve them now. They wait only while every worker has its next call
        queued (the host has more cells than workers), only if each comes from such a
        worker, and for a quarter of the shortest of those next calls at most, so that no
        worker idles meanwhile; nothing waits behind the wake-up socket. (``inflight`` is
        read without the host's lock: a hint, no more.)"""
        if not self.host.backlog():
            return 0.0
        gather = MAX_GATHER
        for key, _ in ready:
            lane = key.data
            if lane is None:
                return 0.0
            queued = [batch.seconds for batch in lane.link.inflight if batch is not lane.batch]
            if not queued:
                return 0.0
            gather = min(gather, min(queued) / 4)
        return gather

    def _serve_lane(self, lane: Lane, events: int) -> None:
        channel = lane.channel
        assert channel is not None
        try:
            if events & selectors.EVENT_WRITE:
                channel.flush()
                if not channel.wants_write:
                    self._selector.modify(channel, selectors.EVENT_READ, lane)
            if events & selectors.EVENT_READ:
                for reply in channel.receive():
                    self._answered(lane, reply)
        except ChannelClosed as exc:
            self._broken(lane, str(exc))
        except Pyro5.errors.ProtocolError as exc:
            self._set_aside(lane, f"answered garbage ({exc})")
        except Exception as exc:  # a bug here must not hang the run: log it, go on without
            LOG.exception("lane %d of %s failed", lane.number, lane.link.name)
            self._set_aside(lane, bug(exc))

    def _arrive(self, lane: Lane, channel: Channel | None) -> None:
        """A helper is done with ``lane``: use its channel, or try again later."""
        if channel is None:
            if lane.link.aside is None:
                self._rejoin_later(lane)
            return
        if self.host.done.is_set():
            channel.close()
            return
        lane.channel = channel
        self._lanes.add(lane)
        self._selector.register(channel, selectors.EVENT_READ, lane)
        lane.link.proxies[lane.number] = channel.proxy
        if lane.number == 0 and not lane.joined:  # its worker's first join: open the others
            for number in range(1, LANES):
                self._join_soon(Lane(lane.link, number, joined=True))
        lane.joined = False  # should it close, it joins again
        self._feed(lane, time.monotonic())

    def _feed(self, lane: Lane, now: float) -> None:
        """Give ``lane`` its next batch, or leave it idle (closed when its worker is not usable)."""
        link = lane.link
        batch = None if now < lane.rest_until else self.host.claim(link)
        if batch is not None:
            self._send(lane, batch, now)
        elif not link.usable and not self.host.done.is_set():
            self._close(lane)
            if link.aside is None:
                self._rejoin_later(lane)
        else:
            self._idle.append(lane)

    def _feed_idle(self, now: float, due: bool) -> None:
        """Try the idle lanes again when cells came free, or when the round is ``due``."""
        mark = self.host.work_mark()
        if not self._idle or (mark == self._mark and not due):
            return
        self._mark = mark
        idle, self._idle = self._idle, []
        for lane in idle:
            if lane.channel is not None and lane.batch is None:
                self._feed(lane, now)

    def _send(self, lane: Lane, batch: Batch, now: float) -> None:
        host, link, channel = self.host, lane.link, lane.channel
        assert channel is not None
        lane.batch = batch
        lane.timeout = host.call_limit + host.spec.timeout * (link.cells_in_flight() - 1)
        lane.deadline = now + lane.timeout
        sent = pack_cells(
            [(c.year, c.member, token) for c, token in zip(batch.cells, batch.tokens, strict=True)]
        )
        self._call(lane, "do_batch", host.spec.run_id, batch.task, sent)

    def _call(self, lane: Lane, method: str, *args: Any) -> None:
        channel = lane.channel
        assert channel is not None
        try:
            channel.call(method, *args)
        except ChannelClosed as exc:
            self._broken(lane, str(exc))
            return
        if channel.wants_write:
            self._selector.modify(channel, selectors.EVENT_READ | selectors.EVENT_WRITE, lane)

    def _answered(self, lane: Lane, reply: Reply) -> None:
        batch, lane.batch, lane.deadline = lane.batch, None, math.inf
        if lane.releasing:
            self._close(lane)
            return
        if batch is None:
            raise Pyro5.errors.ProtocolError("a reply to no call")
        if reply.raised:  # an exception crossed the wire: not our worker
            self._set_aside(lane, f"raised {type(reply.value).__name__} instead of answering")
            return
        try:
            answers = parse_answers(reply.value, len(batch.cells))
        except ProtocolError as exc:
            self._set_aside(lane, f"answered garbage ({exc})")
            return
        self._finished(lane, batch, answers)

    def _finished(self, lane: Lane, batch: Batch, answers: list[Answer]) -> None:
        kind = self.host.finish(lane.link, batch, answers)
        now = time.monotonic()
        if kind in _JOIN_AGAIN:
            self._close(lane)  # join again (or wait for it to come back)
            self._rejoin_later(lane)
            return
        if kind in _PAUSE:
            lane.rest_until = now + min(1.0, self.host.heartbeat)
        if lane.channel is not None:
            self._feed(lane, now)

    def _expire(self, now: float) -> None:
        """Calls past their time: the cells time out, the worker is asked to stop them."""
        for lane in [lane for lane in self._lanes if lane.deadline <= now]:
            batch, lane.batch = lane.batch, None
            if batch is None:
                continue  # answered in time (a goodbye at the end has no limit of its own)
            self._close(lane)  # a late reply would answer the next call
            self._submit(cancel_aside, lane.link.entry, self.host.access, self.host.spec.run_id)
            error = f"no answer from {lane.link.name} within {lane.timeout:g} s"
            timed_out = [failed(ErrorKind.TIMEOUT, error)] * len(batch.cells)
            self.host.finish(lane.link, batch, timed_out)
            self._join_soon(lane)

    def _broken(self, lane: Lane, reason: str) -> None:
        """The connection broke: the worker is lost (unless set aside or the run is over)."""
        link = lane.link
        lane.batch = None
        self._close(lane)
        if link.aside is not None:
            return
        if not self.host.done.is_set():
            self._rejoin_later(lane)
        self._submit(self.host.lose, link, reason)  # a launcher may take seconds to say why

    def _set_aside(self, lane: Lane, reason: str) -> None:
        lane.batch = None
        self._close(lane)
        self.host.set_aside(lane.link, reason)

    def _close(self, lane: Lane) -> None:
        channel, lane.channel = lane.channel, None
        lane.releasing = False
        self._lanes.discard(lane)
        if channel is None:
            return
        lane.link.proxies.pop(lane.number, None)
        with contextlib.suppress(KeyError, ValueError):
            self._selector.unregister(channel)
        channel.close()

    def _rejoin_later(self, lane: Lane) -> None:
        when = time.monotonic() + self.host.heartbeat
        heapq.heappush(self._later, (when, next(self._order), lane))

    def _retry_joins(self, now: float) -> None:
        while self._later and self._later[0][0] <= now:
            _, _, lane = heapq.heappop(self._later)
            if lane.link.aside is None and not self.host.done.is_set():
                self._join_soon(lane)

    def _wind_down(self) -> None:
        """The run is over: take the answers still coming, then release each worker's lease
        on its own connection, so the next run may have it at once (best effort)."""
        deadline = time.monotonic() + WIND_DOWN_SECONDS
        while any(lane.batch is not None for lane in self._lanes):
            if time.monotonic() >= deadline:
                return
            self._step(0.05)
        goodbyes = [lane for lane in self._lanes if lane.number == 0 and lane.link.usable]
        for lane in goodbyes:
            lane.releasing = True
            self._call(lane, "release", self.host.spec.run_id)
        deadline = time.monotonic() + RELEASE_SECONDS
        while any(lane.releasing for lane in self._lanes) and time.monotonic() < deadline:
            self._step(0.05)


def bug(exc: Exception) -> str:
    """Why a worker is set aside when the dispatcher itself failed."""
    return f"dispatcher error ({type(exc).__name__}; see manager.log)"


def connect(link: WorkerLink, access: Access) -> Proxy | None:
    """A connection to ``link``'s worker (which has joined the run), or None (not now)."""
    proxy = _proxy(link, access)
    try:
        proxy._pyroBind()
    except Pyro5.errors.PyroError:
        proxy._pyroRelease()
        return None
    return proxy


def _proxy(link: WorkerLink, access: Access) -> Proxy:
    proxy = access.proxy(link.entry.uri)
    proxy._pyroTimeout = CALL_TIMEOUT
    # the handshake and the join in JSON, as the lanes' calls: serpent compiles every
    # message it reads, and a thousand joins at the start are the manager's busiest second
    proxy._pyroSerializer = "json"
    return proxy


def join_worker(host: DispatchHost, link: WorkerLink) -> Proxy | None:
    """Connect to ``link``'s worker and join it to the run: its proxy, or None (not now)."""
    proxy = _proxy(link, host.access)
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
    return proxy
