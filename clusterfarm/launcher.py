"""Start and stop worker daemons: here as local subprocesses (local mode).

Local workers get a pipe from this process as stdin and exit when it closes, so they die with
the manager even if it is SIGKILLed; they run in their own session so a Ctrl-C in the
terminal reaches only the manager, which then stops them in order.
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
from clusterfarm.nameserver import WorkerEntry, list_workers, locate

LOCAL_HOST = "local"


class LocalLauncher:
    """Runs ``count`` worker daemons on this machine for one run."""

    def __init__(
        self,
        count: int,
        ns_host: str,
        ns_port: int,
        log_dir: Path,
        settings_path: str | None = None,
    ) -> None:
        self.count = count
        self.ns_host, self.ns_port = ns_host, ns_port
        self.log_dir = Path(log_dir)
        self.settings_path = settings_path
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
            ]
            with open(self.log_dir / f"{name}.log", "ab") as log:
                self.processes.append(
                    subprocess.Popen(
                        command,
                        stdin=subprocess.PIPE,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                    )
                )
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
