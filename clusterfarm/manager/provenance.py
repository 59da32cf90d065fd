"""Provenance of a run: what produced its results, in ``{run_dir}/provenance.json``.

Each ``run`` invocation records, in its row of the state's ``invocations`` table, its command
line and a snapshot of what it ran with: the effective settings, every task's version,
parameters and parameter hash, and the identity (path, size, modification time) of the input
files. The versions each host's workers report (``PyroWorker.info()["versions"]``) are kept in
``meta``. :func:`write` turns all of it into ``provenance.json`` (at the start and at the end of
every invocation), so the file, like the report, can always be rebuilt from the state alone.
Result files carry the run's ``run_id`` (see :mod:`clusterfarm.record.trace`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import sqlite3
import sys
import threading
import time
import tomllib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from clusterfarm.config.settings import Settings, to_toml
from clusterfarm.manager.prepare import Prepared
from clusterfarm.record import trace
from clusterfarm.record.state import PROVENANCE_FILE
from clusterfarm.record.transaction import transaction
from clusterfarm.tasks.registry import get_task
from clusterfarm.versions import library_versions
from clusterfarm.wire.access import Access
from clusterfarm.wire.nameserver import WorkerEntry
from clusterfarm.wire.protocol import YEAR
from clusterfarm.wire.worker_calls import describe_entries

LOG = logging.getLogger("clusterfarm.provenance")
MAX_INPUT_FILES = 10_000  # listed one by one; beyond, only counted


def begin(
    db: sqlite3.Connection,
    run_dir: Path,
    invocation: int,
    settings: Settings,
    prepared: Prepared,
    argv: Sequence[str] | None = None,
) -> None:
    """Record how invocation ``invocation`` was called and what it runs with; write the file."""
    snapshot = {
        "settings": tomllib.loads(to_toml(settings)),
        "settings_source": settings.source,
        "tasks": {
            name: {
                "version": prepared.ledger.versions.get(name),
                "params_hash": prepared.ledger.params_hashes.get(name),
                "params": prepared.params.get(name),
            }
            for name in prepared.tasks
        },
        "inputs": input_files(settings, prepared),
    }
    command = json.dumps(list(argv if argv is not None else sys.argv))
    with transaction(db):
        db.execute(
            "UPDATE invocations SET argv=?, settings=? WHERE id=?",
            (command, _dumps(snapshot), invocation),
        )
    write(run_dir, db)


def input_files(settings: Settings, prepared: Prepared) -> dict[str, Any]:
    """The input files the run's cells read: path, size, modification time, as this machine
    sees them (None where it cannot: a manager without the data mount)."""
    data_dir = Path(settings.run.data_dir).absolute()
    paths: dict[str, None] = {}
    for task in prepared.tasks:
        spec = get_task(task)
        if spec.inputs is None:
            continue
        params = dict(prepared.params[task])
        members = [YEAR] if spec.per_year else prepared.members
        for year in prepared.years:
            for member in members:
                read = spec.input_files(year, member, params, data_dir)
                paths.update(dict.fromkeys(map(str, read)))
    files = []
    for path in list(paths)[:MAX_INPUT_FILES]:
        try:
            stat = os.stat(path)
            files.append(
                {"path": path, "size": stat.st_size, "mtime": trace.iso_time(stat.st_mtime)}
            )
        except OSError:
            files.append({"path": path, "size": None, "mtime": None})
    return {"data_dir": str(data_dir), "files": files, "files_total": len(paths)}


@contextlib.contextmanager
def asking_workers(
    db: sqlite3.Connection, workers: list[WorkerEntry], access: Access
) -> Iterator[None]:
    """While the block runs, ask ``workers``' hosts (one worker each) and this process which
    versions they run; keep the answers in the state's ``meta`` when it ends.

    Asking in the background keeps the question (a connection per worker, the worker's first
    look at its installed packages) off the start of the dispatch; the store waits until the
    block is over, when nothing else writes to ``db``.
    """
    found: dict[str, Any] = {}

    def ask() -> None:
        found["manager"] = {"host": socket.gethostname(), "versions": library_versions()}
        # one worker a host speaks for its host: a thousand workers are not a thousand calls
        # while the run starts
        asked = {
            w["host"]: w
            for w in describe_entries(list({w.host: w for w in workers}.values()), access)
        }
        found["workers"] = [
            {"name": w.name, "host": w.host, "versions": asked[w.host].get("versions")}
            for w in workers
        ]

    thread = threading.Thread(target=ask, name="provenance", daemon=True)
    thread.start()
    try:
        yield
    finally:
        thread.join(10)
        try:
            _store(db, dict(found))
        except sqlite3.Error as exc:  # a full disk: the run says so itself; this can wait
            LOG.warning("workers' versions not kept (%s)", exc)


def _store(db: sqlite3.Connection, found: dict[str, Any]) -> None:
    hosts = read_hosts(db)
    for worker in found.get("workers", []):
        entry = hosts.setdefault(worker["host"], {"workers": [], "versions": None})
        if worker["name"] not in entry["workers"]:
            entry["workers"].append(worker["name"])
        if worker.get("versions"):
            entry["versions"] = worker["versions"]
            entry["seen"] = trace.iso_time(time.time())
    with transaction(db):
        db.execute("INSERT OR REPLACE INTO meta VALUES ('hosts', ?)", (_dumps(hosts),))
        if "manager" in found:
            manager = _dumps(found["manager"])
            db.execute("INSERT OR REPLACE INTO meta VALUES ('manager', ?)", (manager,))


def read_hosts(db: sqlite3.Connection) -> dict[str, Any]:
    """The versions each host's workers reported, with the workers' names."""
    return _meta_json(db, "hosts") or {}


def _meta_json(db: sqlite3.Connection, key: str) -> Any:
    row = db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
    return json.loads(row[0]) if row else None


def read(db: sqlite3.Connection, run_dir: Path) -> dict[str, Any]:
    """The provenance document of a run, from its state database."""
    invocations = []
    latest: dict[str, Any] = {}
    have = {row[1] for row in db.execute("PRAGMA table_info(invocations)")}
    recorded = ", ".join(c if c in have else "NULL" for c in ("argv", "settings"))  # older dirs
    for row in db.execute(
        f"SELECT id, {recorded}, started, finished, state, exit_code, tasks, years, members, "
        "ran, skipped FROM invocations ORDER BY id"
    ):
        ident, argv, snapshot, started, finished, state, code, tasks, years, members = row[:10]
        invocations.append(
            {
                "id": ident,
                "argv": json.loads(argv) if argv else None,
                "started": trace.iso_time(started),
                "finished": trace.iso_time(finished),
                "state": state,
                "exit_code": code,
                "tasks": tasks,
                "years": years,
                "members": members,
                "ran": row[10],
                "skipped": row[11],
            }
        )
        latest = json.loads(snapshot) if snapshot else latest
    return {
        "run_id": trace.run_id(db),
        "run_dir": str(Path(run_dir).absolute()),
        "written": trace.iso_time(time.time()),
        "manager": _meta_json(db, "manager"),
        "hosts": read_hosts(db),
        "settings": latest.get("settings"),
        "settings_source": latest.get("settings_source"),
        "tasks": latest.get("tasks", {}),
        "inputs": latest.get("inputs"),
        "invocations": invocations,
    }


def write(run_dir: Path, db: sqlite3.Connection) -> Path:
    """Write ``{run_dir}/provenance.json`` (atomically) from the state; return its path."""
    path = Path(run_dir) / PROVENANCE_FILE
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(read(db, run_dir), indent=2, default=str) + "\n")
    os.replace(tmp, path)
    return path


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), default=str)
