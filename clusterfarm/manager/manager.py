"""The manager: farm the schedule's cells out to the workers and keep the books.

The :class:`~clusterfarm.manager.dispatcher.Dispatcher` joins each worker to the run and keeps
two calls in flight on it, all from one thread; it asks the manager for cells (``claim``) and
hands it the answers (``finish``) through the :class:`~clusterfarm.manager.dispatcher.DispatchHost`
interface. :class:`~clusterfarm.manager.worker_heartbeats.WorkerHeartbeats` pings workers that
have not answered for a while, on connections of its own, and has a worker declared lost
when it stays silent (a dead host sends no RST); the lost worker's cells go back to
outstanding and its lanes join again when it comes back.

Every status change goes to the :class:`~clusterfarm.record.state_writer.StateWriter`, which
commits it and only then shows it to the run's display: the answer travels channel →
dispatcher → manager → state writer → display, never back. If the state cannot be written,
dispatch stops at once. The manager never prints: what the cells cannot say (workers joining,
leaving, held back; hosts quarantined) it emits to its :class:`~.events.EventSink`.

Locking: one lock, ``Manager._lock``, guards the schedule, every :class:`WorkerLink` field but
its proxies, and the manager's own counters. The dispatch thread, its helpers and the heartbeats
take it for every read and write of those; nothing that blocks (a Pyro5 call, disk) happens
while it is held, except queueing rows for the state writer, which never blocks.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from clusterfarm.config.settings import RECORD
from clusterfarm.manager.dispatcher import (
    Batch,
    Dispatcher,
    WorkerLink,
)
from clusterfarm.manager.events import (
    EventSink,
    HostQuarantined,
    NoSink,
    WorkerJoined,
    WorkerLeft,
    WorkerNote,
)
from clusterfarm.manager.quarantine import HostQuarantine
from clusterfarm.manager.worker_heartbeats import WorkerHeartbeats
from clusterfarm.record.schedule import Cell, Status, TaskSchedule
from clusterfarm.record.state_writer import EndRow, StateWriter, end_row, start_rows
from clusterfarm.record.trace import AttemptRow, attempt_row
from clusterfarm.wire.access import Access
from clusterfarm.wire.nameserver import WorkerEntry
from clusterfarm.wire.protocol import Answer, ErrorKind, JoinAnswer, RunSpec
from clusterfarm.wire.pyro import configure_pyro, raise_open_files_limit
from clusterfarm.wire.worker_calls import cancel_aside, quarantine_aside

LOG = logging.getLogger("clusterfarm.manager")

# Short tasks go out in batches so that a round trip (manager, daemon, task process and
# back) is not paid per cell: a batch holds about
# BATCH_SECONDS of task time (by the tasks' measured mean). With many workers the manager's
# own rate of calls decides too: batches grow so that all workers together make at most
# MAX_CALL_RATE calls a second. At most MAX_BATCH cells, and never more than a share of what
# is left, so the last cells still spread over the workers. Each cell keeps its time limit.
BATCH_SECONDS = 0.5
MAX_CALL_RATE = 500.0
MAX_BATCH = 64
_COUNT_EVERY = 0.5  # seconds between counts of the usable workers


class LauncherHooks(Protocol):
    """What the manager asks of the launcher that started its workers (a batch system's)."""

    def expecting(self) -> bool:
        """True while workers are queued or starting: no live worker is no reason to give up."""
        ...

    def why_lost(self, worker: str) -> str | None:
        """Why ``worker`` went (e.g. its job ran out of memory), or None when not known."""
        ...


@dataclass(frozen=True)
class RunConfig:
    """How the manager runs: the run's spec for the workers, and its own timings."""

    spec: RunSpec
    access: Access = Access()  # what the manager presents to its workers
    invocation: int | None = None  # the state's row of this ``run`` (cells name it)
    heartbeat: float = 5.0
    quarantine_after: int = 5
    quarantine_for: float = 60.0

    @property
    def call_limit(self) -> float:
        """How long the manager waits for an answer before it gives up on the worker."""
        timeout = self.spec.timeout
        return timeout + max(10.0, 0.1 * timeout)


@dataclass
class RunOutcome:
    """How a manager run ended."""

    ran: int
    completions: int = 0  # cells turned complete (a cell completed twice would count twice)
    interrupted: bool = False
    workers_lost: bool = False
    lost: list[str] = field(default_factory=list)
    problem: str | None = None  # why the run gave up (no worker can run a task, state...)


class Manager:
    """Drives one run: the schedule, the workers, the state writer."""

    def __init__(
        self,
        schedule: TaskSchedule,
        writer: StateWriter,
        config: RunConfig,
        events: EventSink | None = None,
        discover: Callable[[], list[WorkerEntry]] | None = None,
        launcher: LauncherHooks | None = None,
    ) -> None:
        self.schedule = schedule
        self._launcher = launcher
        self.config = config
        self.spec = config.spec
        self.access = config.access
        self.call_limit = config.call_limit
        self.heartbeat = config.heartbeat
        self.events = events or NoSink()
        self._discover = discover
        self._lock = threading.Lock()
        self._stopping = False
        self._problem: str | None = None
        self._finished_at: float | None = None
        self.done = threading.Event()  # the run is over: finished, interrupted or given up
        self._ran: set[tuple[str, int, int]] = set()
        self._completions = 0
        self._calls = 0
        self._links: dict[str, WorkerLink] = {}
        self._dispatcher = Dispatcher(self)
        self._ever_lost: list[str] = []
        self._mean_elapsed: dict[str, float] = {}
        self._usable, self._counted_at = 0, -_COUNT_EVERY  # see _usable_workers
        self._quarantine = HostQuarantine(config.quarantine_after, config.quarantine_for)
        self._writer = writer
        self._ends: list[EndRow] = []  # rows noted by _save, not yet handed to the writer
        self._attempts: list[AttemptRow] = []
        writer.on_failure = self._state_failed

    # -- saving, then showing ---------------------------------------------------------------

    def _save(self, cell: Cell, attempt: AttemptRow | None = None) -> None:
        """Note ``cell``'s new state for the database (with the record of the attempt that
        ended), and the cells its end has failed; :meth:`_flush` hands them to the writer."""
        invocation = self.config.invocation
        self._ends.append(end_row(cell, invocation))
        if attempt is not None and not cell.status.is_final:  # the final one is in cells
            self._attempts.append(attempt)
        failed = self.schedule.failed_by_dependency
        while failed:
            self._ends.append(end_row(failed.pop(), invocation))

    def _flush(self) -> None:
        """Hand the noted changes to the state writer, in one item (called under the lock)."""
        if self._ends:
            self._writer.put_ends(self._ends, self._attempts)
            self._ends, self._attempts = [], []

    def _state_failed(self, problem: str) -> None:
        """The state cannot be written: stop at once, so nothing runs that is not saved."""
        LOG.error("%s: stopping the run", problem)
        self._give_up(problem, cancel=True)

    @property
    def ran(self) -> set[tuple[str, int, int]]:
        """The cells this manager has had run (handed back unrun ones are not counted)."""
        return self._ran

    @property
    def calls(self) -> int:
        """Batches sent so far (for the benchmarks)."""
        return self._calls

    # -- the run ----------------------------------------------------------------------------

    def run(
        self, workers: list[WorkerEntry], tick: Callable[[], None] = lambda: None
    ) -> RunOutcome:
        """Dispatch until every cell is final, the workers are gone, or ``interrupt``.

        ``tick`` is called from this (the main) thread a few times a second.
        """
        configure_pyro()
        raise_open_files_limit()  # two connections per worker, and a ping connection
        LOG.info(
            "run %s: %d cells to do, %d workers known",
            self.spec.run_id,
            self.schedule.counts[Status.OUTSTANDING],
            len(workers),
        )
        heartbeats = WorkerHeartbeats(self, self.heartbeat, self.spec.lost_after, self._discover)
        began, cpu = time.monotonic(), os.times()
        try:
            self._dispatcher.start()
            self.offer(*workers)
            heartbeats.start()
            since: float | None = None
            checked = 0.0
            while not self.done.wait(0.1):
                tick()
                if time.monotonic() - checked >= 1.0:  # it takes the lock: not too often
                    since, checked = self._check_workers(since), time.monotonic()
        except KeyboardInterrupt:
            self.interrupt()
            raise
        finally:
            self.done.set()
            LOG.info("dispatch over; winding down")
            heartbeats.join(5)
            self._wind_down()
        workers_lost = not self._stopping and not self.schedule.is_finished
        used = os.times()
        LOG.info(
            "run ended: %d cells sent in %d calls, %d completions; %.3f s, manager CPU %.3f s "
            "(user %.3f, system %.3f)",
            len(self._ran),
            self._calls,
            self._completions,
            (self._finished_at or time.monotonic()) - began,
            used.user + used.system - cpu.user - cpu.system,
            used.user - cpu.user,
            used.system - cpu.system,
        )
        return RunOutcome(
            len(self._ran),
            self._completions,
            self._stopping and self._problem is None,
            workers_lost,
            list(self._ever_lost),
            self._problem,
        )

    def _check_workers(self, since: float | None) -> float | None:
        """Give up when, for ``lost_after`` seconds, no worker could run what is left."""
        with self._lock:
            missing = self._tasks_nobody_runs()
            if not missing:
                return None
            if self._launcher is not None and self._launcher.expecting():
                return None  # workers are queued or starting (a batch system): wait for them
            now = time.monotonic()
            if since is None:
                return now
            if now - since <= self.spec.lost_after:
                return since
        self._give_up(self._nobody_message(missing))
        return since

    def _tasks_nobody_runs(self) -> list[str]:
        left = self.schedule.outstanding_tasks()
        usable = [link for link in self._links.values() if link.usable]
        return [task for task in left if not any(task in link.tasks for link in usable)]

    def _nobody_message(self, missing: list[str]) -> str:
        with self._lock:
            lacking = [
                f"{link.name}: {'; '.join(link.lacks[t] for t in missing if t in link.lacks)}"
                for link in self._links.values()
                if any(t in link.lacks for t in missing)
            ]
            if not lacking and not any(link.usable for link in self._links.values()):
                gone = ", ".join(self._ever_lost) or "none joined"
                return f"no live worker for {self.spec.lost_after:g} s (lost: {gone})"
        names = ", ".join(missing)
        if len(lacking) > 3:  # one line, even with a thousand workers
            lacking = [*lacking[:3], f"and {len(lacking) - 3} more"]
        return f"no worker can run {names}" + (f" ({'; '.join(lacking)})" if lacking else "")

    def _give_up(self, problem: str | None, cancel: bool = False) -> None:
        """Stop dispatching, for ``problem`` (the first one is kept; None: interrupted); with
        ``cancel``, ask the busy workers to stop their cells."""
        with self._lock:
            if self._problem is None:
                self._problem = problem
            self._stopping = True
            busy = [link.entry for link in self._links.values() if link.inflight]
            self._finish_run()
        if cancel:
            for entry in busy:
                threading.Thread(
                    target=cancel_aside, args=(entry, self.access, self.spec.run_id), daemon=True
                ).start()

    def _finish_run(self) -> None:
        if not self.done.is_set():
            self._finished_at = time.monotonic()
        self.done.set()
        self._dispatcher.wake()

    def interrupt(self) -> None:
        """Stop dispatching and cancel the running cells (they become outstanding again)."""
        self._give_up(None, cancel=True)

    def _wind_down(self) -> None:
        now = time.time()
        self._dispatcher.join(15)
        with self._lock:
            for link in self._links.values():
                for batch in link.inflight:
                    for cell, token in zip(batch.cells, batch.tokens, strict=True):
                        if self._is_current(link, cell, token):  # its answer never came
                            self.schedule.requeue(cell)
                            gone = "the run ended before its answer came"
                            self._save(cell, attempt_row(cell, token, "", "interrupted", gone, now))
                link.inflight = []
            self._flush()

    # -- workers joining and leaving --------------------------------------------------------

    def offer(self, *entries: WorkerEntry) -> None:
        """Use ``entries``: the workers at the start, ones that appeared later, or restarted."""
        new = []
        with self._lock:
            for entry in entries:
                link = self._links.get(entry.name)
                if link is not None:
                    if link.lost and link.entry.uri != entry.uri:
                        link.entry = entry  # restarted elsewhere: its lanes join there
                elif not self.done.is_set():
                    link = self._links[entry.name] = WorkerLink(entry)
                    new.append(link)
        self._dispatcher.add(new)

    def links(self) -> list[WorkerLink]:
        """Every worker this run knows (for the heartbeats)."""
        with self._lock:
            return list(self._links.values())

    def seen(self, link: WorkerLink) -> None:
        """Note a sign of life from ``link``'s worker."""
        link.last_seen = time.monotonic()

    def declare_lost(self, link: WorkerLink, reason: str) -> None:
        """The heartbeats' verdict: requeue the worker's cells and cut its connections."""
        self.lose(link, reason)
        link.cut()

    def joined(self, link: WorkerLink, answer: JoinAnswer) -> bool:
        """``link``'s worker took the run; True if it may take cells."""
        if answer.error is not None:
            self.set_aside(link, f"refused the run: {answer.error}")
            return False
        lacks = answer.missing(self.spec)
        can_run = frozenset(self.spec.tasks) - frozenset(lacks)
        with self._lock:
            first = link.lost
            link.tasks, link.lacks, link.note = can_run, lacks, None
            link.lost, link.last_seen = False, time.monotonic()
        if first:
            LOG.info(
                "worker %s joined (%s, clusterfarm %s)", link.name, link.entry.uri, answer.version
            )
            self.events.event(WorkerJoined(link.name, link.host))
            if lacks:
                note = f"cannot run {'; '.join(lacks.values())}"
                LOG.warning("worker %s %s: it takes no such cells", link.name, note)
                self.events.event(WorkerNote(link.name, note))
        if not can_run:
            self.set_aside(link, f"cannot run this run's tasks ({'; '.join(lacks.values())})")
            return False
        return True

    def leased(self, link: WorkerLink, holder: str) -> None:
        """``link``'s worker works for another run: wait for it, show whose it is."""
        note = f"busy with {holder}"
        with self._lock:
            changed = link.note != note
            link.note = note
        if changed:
            LOG.info("worker %s is %s; waiting for it", link.name, note)
            self.events.event(WorkerNote(link.name, note))

    def set_aside(self, link: WorkerLink, reason: str) -> None:
        """Use ``link``'s worker no more in this run; its cells go back, attempts not used."""
        with self._lock:
            if link.aside is not None:
                return
            link.aside = reason
            self._hand_back(link)
        self._dispatcher.wake()  # its cells came free
        LOG.warning("worker %s set aside: %s", link.name, reason)
        link.cut()
        self.events.event(WorkerLeft(link.name, f"set aside: {reason}"))

    def _hand_back(self, link: WorkerLink) -> None:
        now = time.time()
        for batch in link.inflight:
            for cell, token in zip(batch.cells, batch.tokens, strict=True):
                if self._is_current(link, cell, token):
                    self.schedule.requeue(cell)
                    why = f"worker {link.name} set aside: {link.aside}"
                    self._save(cell, attempt_row(cell, token, "", "set_aside", why, now))
        link.inflight = []
        self._flush()

    # -- cells ------------------------------------------------------------------------------

    def work_mark(self) -> int:
        """Grows whenever cells come free (retries, released dependents, handed back)."""
        return self.schedule.queued

    def backlog(self) -> bool:
        """More cells wait than there are workers: each worker gets its next batch queued
        behind the one it runs. (The dispatcher asks without the lock: a hint.)"""
        return self.schedule.counts[Status.OUTSTANDING] > len(self._links)

    def claim(self, link: WorkerLink) -> Batch | None:
        """Take the next cells for ``link`` (a batch when tasks are short); None when there
        is nothing for it now (the dispatcher asks again when cells come free)."""
        schedule = self.schedule
        with self._lock:
            now = time.time()
            if self.done.is_set() or not link.usable or self._quarantine.is_resting(link.host, now):
                return None
            # a second batch waits behind the first on its worker: only worth it while
            # there is work for every worker, else an idle one should take the cells
            ahead = bool(link.inflight) and not self.backlog()
            cell = None if ahead else schedule.take_preferred(link.name, link.host, link.tasks)
            if cell is None:
                if schedule.is_finished:
                    self._finish_run()
                return None
            task, cells = cell.task, [cell]
            size = self._batch_size(task)
            while len(cells) < size and (more := schedule.get_next_outstanding(task)):
                cells.append(more)
            name, host = link.name, link.host
            for each in cells:
                schedule.start(each, name, host, now)
            self._writer.put_start(start_rows(cells))
            seconds = len(cells) * self._mean_elapsed.get(task, 0.0)
            batch = Batch(task, cells, [c.attempts for c in cells], seconds)
            link.inflight.append(batch)
            self._calls += 1
            return batch

    def _batch_size(self, task: str) -> int:
        mean = self._mean_elapsed.get(task)
        if mean is None:
            return 1  # no measurement yet: one at a time
        workers = self._usable_workers()
        by_length = BATCH_SECONDS / max(mean, 1e-6)
        by_rate = workers / (max(mean, 1e-6) * MAX_CALL_RATE)
        share = self.schedule.counts[Status.OUTSTANDING] // (2 * max(1, workers))
        return max(1, min(MAX_BATCH, share, int(max(by_length, by_rate))))

    def _usable_workers(self) -> int:
        """How many workers take cells, counted at most every ``_COUNT_EVERY`` seconds
        (counting is a pass over every worker, and this is asked at every call)."""
        now = time.monotonic()
        if now - self._counted_at >= _COUNT_EVERY:
            self._usable = sum(1 for link in self._links.values() if link.usable)
            self._counted_at = now
        return self._usable

    def _is_current(self, link: WorkerLink, cell: Cell, token: int) -> bool:
        return cell.attempts == token and cell.worker == link.name and cell.status is Status.WORKING

    def finish(self, link: WorkerLink, batch: Batch, answers: list[Answer]) -> ErrorKind | None:
        """Record ``batch``'s answers; return the hand-back kind, if the worker handed back."""
        now = time.time()
        handed_back: ErrorKind | None = None
        with self._lock:
            if batch in link.inflight:
                link.inflight.remove(batch)
            link.last_seen = time.monotonic()
            for cell, token, answer in zip(batch.cells, batch.tokens, answers, strict=True):
                if not self._is_current(link, cell, token):
                    # the worker was declared lost and its cell given to another: a late
                    # answer must not complete the cell twice or overwrite newer news
                    LOG.warning("late answer from %s for %s ignored", link.name, cell)
                    continue
                kind = self._apply(link, cell, answer, now)
                if kind is not None and not kind.is_attempt:
                    handed_back = kind
                else:
                    self._ran.add(cell.key)
                # a cell's last attempt lives in its cells row: record only the earlier ones
                earlier = RECORD and not cell.status.is_final
                self._save(cell, _record(cell, token, answer, now) if earlier else None)
            self._flush()
            if handed_back is not None:
                self._note_hand_back(link, batch.task, handed_back, answers)
            if self.schedule.is_finished:
                self._finish_run()
        return handed_back

    def _apply(self, link: WorkerLink, cell: Cell, answer: Answer, now: float) -> ErrorKind | None:
        cell.usage = answer.usage
        if answer.complete:
            self.schedule.complete(
                cell,
                answer.output,
                answer.summary,
                answer.elapsed,
                now,
                answer.inputs,
                answer.output_sum,
            )
            self._completions += 1
            mean = self._mean_elapsed.get(cell.task, answer.elapsed)
            self._mean_elapsed[cell.task] = 0.8 * mean + 0.2 * answer.elapsed
            self._quarantine.record(link.host, True, None, now)
            return None
        kind = answer.kind or ErrorKind.TASK
        if not kind.is_attempt:
            self.schedule.requeue(cell)
            return kind
        final = Status.TIMEOUT if kind is ErrorKind.TIMEOUT else Status.FAILURE
        self.schedule.fail(cell, final, answer.error or "unknown error", kind, now, answer.elapsed)
        self._host_failed(link.host, kind, now)
        return kind

    def _note_hand_back(
        self, link: WorkerLink, task: str, kind: ErrorKind, answers: list[Answer]
    ) -> None:
        error = next((a.error for a in answers if a.kind is kind), "") or kind.value
        if kind is ErrorKind.UNSUPPORTED:  # it said at join it could: believe it now
            link.tasks = link.tasks - {task}
            link.lacks = {**link.lacks, task: error}
            LOG.warning("worker %s: %s; it takes no more %s cells", link.name, error, task)
            self.events.event(WorkerNote(link.name, error))
        if kind in (ErrorKind.RESOURCE, ErrorKind.LEASED, ErrorKind.DRAINING):
            if link.note != error:  # said once, not at every refusal
                link.note = error
                LOG.warning("worker %s takes no cells for now: %s", link.name, error)
                self.events.event(WorkerNote(link.name, error))
        if kind is ErrorKind.LEASED:
            link.lost = True  # it joins again when the other run lets it go

    def _host_failed(self, host: str, kind: ErrorKind, now: float) -> None:
        others = any(
            link.usable and link.host != host and not self._quarantine.is_resting(link.host, now)
            for link in self._links.values()
        )
        if self._quarantine.record(host, False, kind, now, may_rest=others):
            LOG.warning("host %s quarantined for %g s", host, self.config.quarantine_for)
            self.events.event(
                HostQuarantined(host, self.config.quarantine_for, self.config.quarantine_after)
            )
            for link in self._links.values():
                if link.host == host and link.usable:
                    threading.Thread(
                        target=quarantine_aside,
                        args=(link.entry, self.access, self.config.quarantine_for),
                        daemon=True,
                    ).start()

    def lose(self, link: WorkerLink, reason: str) -> None:
        """Mark ``link`` lost and put its cells back (the running one counts as an attempt)."""
        if self._launcher is not None and not link.lost:  # before the lock: it may take seconds
            why = self._launcher.why_lost(link.name)
            reason = f"{reason}; {why}" if why else reason
        with self._lock:
            if link.lost:
                return  # the heartbeats and a lane may both notice
            link.lost = True
            batches, link.inflight = link.inflight, []
            now = time.time()
            first = True
            error = f"worker {link.name} lost: {reason}"
            for batch in batches:
                for cell, token in zip(batch.cells, batch.tokens, strict=True):
                    if not self._is_current(link, cell, token):
                        continue
                    if self._stopping or not first:
                        self.schedule.requeue(cell)  # never started, or we are stopping anyway
                    else:
                        # losing the worker counts as an attempt: a task that kills every
                        # worker it touches ends as F instead of looping
                        self.schedule.fail(cell, Status.FAILURE, error, ErrorKind.LOST, now)
                        self._ran.add(cell.key)
                    first = False
                    lost = attempt_row(cell, token, "failure", ErrorKind.LOST, error, now)
                    self._save(cell, lost)
            self._flush()
            if batches:
                self._host_failed(link.host, ErrorKind.LOST, now)
            if self.schedule.is_finished:
                self._finish_run()
        self._dispatcher.wake()  # its cells came free
        LOG.warning("worker %s lost: %s", link.name, reason)
        self.left(link, reason)

    def left(self, link: WorkerLink, reason: str) -> None:
        with self._lock:
            link.lost = True
            if not self._stopping and link.name not in self._ever_lost:
                self._ever_lost.append(link.name)
        self.events.event(WorkerLeft(link.name, reason))


_WORDS = {"+": "complete", "F": "failure", "T": "timeout"}


def _record(cell: Cell, attempt: int, answer: Answer, now: float) -> AttemptRow:
    """The attempts row of a try that a worker answered."""
    kind = answer.kind.value if answer.kind else None
    word = _WORDS[answer.status]
    return attempt_row(cell, attempt, word, kind, answer.error, now, answer.elapsed, answer.usage)
