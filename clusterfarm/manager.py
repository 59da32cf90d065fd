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
_NOT_AN_ATTEMPT = frozenset({"busy", "cancelled"})


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
        with proxy:
            while (cell := self._claim(entry)) is not None:
                try:
                    answer = proxy.do_work(cell.year, cell.member, cell.task, params[cell.task])
                except Pyro5.errors.TimeoutError:
                    answer = {
                        "status": "timeout",
                        "error_kind": "timeout",
                        "error": f"no answer from {entry.name} within {self.config.guard:g} s",
                        "elapsed": self.config.guard,
                    }
                    _cancel(entry)
                except Pyro5.errors.CommunicationError as exc:
                    self._lose(entry, cell, str(exc))
                    return
                self._finish(entry, cell, answer)

    def _run_settings(self) -> dict[str, Any]:
        config = self.config
        return {
            "data_dir": config.data_dir,
            "results_dir": config.results_dir,
            "timeout": config.timeout,
            "scratch_dir": config.scratch_dir,
        }

    def _claim(self, entry: WorkerEntry) -> Task | None:
        schedule = self.schedule
        with self._cond:
            while not self._stopping:
                cell = schedule.get_next_outstanding()
                if cell is not None:
                    schedule.start(cell, entry.name, entry.host, time.time())
                    self._ran.add(cell.key)
                    self._busy[entry.name] = entry
                    self._writer.put(cell_row(cell, self.ledger))
                    return cell
                if schedule.counts[Status.WORKING] == 0:
                    return None  # nothing outstanding and nothing that could come back
                self._waiting += 1
                self._cond.wait()
                self._waiting -= 1
            return None

    def _finish(self, entry: WorkerEntry, cell: Task, answer: dict[str, Any]) -> None:
        now = time.time()
        status, kind = answer.get("status"), answer.get("error_kind")
        with self._cond:
            self._busy.pop(entry.name, None)
            if status == "complete":
                self.schedule.complete(
                    cell,
                    answer.get("output"),
                    answer.get("summary"),
                    float(answer.get("elapsed") or 0.0),
                    now,
                )
            elif kind in _NOT_AN_ATTEMPT:
                self.schedule.requeue(cell)
            else:
                final = Status.TIMEOUT if status == "timeout" else Status.FAILURE
                self.schedule.fail(
                    cell,
                    final,
                    str(answer.get("error") or "unknown error"),
                    str(kind or "task"),
                    now,
                    answer.get("elapsed"),
                )
            self._writer.put(cell_row(cell, self.ledger))
            if self._waiting:
                self._cond.notify_all()

    def _lose(self, entry: WorkerEntry, cell: Task, reason: str) -> None:
        LOG.warning("worker %s lost while running %s: %s", entry.name, cell, reason)
        with self._cond:
            self._busy.pop(entry.name, None)
            if self._stopping:
                self.schedule.requeue(cell)
            else:
                # losing the worker counts as an attempt: a task that kills every worker
                # it touches ends as F instead of looping
                self.schedule.fail(
                    cell, Status.FAILURE, f"worker {entry.name} lost: {reason}", "lost", time.time()
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
