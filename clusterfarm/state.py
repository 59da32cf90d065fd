"""The run state in ``{run_dir}/state.sqlite``: cells, attempts, the results ledger, runs.

SQLite in WAL mode so ``clusterfarm status`` can read while ``run`` writes. Status changes are
written by one :class:`StateWriter` thread that commits whatever has queued up in one
transaction (group commit) and only then hands the changes on to be shown.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from clusterfarm import trace
from clusterfarm.errors import StateError
from clusterfarm.ledger import Ledger, Plan, Record, plan_resume
from clusterfarm.schedule import Status, Task, TaskSchedule

LOG = logging.getLogger("clusterfarm.state")
STATE_FILE = "state.sqlite"
SCHEMA_VERSION = "2"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS cells (
    task TEXT NOT NULL, year INTEGER NOT NULL, member INTEGER NOT NULL,
    status TEXT NOT NULL DEFAULT '-', attempts INTEGER NOT NULL DEFAULT 0,
    worker TEXT, host TEXT, started REAL, finished REAL, elapsed REAL,
    output TEXT, summary TEXT, error TEXT, error_kind TEXT,
    version TEXT, params_hash TEXT, inputs TEXT, output_sum TEXT,
    PRIMARY KEY (task, year, member)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS invocations (
    id INTEGER PRIMARY KEY, pid INTEGER, started REAL, finished REAL,
    tasks TEXT, years TEXT, members TEXT, year_tasks TEXT NOT NULL DEFAULT '',
    ran INTEGER NOT NULL DEFAULT 0, skipped INTEGER NOT NULL DEFAULT 0,
    state TEXT NOT NULL DEFAULT 'running', exit_code INTEGER
);
"""

# what schema 1 lacked: added in place, so older run dirs resume
_MIGRATIONS = {
    "cells": ("inputs TEXT", "output_sum TEXT"),
    "invocations": ("year_tasks TEXT NOT NULL DEFAULT ''", "argv TEXT", "settings TEXT"),
}

# one row of the cells table as the writer stores it; built under the manager's lock
CellRow = tuple[Any, ...]
_UPDATE_CELL = """
UPDATE cells SET status=?, attempts=?, worker=?, host=?, started=?, finished=?, elapsed=?,
    output=?, summary=?, error=?, error_kind=?, version=?, params_hash=?, inputs=?, output_sum=?
WHERE task=? AND year=? AND member=?
"""


def cell_row(cell: Task, ledger: Ledger) -> CellRow:
    """Snapshot ``cell`` as the values of ``_UPDATE_CELL``."""
    summary = json.dumps(cell.summary) if cell.summary else None
    return (
        cell.status.value,
        cell.attempts,
        cell.worker,
        cell.host,
        cell.started,
        cell.finished,
        cell.elapsed,
        cell.output,
        summary,
        cell.error,
        cell.error_kind,
        ledger.versions.get(cell.task),
        ledger.params_hashes.get(cell.task),
        cell.inputs,
        cell.output_sum,
        cell.task,
        cell.year,
        cell.member,
    )


def connect(run_dir: Path, create: bool = True) -> sqlite3.Connection:
    """Open the state database of ``run_dir`` (creating it when ``create``)."""
    path = Path(run_dir) / STATE_FILE
    if not create and not path.is_file():
        raise StateError(
            f"{run_dir}: no clusterfarm run here ({STATE_FILE} missing); "
            "give the run dir of a `clusterfarm run` with --run-dir"
        )
    try:
        if create:
            path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(path, timeout=30, check_same_thread=False, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        if create:
            db.executescript(_SCHEMA)
            _migrate(db)
            trace.create_schema(db)  # the attempts table and the run id (clusterfarm.trace)
            db.execute("INSERT OR IGNORE INTO meta VALUES ('schema', ?)", (SCHEMA_VERSION,))
        schema = db.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
    except sqlite3.Error as exc:
        raise StateError(f"{path}: cannot open the run state ({exc})") from exc
    if schema is None or schema[0] != SCHEMA_VERSION:
        raise StateError(f"{path}: not a clusterfarm state database of schema {SCHEMA_VERSION}")
    return db


def _migrate(db: sqlite3.Connection) -> None:
    for table, columns in _MIGRATIONS.items():
        have = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
        for column in columns:
            if column.split()[0] not in have:
                db.execute(f"ALTER TABLE {table} ADD COLUMN {column}")
    db.execute("UPDATE meta SET value=? WHERE key='schema'", (SCHEMA_VERSION,))


class RunState:
    """The state database of one run directory."""

    def __init__(self, run_dir: Path, create: bool = True) -> None:
        self.run_dir = Path(run_dir)
        self.db = connect(self.run_dir, create)

    def close(self) -> None:
        self.db.close()

    def records(self, tasks: list[str]) -> dict[tuple[str, int, int], Record]:
        """The complete cells of ``tasks`` as earlier runs recorded them."""
        names = ",".join("?" * len(tasks))
        rows = self.db.execute(
            f"SELECT task, year, member, version, params_hash, inputs, output, output_sum, "
            f"summary, worker, host, elapsed, finished FROM cells "
            f"WHERE status='+' AND task IN ({names})",
            tasks,
        )
        return {(r[0], r[1], r[2]): Record(*r[3:]) for r in rows}

    def load(self, schedule: TaskSchedule, ledger: Ledger) -> Plan:
        """Bring ``schedule`` up to date with earlier runs; return what was kept and why the
        rest runs again.

        Complete cells whose ledger still holds are kept; every other cell (stale results,
        earlier F/T with a fresh set of attempts, a ``W`` left by a manager that died) becomes
        outstanding, and that is saved at once so ``status`` agrees.
        """
        with self.db:
            self.db.executemany(
                "INSERT OR IGNORE INTO cells (task, year, member) VALUES (?, ?, ?)",
                (cell.key for cell in schedule),
            )
        plan = plan_resume(schedule, self.records(schedule.tasks), ledger)
        for cell, record in plan.kept:
            cell.output, cell.worker, cell.host = record.output, record.worker, record.host
            cell.elapsed, cell.finished = record.elapsed, record.finished
            cell.inputs, cell.output_sum = record.inputs, record.output_sum
            cell.summary = json.loads(record.summary) if record.summary else None
            schedule.mark_complete_from_earlier(cell)
        with self.db:
            self.db.executemany(
                "UPDATE cells SET status='-', attempts=0, error=NULL, error_kind=NULL "
                "WHERE task=? AND year=? AND member=?",
                (cell.key for cell in schedule if cell.status is Status.OUTSTANDING),
            )
        return plan

    def begin_invocation(
        self,
        tasks: list[str],
        years: str,
        members: str,
        year_tasks: Iterable[str] = (),
        skipped: int = 0,
    ) -> int:
        """Record the start of a ``run`` invocation (``skipped``: complete from before)."""
        with self.db:
            cursor = self.db.execute(
                "INSERT INTO invocations "
                "(pid, started, tasks, years, members, year_tasks, skipped) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    os.getpid(),
                    time.time(),
                    ",".join(tasks),
                    years,
                    members,
                    ",".join(year_tasks),
                    skipped,
                ),
            )
        return int(cursor.lastrowid or 0)

    def end_invocation(
        self, invocation: int, ran: int, skipped: int, state: str, exit_code: int
    ) -> None:
        """Record how a ``run`` invocation ended."""
        with self.db:
            self.db.execute(
                "UPDATE invocations SET finished=?, ran=?, skipped=?, state=?, exit_code=? "
                "WHERE id=?",
                (time.time(), ran, skipped, state, exit_code, invocation),
            )


class StateWriter:
    """One thread that persists cell rows in batches, then passes them to ``on_commit``.

    Under load the batches grow by themselves: while one transaction commits, the next
    changes queue up, so the commit rate adapts to the dispatch rate.
    """

    def __init__(self, db: sqlite3.Connection, on_commit: Callable[[list[CellRow]], None]) -> None:
        self._db = db
        self._on_commit = on_commit
        self._queue: queue.SimpleQueue[tuple[CellRow, trace.AttemptRow | None] | None]
        self._queue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._loop, name="state-writer", daemon=True)
        self._error: BaseException | None = None
        self._thread.start()

    def put(self, row: CellRow, attempt: trace.AttemptRow | None = None) -> None:
        """Queue a cell row, and the attempt that ended, to be committed together."""
        self._queue.put((row, attempt))

    def close(self) -> None:
        """Write everything queued, then stop the thread."""
        self._queue.put(None)
        self._thread.join()
        if self._error is not None:
            raise StateError(f"cannot write the run state: {self._error}") from self._error

    def _loop(self) -> None:
        running = True
        while running:
            batch = [self._queue.get()]
            while True:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            if batch[-1] is None or None in batch:
                running = False
            items = [item for item in batch if item is not None]
            rows = _latest_per_cell(row for row, _ in items)
            if not rows:
                continue
            try:
                with self._db:
                    self._db.executemany(_UPDATE_CELL, rows)
                    self._db.executemany(trace.INSERT_ATTEMPT, (a for _, a in items if a))
            except sqlite3.Error as exc:  # disk full, run dir removed...
                self._error = exc
                return
            try:
                self._on_commit(rows)
            except Exception:  # showing must never stop saving: log it and go on
                LOG.exception("showing a state change failed")


def _latest_per_cell(rows: Iterable[CellRow]) -> list[CellRow]:
    latest: dict[tuple[Any, ...], CellRow] = {}
    for row in rows:
        latest[row[-3:]] = row
    return list(latest.values())
