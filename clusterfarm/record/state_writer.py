"""The state writer: one thread that saves every cell's change, then has it shown.

The manager hands it the rows of cells it sent (starts) and of cells that ended or came back
(ends, with the record of the attempt that ended). The thread commits whatever has queued up
in one transaction (group commit: under load the groups grow by themselves, so the commit
rate follows the dispatch rate) and only then hands the committed changes to the run's
display (:class:`SavedCells`), so nothing is shown before it is saved. When a write fails
(disk full, run dir gone) ``on_failure`` hears it once, with the file and the cause, and
nothing more is written or shown: what is not saved must not look done.
"""

from __future__ import annotations

import json
import logging
import queue
import sqlite3
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, NamedTuple, Protocol

from clusterfarm.errors import StateError
from clusterfarm.record import trace
from clusterfarm.record.schedule import Cell
from clusterfarm.record.state import STATE_FILE
from clusterfarm.record.transaction import transaction

LOG = logging.getLogger("clusterfarm.state")
# Changes that arrive this close together are committed together: fewer transactions, and a
# short cell's start and end meet in one group and make one write instead of two.
COMMIT_WINDOW = 0.05


class CellChange(NamedTuple):
    """One cell's new state: its status character, who ran it, its last error."""

    task: str
    year: int
    member: int
    status: str
    worker: str | None
    error: str | None


class SavedCells(Protocol):
    """Who is shown the cells' changes once they are committed (the run's display)."""

    def cells_saved(self, changes: list[CellChange]) -> None:
        """``changes`` are in the state database now (called from the writer's thread)."""
        ...


class _NotShown:
    def cells_saved(self, changes: list[CellChange]) -> None:
        pass


# What the writer writes of a cell: its start (sent to a worker) and its end (or hand-back),
# in multi-row statements (_RowWriter). Version and params hash are in neither: they are set
# for every cell that is not complete when the run loads (RunState.load).
_START_COLUMNS = ("attempts", "worker", "host", "started", "task", "year", "member")
_END_COLUMNS = (
    "status", "attempts", "worker", "host", "started", "finished", "elapsed",
    "invocation", "task_started", "cpu", "peak_rss", "rchar", "wchar", "read_bytes", "write_bytes",
    "output", "summary", "error", "error_kind", "inputs", "output_sum",
    "task", "year", "member",
)  # fmt: skip
# the fields of an end row that a plain end sets to NULL: output to output_sum
_PLAIN = slice(_END_COLUMNS.index("output"), _END_COLUMNS.index("output_sum") + 1)
_PLAIN_COLUMNS = _END_COLUMNS[: _PLAIN.start] + _END_COLUMNS[_PLAIN.stop :]

_KEY = ("task", "year", "member")
# SQLite's limit on a statement's parameters (999 before 3.32)
_MAX_VARIABLES = 32766 if sqlite3.sqlite_version_info >= (3, 32, 0) else 999


class _RowWriter:
    """Many rows of cells in few statements: ``INSERT ... VALUES (...), (...), ... ON
    CONFLICT DO UPDATE`` (every cell has its row already, so each is an update).

    Why not ``executemany``: Python's sqlite3 gives up the GIL at every row's step, and
    while the dispatch thread works, taking it back costs each row many times its own
    work. A statement of many rows gives it up once. Statements go in sizes of
    powers of two, so a handful of texts serve every group (SQLite caches them)."""

    def __init__(self, columns: tuple[str, ...], also: str = "") -> None:
        self.columns = columns
        sets = [f"{c}=excluded.{c}" for c in columns if c not in _KEY] + ([also] if also else [])
        self._head = f"INSERT INTO cells ({', '.join(columns)}) VALUES "
        self._tail = f" ON CONFLICT(task, year, member) DO UPDATE SET {', '.join(sets)}"
        most = _MAX_VARIABLES // len(columns)
        self.sizes = [n for n in (256, 64, 16, 4, 1) if n <= most]
        self._texts: dict[int, str] = {}

    def write(self, db: sqlite3.Connection, rows: list[tuple[Any, ...]]) -> None:
        done = 0
        for size in self.sizes:
            while len(rows) - done >= size:
                values = [value for row in rows[done : done + size] for value in row]
                db.execute(self._text(size), values)
                done += size

    def _text(self, size: int) -> str:
        text = self._texts.get(size)
        if text is None:
            one = "(" + ", ".join("?" * len(self.columns)) + ")"
            text = self._texts[size] = self._head + ", ".join([one] * size) + self._tail
        return text


_NULLED = ", ".join(f"{c}=NULL" for c in _END_COLUMNS[_PLAIN])
_WRITE_STARTS = _RowWriter(_START_COLUMNS, "status='W'")
_WRITE_PLAIN_ENDS = _RowWriter(_PLAIN_COLUMNS, _NULLED)
_WRITE_ENDS = _RowWriter(_END_COLUMNS)
StartRow = tuple[Any, ...]
EndRow = tuple[Any, ...]
_NO_FIGURES = (None,) * 7


def start_rows(cells: Iterable[Cell]) -> list[StartRow]:
    """Snapshot cells just sent to a worker (the values of ``_START_COLUMNS``)."""
    return [(c.attempts, c.worker, c.host, c.started, c.task, c.year, c.member) for c in cells]


def end_row(cell: Cell, invocation: int | None = None) -> EndRow:
    """Snapshot ``cell`` as the values of ``_END_COLUMNS`` (built under the manager's lock):
    its state, and what its last attempt cost (``cell.usage``, in invocation
    ``invocation``)."""
    summary = json.dumps(cell.summary) if cell.summary else None
    return (
        cell.status.value,
        cell.attempts,
        cell.worker,
        cell.host,
        cell.started,
        cell.finished,
        cell.elapsed,
        invocation,
        *(cell.usage or _NO_FIGURES),
        cell.output,
        summary,
        cell.error,
        cell.error_kind,
        cell.inputs,
        cell.output_sum,
        cell.task,
        cell.year,
        cell.member,
    )


class StateWriter:
    """One thread that saves cells' changes in groups, then shows them to ``shown``."""

    def __init__(
        self,
        db: sqlite3.Connection,
        path: Path | str = STATE_FILE,
        shown: SavedCells | None = None,
    ) -> None:
        self._db = db
        self._path = str(path)
        self._shown = shown or _NotShown()
        # who stops the run when a write fails (the manager sets it)
        self.on_failure: Callable[[str], None] = lambda problem: None
        self._queue: queue.SimpleQueue[tuple[str, Any] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._loop, name="state-writer", daemon=True)
        self.problem: str | None = None
        self.window = COMMIT_WINDOW
        self._closing = threading.Event()  # close() cuts the last window short
        self._thread.start()

    def put_start(self, rows: list[StartRow]) -> None:
        """Queue the rows of cells just sent to a worker (one item per batch)."""
        self._queue.put((_START, rows))

    def put_ends(self, rows: list[EndRow], attempts: list[trace.AttemptRow]) -> None:
        """Queue cells' ends (complete, failed, or handed back to outstanding) and the records
        of the attempts that ended (committed together; one item per call)."""
        self._queue.put((_END, (rows, attempts)))

    def close(self) -> None:
        """Write everything queued, then stop the thread; raise StateError if writes failed."""
        self._queue.put(None)
        self._closing.set()
        self._thread.join()
        if self.problem is not None:
            raise StateError(self.problem)

    def _collect(self) -> list[tuple[str, Any] | None]:
        """The next group of changes: all that arrive within ``window`` of the first.

        The thread sleeps through the window rather than waking for every item (two items
        a call at hundreds of calls a second: each wake-up is a GIL hand-over)."""
        items = [self._queue.get()]
        if items[-1] is not None:
            self._closing.wait(self.window)
        while items[-1] is not None:
            try:
                items.append(self._queue.get_nowait())
            except queue.Empty:
                break
        return items

    def _loop(self) -> None:
        running = True
        while running:
            items = self._collect()
            if items[-1] is None:
                running = False
            if self.problem is not None:
                continue  # a write failed: keep draining, never block the manager
            group = [item for item in items if item is not None]
            starts, ends = _latest_per_cell(group)
            attempts = [row for kind, payload in group if kind is _END for row in payload[1]]
            if not starts and not ends:
                continue
            plain = [
                row[: _PLAIN.start] + row[_PLAIN.stop :] for row in ends if not any(row[_PLAIN])
            ]
            full = [row for row in ends if any(row[_PLAIN])]
            try:
                with transaction(self._db):
                    _WRITE_STARTS.write(self._db, starts)
                    _WRITE_PLAIN_ENDS.write(self._db, plain)
                    _WRITE_ENDS.write(self._db, full)
                    self._db.executemany(trace.INSERT_ATTEMPT, attempts)
            except sqlite3.Error as exc:  # disk full, run dir removed...
                self.problem = f"{self._path}: cannot write the run state ({exc})"
                self.on_failure(self.problem)
                continue
            try:
                self._shown.cells_saved(_changes(starts, ends))
            except Exception:  # showing must never stop saving: log it and go on
                LOG.exception("showing a state change failed")


_START, _END = "start", "end"


def _latest_per_cell(items: Iterable[tuple[str, Any]]) -> tuple[list[StartRow], list[EndRow]]:
    """The last change of each cell, split into starts and ends (the key is last in both)."""
    latest: dict[tuple[Any, ...], tuple[bool, tuple[Any, ...]]] = {}
    for kind, payload in items:
        if kind is _START:
            for row in payload:
                latest[row[-3:]] = (True, row)
        elif kind is _END:
            for row in payload[0]:
                latest[row[-3:]] = (False, row)
    starts = [row for is_start, row in latest.values() if is_start]
    ends = [row for is_start, row in latest.values() if not is_start]
    return starts, ends


def _changes(starts: list[StartRow], ends: list[EndRow]) -> list[CellChange]:
    changes = [CellChange(r[-3], r[-2], r[-1], "W", r[1], None) for r in starts]
    changes += [CellChange(r[-3], r[-2], r[-1], r[0], r[2], r[17]) for r in ends]
    return changes
