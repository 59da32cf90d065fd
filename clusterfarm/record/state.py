"""The run state in ``{run_dir}/state.sqlite``: cells, attempts, the results ledger, runs.

SQLite in WAL mode so ``clusterfarm status`` can read while ``run`` writes. This module
opens, checks, migrates and loads the database (:class:`RunState`); while cells run, their
changes are written by the one thread of :mod:`clusterfarm.record.state_writer`.
"""

from __future__ import annotations

import logging
import os
import socket
import sqlite3
import time
import urllib.parse
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from clusterfarm.errors import StateError, StorageError, writing
from clusterfarm.record import trace
from clusterfarm.record.ledger import Ledger, Plan, Record, apply_record, plan_resume
from clusterfarm.record.schedule import Cell, Status, TaskSchedule
from clusterfarm.record.transaction import transaction
from clusterfarm.wire.protocol import YEAR

LOG = logging.getLogger("clusterfarm.state")
STATE_FILE = "state.sqlite"
LOCK_FILE = "run.lock"  # held by the run's manager while it runs
PROVENANCE_FILE = "provenance.json"  # what produced the results (manager.provenance)
LOGS = "logs"
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

# what schema 1 lacked: added in place, so older run dirs resume. An invocation's host,
# cwd and heartbeat tell ``status`` a live manager from a dead one, and where the run's
# relative paths point
_MIGRATIONS = {
    # the last attempt of a cell is recorded here, not in ``attempts`` (clusterfarm.trace)
    "cells": (
        "inputs TEXT",
        "output_sum TEXT",
        "invocation INTEGER",
        "task_started REAL",
        "cpu REAL",
        "peak_rss INTEGER",
        "rchar INTEGER",
        "wchar INTEGER",
        "read_bytes INTEGER",
        "write_bytes INTEGER",
    ),
    "invocations": (
        "year_tasks TEXT NOT NULL DEFAULT ''",
        "host TEXT",
        "cwd TEXT",
        "heartbeat REAL",
        "argv TEXT",  # the command line, and a snapshot of what it ran with (provenance)
        "settings TEXT",
    ),
}


def connect(run_dir: Path, create: bool = True) -> sqlite3.Connection:
    """Open the state database of ``run_dir`` for a run (creating it when ``create``)."""
    path = state_path(run_dir, must_exist=not create)
    if create:
        with writing(str(path.parent), RUN_DIR_HINT, StateError):
            path.parent.mkdir(parents=True, exist_ok=True)
    try:
        db = sqlite3.connect(path, timeout=30, check_same_thread=False, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        _check_intact(db, path)
        if create:
            db.executescript(_SCHEMA)
            _migrate(db)
            trace.create_schema(db)  # the attempts table and the run id (clusterfarm.trace)
            db.execute("INSERT OR IGNORE INTO meta VALUES ('schema', ?)", (SCHEMA_VERSION,))
        _check_schema(db, path)
    except sqlite3.Error as exc:
        raise state_error(exc, path) from exc
    return db


def connect_read_only(run_dir: Path) -> sqlite3.Connection:
    """Open the state database of ``run_dir`` for reading, writing nothing in the run dir.

    So ``status`` works on a read-only run dir and leaves a file that is no run state as it
    found it. A ``-wal`` file means a run is going (or was killed): its newest rows are there,
    read through SQLite's shared memory (``mode=ro``). Without one the main file holds
    everything, and ``immutable=1`` reads it without creating the ``-wal``/``-shm`` files a
    ``mode=ro`` open leaves behind; it is also the fallback where those cannot be made.
    """
    path = state_path(run_dir, must_exist=True)
    uri = "file:" + urllib.parse.quote(str(path.absolute()))
    wal = path.with_name(path.name + "-wal").exists()
    modes = ("mode=ro", "immutable=1") if wal else ("immutable=1",)
    for mode in modes:
        try:
            db = sqlite3.connect(f"{uri}?{mode}", uri=True, timeout=30, check_same_thread=False)
            _check_intact(db, path)
            _check_schema(db, path)
            return db
        except sqlite3.Error as exc:
            code = getattr(exc, "sqlite_errorcode", 0) & 0xFF
            if mode != modes[-1] and code in (_CANTOPEN, _READONLY):  # no -shm to be had
                continue
            raise state_error(exc, path) from exc
    raise AssertionError("unreachable")  # pragma: no cover


def state_path(run_dir: Path, must_exist: bool) -> Path:
    """``{run_dir}/state.sqlite``; with ``must_exist``, a StateError when it is missing."""
    path = Path(run_dir) / STATE_FILE
    if must_exist and not path.is_file():
        raise StateError(
            f"{run_dir}: no clusterfarm run here ({STATE_FILE} missing); "
            "give the run dir of a `clusterfarm run` with --run-dir"
        )
    return path


def record_paths(run_dir: Path) -> tuple[Path, ...]:
    """The run dir's own files, which no output may overwrite: the state database with its
    journal files, the lock, provenance.json, and the logs folder."""
    run_dir = Path(run_dir)
    database = [run_dir / f"{STATE_FILE}{end}" for end in ("", "-wal", "-shm", "-journal")]
    return (*database, run_dir / LOCK_FILE, run_dir / PROVENANCE_FILE, run_dir / LOGS)


RUN_DIR_HINT = "the run dir must be writable: fix its permissions or give another --run-dir"
# SQLite's primary result codes (the low byte of an extended code)
_PERM, _READONLY, _IOERR, _CORRUPT, _CANTOPEN, _FULL, _NOTADB = 3, 8, 10, 11, 14, 13, 26


def state_error(exc: sqlite3.Error, path: Path) -> StateError:
    """The one-line error for an SQLite error on the state database ``path``."""
    code = getattr(exc, "sqlite_errorcode", 0) & 0xFF
    if code in (_FULL, _IOERR):
        return StorageError(f"{path}: cannot write the run state ({exc}); free some space there")
    if code in (_CORRUPT, _NOTADB):
        return _damaged(path, str(exc))
    if code in (_PERM, _READONLY, _CANTOPEN):
        return StateError(f"{path}: cannot open the run state for writing ({exc}); {RUN_DIR_HINT}")
    return StateError(f"{path}: cannot open the run state ({exc})")


def _damaged(path: Path, detail: str) -> StateError:
    return StateError(
        f"{path}: the run state is damaged ({detail}); restore it from a backup, or move it "
        "aside to start this run dir afresh (complete cells are then computed again)"
    )


def _check_intact(db: sqlite3.Connection, path: Path) -> None:
    """Refuse a damaged database (a page overwritten, a truncated file) before it is used."""
    problems = [row[0] for row in db.execute("PRAGMA quick_check(1)")]
    if problems != ["ok"]:
        first = " ".join(problems[0].replace("*** in database main ***", "").split())
        raise _damaged(path, first[:120])


def _check_schema(db: sqlite3.Connection, path: Path) -> None:
    try:
        schema = db.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
    except sqlite3.OperationalError:  # no meta table: an empty file, or another database
        schema = None
    if schema is None or schema[0] != SCHEMA_VERSION:
        raise StateError(f"{path}: not a clusterfarm state database of schema {SCHEMA_VERSION}")


def _migrate(db: sqlite3.Connection) -> None:
    for table, columns in _MIGRATIONS.items():
        have = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
        for column in columns:
            if column.split()[0] not in have:
                db.execute(f"ALTER TABLE {table} ADD COLUMN {column}")
    db.execute("UPDATE meta SET value=? WHERE key='schema'", (SCHEMA_VERSION,))


class RunState:
    """The state database of one run directory."""

    def __init__(self, run_dir: Path, create: bool = True, read_only: bool = False) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / STATE_FILE
        self.db = connect_read_only(self.run_dir) if read_only else connect(self.run_dir, create)

    def run_id(self) -> str:
        """This run dir's run id (workers are leased by it; result files name it), made with
        the state (:func:`trace.create_schema`)."""
        found = trace.run_id(self.db)
        if found is None:
            raise StateError(f"{self.path}: no run id; open it with create=True first")
        return found

    def plan(self, schedule: TaskSchedule, ledger: Ledger) -> Plan:
        """What the next run would keep and redo, as far as the records tell (read-only)."""
        names = ",".join("?" * len(schedule.tasks))
        rows = self.db.execute(
            "SELECT task, year, member, version, params_hash, inputs, output, output_sum, "
            f"summary, worker, host, elapsed, finished FROM cells "
            f"WHERE status='+' AND task IN ({names})",
            schedule.tasks,
        )
        records = {(r[0], r[1], r[2]): Record(*r[3:]) for r in rows}
        return plan_resume(schedule, records, ledger)

    def close(self) -> None:
        self.db.close()

    def load(self, schedule: TaskSchedule, ledger: Ledger) -> Plan:
        """Bring ``schedule`` up to date with earlier runs; return what was kept and why the
        rest runs again.

        One scan of the cells table. Complete cells whose ledger still holds are kept (their
        files are checked afterwards, where the data is: see :func:`ledger.verify`); every
        other cell (stale results, earlier F/T with a fresh set of attempts, a ``W`` left by a
        manager that died) becomes outstanding, and that is saved at once so ``status``
        agrees. Only rows that change are written.
        """
        names = ",".join("?" * len(schedule.tasks))
        existing: dict[tuple[str, int, int], str] = {}
        records: dict[tuple[str, int, int], Record] = {}
        rows = self.db.execute(
            "SELECT task, year, member, status, attempts, error, version, params_hash, inputs, "
            f"output, output_sum, summary, worker, host, elapsed, finished "
            f"FROM cells WHERE task IN ({names})",
            schedule.tasks,
        )
        for (task, year, member, status, attempts, error, version, params_hash, inputs,
             output, output_sum, summary, worker, host, elapsed, finished) in rows:  # fmt: skip
            key = (task, year, member)
            clean = status == "-" and not attempts and error is None
            existing[key] = "clean" if clean else status
            if status == "+":
                records[key] = Record(
                    version, params_hash, inputs, output, output_sum, summary, worker, host,
                    elapsed, finished,
                )  # fmt: skip
        plan = plan_resume(schedule, records, ledger)
        for cell, record in plan.kept:
            apply_record(cell, record)
            schedule.mark_complete_from_earlier(cell)
        missing = [cell.key for cell in schedule if cell.key not in existing]
        reset = [
            cell.key
            for cell in schedule
            if cell.status is Status.OUTSTANDING and existing.get(cell.key, "clean") != "clean"
        ]
        with transaction(self.db):
            self.db.executemany(
                "INSERT OR IGNORE INTO cells (task, year, member) VALUES (?, ?, ?)", missing
            )
            self._start_afresh(reset)
            for task in schedule.tasks:  # what the cells not complete yet will be made with
                version, params = ledger.versions.get(task), ledger.params_hashes.get(task)
                self.db.execute(
                    "UPDATE cells SET version=?, params_hash=? WHERE task=? AND status!='+' "
                    "AND (version IS NOT ? OR params_hash IS NOT ?)",
                    (version, params, task, version, params),
                )
        return plan

    def nothing_to_do(self, run: Any) -> bool:
        """True when every cell of ``run`` (a runner.Prepared) is complete with the current
        version and parameters and has no files to check: then a rerun runs nothing.

        One counting query per task, no object per cell.
        """
        for task in run.tasks:
            per_year = run.shapes[task].per_year
            members = [YEAR] if per_year else run.members
            query = (
                "SELECT count(*) FROM cells WHERE task=? AND status='+' AND version IS ? "
                "AND params_hash IS ? AND output IS NULL AND inputs IS NULL "
                f"AND year IN ({','.join('?' * len(run.years))}) "
                f"AND member IN ({','.join('?' * len(members))})"
            )
            values = [task, run.ledger.versions.get(task), run.ledger.params_hashes.get(task)]
            (count,) = self.db.execute(query, [*values, *run.years, *members]).fetchone()
            if count != run.cells_of(task):
                return False
        return True

    def reopen(self, cells: Iterable[Cell]) -> None:
        """Save cells made outstanding again after the start (their files did not hold)."""
        with transaction(self.db):
            self._start_afresh([cell.key for cell in cells])

    def _start_afresh(self, keys: list[tuple[str, int, int]]) -> None:
        """Make cells outstanding with no attempt yet; their last attempt goes to the record."""
        self.db.executemany(trace.ARCHIVE_LAST_ATTEMPT, keys)
        self.db.executemany(
            "UPDATE cells SET status='-', attempts=0, error=NULL, error_kind=NULL "
            "WHERE task=? AND year=? AND member=?",
            keys,
        )

    def begin_invocation(
        self,
        tasks: list[str],
        years: str,
        members: str,
        year_tasks: Iterable[str] = (),
        skipped: int = 0,
    ) -> int:
        """Record the start of a ``run`` invocation (``skipped``: complete from before), by
        this process on this host, started from the current directory."""
        now = time.time()
        with transaction(self.db):
            cursor = self.db.execute(
                "INSERT INTO invocations "
                "(pid, host, cwd, started, heartbeat, tasks, years, members, year_tasks, skipped) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    os.getpid(),
                    socket.gethostname(),
                    os.getcwd(),
                    now,
                    now,
                    ",".join(tasks),
                    years,
                    members,
                    ",".join(year_tasks),
                    skipped,
                ),
            )
        return int(cursor.lastrowid or 0)

    def beat(self, invocation: int) -> None:
        """Record that the manager of ``invocation`` is still alive (its heartbeat)."""
        with transaction(self.db):
            self.db.execute(
                "UPDATE invocations SET heartbeat=? WHERE id=?", (time.time(), invocation)
            )

    def end_invocation(
        self, invocation: int, ran: int, skipped: int, state: str, exit_code: int
    ) -> None:
        """Record how a ``run`` invocation ended."""
        with transaction(self.db):
            self.db.execute(
                "UPDATE invocations SET finished=?, ran=?, skipped=?, state=?, exit_code=? "
                "WHERE id=?",
                (time.time(), ran, skipped, state, exit_code, invocation),
            )
