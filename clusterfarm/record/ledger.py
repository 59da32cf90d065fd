"""The results ledger: when a result from an earlier run may be kept, and why not.

Each complete cell records its task version, a hash of its parameters, the identity of its
inputs (paths, sizes, modification times, measured where the task ran) and its output's path
and checksum. A rerun keeps a result only while all of them still hold; otherwise the cell
is recomputed, and so is every cell that waits for it.

The check has two halves. :func:`plan_resume` needs no file: versions, parameters, and
whether the output lies where the current settings put it (a changed ``results_dir``
recomputes). :func:`check_result` reads the files, so it runs where the data is: in the
manager's process in local mode, on a worker in a cluster (``PyroWorker.check_results``),
never declaring inputs changed because the manager's own machine cannot see them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clusterfarm.record.schedule import YEAR, Task, TaskSchedule


@dataclass(frozen=True)
class Ledger:
    """What a kept result must match now: versions, parameters, where its output goes."""

    versions: Mapping[str, str]
    params_hashes: Mapping[str, str]
    output_path: Callable[[Task], str | None] = field(default=lambda cell: None)


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

    kept: list[tuple[Task, Record]] = field(default_factory=list)
    stale: list[tuple[Task, str]] = field(default_factory=list)


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


def _why_stale(cell: Task, record: Record, ledger: Ledger) -> str | None:
    version = ledger.versions.get(cell.task)
    if record.version != version:
        return f"task version changed ({record.version} -> {version})"
    if record.params_hash != ledger.params_hashes.get(cell.task):
        return "parameters changed"
    if record.output and record.output != ledger.output_path(cell):
        return f"results_dir changed (its output was {record.output})"
    return None


def needs_files_checked(cell: Task) -> bool:
    """True when a kept cell has inputs or an output whose files must still be checked."""
    return cell.inputs is not None or bool(cell.output)


def check_result(
    input_files: list[Path], inputs: str | None, output: str | None, output_sum: str | None
) -> str | None:
    """Why a recorded result no longer holds where these files are, or None if it does."""
    if inputs is not None and input_identity(input_files) != inputs:
        return "input files changed"
    if output:
        return output_problem(output, output_sum)
    return None


def apply_record(cell: Task, record: Record) -> None:
    """Give a kept cell what an earlier run recorded of it."""
    cell.output, cell.worker, cell.host = record.output, record.worker, record.host
    cell.elapsed, cell.finished = record.elapsed, record.finished
    cell.inputs, cell.output_sum = record.inputs, record.output_sum
    cell.summary = json.loads(record.summary) if record.summary else None


def _waits_for_stale(
    schedule: TaskSchedule, cell: Task, kept: set[tuple[str, int, int]]
) -> str | None:
    for needed in schedule.prerequisites(cell):
        if needed.key not in kept:
            return f"needs {describe(needed)}, which will run again"
    return None


def describe(cell: Task) -> str:
    """``vort_track 2001 m003`` or ``year_summary 2001``."""
    member = "" if cell.member == YEAR else f" m{cell.member:03d}"
    return f"{cell.task} {cell.year}{member}"


def output_problem(path: str, checksum: str | None) -> str | None:
    """Why a recorded output can no longer be trusted, or None if it is intact."""
    file = Path(path)
    if not file.is_file():
        return f"output {path} is missing"
    if checksum is not None and file_checksum(file) != checksum:
        return f"output {path} changed since it was written"
    return None


def file_checksum(path: Path) -> str:
    """SHA-256 of a file's content (first 16 hex digits)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def input_identity(paths: Iterable[Path]) -> str | None:
    """A short identity of input files: their paths, sizes and modification times.

    None when a task declares no inputs. A missing file is part of the identity, so a file
    that appears or disappears changes it.
    """
    parts: list[Any] = []
    for path in paths:
        try:
            stat = Path(path).stat()
            parts.append([str(path), stat.st_size, stat.st_mtime_ns])
        except OSError:
            parts.append([str(path), None, None])
    if not parts:
        return None
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:16]
