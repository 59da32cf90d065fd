"""The board: what the live views draw, fed as the run goes.

A :class:`Board` mirrors the cells' statuses and the workers' rows. Cells change on it only
when the state writer has committed them (:meth:`Board.cells_saved`), so nothing is shown
before it is saved; the manager's events say what the cells cannot (a worker joined, left or
is held back, a host is quarantined, batch jobs wait). A :class:`View` draws a board;
:class:`BoardDisplay` is what the runner feeds (the runner's ``Display`` protocol): it builds
the board of the run and hands it to its view.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, replace
from typing import Protocol

from clusterfarm.manager.events import (
    Event,
    HostQuarantined,
    WorkerJoined,
    WorkerLeft,
    WorkerNote,
    WorkersPending,
)
from clusterfarm.record.schedule import Status, TaskSchedule
from clusterfarm.record.state_writer import CellChange
from clusterfarm.record.status import RunStatus
from clusterfarm.wire.protocol import YEAR


@dataclass
class WorkerRow:
    """What the board shows of one worker."""

    host: str
    cell: str | None = None
    done: int = 0
    last_error: str | None = None
    gone: bool = False
    note: str | None = None  # what keeps it from taking cells now
    pending: str | None = None  # a queued batch job: why it waits


class Board:
    """A thread-safe mirror of the cells' statuses, updated from committed events."""

    def __init__(self, schedule: TaskSchedule) -> None:
        self._setup(schedule.tasks, schedule.years, schedule.members, len(schedule))
        self.schedule: TaskSchedule | None = schedule
        self.refresh()

    def _setup(self, tasks: list[str], years: list[int], members: list[int], total: int) -> None:
        self.tasks, self.years = tasks, years
        self._column = {member: i for i, member in enumerate(members)}
        self._column[YEAR] = 0  # the one cell of a per-year task
        self.total = total
        self.version = 0
        self._lock = threading.Lock()
        self.notes: list[str] = []
        self.workers: dict[str, WorkerRow] = {}

    @classmethod
    def of_status(cls, report: RunStatus) -> Board:
        """A board of a run read back from its state (nothing will change on it)."""
        board = cls.__new__(cls)
        board._setup(report.tasks, report.years, report.members, report.total)
        board.schedule = None
        board._rows = {key: bytearray(line, "ascii") for key, line in report.progress.items()}
        board.counts = Counter({s.value: report.count(s) for s in Status})
        return board

    def refresh(self) -> None:
        """Read every cell from the schedule again (before dispatch: cells were reopened)."""
        schedule = self.schedule
        assert schedule is not None, "a board read back from a report does not refresh"
        with self._lock:
            self._rows = {
                (t, y): bytearray(schedule.progress_line(t, y), "ascii")
                for t in self.tasks
                for y in self.years
            }
            self.counts: Counter[str] = Counter({s.value: schedule.counts[s] for s in Status})
            self.version += 1

    def cells_saved(self, changes: list[CellChange]) -> None:
        """Cells whose new status is in the state database now."""
        with self._lock:
            for change in changes:
                self._apply_cell(change)
            self.version += 1

    def apply(self, event: Event) -> None:
        """What the manager tells of its workers and hosts."""
        with self._lock:
            if isinstance(event, WorkerJoined):
                row = self.workers.setdefault(event.name, WorkerRow(event.host))
                row.host, row.gone, row.pending = event.host, False, None
            elif isinstance(event, WorkersPending):
                self._apply_pending(dict(event.workers))
            elif isinstance(event, WorkerLeft):
                self.workers.setdefault(event.name, WorkerRow("?")).gone = True
                self.notes.append(f"worker {event.name} left: {event.reason}")
            elif isinstance(event, WorkerNote):
                self.workers.setdefault(event.name, WorkerRow("?")).note = event.note
                self.notes.append(f"worker {event.name}: {event.note}")
            elif isinstance(event, HostQuarantined):
                self.notes.append(
                    f"host {event.host} quarantined for {event.seconds:g} s after "
                    f"{event.failures} failures in a row"
                )
            self.version += 1

    def _apply_pending(self, pending: dict[str, str]) -> None:
        for name, row in list(self.workers.items()):
            if row.pending is not None and name not in pending:
                del self.workers[name]  # it started (and joins soon) or was cancelled
        for name, reason in pending.items():
            self.workers.setdefault(name, WorkerRow("-")).pending = reason

    def _apply_cell(self, change: CellChange) -> None:
        row = self._rows[(change.task, change.year)]
        i = self._column[change.member]
        self.counts[chr(row[i])] -= 1
        self.counts[change.status] += 1
        row[i] = ord(change.status)
        worker = self.workers.get(change.worker or "")
        if worker is None:
            return
        if change.status == "W":
            worker.note = None
            worker.cell = f"{change.task} {change.year}" + (
                "" if change.member == YEAR else f" m{change.member:03d}"
            )
        else:
            worker.cell = None
            worker.done += change.status == "+"
            if change.error:
                worker.last_error = change.error

    def snapshot(self) -> tuple[dict[tuple[str, int], str], Counter[str]]:
        with self._lock:
            return {k: row.decode() for k, row in self._rows.items()}, Counter(self.counts)

    def worker_rows(self) -> list[tuple[str, WorkerRow]]:
        with self._lock:
            return [(name, replace(row)) for name, row in sorted(self.workers.items())]


class View(Protocol):
    def start(self, board: Board) -> None: ...
    def tick(self) -> None: ...
    def close(self) -> None: ...


class BoardDisplay:
    """A view, fed as the runner feeds a run's display: it makes the run's board."""

    def __init__(self, view: View) -> None:
        self.view = view
        self.board: Board | None = None

    def open(self, schedule: TaskSchedule) -> None:
        self.board = Board(schedule)
        self.view.start(self.board)

    def show_finished(self, report: RunStatus) -> None:
        self.view.start(Board.of_status(report))

    def refresh(self) -> None:
        assert self.board is not None, "refresh before open"
        self.board.refresh()

    def cells_saved(self, changes: list[CellChange]) -> None:
        if self.board is not None:
            self.board.cells_saved(changes)

    def event(self, event: Event) -> None:
        if self.board is not None:
            self.board.apply(event)

    def tick(self) -> None:
        self.view.tick()

    def close(self) -> None:
        self.view.close()
