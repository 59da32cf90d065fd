"""What the registered workers are doing, for ``clusterfarm workers``."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from Pyro5.api import Proxy

from clusterfarm.wire.nameserver import WorkerEntry, list_workers, locate
from clusterfarm.wire.pyro import authenticate

INFO_TIMEOUT = 3.0


def describe_workers(ns_host: str, ns_port: int) -> list[dict[str, Any]]:
    """Ask every registered worker (in parallel) what it is doing."""
    return describe_entries(list_workers(locate(ns_host, ns_port)))


def describe_entries(entries: list[WorkerEntry]) -> list[dict[str, Any]]:
    """Ask these workers (in parallel) what they are doing and which versions they run."""
    if not entries:
        return []
    with ThreadPoolExecutor(max_workers=min(32, len(entries))) as pool:
        return list(pool.map(_describe, entries))


def _describe(entry: WorkerEntry) -> dict[str, Any]:
    described: dict[str, Any] = {
        "name": entry.name,
        "uri": entry.uri,
        "host": entry.host,
        "pid": entry.pid,
        "state": "unreachable",
        "task": None,
        "done": None,
        "uptime": None,
    }
    try:
        with authenticate(Proxy(entry.uri)) as proxy:
            proxy._pyroTimeout = INFO_TIMEOUT
            info = proxy.info()
    except Exception as exc:  # Pyro5's own errors, or the remote one (no info method...)
        described["error"] = str(exc) or type(exc).__name__
        return described
    if not isinstance(info, dict):
        described["error"] = f"info answered {type(info).__name__}, not a dict"
        return described
    keys = ("pid", "state", "task", "done", "uptime", "version", "leased_by", "draining")
    for key in (*keys, "versions"):
        described[key] = info.get(key)
    return described


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
