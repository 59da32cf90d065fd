"""The manager: farm the schedule's cells out to the workers and keep the state true.

One dispatcher thread per worker (:mod:`.dispatcher`) owns that worker's proxy and keeps one call
outstanding on it. A :class:`Monitor` pings busy workers on connections of its own and
declares a worker lost when it stays silent (a dead host sends no RST); the lost worker's
cells go back to outstanding and its dispatcher waits for it to come back. Every status change
goes to the :class:`StateWriter` (and so to SQLite) before the view hears of it. The manager
never prints: it emits events to ``on_event``.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from Pyro5.api import Proxy

from clusterfarm.breaker import HostBreaker
from clusterfarm.dispatcher import Dispatcher, WorkerLink, cancel_aside, quarantine_aside
from clusterfarm.events import (
    CellChange,
    CellsChanged,
    Event,
    HostQuarantined,
    WorkerJoined,
    WorkerLeft,
)
from clusterfarm.ledger import Ledger
from clusterfarm.monitor import Monitor
from clusterfarm.nameserver import WorkerEntry
from clusterfarm.schedule import Status, Task, TaskSchedule
from clusterfarm.state import CellRow, StateWriter, cell_row
from clusterfarm.trace import AttemptRow, attempt_row
from clusterfarm.transport import configure_pyro

LOG = logging.getLogger("clusterfarm.manager")

# answers that say nothing about the task itself: run the cell again, attempt not counted
_NOT_AN_ATTEMPT = frozenset(
    {"busy", "cancelled", "not_started", "abandoned", "stopping", "shutdown"}
)

# Short tasks go out in batches so that a round trip (about 1 ms from an idle machine:
# manager, daemon, task process and back) is not paid per task: a batch holds about
# BATCH_SECONDS of task time (by the tasks' measured mean), so that trip is under 1% of it;
# at most MAX_BATCH cells, and never more than a share of what is left, so the last cells
# still spread over the workers. Each cell keeps its own time limit inside a batch.
BATCH_SECONDS = 0.2
MAX_BATCH = 64


@dataclass(frozen=True)
class RunConfig:
    """What the manager and every worker need to know about this run."""

    data_dir: str
    results_dir: str
    timeout: float
    params: dict[str, dict[str, Any]]
    heartbeat: float = 5.0
    lost_after: float = 30.0
    quarantine_after: int = 5
    quarantine_for: float = 60.0
    run_id: str | None = None  # sent to the workers; result files carry it (clusterfarm.trace)

    @property
    def guard(self) -> float:
        """How long the manager waits for an answer before it gives up on the worker."""
        return self.timeout + max(10.0, 0.1 * self.timeout)


@dataclass
class RunOutcome:
    """How a manager run ended."""

    ran: int
    completions: int = 0  # cells turned complete (a cell completed twice would count twice)
    interrupted: bool = False
    workers_lost: bool = False
    lost: list[str] = field(default_factory=list)


class Manager:
    """Drives one run: the schedule, the workers, the state writer."""

    def __init__(
        self,
        schedule: TaskSchedule,
        writer_db: Any,
        ledger: Ledger,
        config: RunConfig,
        on_event: Callable[[Event], None] = lambda event: None,
        discover: Callable[[], list[WorkerEntry]] | None = None,
    ) -> None:
        self.schedule = schedule
        self.ledger = ledger
        self.config = config
        self.on_event = on_event
        self._discover = discover
        self._cond = threading.Condition()
        self._waiting = 0
        self._stopping = False
        self._giving_up = False
        self.done = threading.Event()  # the run is over: finished, interrupted or given up
        self._ran: set[tuple[str, int, int]] = set()
        self._completions = 0
        self._links: dict[str, WorkerLink] = {}
        self._threads: list[threading.Thread] = []
        self._ever_lost: list[str] = []
        self._mean_elapsed: dict[str, float] = {}
        self._breaker = HostBreaker(config.quarantine_after, config.quarantine_for)
        self._writer = StateWriter(writer_db, self._committed)

    def _save(self, cell: Task, attempt: AttemptRow | None = None) -> None:
        """Queue ``cell``'s new state for the database, with the cells its end has failed."""
        self._writer.put(cell_row(cell, self.ledger), attempt)
        failed = self.schedule.failed_by_dependency
        while failed:
            self._writer.put(cell_row(failed.pop(), self.ledger))

    def _committed(self, rows: list[CellRow]) -> None:
        # row: see state.cell_row (status first, then attempts, worker...; the key last)
        changes = [CellChange(r[-3], r[-2], r[-1], r[0], r[2], r[9]) for r in rows]
        self.on_event(CellsChanged(changes))

    @property
    def ran(self) -> set[tuple[str, int, int]]:
        """The cells this manager has sent to a worker."""
        return self._ran

    # -- the run ----------------------------------------------------------------------------

    def run(
        self, workers: list[WorkerEntry], tick: Callable[[], None] = lambda: None
    ) -> RunOutcome:
        """Dispatch until every cell is final, the workers are gone, or ``interrupt``.

        ``tick`` is called from this (the main) thread a few times a second.
        """
        configure_pyro()
        monitor = Monitor(self, self.config.heartbeat, self.config.lost_after, self._discover)
        try:
            for entry in workers:
                self.offer(entry)
            monitor.start()
            no_live_since: float | None = None
            while not self.done.wait(0.1):
                tick()
                no_live_since = self._check_live(no_live_since)
        except KeyboardInterrupt:
            self.interrupt()
            raise
        finally:
            self.done.set()
            monitor.join(5)
            self._wind_down()
            self._writer.close()
        workers_lost = not self._stopping and not self.schedule.is_finished
        LOG.info("run ended: %d cells sent, %d completions", len(self._ran), self._completions)
        return RunOutcome(
            len(self._ran), self._completions, self._stopping, workers_lost, list(self._ever_lost)
        )

    def _check_live(self, no_live_since: float | None) -> float | None:
        """Give up when no worker has been live for ``lost_after`` seconds."""
        with self._cond:
            if any(not link.lost for link in self._links.values()):
                return None
            now = time.monotonic()
            if no_live_since is None:
                return now
            if now - no_live_since > self.config.lost_after:
                LOG.error("no live worker for %.0f s: giving up", self.config.lost_after)
                self._giving_up = True
                self._finish_run()
            return no_live_since

    def _finish_run(self) -> None:
        self.done.set()
        self._cond.notify_all()

    def interrupt(self) -> None:
        """Stop dispatching and cancel the running tasks (they become outstanding again)."""
        with self._cond:
            self._stopping = True
            busy = [link.entry for link in self._links.values() if link.cells]
            self._finish_run()
        for entry in busy:
            threading.Thread(target=cancel_aside, args=(entry,), daemon=True).start()

    def _wind_down(self) -> None:
        deadline = time.monotonic() + 10
        for thread in list(self._threads):
            thread.join(max(0.0, deadline - time.monotonic()))
        with self._cond:
            for link in self._links.values():
                for cell, token in zip(link.cells, link.tokens, strict=False):
                    if cell.status is Status.WORKING:  # its answer never came: not done
                        self.schedule.requeue(cell)
                        gone = {"error_kind": "interrupted", "error": "run ended first"}
                        self._save(cell, attempt_row(cell, token, gone, time.time()))
                link.cells = []

    # -- workers joining and leaving --------------------------------------------------------

    def offer(self, entry: WorkerEntry) -> None:
        """Use ``entry``: a worker at the start, one that appeared later, or one restarted."""
        with self._cond:
            link = self._links.get(entry.name)
            if link is not None:
                if link.lost and link.entry.uri != entry.uri:
                    link.entry = entry  # restarted elsewhere: its dispatcher reconnects there
                return
            if self.done.is_set():
                return
            link = WorkerLink(entry)
            self._links[entry.name] = link
            thread = threading.Thread(
                target=Dispatcher(self, link).serve, name=f"dispatch-{entry.name}", daemon=True
            )
            self._threads.append(thread)
        thread.start()

    def busy_links(self) -> list[WorkerLink]:
        """The live workers running something now (for the monitor)."""
        with self._cond:
            return [link for link in self._links.values() if link.cells and not link.lost]

    def seen(self, link: WorkerLink) -> None:
        """Note a sign of life from ``link``'s worker."""
        link.last_seen = time.monotonic()

    def declare_lost(self, link: WorkerLink, reason: str) -> None:
        """The monitor's verdict: requeue the worker's cells and cut its connection."""
        self.lose(link, reason)
        proxy = link.proxy
        connection = getattr(proxy, "_pyroConnection", None) if proxy else None
        if connection is not None:
            # unblocks the dispatcher's call, which would otherwise wait for the guard time
            with contextlib.suppress(OSError, AttributeError):
                connection.sock.shutdown(socket.SHUT_RDWR)

    # -- one thread per worker --------------------------------------------------------------

    def joined(self, link: WorkerLink, proxy: Proxy) -> None:
        """``link``'s worker answered and took the run settings: it may take cells."""
        with self._cond:
            link.proxy, link.lost, link.last_seen = proxy, False, time.monotonic()
            self._cond.notify_all()
        LOG.info("worker %s joined (%s)", link.name, link.entry.uri)
        self.on_event(WorkerJoined(link.name, link.host))

    def run_settings(self) -> dict[str, Any]:
        config = self.config
        return {
            "data_dir": config.data_dir,
            "results_dir": config.results_dir,
            "timeout": config.timeout,
            "abandon_after": config.lost_after,
            "members": self.schedule.members,
            "run_id": config.run_id,
        }

    def claim(self, link: WorkerLink) -> list[Task]:
        """Take the next cells for ``link`` (a batch when tasks are short); [] when done."""
        schedule = self.schedule
        with self._cond:
            while not self.done.is_set() and not link.lost:
                now = time.time()
                if self._breaker.is_resting(link.host, now):
                    self._cond.wait(max(0.1, min(self._rest_left(link.host, now), 1.0)))
                    continue
                cell = schedule.take_preferred(link.name, link.host)
                if cell is not None:
                    cells = [cell]
                    size = self._batch_size(cell.task)
                    while len(cells) < size and (more := schedule.get_next_outstanding(cell.task)):
                        cells.append(more)
                    for cell in cells:
                        schedule.start(cell, link.name, link.host, now)
                        self._ran.add(cell.key)
                        self._save(cell)
                    link.cells, link.tokens = cells, [c.attempts for c in cells]
                    link.last_seen = time.monotonic()
                    return cells
                if schedule.counts[Status.WORKING] == 0:
                    self._finish_run()  # nothing outstanding and nothing that could come back
                    return []
                self._waiting += 1
                self._cond.wait()
                self._waiting -= 1
            return []

    def _rest_left(self, host: str, now: float) -> float:
        return self._breaker.resting(now).get(host, now) - now

    def _batch_size(self, task: str) -> int:
        mean = self._mean_elapsed.get(task)
        if mean is None:
            return 1  # no measurement yet: one at a time
        share = self.schedule.counts[Status.OUTSTANDING] // (2 * max(1, len(self._links)))
        return max(1, min(MAX_BATCH, share, int(BATCH_SECONDS / max(mean, 1e-6))))

    def finish(self, link: WorkerLink, cells: list[Task], answers: list[dict[str, Any]]) -> None:
        now = time.time()
        schedule = self.schedule
        with self._cond:
            tokens = link.tokens
            link.cells, link.tokens, link.last_seen = [], [], time.monotonic()
            for cell, token, answer in zip(cells, tokens, answers, strict=True):
                if not (
                    cell.status is Status.WORKING
                    and cell.worker == link.name
                    and cell.attempts == token
                ):
                    # the worker was declared lost and its cell given to another: a late
                    # answer must not complete the cell twice or overwrite newer news
                    LOG.warning("late answer from %s for %s ignored", link.name, cell)
                    continue
                self._apply(link, cell, answer, now)
                self._save(cell, attempt_row(cell, token, answer, now))
            if schedule.is_finished:
                self._finish_run()
            elif self._waiting:
                self._cond.notify_all()

    def _apply(self, link: WorkerLink, cell: Task, answer: dict[str, Any], now: float) -> None:
        status, kind = answer.get("status"), answer.get("error_kind")
        elapsed = float(answer.get("elapsed") or 0.0)
        if status == "complete":
            self.schedule.complete(
                cell,
                answer.get("output"),
                answer.get("summary"),
                elapsed,
                now,
                answer.get("inputs"),
                answer.get("output_sum"),
            )
            self._completions += 1
            mean = self._mean_elapsed.get(cell.task, elapsed)
            self._mean_elapsed[cell.task] = 0.8 * mean + 0.2 * elapsed
            self._breaker.record(link.host, True, None, now)
        elif kind in _NOT_AN_ATTEMPT:
            self.schedule.requeue(cell)
        else:
            final = Status.TIMEOUT if status == "timeout" else Status.FAILURE
            error = str(answer.get("error") or "unknown error")
            self.schedule.fail(cell, final, error, str(kind or "task"), now, elapsed)
            self._host_failed(link.host, str(kind or "task"), now)

    def _host_failed(self, host: str, kind: str, now: float) -> None:
        others = any(
            not other.lost and other.host != host and not self._breaker.is_resting(other.host, now)
            for other in self._links.values()
        )
        if self._breaker.record(host, False, kind, now, may_rest=others):
            LOG.warning("host %s quarantined for %g s", host, self.config.quarantine_for)
            self.on_event(
                HostQuarantined(host, self.config.quarantine_for, self.config.quarantine_after)
            )
            for link in self._links.values():
                if link.host == host and not link.lost:
                    threading.Thread(
                        target=quarantine_aside,
                        args=(link.entry, self.config.quarantine_for),
                        daemon=True,
                    ).start()

    def lose(self, link: WorkerLink, reason: str) -> None:
        """Mark ``link`` lost and put its cells back (the running one counts as an attempt)."""
        with self._cond:
            if link.lost:
                return  # the monitor and the dispatcher may both notice
            link.lost = True
            cells, tokens, link.cells, link.tokens = link.cells, link.tokens, [], []
            now = time.time()
            error = f"worker {link.name} lost: {reason}"
            lost = {"status": "failure", "error_kind": "lost", "error": error}
            for i, cell in enumerate(cells):
                if cell.status is not Status.WORKING or cell.worker != link.name:
                    continue
                if self._stopping or i > 0:
                    self.schedule.requeue(cell)  # never started, or we are stopping anyway
                else:
                    # losing the worker counts as an attempt: a task that kills every worker
                    # it touches ends as F instead of looping
                    self.schedule.fail(cell, Status.FAILURE, error, "lost", now)
                self._save(cell, attempt_row(cell, tokens[i], lost, now))
            if cells:
                self._host_failed(link.host, "lost", now)
            if self.schedule.is_finished:
                self._finish_run()
            self._cond.notify_all()
        LOG.warning("worker %s lost: %s", link.name, reason)
        self.left(link, reason)

    def left(self, link: WorkerLink, reason: str) -> None:
        with self._cond:
            link.lost = True
            if not self._stopping and link.name not in self._ever_lost:
                self._ever_lost.append(link.name)
        self.on_event(WorkerLeft(link.name, reason))
