"""The words of a run's progress: the blocks, status lines and JSON that ``run`` and
``status`` print, so every view and command says the same thing the same way."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping

from clusterfarm.record.ledger import describe
from clusterfarm.record.schedule import Cell, Status
from clusterfarm.record.status import RunStatus


def progress_lines(
    tasks: list[str], years: list[int], progress: Mapping[tuple[str, int], str]
) -> list[str]:
    """The progress strings (``2001: +++WW---F----``), year by year (task-prefixed when there
    are several), of the (task, year) rows in ``progress``."""
    lines = []
    for year in years:
        for task in tasks:
            if (task, year) not in progress:
                continue
            line = f"{year}: {progress[(task, year)]}"
            lines.append(f"{task} {line}" if len(tasks) > 1 else line)
    return lines


def header(elapsed: float, counts: Mapping[str, int], total: int) -> str:
    """The line heading each block: ``[12.3s] 13/39 complete, 2 working, 1 failed, 0 timeout``."""
    return f"[{elapsed:.1f}s] {counts_line(counts, total)}"


def counts_line(counts: Mapping[str, int], total: int) -> str:
    """``13/39 complete, 2 working, 1 failed, 0 timeout``."""
    return (
        f"{counts.get('+', 0)}/{total} complete, {counts.get('W', 0)} working, "
        f"{counts.get('F', 0)} failed, {counts.get('T', 0)} timeout"
    )


def status_text(report: RunStatus) -> str:
    """A finished (or running) run as text: the block, then one line per failed cell."""
    counts = {status.value: report.count(status) for status in Status}
    lines = [header(report.elapsed, counts, report.total)]
    lines += progress_lines(report.tasks, report.years, report.progress)
    return "\n".join(lines + status_footer(report))


def status_footer(report: RunStatus) -> list[str]:
    """What follows the last block: whether its manager is gone, cells ran and skipped, then
    one line per failed cell."""
    lines = [f"ran {report.ran}, skipped {report.skipped} (already complete)"]
    if report.gone_since is not None:
        when = time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(report.gone_since))
        left = report.abandoned
        lines.insert(
            0,
            f"manager gone since {when}; run again to resume"
            + (f" (the {left} cell(s) it was working on show as -)" if left else ""),
        )
    for failure in report.failures:
        lines.append(
            f"{failure['status']} {failure['task']} {failure['year']} "
            f"m{failure['member']} after {failure['attempts']} attempt(s) "
            f"[{failure['error_kind']}]: {failure['error']}"
        )
    return lines


def status_json(report: RunStatus, stale: list[tuple[Cell, str]] | None = None) -> str:
    """The JSON object of ``run --json`` and ``status --json`` (with ``stale``: the cells the
    next run computes again)."""
    document = report.to_json()
    if stale is not None:
        document["stale"] = [
            {"task": cell.task, "year": cell.year, "member": cell.member, "reason": reason}
            for cell, reason in stale
        ]
    return json.dumps(document)


def stale_lines(stale: list[tuple[Cell, str]], limit: int = 20) -> list[str]:
    """Which complete cells the next run computes again, and why (at most ``limit`` lines)."""
    if not stale:
        return []
    lines = [f"{len(stale)} complete cell(s) will run again on the next run:"]
    lines += [f"  {describe(cell)}: {reason}" for cell, reason in stale[:limit]]
    if len(stale) > limit:
        lines.append(f"  ... and {len(stale) - limit} more")
    return lines
