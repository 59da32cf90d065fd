"""Show the end of a worker's log, asking the launcher that started it.

Worker names say who started them: ``local.<n>`` is a local-mode worker (its log is in the
run dir), ``slurm-<arrayjob>_<task>`` a SLURM job (its log is on the shared file system),
``<host>.<n>`` a daemon started over SSH (its log is read over SSH). The log is found by that
convention, so it can be read after the worker has died too.
"""

from __future__ import annotations

from pathlib import Path

from clusterfarm.config.settings import Settings
from clusterfarm.wire.pyro import WORKER_PREFIX


def worker_log_tail(settings: Settings, worker: str, lines: int) -> str:
    """The last ``lines`` lines of ``worker``'s log (``berlin.0`` or its full name)."""
    name = worker.removeprefix(WORKER_PREFIX)
    if name.startswith("local."):
        from clusterfarm.launchers.local import local_log_tail

        return local_log_tail(Path(settings.run.run_dir) / "logs", name, lines)
    if name.startswith("slurm-"):
        from clusterfarm.launchers.slurm.launcher import SlurmLauncher

        return SlurmLauncher(settings).log_tail(name, lines)
    from clusterfarm.launchers.ssh.launcher import SSHLauncher  # paramiko only now

    return SSHLauncher(settings).log_tail(name, lines)
