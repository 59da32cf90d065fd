"""Show a run's progress: plain blocks of progress strings, a live rich board, or nothing.

The live views keep a :class:`Board`, a mirror of the cells' statuses fed only by events the
manager emits after the state is committed, so nothing is shown before it is saved.
"""

from __future__ import annotations

import json
import math
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import IO, Any, Protocol

from clusterfarm.manager.events import (
    CellChange,
    CellsChanged,
    Event,
    HostQuarantined,
    WorkerJoined,
    WorkerLeft,
    WorkerNote,
    WorkersPending,
)
from clusterfarm.record.ledger import describe
from clusterfarm.record.schedule import YEAR, Status, Task, TaskSchedule
from clusterfarm.record.status import RunReport

STATUS_STYLES = {
    "-": "grey50",
    "W": "bold yellow",
    "+": "green",
    "F": "bold red",
    "T": "bold magenta",
}


def progress_lines(
    tasks: list[str], years: list[int], progress: Mapping[tuple[str, int], str]
) -> list[str]:
    """The progress strings of SPEC §4, year by year (task-prefixed when there are several),
    of the (task, year) rows in ``progress``."""
    lines = []
    for year in years:
        for task in tasks:
            if (task, year) not in progress:
                continue
            line = f"{year}: {progress[(task, year)]}"
            lines.append(f"{task} {line}" if len(tasks) > 1 else line)
    return lines


def header(elapsed: float, counts: Mapping[str, int], total: int) -> str:
    """The line heading each block: ``[12.3s] 13/39 complete, 2 working, 1 failed, 0 timeout``."""
    return f"[{elapsed:.1f}s] {counts_line(counts, total)}"


def counts_line(counts: Mapping[str, int], total: int) -> str:
    """``13/39 complete, 2 working, 1 failed, 0 timeout``."""
    return (
        f"{counts.get('+', 0)}/{total} complete, {counts.get('W', 0)} working, "
        f"{counts.get('F', 0)} failed, {counts.get('T', 0)} timeout"
    )


def report_text(report: RunReport) -> str:
    """A finished (or running) run as text: the block, then one line per failed cell."""
    counts = {status.value: report.count(status) for status in Status}
    lines = [header(report.elapsed, counts, report.total)]
    lines += progress_lines(report.tasks, report.years, report.progress)
    return "\n".join(lines + report_footer(report))


def report_footer(report: RunReport) -> list[str]:
    """What follows the last block: whether its manager is gone, cells ran and skipped, then
    one line per failed cell."""
    lines = [f"ran {report.ran}, skipped {report.skipped} (already complete)"]
    if report.gone_since is not None:
        when = time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(report.gone_since))
        left = report.abandoned
        lines.insert(
            0,
            f"manager gone since {when}; run again to resume"
            + (f" (the {left} cell(s) it was working on show as -)" if left else ""),
        )
    for failure in report.failures:
        lines.append(
            f"{failure['status']} {failure['task']} {failure['year']} "
            f"m{failure['member']} after {failure['attempts']} attempt(s) "
            f"[{failure['error_kind']}]: {failure['error']}"
        )
    return lines


def report_json(report: RunReport, stale: list[tuple[Task, str]] | None = None) -> str:
    """The JSON object of SPEC §4 (with ``stale``: cells the next run computes again)."""
    document = report.to_json()
    if stale is not None:
        document["stale"] = [
            {"task": cell.task, "year": cell.year, "member": cell.member, "reason": reason}
            for cell, reason in stale
        ]
    return json.dumps(document)


def stale_lines(stale: list[tuple[Task, str]], limit: int = 20) -> list[str]:
    """Which complete cells the next run computes again, and why (at most ``limit`` lines)."""
    if not stale:
        return []
    lines = [f"{len(stale)} complete cell(s) will run again on the next run:"]
    lines += [f"  {describe(cell)}: {reason}" for cell, reason in stale[:limit]]
    if len(stale) > limit:
        lines.append(f"  ... and {len(stale) - limit} more")
    return lines


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
    def of_report(cls, report: RunReport) -> Board:
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

    def apply(self, event: Event) -> None:
        with self._lock:
            if isinstance(event, CellsChanged):
                for change in event.changes:
                    self._apply_cell(change)
            elif isinstance(event, WorkerJoined):
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


class QuietView:
    """Shows nothing (``--progress none`` and ``--json``)."""

    def start(self, board: Board) -> None:
        self.board = board

    def tick(self) -> None:
        pass

    def close(self) -> None:
        pass


class PlainView:
    """Prints a block whenever something changed, at most once every ``interval`` seconds:
    the header and only the lines that changed since the last block; the whole board at
    most once every ``whole_every`` seconds, and at the end.

    So the output grows with what happens, not with the size of the board times the
    length of the run (a whole board of 200,000 cells every second is 570 MB an hour).
    """

    def __init__(
        self,
        stream: IO[str] | None = None,
        interval: float = 1.0,
        whole_every: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stream = stream or sys.stdout
        self.interval = interval
        self.whole_every = whole_every
        self.clock = clock

    def start(self, board: Board) -> None:
        self.board = board
        self._started = self.clock()
        self._shown_version = -1
        self._last = -math.inf
        self._last_whole = -math.inf
        self._shown: dict[tuple[str, int], str] = {}
        self._notes = 0

    def tick(self) -> None:
        now = self.clock()
        if self.board.version != self._shown_version and now - self._last >= self.interval:
            self._print(now, whole=now - self._last_whole >= self.whole_every)

    def close(self) -> None:
        self._print(self.clock(), whole=True)

    def _print(self, now: float, whole: bool) -> None:
        self._shown_version, self._last = self.board.version, now
        if whole:
            self._last_whole = now
        progress, counts = self.board.snapshot()
        changed = {key: line for key, line in progress.items() if self._shown.get(key) != line}
        notes = self.board.notes[self._notes :]
        if not (whole or changed or notes):
            return  # changed and changed back: nothing to tell
        self._shown = progress
        lines = [header(now - self._started, counts, self.board.total)]
        lines += progress_lines(self.board.tasks, self.board.years, progress if whole else changed)
        lines += notes
        self._notes = len(self.board.notes)
        self.stream.write("\n".join(lines) + "\n")
        self.stream.flush()


class RichView:
    """A live board: coloured progress strings, the workers, an overall bar with ETA.

    rich redraws it in place a few times a second from :meth:`_render` (no flicker: one
    frame, drawn over the last); it is only used on a terminal.
    """

    def start(self, board: Board) -> None:
        from rich.console import Console
        from rich.live import Live
        from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

        self.board = board
        self._bar = Progress(
            TextColumn("{task.completed}/{task.total} cells"),
            BarColumn(),
            TextColumn("{task.percentage:>3.0f}%"),
            TextColumn("ETA"),
            TimeRemainingColumn(),
        )
        self._bar_task = self._bar.add_task("cells", total=board.total)
        self._live = Live(
            console=Console(),
            get_renderable=self._render,
            refresh_per_second=4,
            vertical_overflow="visible",
        )
        self._live.start()

    def _render(self) -> Any:
        from rich.console import Group
        from rich.table import Table
        from rich.text import Text

        progress, counts = self.board.snapshot()
        self._bar.update(self._bar_task, completed=counts["+"] + counts["F"] + counts["T"])
        cells = Text()
        for line in progress_lines(self.board.tasks, self.board.years, progress):
            label, _, chars = line.rpartition(" ")
            cells.append(label + " ", style="bold")
            for char in chars:
                cells.append(char, style=STATUS_STYLES.get(char, ""))
            cells.append("\n")
        cells.append(counts_line(counts, self.board.total), style="dim")
        workers = Table(box=None, pad_edge=False, header_style="bold")
        for column in ("worker", "host", "running", "done", "last error"):
            workers.add_column(
                column,
                overflow="ellipsis",
                no_wrap=True,
                max_width=60 if column == "last error" else None,
            )
        for name, row in self.board.worker_rows():
            workers.add_row(
                name.removeprefix("clusterfarm.worker."),
                row.host,
                _running(row),
                str(row.done),
                Text(row.last_error or "", style="red"),
            )
        notes = Text("\n".join(self.board.notes[-5:]), style="red")
        return Group(cells, Text(), workers, Text(), self._bar, notes)

    def tick(self) -> None:
        pass  # rich refreshes the board by itself

    def close(self) -> None:
        self._live.refresh()
        self._live.stop()


def make_view(mode: str, is_terminal: bool) -> View:
    """Return the view for ``--progress`` (``auto``: rich on a terminal, else plain)."""
    if mode == "auto":
        mode = "rich" if is_terminal else "plain"
    if mode == "rich":
        return RichView()
    if mode == "plain":
        return PlainView()
    return QuietView()


def _running(row: WorkerRow) -> Any:
    """What the board's "running" column says of a worker (rich is imported lazily)."""
    from rich.text import Text

    if row.gone:
        return Text("gone", style="red")
    if row.pending is not None:
        return Text(f"pending: {row.pending}", style="yellow")
    if row.cell is None and row.note is not None:  # leased elsewhere, short of disk...
        return Text(row.note, style="yellow")
    return row.cell or Text("idle", "dim")
