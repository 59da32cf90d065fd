"""Start and stop worker daemons: local subprocesses (local mode) or over SSH on the hosts.

Both launchers are driven the same way (:class:`Launcher`): ``start`` returns the registered
workers, ``stop`` ends them; this module holds the interface, the per-host outcomes and the
local launcher, ``remote.py`` the SSH one (so local mode never loads paramiko).

Local workers get a pipe from this process as stdin and exit when it closes, so they die with
the manager even if it is SIGKILLed; they run in their own session so a Ctrl-C in the
terminal reaches only the manager, which then stops them in order.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from clusterfarm.errors import EXIT_FAILED, EXIT_INFRA, EXIT_OK, ClusterFarmError, WorkerError
from clusterfarm.nameserver import WorkerEntry, list_workers, locate
from clusterfarm.settings import Host

LOG = logging.getLogger("clusterfarm.launcher")
LOCAL_HOST = "local"
START_TIMEOUT = 30.0  # seconds for started workers to register


class Launcher(Protocol):
    """Starts a set of worker daemons and stops them again."""

    def start(self, timeout: float = START_TIMEOUT) -> list[WorkerEntry]:
        """Start the workers, wait until they are registered; return them."""
        ...

    def stop(self) -> None:
        """Stop the workers and confirm they are gone."""
        ...


class LocalLauncher:
    """Runs ``count`` worker daemons on this machine for one run."""

    def __init__(
        self,
        count: int,
        ns_host: str,
        ns_port: int,
        log_dir: Path,
        settings_path: str | None = None,
        secret: str | None = None,
    ) -> None:
        self.count = count
        self.ns_host, self.ns_port = ns_host, ns_port
        self.log_dir = Path(log_dir)
        self.settings_path = settings_path
        self.secret = secret  # the run's; each worker reads it from its stdin
        self.processes: list[subprocess.Popen[bytes]] = []

    def names(self) -> list[str]:
        return [f"{LOCAL_HOST}.{i}" for i in range(self.count)]

    def start(self, timeout: float = 30.0) -> list[WorkerEntry]:
        """Start the workers and wait until all are registered; return them."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        for name in self.names():
            command = [sys.executable, "-m", "clusterfarm"]
            if self.settings_path:
                command += ["--settings", self.settings_path]
            command += [
                "worker",
                "--host",
                "127.0.0.1",
                "--name",
                name,
                "--nameserver",
                f"{self.ns_host}:{self.ns_port}",
                "--die-with-stdin",
                "--log-file",
                str(self.log_dir / f"{name}.log"),
            ]
            if self.secret is not None:
                command.append("--secret-stdin")
            with open(self.log_dir / f"{name}.out", "ab") as log:
                process = subprocess.Popen(
                    command,
                    stdin=subprocess.PIPE,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            self.processes.append(process)
            if self.secret is not None and process.stdin is not None:
                process.stdin.write(self.secret.encode() + b"\n")  # then the pipe stays open:
                process.stdin.flush()  # its end tells the worker that the manager is gone
        return self.wait_registered(timeout)

    def wait_registered(self, timeout: float) -> list[WorkerEntry]:
        """Wait until every started worker is in the nameserver."""
        ns = locate(self.ns_host, self.ns_port)
        wanted = {f"clusterfarm.worker.{name}" for name in self.names()}
        deadline = time.monotonic() + timeout
        while True:
            workers = [w for w in list_workers(ns) if w.name in wanted]
            if len(workers) == len(wanted):
                return workers
            dead = [p for p in self.processes if p.poll() is not None]
            if dead or time.monotonic() > deadline:
                problem = (
                    f"{len(dead)} exited (code {dead[0].returncode})"
                    if dead
                    else f"only {len(workers)} of {len(wanted)} registered in {timeout:g} s"
                )
                raise WorkerError(
                    f"local workers failed to start: {problem}; see the logs in {self.log_dir}"
                )
            time.sleep(0.005)

    def stop(self, grace: float = 5.0) -> None:
        """Stop every worker: close its lifeline, then TERM, then KILL after ``grace``."""
        for process in self.processes:
            if process.stdin:
                with contextlib.suppress(OSError):
                    process.stdin.close()
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        for process in self.processes:
            try:
                process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        self.processes.clear()


@dataclass
class HostOutcome:
    """What start-workers or stop-workers did on one host."""

    host: str
    wanted: int = 0
    started: list[str] = field(default_factory=list)  # daemons started now
    running: list[str] = field(default_factory=list)  # already running: left alone
    workers: list[WorkerEntry] = field(default_factory=list)  # registered
    stopped: list[str] = field(default_factory=list)  # ended by SIGTERM
    killed: list[str] = field(default_factory=list)  # needed SIGKILL
    error: str = ""  # one line naming the host; empty when all went well


def on_hosts(
    hosts: Sequence[Host], action: Callable[[Host, HostOutcome], None]
) -> list[HostOutcome]:
    """Run ``action`` on every host at once (a thread each); collect one outcome per host."""

    def one(host: Host) -> HostOutcome:
        outcome = HostOutcome(host.name, host.workers)
        try:
            action(host, outcome)
        except ClusterFarmError as exc:
            outcome.error = str(exc)
        except Exception as exc:  # a surprise on one host must not take the others down
            LOG.exception("%s: unexpected error", host.name)
            outcome.error = f"{host.name}: unexpected {type(exc).__name__}: {exc}"
        return outcome

    with ThreadPoolExecutor(max_workers=max(1, len(hosts))) as pool:
        return list(pool.map(one, hosts))


def exit_code(outcomes: Sequence[HostOutcome]) -> int:
    """SPEC §5: 0 all hosts fine, 1 some failed, 3 every host failed."""
    failed = sum(1 for outcome in outcomes if outcome.error)
    return EXIT_OK if not failed else EXIT_INFRA if failed == len(outcomes) else EXIT_FAILED


def text_table(rows: Sequence[Sequence[str]]) -> str:
    """Align rows of cells into columns; the last column is left ragged."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    return "\n".join(
        "  ".join([*(v.ljust(n) for v, n in zip(row[:-1], widths, strict=True)), row[-1]]).rstrip()
        for row in rows
    )


def outcomes_table(outcomes: Sequence[HostOutcome], action: str) -> str:
    """One row per host: what start-workers (``action="start"``) or stop-workers did."""
    rows: list[tuple[str, ...]]
    if action == "start":
        rows = [("HOST", "STARTED", "RUNNING", "REGISTERED", "RESULT")]
        rows += [
            (
                o.host,
                str(len(o.started)),
                str(len(o.running)),
                f"{len(o.workers)}/{o.wanted}",
                _result(o),
            )
            for o in outcomes
        ]
    else:
        rows = [("HOST", "STOPPED", "KILLED", "RESULT")]
        rows += [(o.host, str(len(o.stopped)), str(len(o.killed)), _result(o)) for o in outcomes]
    return text_table(rows)


def _result(outcome: HostOutcome) -> str:
    return f"error: {outcome.error.removeprefix(outcome.host + ': ')}" if outcome.error else "ok"
