"""Short calls to one worker, each on a connection of its own: what it is doing, whether
earlier results still hold where it sees the files, cancel, quarantine.

The dispatcher's lanes carry the run's batches; these calls never wait behind a batch, and
a failure here is an answer (None, an ``error`` entry), never an exception that could stop
the caller: a worker that cannot be asked is simply not heard from.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import Pyro5.errors

from clusterfarm.wire.access import Access
from clusterfarm.wire.nameserver import WorkerEntry
from clusterfarm.wire.protocol import JoinAnswer, ProtocolError, RunSpec
from clusterfarm.wire.pyro import CALL_TIMEOUT

LOG = logging.getLogger("clusterfarm.worker_calls")
INFO_TIMEOUT = 3.0
CHECK_CHUNK = 5000  # results asked about in one check_results call
# what a worker's info() tells, as `clusterfarm workers` shows it
INFO_KEYS = ("pid", "state", "task", "done", "uptime", "version", "leased_by", "draining")


def describe_entries(entries: list[WorkerEntry], access: Access) -> list[dict[str, Any]]:
    """Ask these workers (in parallel) what they are doing and which versions they run."""
    if not entries:
        return []
    with ThreadPoolExecutor(max_workers=min(32, len(entries))) as pool:
        return list(pool.map(lambda entry: describe(entry, access), entries))


def describe(entry: WorkerEntry, access: Access) -> dict[str, Any]:
    """What one worker says of itself, or its entry with ``state`` unreachable and the error."""
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
        with access.proxy(entry.uri) as proxy:
            proxy._pyroTimeout = INFO_TIMEOUT
            info = proxy.info()
    except Exception as exc:  # Pyro5's own errors, or the remote one (no info method...)
        described["error"] = str(exc) or type(exc).__name__
        return described
    if not isinstance(info, dict):
        described["error"] = f"info answered {type(info).__name__}, not a dict"
        return described
    for key in (*INFO_KEYS, "versions"):
        described[key] = info.get(key)
    return described


def check_results_on(
    entry: WorkerEntry, spec: RunSpec, items: list[list[Any]], access: Access
) -> list[str | None] | None:
    """Ask one worker whether earlier results still hold where it sees the files.

    ``items`` are ``[task, year, member, inputs, output, output_sum]`` per result. None when
    the worker cannot be asked (unreachable, another run's, or it answers nonsense);
    otherwise one reason (or None: still good) per item.
    """
    reasons: list[str | None] = []
    try:
        with access.proxy(entry.uri) as proxy:
            proxy._pyroTimeout = CALL_TIMEOUT + 0.01 * min(len(items), CHECK_CHUNK)
            answer = JoinAnswer.from_wire(proxy.join(spec.to_wire()))
            if answer.leased_by is not None or answer.error is not None:
                return None
            for start in range(0, len(items), CHECK_CHUNK):
                part = items[start : start + CHECK_CHUNK]
                got = proxy.check_results(spec.run_id, part)
                if not isinstance(got, list) or len(got) != len(part):
                    return None
                reasons += [None if r is None else str(r) for r in got]
    except (Pyro5.errors.PyroError, ProtocolError) as exc:
        LOG.warning("%s could not check earlier results: %s", entry.name, exc)
        return None
    return reasons


def cancel_aside(entry: WorkerEntry, access: Access, run_id: str | None = None) -> None:
    """Ask a worker to stop its task, on a connection of its own (best effort)."""
    call_aside(entry, access, "cancel", run_id)


def quarantine_aside(entry: WorkerEntry, access: Access, seconds: float) -> None:
    """Tell a worker it is quarantined, so ``clusterfarm workers`` shows it (best effort)."""
    call_aside(entry, access, "quarantine", seconds)


def call_aside(entry: WorkerEntry, access: Access, method: str, *args: Any) -> None:
    """Call ``method`` on a worker over a short-lived connection of its own; ignore failure."""
    try:
        with access.proxy(entry.uri) as proxy:
            proxy._pyroTimeout = 5
            getattr(proxy, method)(*args)
    except Pyro5.errors.PyroError:
        pass
