"""The task schedule: every (task, year, member) cell, its status, and what to do next.

Pure bookkeeping, no I/O and no threads: the manager serialises access. Statuses are the
progress characters ``-`` ``W`` ``+`` ``F`` ``T``. ``get_next_outstanding`` is O(1): the queue
holds only cells that may run now, so a cell waiting for other cells (a year's summary after all
its members) enters it the moment its last prerequisite completes. A failed cell goes back into
the queue while it has attempts left; a cell that ends F or T fails the cells that wait for it.
"""

from __future__ import annotations

import enum
from collections import Counter, deque
from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from clusterfarm.errors import UsageError
from clusterfarm.wire.protocol import YEAR, ErrorKind


class Status(enum.StrEnum):
    """The status of one cell; the value is its progress character."""

    OUTSTANDING = "-"
    WORKING = "W"
    COMPLETE = "+"
    FAILURE = "F"
    TIMEOUT = "T"

    @property
    def is_final(self) -> bool:
        return self in (Status.COMPLETE, Status.FAILURE, Status.TIMEOUT)


@dataclass(frozen=True)
class TaskShape:
    """How a task's cells are laid out and which tasks they wait for."""

    per_year: bool = False
    after: tuple[str, ...] = ()


@dataclass(eq=False, slots=True)
class Cell:
    """One cell of the schedule: a task to run for one year and ensemble member."""

    year: int
    member: int
    task: str
    status: Status = Status.OUTSTANDING
    attempts: int = 0
    worker: str | None = None
    host: str | None = None
    started: float | None = None
    finished: float | None = None
    elapsed: float | None = None
    output: str | None = None
    output_sum: str | None = None
    inputs: str | None = None
    summary: dict[str, Any] | None = None
    error: str | None = None
    error_kind: str | None = None
    usage: tuple[Any, ...] | None = None  # what its last attempt cost (protocol.Usage)
    tried_workers: list[str] = field(default_factory=list)
    tried_hosts: list[str] = field(default_factory=list)

    @property
    def key(self) -> tuple[str, int, int]:
        return (self.task, self.year, self.member)

    def __repr__(self) -> str:
        return f"<Cell {self.task} {self.year} m{self.member} {self.status.value}>"


class TaskSchedule:
    """All cells of a run, in year and member order, with an O(1) queue of outstanding ones."""

    def __init__(
        self,
        years: Iterable[int],
        members: Iterable[int],
        tasks: Iterable[str] = ("vort_track",),
        retries: int = 2,
        shapes: Mapping[str, TaskShape] | None = None,
    ) -> None:
        self.years = sorted(set(years))
        self.members = sorted(set(members))
        self.tasks = list(dict.fromkeys(tasks))
        if not (self.years and self.members and self.tasks):
            raise ValueError("a schedule needs at least one task, year and member")
        self.retries = retries
        self.shapes = {name: (shapes or {}).get(name, TaskShape()) for name in self.tasks}
        self._rows: dict[tuple[str, int], list[Cell]] = {}
        self._cells: dict[tuple[str, int, int], Cell] = {}
        for name in self.tasks:
            members = [YEAR] if self.shapes[name].per_year else self.members
            for year in self.years:
                row = [Cell(year, member, name) for member in members]
                self._rows[(name, year)] = row
                self._cells.update((cell.key, cell) for cell in row)
        self._waiting: dict[Cell, int] = {}  # prerequisites not complete yet
        self._dependents: dict[Cell, list[Cell]] = {}
        self._link_dependencies()
        self._queue: deque[Cell] = deque(c for c in self._cells.values() if c not in self._waiting)
        self.counts: Counter[Status] = Counter({Status.OUTSTANDING: len(self._cells)})
        self._outstanding: Counter[str] = Counter(c.task for c in self._cells.values())
        self.failed_by_dependency: list[Cell] = []  # for the caller to persist, then clear
        self.queued = 0  # cells put (back) in the queue after the start: retries, releases

    def _link_dependencies(self) -> None:
        for name in self.tasks:
            shape = self.shapes[name]
            for before in shape.after:
                if before not in self.shapes:
                    raise UsageError(
                        f"task {name!r} runs after {before!r}; run both: --task {before},{name}"
                    )
                if self.tasks.index(before) > self.tasks.index(name):
                    raise UsageError(
                        f"task {name!r} is listed before {before!r}, which it "
                        "runs after; list tasks in dependency order"
                    )
                for cell in self._rows_of(name):
                    for needed in self._prerequisites(cell, before):
                        self._dependents.setdefault(needed, []).append(cell)
                        self._waiting[cell] = self._waiting.get(cell, 0) + 1

    def _rows_of(self, task: str) -> Iterator[Cell]:
        for year in self.years:
            yield from self._rows[(task, year)]

    def _prerequisites(self, cell: Cell, before: str) -> list[Cell]:
        row = self._rows[(before, cell.year)]
        if cell.member == YEAR or self.shapes[before].per_year:
            return list(row)  # a per-year cell waits for the whole year (fan-in)
        return [self._cells[(before, cell.year, cell.member)]]

    def prerequisites(self, cell: Cell) -> list[Cell]:
        """The cells ``cell`` waits for."""
        return [
            c for before in self.shapes[cell.task].after for c in self._prerequisites(cell, before)
        ]

    def dependents(self, cell: Cell) -> list[Cell]:
        """The cells that wait for ``cell``."""
        return list(self._dependents.get(cell, ()))

    def _release_dependents(self, cell: Cell) -> None:
        for dependent in self._dependents.get(cell, ()):
            self._waiting[dependent] -= 1
            if self._waiting[dependent] == 0:
                del self._waiting[dependent]
                if dependent.status is Status.OUTSTANDING:
                    # to the front: a year's summary should not wait for every later year
                    self._queue.appendleft(dependent)
                    self.queued += 1

    def _fail_dependents(self, cell: Cell, now: float) -> None:
        todo = list(self._dependents.get(cell, ()))
        while todo:
            dependent = todo.pop()
            if dependent.status is not Status.OUTSTANDING:
                continue
            who = f"{cell.task} {cell.year}" + ("" if cell.member == YEAR else f" m{cell.member}")
            dependent.error = f"needs {who}, which ended {cell.status.value}"
            dependent.error_kind, dependent.finished = ErrorKind.DEPENDENCY.value, now
            self._set_status(dependent, Status.FAILURE)
            self.failed_by_dependency.append(dependent)
            todo.extend(self._dependents.get(dependent, ()))

    # -- lookup -----------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._cells)

    def __iter__(self) -> Iterator[Cell]:
        return iter(self._cells.values())

    def cell(self, task: str, year: int, member: int) -> Cell:
        """Return the cell for ``(task, year, member)``."""
        return self._cells[(task, year, member)]

    def row(self, task: str, year: int) -> list[Cell]:
        """Return the cells of one task and year, in member order."""
        return self._rows[(task, year)]

    # -- state changes ----------------------------------------------------------------------

    def _set_status(self, cell: Cell, status: Status) -> None:
        self.counts[cell.status] -= 1
        self.counts[status] += 1
        if cell.status is Status.OUTSTANDING:
            self._outstanding[cell.task] -= 1
        if status is Status.OUTSTANDING:
            self._outstanding[cell.task] += 1
        cell.status = status

    def get_next_outstanding(self, task: str | None = None) -> Cell | None:
        """Return the next outstanding cell (still ``-``), or None if there is none now.

        With ``task``, return None instead of a cell of another task (to build batches).
        """
        queue = self._queue
        while queue:
            cell = queue[0]
            if cell.status is not Status.OUTSTANDING:
                queue.popleft()  # finished or started since it was queued
                continue
            if task is not None and cell.task != task:
                return None
            return queue.popleft()
        return None

    def take_preferred(
        self,
        worker: str,
        host: str | None,
        tasks: Collection[str] | None = None,
        lookahead: int = 16,
    ) -> Cell | None:
        """Return the next outstanding cell (of ``tasks``, if given), preferring one not yet
        tried on this host, then one not yet tried by this worker.

        Looks at most ``lookahead`` cells ahead, so a retry moves elsewhere when something else
        is outstanding, but still runs here when nothing else is.
        """
        queue = self._queue
        seen: list[Cell] = []
        best: tuple[int, int] | None = None  # (rank, index in seen)
        while queue and len(seen) < lookahead:
            cell = queue.popleft()
            if cell.status is not Status.OUTSTANDING:
                continue
            if tasks is not None and cell.task not in tasks:
                rank = 3  # another worker's to run: kept in its place
            else:
                rank = (host in cell.tried_hosts) + (worker in cell.tried_workers)
            seen.append(cell)
            if best is None or rank < best[0]:
                best = (rank, len(seen) - 1)
            if rank == 0:
                break
        if best is None or best[0] == 3:
            queue.extendleft(reversed(seen))
            return None
        chosen = seen.pop(best[1])
        queue.extendleft(reversed(seen))  # the others back in their places, in order
        return chosen

    def mark_complete_from_earlier(self, cell: Cell) -> None:
        """Mark a cell complete because an earlier run finished it (resume)."""
        self._set_status(cell, Status.COMPLETE)
        self._release_dependents(cell)

    def start(self, cell: Cell, worker: str, host: str | None, now: float) -> None:
        """Mark ``cell`` as being worked on by ``worker``; this counts as one attempt."""
        self._set_status(cell, Status.WORKING)
        cell.attempts += 1
        cell.worker, cell.host, cell.started = worker, host, now
        cell.finished = cell.elapsed = cell.usage = None
        cell.tried_workers.append(worker)
        if host is not None:
            cell.tried_hosts.append(host)

    def complete(
        self,
        cell: Cell,
        output: str | None,
        summary: dict[str, Any] | None,
        elapsed: float,
        now: float,
        inputs: str | None = None,
        output_sum: str | None = None,
    ) -> None:
        """Mark ``cell`` complete; ``inputs`` and ``output_sum`` go to the results ledger."""
        self._set_status(cell, Status.COMPLETE)
        cell.output, cell.summary, cell.elapsed, cell.finished = output, summary, elapsed, now
        cell.inputs, cell.output_sum = inputs, output_sum
        cell.error = cell.error_kind = None
        self._release_dependents(cell)

    def fail(
        self,
        cell: Cell,
        status: Status,
        error: str,
        error_kind: ErrorKind | str,
        now: float,
        elapsed: float | None = None,
    ) -> bool:
        """Record a failed attempt; requeue the cell if it may be retried.

        Returns True when the cell went back to outstanding, False when it is now final.
        """
        kind = ErrorKind(error_kind)
        cell.error, cell.error_kind, cell.finished, cell.elapsed = error, kind.value, now, elapsed
        if kind.retried and cell.attempts <= self.retries:
            self.requeue(cell, count_attempt=True)
            return True
        self._set_status(cell, status)
        self._fail_dependents(cell, now)
        return False

    def requeue(self, cell: Cell, count_attempt: bool = False) -> None:
        """Put ``cell`` back to outstanding (e.g. its run was cancelled or its worker lost)."""
        if not count_attempt and cell.status is Status.WORKING:
            cell.attempts -= 1  # it never really ran: forget this try
            cell.tried_workers.pop()
            if cell.tried_hosts:
                cell.tried_hosts.pop()
        self._set_status(cell, Status.OUTSTANDING)
        self._queue.append(cell)
        self.queued += 1

    # -- questions --------------------------------------------------------------------------

    @property
    def is_finished(self) -> bool:
        """True when no cell is outstanding or being worked on."""
        return self.counts[Status.OUTSTANDING] == 0 and self.counts[Status.WORKING] == 0

    def outstanding_tasks(self) -> list[str]:
        """The tasks that still have outstanding cells (waiting ones included)."""
        return [task for task in self.tasks if self._outstanding[task] > 0]

    def reopen(self, cells: Iterable[Cell]) -> list[Cell]:
        """Make complete ``cells`` outstanding again, with every complete cell that waits for
        them (their results are stale). Return all the cells reopened.

        For the start of a run only (nothing is being worked on yet): the queue is rebuilt.
        """
        reopened: list[Cell] = []
        todo = [c for c in cells if c.status is Status.COMPLETE]
        while todo:
            cell = todo.pop()
            if cell.status is not Status.COMPLETE:
                continue
            self._set_status(cell, Status.OUTSTANDING)
            cell.output = cell.output_sum = cell.inputs = cell.summary = None
            reopened.append(cell)
            todo.extend(self._dependents.get(cell, ()))
        if reopened:
            self._rebuild_queue()
        return reopened

    def _rebuild_queue(self) -> None:
        self._waiting = {}
        for cell, dependents in self._dependents.items():
            if cell.status is not Status.COMPLETE:
                for dependent in dependents:
                    self._waiting[dependent] = self._waiting.get(dependent, 0) + 1
        self._queue = deque(
            c
            for c in self._cells.values()
            if c.status is Status.OUTSTANDING and c not in self._waiting
        )

    def failures(self) -> list[Cell]:
        """Cells that ended as failure or timeout, in schedule order."""
        return [c for c in self._cells.values() if c.status in (Status.FAILURE, Status.TIMEOUT)]

    # -- progress strings (``2001: +++WW---F----``) -----------------------------------------

    def progress_line(self, task: str, year: int) -> str:
        """Return the progress characters of one task and year, in member order."""
        return "".join(cell.status.value for cell in self._rows[(task, year)])

    def get_progress_for_year(
        self, year: int, include_year: bool = True, task: str | None = None
    ) -> str:
        """Return the progress of ``year``: one line per task (prefixed by the task name when
        the schedule has several)."""
        names = [task] if task else self.tasks
        lines = []
        for name in names:
            line = self.progress_line(name, year)
            if include_year:
                line = f"{year}: {line}"
            if len(self.tasks) > 1:
                line = f"{name} {line}"
            lines.append(line)
        return "\n".join(lines)

    def get_progress(self, years: Iterable[int] | None = None, include_year: bool = False) -> str:
        """Return the progress of ``years`` (default: all), one line per year and task."""
        selected = self.years if years is None else list(years)
        return "\n".join(self.get_progress_for_year(y, include_year) for y in selected)

    def print_years(self, years: Iterable[int] | None = None, include_year: bool = True) -> None:
        """Print the progress of ``years`` (default: all)."""
        print(self.get_progress(years, include_year))
