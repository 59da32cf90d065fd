"""The local launcher: ``run``'s own worker daemons as subprocesses of this machine.

Local workers get a pipe from this process as stdin and exit when it closes, so they die with
the manager even if it is SIGKILLed; they run in their own session so a Ctrl-C in the
terminal reaches only the manager, which then stops them in order. A worker ``local.<n>``
logs to ``{run_dir}/logs/local.<n>.log``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from clusterfarm.errors import WorkerError
from clusterfarm.launchers.base import START_TIMEOUT, tail_file
from clusterfarm.wire.access import Access
from clusterfarm.wire.nameserver import WorkerEntry, list_workers, locate
from clusterfarm.wire.pyro import WORKER_PREFIX

LOCAL_HOST = "local"


class LocalLauncher:
    """Runs ``count`` worker daemons on this machine for one run."""

    def __init__(
        self,
        count: int,
        ns_host: str,
        ns_port: int,
        log_dir: Path,
        access: Access,
        settings_path: str | None = None,
    ) -> None:
        self.count = count
        self.ns_host, self.ns_port = ns_host, ns_port
        self.log_dir = Path(log_dir)
        self.settings_path = settings_path
        self.access = access  # the run's; each worker reads its secret from its stdin
        self.processes: list[subprocess.Popen[bytes]] = []

    def names(self) -> list[str]:
        return [f"{LOCAL_HOST}.{i}" for i in range(self.count)]

    def start(self, timeout: float = START_TIMEOUT) -> list[WorkerEntry]:
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
            secret = self.access.secret
            if secret is not None:
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
            if secret is not None and process.stdin is not None:
                process.stdin.write(secret.encode() + b"\n")  # then the pipe stays open:
                process.stdin.flush()  # its end tells the worker that the manager is gone
        return self.wait_registered(timeout)

    def wait_registered(self, timeout: float) -> list[WorkerEntry]:
        """Wait until every started worker is in the nameserver."""
        ns = locate(self.ns_host, self.ns_port, self.access)
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

    def maintain(self, cells_left: int) -> None:
        """Nothing to do: local workers live as long as the run."""

    def why_lost(self, worker: str) -> str | None:
        """How a local worker's process ended, if it did."""
        name = worker.removeprefix(WORKER_PREFIX)
        for wanted, process in zip(self.names(), self.processes, strict=False):
            code = process.poll() if wanted == name else None
            if code is not None:
                return f"killed by signal {-code}" if code < 0 else f"exited with code {code}"
        return None

    def log_tail(self, worker: str, lines: int) -> str:
        return local_log_tail(self.log_dir, worker, lines)


def local_log_tail(log_dir: Path, worker: str, lines: int) -> str:
    """The end of local worker ``worker``'s log, in the run's ``logs`` folder."""
    name = worker.removeprefix(WORKER_PREFIX)
    hint = "local-mode worker logs live in the run dir of the run that started them (--run-dir)"
    return tail_file(Path(log_dir) / f"{name}.log", lines, hint)
