"""What the registered workers are doing, for ``clusterfarm workers``."""

from __future__ import annotations

import time
from typing import Any

from clusterfarm.wire.access import Access
from clusterfarm.wire.nameserver import list_workers, locate
from clusterfarm.wire.worker_calls import describe_entries


def describe_workers(ns_host: str, ns_port: int, access: Access) -> list[dict[str, Any]]:
    """Ask every registered worker (in parallel) what it is doing."""
    return describe_entries(list_workers(locate(ns_host, ns_port, access)), access)


def workers_table(workers: list[dict[str, Any]]) -> str:
    """Render workers as an aligned text table."""
    if not workers:
        return "no workers registered"
    rows = [("NAME", "HOST", "PID", "STATE", "TASK", "DONE", "UPTIME", "RUN")]
    for w in workers:
        task = w["task"]
        cell = f"{task['task']} {task['year']} m{task['member']}" if task else "-"
        uptime = time.strftime("%H:%M:%S", time.gmtime(w["uptime"])) if w["uptime"] else "-"
        rows.append(
            (
                w["name"].removeprefix("clusterfarm.worker."),
                w["host"],
                str(w["pid"] or "-"),
                w["state"],
                cell,
                str(w["done"] or 0),
                uptime,
                w.get("leased_by") or "-",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(v.ljust(n) for v, n in zip(row, widths, strict=True)).rstrip() for row in rows
    )
