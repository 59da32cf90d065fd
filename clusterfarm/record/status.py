"""Read a run back from its state database: progress strings, counts, failures.

What ``clusterfarm status`` and ``run --json`` print, so both say the same thing. A run
still marked running whose manager is gone (see :mod:`.manager_heartbeat`) is reported as such: its
``W`` cells show as ``-`` (the next run treats them as outstanding) and its elapsed
time stops at the manager's last heartbeat.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from typing import Any

from clusterfarm.errors import StateError
from clusterfarm.record.manager_heartbeat import gone_since
from clusterfarm.record.schedule import Status
from clusterfarm.wire.protocol import YEAR

GONE = "manager gone"  # the state of a run whose manager died without saying so
# invocation columns added since the first schema, and their values where they are missing
_NEWER = {"year_tasks": "''", "host": "NULL", "cwd": "NULL", "heartbeat": "NULL"}


@dataclass
class RunStatus:
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
    cwd: str | None = None  # where the run was started: its relative paths start there
    gone_since: float | None = None  # when a manager that is gone was last known alive
    abandoned: int = 0  # cells it left W, shown as -

    def count(self, status: Status) -> int:
        return sum(line.count(status.value) for line in self.progress.values())

    @property
    def complete(self) -> int:
        return self.count(Status.COMPLETE)

    @property
    def failure(self) -> int:
        return self.count(Status.FAILURE)

    @property
    def timeout(self) -> int:
        return self.count(Status.TIMEOUT)

    @property
    def outstanding(self) -> int:
        return self.count(Status.OUTSTANDING) + self.count(Status.WORKING)

    @property
    def total(self) -> int:
        return sum(len(line) for line in self.progress.values())

    def to_json(self) -> dict[str, Any]:
        """The JSON object that ``run --json`` and ``status --json`` print."""
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
            **({"gone_since": _iso(self.gone_since)} if self.gone_since is not None else {}),
            "progress": progress,
            "failures": self.failures,
        }


def read_status(db: sqlite3.Connection) -> RunStatus:
    """Read the progress of the latest ``run`` invocation recorded in ``db``."""
    from clusterfarm.config.specs import parse_spec

    # status reads without migrating: a run dir of an older version lacks the newer columns
    have = {row[1] for row in db.execute("PRAGMA table_info(invocations)")}
    newer = ", ".join(name if name in have else value for name, value in _NEWER.items())
    row = db.execute(
        "SELECT started, finished, tasks, years, members, ran, skipped, state, pid, "
        f"{newer} FROM invocations ORDER BY id DESC LIMIT 1"
    ).fetchone()
    if row is None:
        raise StateError("this run dir has a state database but no run was started in it yet")
    started, finished, tasks_text, years_text, members_text, ran, skipped, state, pid = row[:9]
    year_tasks, host, cwd, heartbeat = row[9:]
    gone = gone_since(pid, host, heartbeat) if state == "running" else None
    if gone is not None:
        state, finished = GONE, gone
    tasks = tasks_text.split(",")
    per_year = set(year_tasks.split(","))
    years, members = parse_spec(years_text), parse_spec(members_text, "member")
    progress = {}
    for task in tasks:
        columns = [YEAR] if task in per_year else members
        progress.update(_progress(db, task, years, columns))
    in_run_years, in_run_members = set(years), {*members, YEAR}
    failures = [
        {
            "task": task,
            "year": year,
            "member": member,
            "status": status,
            "attempts": attempts,
            "error_kind": error_kind,
            "error": error,
        }
        for task, year, member, status, attempts, error, error_kind in db.execute(
            f"SELECT task, year, member, status, attempts, error, error_kind FROM cells "
            f"WHERE status IN ('F', 'T') AND task IN ({','.join('?' * len(tasks))})",
            tasks,
        )
        if year in in_run_years and member in in_run_members
    ]
    order = {task: i for i, task in enumerate(tasks)}
    failures.sort(key=lambda f: (order[f["task"]], f["year"], f["member"]))
    elapsed = (finished or time.time()) - started
    abandoned = 0
    if gone is not None:
        abandoned = sum(line.count(Status.WORKING.value) for line in progress.values())
        progress = {key: line.replace("W", "-") for key, line in progress.items()}
    return RunStatus(
        tasks,
        years,
        members,
        progress,
        ran,
        skipped,
        elapsed,
        state,
        failures,
        cwd,
        gone,
        abandoned,
    )


def _iso(seconds: float) -> str:
    """``seconds`` since the epoch as ISO 8601 UTC."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def _progress(
    db: sqlite3.Connection, task: str, years: list[int], members: list[int]
) -> dict[tuple[str, int], str]:
    """The progress strings of ``task``: one SQL scan that strings each year's statuses.

    The scan follows the table's key (task, year, member), so each year's statuses come in
    member order; a year with a cell missing from the table is read cell by cell instead.
    """
    wanted = ",".join("?" * len(members))
    rows = db.execute(
        f"SELECT year, group_concat(status, '') FROM (SELECT year, member, status FROM cells "
        f"WHERE task=? AND member IN ({wanted}) ORDER BY year, member) GROUP BY year",
        [task, *members],
    )
    found = {year: line for year, line in rows}
    progress = {}
    for year in years:
        line = found.get(year, "")
        if len(line) != len(members):  # cells not in the table yet: outstanding
            have = dict(
                db.execute(
                    f"SELECT member, status FROM cells WHERE task=? AND year=? "
                    f"AND member IN ({wanted})",
                    [task, year, *members],
                ).fetchall()
            )
            line = "".join(have.get(member, Status.OUTSTANDING.value) for member in members)
        progress[(task, year)] = line
    return progress
