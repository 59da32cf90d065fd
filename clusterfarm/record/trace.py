"""The per-attempt record of a run (the ``attempts`` table) and ``clusterfarm trace``.

Every dispatch of a cell to a worker is one row, written when the cell leaves ``W``: its
outcome, where it ran, when it was queued (taken by the manager), started and ended (the task
process's clock), and what it cost (:mod:`clusterfarm.worker.usage`). Outcomes are ``complete``,
``failure``, ``timeout`` (counted attempts, as in the cells table) and ``requeued``: the cell
went back to ``-`` without the try being counted (cancelled, not started because an earlier
cell of its batch ended the task process, worker busy or stopping, run interrupted), so the
same attempt number shows again on the next row. A lost worker's running cell is a counted
``failure`` with ``error_kind`` ``lost``. Times are epoch seconds in the database and ISO 8601
UTC in the trace; the ``run_id`` of the run dir lives in ``meta``.
"""

from __future__ import annotations

import csv
import io
import json
import sqlite3
import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from clusterfarm.errors import UsageError
from clusterfarm.record.schedule import Cell
from clusterfarm.wire.protocol import Usage, named

SCHEMA = """
CREATE TABLE IF NOT EXISTS attempts (
    id INTEGER PRIMARY KEY, invocation INTEGER,
    task TEXT NOT NULL, year INTEGER NOT NULL, member INTEGER NOT NULL,
    attempt INTEGER NOT NULL, status TEXT NOT NULL, error_kind TEXT, error TEXT,
    worker TEXT, host TEXT, queued REAL, started REAL, ended REAL,
    elapsed REAL, cpu REAL, peak_rss INTEGER,
    rchar INTEGER, wchar INTEGER, read_bytes INTEGER, write_bytes INTEGER
);
"""

# the columns an attempt row fills, in order; the invocation is this run's, the latest
_FIELDS = (
    "task",
    "year",
    "member",
    "attempt",
    "status",
    "error_kind",
    "error",
    "worker",
    "host",
    "queued",
    "started",
    "ended",
    "elapsed",
    "cpu",
    "peak_rss",
    "rchar",
    "wchar",
    "read_bytes",
    "write_bytes",
)
INSERT_ATTEMPT = (
    f"INSERT INTO attempts (invocation, {', '.join(_FIELDS)}) "
    f"VALUES ((SELECT max(id) FROM invocations), {', '.join('?' * len(_FIELDS))})"
)

# what `clusterfarm trace` prints, in order (Nextflow-trace-like)
COLUMNS = ("invocation", *_FIELDS)
TIME_COLUMNS = ("queued", "started", "ended")
FORMATS = ("tsv", "csv", "json")
COUNTED = ("complete", "failure", "timeout")
REQUEUED = "requeued"

AttemptRow = tuple[Any, ...]


def create_schema(db: sqlite3.Connection) -> None:
    """Add the attempts table and this run dir's ``run_id`` to a state database."""
    db.executescript(SCHEMA)
    db.execute("INSERT OR IGNORE INTO meta VALUES ('run_id', ?)", (uuid.uuid4().hex,))


def run_id(db: sqlite3.Connection) -> str | None:
    """The run id of the run dir whose state ``db`` is."""
    row = db.execute("SELECT value FROM meta WHERE key='run_id'").fetchone()
    return str(row[0]) if row else None


def attempt_row(
    cell: Cell,
    attempt: int,
    status: str,
    kind: str | None,
    error: str | None,
    now: float,
    elapsed: float | None = None,
    usage: Usage | None = None,
) -> AttemptRow:
    """The attempts row of ``cell``'s try number ``attempt``, after its outcome was applied.

    ``status`` is ``complete``, ``failure`` or ``timeout``; the try counted unless the
    schedule took it back (the cell's attempts are now below ``attempt``): then ``requeued``.
    """
    if cell.attempts < attempt:
        status = REQUEUED
    elif status not in COUNTED:
        status = "failure"
    figures = named(usage)
    measured = figures.get("started")
    started = float(measured) if measured is not None else cell.started
    ended = now if started is None or elapsed is None else started + elapsed
    return (
        cell.task,
        cell.year,
        cell.member,
        attempt,
        status,
        kind,
        error,
        cell.worker,
        cell.host,
        cell.started,
        started,
        ended,
        elapsed,
        figures.get("cpu"),
        figures.get("peak_rss"),
        figures.get("rchar"),
        figures.get("wchar"),
        figures.get("read_bytes"),
        figures.get("write_bytes"),
    )


# The last attempt of a cell that ended (+, F, T) is its row of ``cells``: most cells have
# one attempt, and writing it once saves an insert per cell (for no-op cells that insert was
# much of the dispatch's cost). ``attempts`` holds the earlier and the requeued ones.
_LAST_ATTEMPTS = """
SELECT invocation, task, year, member, attempts,
    CASE status WHEN '+' THEN 'complete' WHEN 'T' THEN 'timeout' ELSE 'failure' END,
    error_kind, error, worker, host, started, task_started,
    COALESCE(task_started + elapsed, finished), elapsed, cpu, peak_rss, rchar, wchar,
    read_bytes, write_bytes
FROM cells WHERE status IN ('+', 'F', 'T') AND attempts > 0
"""
_CELL_FIGURES = ("invocation", "task_started", "cpu", "peak_rss", "rchar", "wchar")
# before a cell starts afresh (a rerun gives F, T and stale cells new attempts), its last
# attempt moves from its cells row into ``attempts``, so earlier invocations keep their record
ARCHIVE_LAST_ATTEMPT = (
    f"INSERT INTO attempts (invocation, {', '.join(_FIELDS)}) {_LAST_ATTEMPTS} "
    "AND task=? AND year=? AND member=?"
)


def read_attempts(db: sqlite3.Connection) -> list[dict[str, Any]]:
    """Every attempt of the run, in the order they ended; times as epoch seconds."""
    names = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    cell_columns = {row[1] for row in db.execute("PRAGMA table_info(cells)")}
    queries = []
    if "attempts" in names:
        queries.append(f"SELECT {', '.join(COLUMNS)} FROM attempts")
    if set(_CELL_FIGURES) <= cell_columns:  # run dirs from before keep only their attempts
        queries.append(_LAST_ATTEMPTS)
    if not queries:
        return []
    ended = COLUMNS.index("ended") + 1
    cursor = db.execute(f"{' UNION ALL '.join(queries)} ORDER BY {ended}")
    return [dict(zip(COLUMNS, row, strict=True)) for row in cursor]


def iso_time(epoch: float | None) -> str | None:
    """``2026-11-29T16:28:47.123Z`` for an epoch time (None stays None)."""
    if epoch is None:
        return None
    text = datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds")
    return text.replace("+00:00", "Z")


def trace_rows(db: sqlite3.Connection) -> list[dict[str, Any]]:
    """The rows of ``clusterfarm trace``: every attempt, times in ISO 8601 UTC."""
    rows = read_attempts(db)
    for row in rows:
        for column in TIME_COLUMNS:
            row[column] = iso_time(row[column])
    return rows


def format_trace(rows: Iterable[Mapping[str, Any]], fmt: str) -> str:
    """Render trace rows as ``tsv`` or ``csv`` (header line first) or a ``json`` list."""
    if fmt not in FORMATS:
        raise UsageError(f"--format {fmt}: give one of {', '.join(FORMATS)}")
    if fmt == "json":
        return json.dumps(list(rows), indent=1) + "\n"
    out = io.StringIO()
    writer = csv.writer(out, delimiter="\t" if fmt == "tsv" else ",", lineterminator="\n")
    writer.writerow(COLUMNS)
    for row in rows:
        writer.writerow(["" if row[c] is None else row[c] for c in COLUMNS])
    return out.getvalue()
