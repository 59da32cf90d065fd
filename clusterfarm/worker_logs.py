"""Show the end of a worker's log: read here for local-mode workers, over SSH for a host's.

A worker ``<host>.<n>`` started by ``start-workers`` logs to ``{workdir}/logs/<host>.<n>.log``
on its host; a local-mode worker ``local.<n>`` logs to ``{run_dir}/logs/local.<n>.log``. The
log is found by that convention, so it can be read after the worker has died too.
"""

from __future__ import annotations

import shlex
from collections import deque
from pathlib import Path

from clusterfarm.errors import UsageError, WorkerError
from clusterfarm.launcher import LOCAL_HOST
from clusterfarm.settings import Settings
from clusterfarm.transport import WORKER_PREFIX

REMOTE_TIMEOUT = 30.0


def worker_log_tail(settings: Settings, worker: str, lines: int) -> str:
    """The last ``lines`` lines of ``worker``'s log (``berlin.0`` or its full name)."""
    name = worker.removeprefix(WORKER_PREFIX)
    host_name, _, index = name.rpartition(".")
    if not host_name or not index.isdigit():
        raise UsageError(f"{worker!r} is not a worker name; give <host>.<n>, e.g. berlin.0")
    if host_name == LOCAL_HOST:
        return _local_tail(Path(settings.run.run_dir) / "logs" / f"{name}.log", lines)
    hosts = {host.name: host for host in settings.hosts}
    if host_name not in hosts:
        raise UsageError(
            f"{worker}: no host {host_name!r} in the settings ({settings.source}); "
            f"hosts there: {', '.join(hosts) or 'none'}"
        )
    host = hosts[host_name]
    from clusterfarm.ssh import connect  # paramiko only when a remote log is asked for

    with connect(host) as remote:
        result = remote.run(f"tail -n {int(lines)} {_remote_path(settings, name)}", REMOTE_TIMEOUT)
    if result.code != 0:
        raise WorkerError(
            f"{host_name}: cannot read the log of {name} "
            f"({result.err.strip() or f'exit {result.code}'})"
        )
    return result.out.rstrip("\n")


def _local_tail(path: Path, lines: int) -> str:
    try:
        with open(path, errors="replace") as handle:
            return "".join(deque(handle, maxlen=lines)).rstrip("\n")
    except FileNotFoundError:
        raise WorkerError(
            f"{path}: no such log; local-mode worker logs live in the run "
            "dir of the run that started them (give --run-dir)"
        ) from None


def _remote_path(settings: Settings, name: str) -> str:
    workdir = settings.workers.workdir
    # quoted for the remote shell, with a leading ~ left for it to expand
    home, tilde, rest = workdir.partition("~/")
    folder = f'"$HOME"/{shlex.quote(rest)}' if tilde and not home else shlex.quote(workdir)
    return f"{folder}/logs/{shlex.quote(name)}.log"
