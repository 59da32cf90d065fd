"""The results ledger: when a result from an earlier run may be kept, and why not.

Each complete cell records its task version, a hash of its parameters, the identity of its
inputs (paths, sizes, modification times, measured where the task ran) and its output's path
and checksum. A rerun keeps a result only while all of them still hold; otherwise the cell
is recomputed, and so is every cell that waits for it.

The check has two halves. :func:`plan_resume` needs no file: versions, parameters, and
whether the output lies where the current settings put it (a changed ``results_dir``
recomputes). :func:`clusterfarm.tasks.files.check_result` reads the files, so it runs where
the data is: in the manager's process in local mode, on a worker in a cluster
(``PyroWorker.check_results``), never declaring inputs changed because the manager's own
machine cannot see them.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from clusterfarm.record.schedule import Cell, TaskSchedule
from clusterfarm.wire.protocol import YEAR


@dataclass(frozen=True)
class Ledger:
    """What a kept result must match now: versions, parameters, where its output goes."""

    versions: Mapping[str, str]
    params_hashes: Mapping[str, str]
    output_path: Callable[[Cell], str | None] = field(default=lambda cell: None)


@dataclass(frozen=True)
class Record:
    """A complete cell as an earlier run recorded it."""

    version: str | None
    params_hash: str | None
    inputs: str | None
    output: str | None
    output_sum: str | None
    summary: str | None
    worker: str | None
    host: str | None
    elapsed: float | None
    finished: float | None


@dataclass
class Plan:
    """Which earlier results a run keeps, and why it recomputes the others."""

    kept: list[tuple[Cell, Record]] = field(default_factory=list)
    stale: list[tuple[Cell, str]] = field(default_factory=list)


def plan_resume(
    schedule: TaskSchedule, records: Mapping[tuple[str, int, int], Record], ledger: Ledger
) -> Plan:
    """Decide, for every complete cell of an earlier run, whether its result still holds."""
    plan = Plan()
    kept: set[tuple[str, int, int]] = set()
    for cell in schedule:  # tasks in dependency order: prerequisites are decided first
        record = records.get(cell.key)
        if record is None:
            continue
        reason = _why_stale(cell, record, ledger) or _waits_for_stale(schedule, cell, kept)
        if reason is None:
            kept.add(cell.key)
            plan.kept.append((cell, record))
        else:
            plan.stale.append((cell, reason))
    return plan


def _why_stale(cell: Cell, record: Record, ledger: Ledger) -> str | None:
    version = ledger.versions.get(cell.task)
    if record.version != version:
        return f"task version changed ({record.version} -> {version})"
    if record.params_hash != ledger.params_hashes.get(cell.task):
        return "parameters changed"
    if record.output and record.output != ledger.output_path(cell):
        return f"results_dir changed (its output was {record.output})"
    return None


def needs_files_checked(cell: Cell) -> bool:
    """True when a kept cell has inputs or an output whose files must still be checked."""
    return cell.inputs is not None or bool(cell.output)


def apply_record(cell: Cell, record: Record) -> None:
    """Give a kept cell what an earlier run recorded of it."""
    cell.output, cell.worker, cell.host = record.output, record.worker, record.host
    cell.elapsed, cell.finished = record.elapsed, record.finished
    cell.inputs, cell.output_sum = record.inputs, record.output_sum
    cell.summary = json.loads(record.summary) if record.summary else None


def _waits_for_stale(
    schedule: TaskSchedule, cell: Cell, kept: set[tuple[str, int, int]]
) -> str | None:
    for needed in schedule.prerequisites(cell):
        if needed.key not in kept:
            return f"needs {describe(needed)}, which will run again"
    return None


def describe(cell: Cell) -> str:
    """``vort_track 2001 m003`` or ``year_summary 2001``."""
    member = "" if cell.member == YEAR else f" m{cell.member:03d}"
    return f"{cell.task} {cell.year}{member}"
