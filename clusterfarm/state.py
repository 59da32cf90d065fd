"""The run state in ``{run_dir}/state.sqlite``: cells, attempts, the results ledger, runs.

SQLite in WAL mode so ``clusterfarm status`` can read while ``run`` writes. Status changes are
written by one :class:`StateWriter` thread that commits whatever has queued up in one
transaction (group commit) and only then hands the changes on to be shown.
"""

from __future__ import annotations

import json
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clusterfarm.errors import StateError
from clusterfarm.schedule import Status, Task, TaskSchedule

STATE_FILE = "state.sqlite"
SCHEMA_VERSION = "1"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS cells (
    task TEXT NOT NULL, year INTEGER NOT NULL, member INTEGER NOT NULL,
    status TEXT NOT NULL DEFAULT '-', attempts INTEGER NOT NULL DEFAULT 0,
    worker TEXT, host TEXT, started REAL, finished REAL, elapsed REAL,
    output TEXT, summary TEXT, error TEXT, error_kind TEXT,
    version TEXT, params_hash TEXT,
    PRIMARY KEY (task, year, member)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS invocations (
    id INTEGER PRIMARY KEY, pid INTEGER, started REAL, finished REAL,
    tasks TEXT, years TEXT, members TEXT,
    ran INTEGER NOT NULL DEFAULT 0, skipped INTEGER NOT NULL DEFAULT 0,
    state TEXT NOT NULL DEFAULT 'running', exit_code INTEGER
);
"""

# one row of the cells table as the writer stores it; built under the manager's lock
CellRow = tuple[Any, ...]
_UPDATE_CELL = """
UPDATE cells SET status=?, attempts=?, worker=?, host=?, started=?, finished=?, elapsed=?,
    output=?, summary=?, error=?, error_kind=?, version=?, params_hash=?
WHERE task=? AND year=? AND member=?
"""


@dataclass(frozen=True)
class Ledger:
    """What a complete result must match to be reused: task version and parameters hash."""

    versions: Mapping[str, str]
    params_hashes: Mapping[str, str]


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
            db.execute("INSERT OR IGNORE INTO meta VALUES ('schema', ?)", (SCHEMA_VERSION,))
        schema = db.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
    except sqlite3.Error as exc:
        raise StateError(f"{path}: cannot open the run state ({exc})") from exc
    if schema is None or schema[0] != SCHEMA_VERSION:
        raise StateError(f"{path}: not a clusterfarm state database of schema {SCHEMA_VERSION}")
    return db


class RunState:
    """The state database of one run directory."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = Path(run_dir)
        self.db = connect(self.run_dir)

    def close(self) -> None:
        self.db.close()

    def load(
        self, schedule: TaskSchedule, ledger: Ledger, output_intact: Callable[[str], bool]
    ) -> int:
        """Bring ``schedule`` up to date with earlier runs; return the cells skipped as done.

        A complete cell is kept only if its version and parameters match ``ledger`` and its
        output (if any) is intact. Stale ``W`` and earlier F/T cells become outstanding with a
        fresh set of attempts.
        """
        with self.db:
            self.db.executemany(
                "INSERT OR IGNORE INTO cells (task, year, member) VALUES (?, ?, ?)",
                (cell.key for cell in schedule),
            )
        names = ",".join("?" * len(schedule.tasks))
        rows = self.db.execute(
            f"SELECT task, year, member, output, version, params_hash, summary, worker, host, "
            f"elapsed, finished FROM cells WHERE status='+' AND task IN ({names})",
            schedule.tasks,
        )
        skipped = 0
        for (
            task,
            year,
            member,
            output,
            version,
            params_hash,
            summary,
            worker,
            host,
            elapsed,
            finished,
        ) in rows:
            try:
                cell = schedule.cell(task, year, member)
            except KeyError:
                continue
            if version != ledger.versions.get(task) or params_hash != ledger.params_hashes.get(
                task
            ):
                continue
            if output and not output_intact(output):
                continue
            cell.output, cell.worker, cell.host = output, worker, host
            cell.elapsed, cell.finished = elapsed, finished
            cell.summary = json.loads(summary) if summary else None
            schedule.mark_complete_from_earlier(cell)
            skipped += 1
        # everything not kept is outstanding now: persist that, so status agrees at once
        with self.db:
            self.db.executemany(
                "UPDATE cells SET status='-', attempts=0, error=NULL, error_kind=NULL "
                "WHERE task=? AND year=? AND member=?",
                (cell.key for cell in schedule if cell.status is Status.OUTSTANDING),
            )
        return skipped

    def begin_invocation(self, tasks: list[str], years: str, members: str) -> int:
        """Record the start of a ``run`` invocation and return its id."""
        with self.db:
            cursor = self.db.execute(
                "INSERT INTO invocations (pid, started, tasks, years, members) "
                "VALUES (?, ?, ?, ?, ?)",
                (os.getpid(), time.time(), ",".join(tasks), years, members),
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

    def update_invocation_counts(self, invocation: int, ran: int, skipped: int) -> None:
        with self.db:
            self.db.execute(
                "UPDATE invocations SET ran=?, skipped=? WHERE id=?", (ran, skipped, invocation)
            )


class StateWriter:
    """One thread that persists cell rows in batches, then passes them to ``on_commit``.

    Under load the batches grow by themselves: while one transaction commits, the next
    changes queue up, so the commit rate adapts to the dispatch rate.
    """

    def __init__(self, db: sqlite3.Connection, on_commit: Callable[[list[CellRow]], None]) -> None:
        self._db = db
        self._on_commit = on_commit
        self._queue: queue.SimpleQueue[CellRow | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._loop, name="state-writer", daemon=True)
        self._error: BaseException | None = None
        self._thread.start()

    def put(self, row: CellRow) -> None:
        self._queue.put(row)

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
            rows = _latest_per_cell(row for row in batch if row is not None)
            if not rows:
                continue
            try:
                with self._db:
                    self._db.executemany(_UPDATE_CELL, rows)
            except sqlite3.Error as exc:  # disk full, run dir removed...
                self._error = exc
                return
            self._on_commit(rows)


def _latest_per_cell(rows: Iterable[CellRow]) -> list[CellRow]:
    latest: dict[tuple[Any, ...], CellRow] = {}
    for row in rows:
        latest[row[-3:]] = row
    return list(latest.values())


@dataclass
class RunReport:
    """The progress of a run's latest invocation, as read back from its state database."""

    tasks: list[str]
    years: list[int]
    members: list[int]
    progress: dict[tuple[str, int], str]
    ran: int
    skipped: int
    elapsed: float
    state: str
    failures: list[dict[str, Any]]

    def count(self, status: Status) -> int:
        return sum(line.count(status.value) for line in self.progress.values())

    @property
    def total(self) -> int:
        return sum(len(line) for line in self.progress.values())

    def to_json(self) -> dict[str, Any]:
        """The JSON object of SPEC §4."""
        progress: dict[str, dict[str, str]] = {}
        for (task, year), line in self.progress.items():
            progress.setdefault(task, {})[str(year)] = line
        return {
            "complete": self.count(Status.COMPLETE),
            "failure": self.count(Status.FAILURE),
            "timeout": self.count(Status.TIMEOUT),
            "outstanding": self.count(Status.OUTSTANDING) + self.count(Status.WORKING),
            "ran": self.ran,
            "skipped": self.skipped,
            "elapsed": round(self.elapsed, 3),
            "state": self.state,
            "progress": progress,
            "failures": self.failures,
        }


def read_report(db: sqlite3.Connection) -> RunReport:
    """Read the progress of the latest ``run`` invocation recorded in ``db``."""
    from clusterfarm.specs import parse_spec

    row = db.execute(
        "SELECT started, finished, tasks, years, members, ran, skipped, state "
        "FROM invocations ORDER BY id DESC LIMIT 1"
    ).fetchone()
    if row is None:
        raise StateError("this run dir has a state database but no run was started in it yet")
    started, finished, tasks_text, years_text, members_text, ran, skipped, state = row
    tasks = tasks_text.split(",")
    years, members = parse_spec(years_text), parse_spec(members_text, "member")
    grid = {(task, year): ["-"] * len(members) for task in tasks for year in years}
    column = {member: i for i, member in enumerate(members)}
    failures = []
    names = ",".join("?" * len(tasks))
    for task, year, member, status, attempts, error, error_kind in db.execute(
        f"SELECT task, year, member, status, attempts, error, error_kind FROM cells "
        f"WHERE task IN ({names}) ORDER BY task, year, member",
        tasks,
    ):
        line = grid.get((task, year))
        if line is None or member not in column:
            continue
        line[column[member]] = status
        if status in (Status.FAILURE.value, Status.TIMEOUT.value):
            failures.append(
                {
                    "task": task,
                    "year": year,
                    "member": member,
                    "status": status,
                    "attempts": attempts,
                    "error_kind": error_kind,
                    "error": error,
                }
            )
    order = {task: i for i, task in enumerate(tasks)}
    failures.sort(key=lambda f: (order[f["task"]], f["year"], f["member"]))
    elapsed = (finished or time.time()) - started
    progress = {key: "".join(line) for key, line in grid.items()}
    return RunReport(tasks, years, members, progress, ran, skipped, elapsed, state, failures)
