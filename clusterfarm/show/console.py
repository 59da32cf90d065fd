"""The terminal views of a run: plain blocks of progress strings, a live rich board, or
nothing. Each draws a :class:`~clusterfarm.show.board.Board`; rich is imported only when a
rich view starts (the only module besides the CLI that uses it)."""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from typing import IO, Any

from clusterfarm.show.board import Board, View, WorkerRow
from clusterfarm.show.text import counts_line, header, progress_lines

STATUS_STYLES = {
    "-": "grey50",
    "W": "bold yellow",
    "+": "green",
    "F": "bold red",
    "T": "bold magenta",
}


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
