"""Read a run back from its state database: progress strings, counts, failures.

What ``clusterfarm status`` and ``run --json`` print, so both say the same thing.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from typing import Any

from clusterfarm.errors import StateError
from clusterfarm.schedule import YEAR, Status


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
        "SELECT started, finished, tasks, years, members, year_tasks, ran, skipped, state "
        "FROM invocations ORDER BY id DESC LIMIT 1"
    ).fetchone()
    if row is None:
        raise StateError("this run dir has a state database but no run was started in it yet")
    started, finished, tasks_text, years_text, members_text, year_tasks, ran, skipped, state = row
    tasks = tasks_text.split(",")
    per_year = set(year_tasks.split(","))
    years, members = parse_spec(years_text), parse_spec(members_text, "member")
    grid = {
        (task, year): ["-"] * (1 if task in per_year else len(members))
        for task in tasks
        for year in years
    }
    column = {member: i for i, member in enumerate(members)}
    column[YEAR] = 0
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
