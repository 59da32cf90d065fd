"""Start and stop the worker daemons of the settings' hosts over SSH, every host at once.

:class:`SSHLauncher` reaches every host in parallel (a thread each, so one dead host costs its
own timeout, not everyone's), runs ``python -m clusterfarm.launchers.ssh.daemons`` there after
``workers.setup`` (see ``daemons.py``) and keeps one :class:`HostOutcome` per host; a failing
host never stops the others. The SSH itself is in ``session.py``, the only module that imports
paramiko (so local mode never loads it). A worker ``<host>.<n>`` logs to
``{workdir}/logs/<host>.<n>.log`` on its host, read back over SSH by :meth:`log_tail`.
"""

from __future__ import annotations

import json
import logging
import re
import shlex
import time
from collections.abc import Sequence
from typing import Any

import Pyro5.errors

from clusterfarm import __version__
from clusterfarm.config.settings import Host, Settings, WorkerSettings
from clusterfarm.errors import LaunchError, NameServerError, UsageError, WorkerError
from clusterfarm.launchers.base import (
    SETUP_FAILED,
    START_TIMEOUT,
    ClusterLauncher,
    HostOutcome,
    on_hosts,
    setup_then,
)
from clusterfarm.launchers.ssh.session import CONNECT_TIMEOUT, CommandResult, Remote, connect
from clusterfarm.wire.access import Access
from clusterfarm.wire.nameserver import WorkerEntry, list_workers
from clusterfarm.wire.pyro import WORKER_PREFIX

LOG = logging.getLogger("clusterfarm.launchers.ssh")
HELPER = "clusterfarm.launchers.ssh.daemons"
STOP_GRACE = 10.0  # seconds between SIGTERM and SIGKILL
COMMAND_TIMEOUT = 120.0  # one remote command, workers.setup included


def remote_command(workers: WorkerSettings, python_args: Sequence[str]) -> str:
    """The shell text that runs ``workers.python ARGS`` on a host, after ``workers.setup``."""
    line = f"exec {workers.python} {shlex.join(python_args)}"
    return setup_then(workers.setup, "workers.setup", line)


def remote_failure(host: str, workers: WorkerSettings, result: CommandResult) -> str:
    """Say in one line, naming the host, why a remote ``workers.python`` command failed."""
    lines = [line.strip() for line in result.err.splitlines() if line.strip()]
    last = lines[-1] if lines else f"exit {result.code}, no message"
    if result.code == SETUP_FAILED:
        cause = lines[-2] if len(lines) > 1 else last
        return f"{host}: workers.setup failed ({cause}); fix the setup line in the settings"
    if result.code in (126, 127):
        return (
            f"{host}: remote python {workers.python!r} not found ({last}); set workers.python "
            f"to the interpreter's path on {host}, or fix workers.setup"
        )
    missing = re.search(r"No module named '?(clusterfarm[\w.]*)", result.err)
    if missing and missing.group(1) == "clusterfarm":
        return (
            f"{host}: clusterfarm is not importable by {workers.python} (No module named "
            "clusterfarm); install it there, or point workers.python / workers.setup at an "
            "environment that has it"
        )
    if missing:
        return (
            f"{host}: the clusterfarm there is too old (no {missing.group(1)}); "
            f"install clusterfarm {__version__} there"
        )
    return f"{host}: remote command failed ({last})"


class SSHLauncher(ClusterLauncher):
    """Starts and stops the worker daemons of the settings' hosts over SSH, in parallel."""

    def __init__(
        self,
        settings: Settings,
        hosts: Sequence[Host] | None = None,
        accept_new_host_keys: bool = False,
        connect_timeout: float = CONNECT_TIMEOUT,
        grace: float = STOP_GRACE,
        access: Access | None = None,
    ) -> None:
        self.settings = settings
        self._access = access  # the cluster's: its secret is copied to each host on start
        self.hosts = tuple(settings.hosts if hosts is None else hosts)
        self.accept_new_host_keys = accept_new_host_keys
        self.connect_timeout = connect_timeout
        self.grace = grace
        self.outcomes: list[HostOutcome] = []
        ns = settings.nameserver
        self.nameserver = f"{ns.host}:{ns.port}"

    def start(self, timeout: float = START_TIMEOUT) -> list[WorkerEntry]:
        """Start every host's missing daemons; raise :class:`LaunchError` if a host failed."""
        self.nameserver_proxy()  # none: fail now
        self.outcomes = on_hosts(self.hosts, lambda host, out: self._start(host, out, timeout))
        self._raise_failures("start")
        return [worker for outcome in self.outcomes for worker in outcome.workers]

    def stop(self) -> None:
        """Stop every host's recorded daemons; raise :class:`LaunchError` if a host failed."""
        self.outcomes = on_hosts(self.hosts, self._stop)
        self._raise_failures("stop")

    def _raise_failures(self, action: str) -> None:
        failed = {o.host: o.error for o in self.outcomes if o.error}
        if failed:
            raise LaunchError(
                f"{action} failed on {len(failed)} of {len(self.outcomes)} hosts: "
                + "; ".join(failed.values()),
                failed,
            )

    def _helper(self, remote: Remote, host: Host, *args: str) -> dict[str, Any]:
        """Run the daemons helper with ``ARGS`` on ``host``; return its JSON answer."""
        workers = self.settings.workers
        helper = ["-m", HELPER, *args, f"--workdir={workers.workdir}"]
        secret = self.access.secret if args[0] == "start" else None
        if secret is not None:
            helper.append("--secret-stdin")
        result = remote.run(
            remote_command(workers, [*helper, f"--host={host.name}"]),
            COMMAND_TIMEOUT + (self.grace if args[0] == "stop" else 0.0),  # stop waits grace
            stdin=None if secret is None else secret + "\n",
        )
        if result.code != 0:
            raise LaunchError(remote_failure(host.name, workers, result))
        try:
            answer: dict[str, Any] = json.loads(result.out.strip().splitlines()[-1])
        except (ValueError, IndexError):
            raise LaunchError(
                f"{host.name}: unexpected answer from {HELPER} "
                f"({result.out.strip()[-120:]!r}); is clusterfarm there the same version?"
            ) from None
        return answer

    def _start(self, host: Host, outcome: HostOutcome, timeout: float) -> None:
        began = time.monotonic()
        with connect(host, self.accept_new_host_keys, self.connect_timeout) as remote:
            LOG.debug("%s: logged in after %.3f s", host.name, time.monotonic() - began)
            answer = self._helper(
                remote,
                host,
                "start",
                f"--address={remote.endpoint.hostname}",  # an ssh alias resolved
                f"--count={host.workers}",
                f"--nameserver={self.nameserver}",
                f"--orphan-after={self.settings.workers.orphan_after:g}",
            )
            outcome.started, outcome.running = sorted(answer["started"]), sorted(answer["running"])
            pids = {**answer["started"], **answer["running"]}
            LOG.debug("%s: daemons started after %.3f s", host.name, time.monotonic() - began)
            self._wait_registered(remote, host, outcome, pids, timeout)
            LOG.debug("%s: all registered after %.3f s", host.name, time.monotonic() - began)

    def _wait_registered(
        self, remote: Remote, host: Host, outcome: HostOutcome, pids: dict[str, int], timeout: float
    ) -> None:
        """Wait until each daemon (by name and pid) is in the nameserver; fail fast on a death."""
        ns = self.nameserver_proxy()
        wanted = {WORKER_PREFIX + name: pid for name, pid in pids.items()}
        deadline = time.monotonic() + timeout
        next_look = time.monotonic() + 1.0
        while True:
            outcome.workers = [w for w in list_workers(ns) if wanted.get(w.name) == w.pid]
            if len(outcome.workers) == len(wanted):
                return
            now = time.monotonic()
            if now > next_look or now > deadline:  # ask the host whether they still live
                for name, state in self._helper(remote, host, "status")["workers"].items():
                    if name in pids and not state["alive"]:
                        log = state["log"].splitlines()[-1:] or ["no log"]
                        raise LaunchError(
                            f"{host.name}: worker {name} exited at start ({log[0]}); see "
                            f"{self.settings.workers.workdir}/logs/{name}.log on {host.name}"
                        )
                next_look = now + 2.0
            if now > deadline:
                raise LaunchError(
                    f"{host.name}: only {len(outcome.workers)} of {len(wanted)} workers registered "
                    f"with the nameserver {self.nameserver} in {timeout:g} s; can {host.name} "
                    f"reach it? see {self.settings.workers.workdir}/logs on {host.name}"
                )
            time.sleep(0.05)

    def _stop(self, host: Host, outcome: HostOutcome) -> None:
        with connect(host, self.accept_new_host_keys, self.connect_timeout) as remote:
            answer = self._helper(remote, host, "stop", f"--grace={self.grace:g}")
        outcome.stopped, outcome.killed = sorted(answer["stopped"]), sorted(answer["killed"])
        gone = {**answer["stopped"], **answer["killed"], **answer["stale"]}
        self._forget(gone)
        if answer["left"]:
            left = ", ".join(f"{name} (pid {pid})" for name, pid in answer["left"].items())
            raise LaunchError(
                f"{host.name}: {left} still running after SIGKILL; look at it on {host.name}"
            )

    def _forget(self, gone: dict[str, int]) -> None:
        """Remove the names of ended daemons from the nameserver (only if it is their entry)."""
        if not gone:
            return
        try:
            ns = self.nameserver_proxy(timeout=3)
            for worker in list_workers(ns):
                name = worker.name.removeprefix(WORKER_PREFIX)
                if name in gone and worker.pid in (gone[name], None):
                    ns.remove(worker.name)
        except (NameServerError, Pyro5.errors.PyroError) as exc:
            LOG.debug("names not removed from the nameserver (%s): it is gone", exc)

    def maintain(self, cells_left: int) -> None:
        """Nothing to do: SSH workers are started and stopped by the user."""

    def why_lost(self, worker: str) -> str | None:
        """Not known here: a lost host may not even answer SSH."""
        return None

    def log_tail(self, worker: str, lines: int) -> str:
        """The end of ``worker``'s log (``berlin.0`` or its full name), read over SSH."""
        name = worker.removeprefix(WORKER_PREFIX)
        host_name, _, index = name.rpartition(".")
        if not host_name or not index.isdigit():
            raise UsageError(f"{worker!r} is not a worker name; give <host>.<n>, e.g. berlin.0")
        hosts = {host.name: host for host in self.settings.hosts}
        if host_name not in hosts:
            raise UsageError(
                f"{worker}: no host {host_name!r} in the settings ({self.settings.source}); "
                f"hosts there: {', '.join(hosts) or 'none'}"
            )
        with connect(hosts[host_name], self.accept_new_host_keys, self.connect_timeout) as remote:
            result = remote.run(f"tail -n {int(lines)} {self._log_path(name)}", COMMAND_TIMEOUT)
        if result.code != 0:
            raise WorkerError(
                f"{host_name}: cannot read the log of {name} "
                f"({result.err.strip() or f'exit {result.code}'})"
            )
        return result.out.rstrip("\n")

    def _log_path(self, name: str) -> str:
        workdir = self.settings.workers.workdir
        # quoted for the remote shell, with a leading ~ left for it to expand
        home, tilde, rest = workdir.partition("~/")
        folder = f'"$HOME"/{shlex.quote(rest)}' if tilde and not home else shlex.quote(workdir)
        return f"{folder}/logs/{shlex.quote(name)}.log"
