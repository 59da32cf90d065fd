"""The manager: farm the schedule's cells out to the workers and keep the state true.

One thread per worker owns that worker's proxy and keeps exactly one call outstanding on it.
Every status change goes to the :class:`StateWriter` (and so to SQLite) before the view hears
of it. The manager never prints: it emits events to ``on_event``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import Pyro5.errors
from Pyro5.api import Proxy

from clusterfarm.nameserver import WorkerEntry
from clusterfarm.schedule import Status, Task, TaskSchedule
from clusterfarm.state import CellRow, Ledger, StateWriter, cell_row
from clusterfarm.transport import CALL_TIMEOUT, configure_pyro

LOG = logging.getLogger("clusterfarm.manager")

# answers that say nothing about the task itself: run the cell again, attempt not counted
_NOT_AN_ATTEMPT = frozenset({"busy", "cancelled", "not_started"})

# Short tasks go out in batches so that a round trip is not paid per task: a batch holds
# about BATCH_SECONDS of task time (by the tasks' measured mean), at most MAX_BATCH cells,
# and never more than its share of what is left, so the last cells still spread out.
BATCH_SECONDS = 0.02
MAX_BATCH = 64


@dataclass(frozen=True)
class RunConfig:
    """What every worker needs to know about this run."""

    data_dir: str
    results_dir: str
    timeout: float
    params: dict[str, dict[str, Any]]
    scratch_dir: str | None = None

    @property
    def guard(self) -> float:
        """How long the manager waits for an answer before it gives up on the worker."""
        return self.timeout + max(10.0, 0.1 * self.timeout)


# -- events -----------------------------------------------------------------------------------

CellChange = tuple[str, int, int, str]  # task, year, member, status character


@dataclass(frozen=True)
class CellsChanged:
    """Cells whose new status is now in the state database."""

    changes: list[CellChange]


@dataclass(frozen=True)
class WorkerJoined:
    name: str
    host: str


@dataclass(frozen=True)
class WorkerLeft:
    name: str
    reason: str


Event = CellsChanged | WorkerJoined | WorkerLeft


@dataclass
class RunOutcome:
    """How a manager run ended."""

    ran: int
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
    ) -> None:
        self.schedule = schedule
        self.ledger = ledger
        self.config = config
        self.on_event = on_event
        self._cond = threading.Condition()
        self._waiting = 0
        self._stopping = False
        self._ran: set[tuple[str, int, int]] = set()
        self._busy: dict[str, WorkerEntry] = {}
        self._lost: list[str] = []
        self._active = 0
        self._mean_elapsed: dict[str, float] = {}
        self._all_left = threading.Event()
        self._writer = StateWriter(writer_db, self._committed)

    def _committed(self, rows: list[CellRow]) -> None:
        self.on_event(CellsChanged([(row[-3], row[-2], row[-1], row[0]) for row in rows]))

    # -- the run ----------------------------------------------------------------------------

    @property
    def ran(self) -> set[tuple[str, int, int]]:
        """The cells this manager has sent to a worker."""
        return self._ran

    def run(
        self, workers: list[WorkerEntry], tick: Callable[[], None] = lambda: None
    ) -> RunOutcome:
        """Dispatch until every cell is final, the workers are gone, or ``interrupt``.

        ``tick`` is called from this (the main) thread a few times a second.
        """
        configure_pyro()
        threads = [
            threading.Thread(
                target=self._serve_worker, args=(w,), name=f"dispatch-{w.name}", daemon=True
            )
            for w in workers
        ]
        self._active = len(threads)
        if not threads:
            self._all_left.set()
        try:
            for thread in threads:
                thread.start()
            while not self._all_left.wait(0.1):
                tick()
        except KeyboardInterrupt:
            self.interrupt()
            raise
        finally:
            self._requeue_unanswered(threads)
            self._writer.close()
        workers_lost = not self._stopping and not self.schedule.is_finished
        return RunOutcome(len(self._ran), self._stopping, workers_lost, list(self._lost))

    def interrupt(self) -> None:
        """Stop dispatching and cancel the running tasks (they become outstanding again)."""
        with self._cond:
            self._stopping = True
            busy = list(self._busy.values())
            self._cond.notify_all()
        for entry in busy:
            threading.Thread(target=_cancel, args=(entry,), daemon=True).start()

    def _requeue_unanswered(self, threads: list[threading.Thread]) -> None:
        deadline = time.monotonic() + 10
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        with self._cond:
            for cell in self.schedule:
                if cell.status is Status.WORKING:  # its answer never came: not done
                    self.schedule.requeue(cell)
                    self._writer.put(cell_row(cell, self.ledger))

    # -- one thread per worker --------------------------------------------------------------

    def _serve_worker(self, entry: WorkerEntry) -> None:
        try:
            self._dispatch(entry)
        except Exception:  # a bug here must not hang the run: log it, let the others go on
            LOG.exception("dispatcher of %s failed", entry.name)
            self._leave(entry, "dispatcher error (see manager.log)")
        finally:
            with self._cond:
                self._active -= 1
                if self._active == 0:
                    self._all_left.set()

    def _dispatch(self, entry: WorkerEntry) -> None:
        proxy = Proxy(entry.uri)
        proxy._pyroTimeout = CALL_TIMEOUT
        try:
            answer = proxy.configure(self._run_settings())
            if not answer.get("ok"):
                self._leave(entry, f"refused the run settings: {answer.get('error')}")
                return
        except Pyro5.errors.CommunicationError as exc:
            self._leave(entry, f"unreachable ({exc})")
            return
        proxy._pyroTimeout = self.config.guard
        self.on_event(WorkerJoined(entry.name, entry.host))
        params = self.config.params
        guard = self.config.guard
        with proxy:
            while cells := self._claim(entry):
                task = cells[0].task
                proxy._pyroTimeout = guard + self.config.timeout * (len(cells) - 1)
                try:
                    if len(cells) == 1:
                        cell = cells[0]
                        answers = [proxy.do_work(cell.year, cell.member, task, params[task])]
                    else:
                        answers = proxy.do_batch(
                            task, params[task], [[c.year, c.member] for c in cells]
                        )
                except Pyro5.errors.TimeoutError:
                    _cancel(entry)
                    timed_out = {
                        "status": "timeout",
                        "error_kind": "timeout",
                        "error": f"no answer from {entry.name} within {proxy._pyroTimeout:g} s",
                    }
                    answers = [timed_out] * len(cells)
                except Pyro5.errors.CommunicationError as exc:
                    self._lose(entry, cells, str(exc))
                    return
                self._finish(entry, cells, answers)

    def _run_settings(self) -> dict[str, Any]:
        config = self.config
        return {
            "data_dir": config.data_dir,
            "results_dir": config.results_dir,
            "timeout": config.timeout,
            "scratch_dir": config.scratch_dir,
        }

    def _claim(self, entry: WorkerEntry) -> list[Task]:
        """Take the next cells for ``entry`` (a batch when tasks are short); [] when done."""
        schedule = self.schedule
        with self._cond:
            while not self._stopping:
                cell = schedule.get_next_outstanding()
                if cell is not None:
                    cells = [cell]
                    size = self._batch_size(cell.task)
                    while len(cells) < size and (more := schedule.get_next_outstanding(cell.task)):
                        cells.append(more)
                    now = time.time()
                    for cell in cells:
                        schedule.start(cell, entry.name, entry.host, now)
                        self._ran.add(cell.key)
                        self._writer.put(cell_row(cell, self.ledger))
                    self._busy[entry.name] = entry
                    return cells
                if schedule.counts[Status.WORKING] == 0:
                    return []  # nothing outstanding and nothing that could come back
                self._waiting += 1
                self._cond.wait()
                self._waiting -= 1
            return []

    def _batch_size(self, task: str) -> int:
        mean = self._mean_elapsed.get(task)
        if mean is None:
            return 1  # no measurement yet: one at a time
        share = self.schedule.counts[Status.OUTSTANDING] // (2 * max(1, self._active))
        return max(1, min(MAX_BATCH, share, int(BATCH_SECONDS / max(mean, 1e-6))))

    def _finish(self, entry: WorkerEntry, cells: list[Task], answers: list[dict[str, Any]]) -> None:
        now = time.time()
        schedule = self.schedule
        with self._cond:
            self._busy.pop(entry.name, None)
            for cell, answer in zip(cells, answers, strict=True):
                status, kind = answer.get("status"), answer.get("error_kind")
                elapsed = float(answer.get("elapsed") or 0.0)
                if status == "complete":
                    schedule.complete(
                        cell, answer.get("output"), answer.get("summary"), elapsed, now
                    )
                    mean = self._mean_elapsed.get(cell.task, elapsed)
                    self._mean_elapsed[cell.task] = 0.8 * mean + 0.2 * elapsed
                elif kind in _NOT_AN_ATTEMPT:
                    schedule.requeue(cell)
                else:
                    final = Status.TIMEOUT if status == "timeout" else Status.FAILURE
                    schedule.fail(
                        cell,
                        final,
                        str(answer.get("error") or "unknown error"),
                        str(kind or "task"),
                        now,
                        elapsed,
                    )
                self._writer.put(cell_row(cell, self.ledger))
            if self._waiting:
                self._cond.notify_all()

    def _lose(self, entry: WorkerEntry, cells: list[Task], reason: str) -> None:
        LOG.warning("worker %s lost while running %s: %s", entry.name, cells[0], reason)
        with self._cond:
            self._busy.pop(entry.name, None)
            for cell in cells:
                if self._stopping or cell is not cells[0]:
                    self.schedule.requeue(cell)  # never started, or we are stopping anyway
                else:
                    # losing the worker counts as an attempt: a task that kills every worker
                    # it touches ends as F instead of looping
                    self.schedule.fail(
                        cell,
                        Status.FAILURE,
                        f"worker {entry.name} lost: {reason}",
                        "lost",
                        time.time(),
                    )
                self._writer.put(cell_row(cell, self.ledger))
            self._cond.notify_all()
        self._leave(entry, reason)

    def _leave(self, entry: WorkerEntry, reason: str) -> None:
        with self._cond:
            if not self._stopping:
                self._lost.append(entry.name)
        self.on_event(WorkerLeft(entry.name, reason))


def _cancel(entry: WorkerEntry) -> None:
    """Ask a worker to stop its task, on a connection of its own (best effort)."""
    try:
        with Proxy(entry.uri) as proxy:
            proxy._pyroTimeout = 5
            proxy.cancel()
    except Pyro5.errors.PyroError:
        pass
