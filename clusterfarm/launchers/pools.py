"""Where a run's workers come from: the pools ``clusterfarm run`` can use.

:func:`pool_for` picks one from the settings and ``--local``, as the runner's
:class:`~clusterfarm.manager.runner.WorkerPool`:

- :class:`LocalPool` (no ``[[hosts]]``, or ``--local N``): a nameserver in this process and
  N worker processes started for the run, with an access (a secret) of the run's own, all
  stopped at the end whatever happens;
- :class:`RegisteredPool` (SSH hosts): the workers already registered with the settings'
  nameserver (``clusterfarm start-workers``), left running at the end;
- :class:`SlurmPool` (``launcher = "slurm"``): registered SLURM workers if there are any,
  else a job array of the run's own, kept filled while cells remain and cancelled at the end.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from clusterfarm.config.settings import MAX_WORKERS_PER_HOST, Settings
from clusterfarm.errors import LaunchError, NameServerError, UsageError, WorkerError
from clusterfarm.launchers.local import LocalLauncher
from clusterfarm.manager.events import EventSink, WorkersPending
from clusterfarm.manager.runner import WorkerPool, Workers
from clusterfarm.wire.access import cluster_access, run_access
from clusterfarm.wire.nameserver import NameServer, WorkerDirectory, list_workers, locate

LOG = logging.getLogger("clusterfarm.launchers")


def pool_for(settings: Settings, local: int | None = None) -> WorkerPool:
    """The pool of a run: ``local`` workers here when given (``--local N``), or when the
    settings have no hosts (one per CPU); else the settings' launcher's."""
    if local is not None and not 1 <= local <= MAX_WORKERS_PER_HOST:
        raise UsageError(f"--local {local}: give from 1 to {MAX_WORKERS_PER_HOST} workers")
    if local is None and settings.launcher == "local":
        local = os.cpu_count() or 1
    if local is not None:
        return LocalPool(settings, local)
    if settings.launcher == "slurm":
        return SlurmPool(settings)
    return RegisteredPool(settings)


@dataclass(frozen=True)
class LocalPool:
    """A nameserver in this process and ``count`` worker processes, for one run, with an
    access of the run's own: nobody else may list or call its workers."""

    settings: Settings
    count: int
    data_is_here: ClassVar[bool] = True

    @contextlib.contextmanager
    def open(self, cells_left: Callable[[], int], events: EventSink) -> Iterator[Workers]:
        settings = self.settings
        access = run_access(settings.security)
        nameserver = NameServer("127.0.0.1", 0, access)
        launcher = LocalLauncher(
            self.count,
            nameserver.host,
            nameserver.port,
            Path(settings.run.run_dir) / "logs",
            access,
            settings.user_file,
        )
        try:
            directory = WorkerDirectory(nameserver.host, nameserver.port, access)
            yield Workers(launcher.start(), directory, None, access)
        finally:
            launcher.stop()
            nameserver.stop()


@dataclass(frozen=True)
class RegisteredPool:
    """The workers registered with the settings' nameserver (started by ``start-workers``)."""

    settings: Settings
    data_is_here: ClassVar[bool] = False

    @contextlib.contextmanager
    def open(self, cells_left: Callable[[], int], events: EventSink) -> Iterator[Workers]:
        settings = self.settings
        access = cluster_access(settings.security)
        host, port = settings.nameserver.host, settings.nameserver.port
        workers = list_workers(locate(host, port, access))
        if not workers:
            raise WorkerError(
                f"no workers registered with the nameserver at {host}:{port}; start them with "
                "`clusterfarm start-workers` or run with --local N"
            )
        yield Workers(workers, WorkerDirectory(host, port, access), None, access)


@dataclass(frozen=True)
class SlurmPool:
    """SLURM workers: those registered already (``start-workers``), else a pool of this run.

    The nameserver is the settings' (compute nodes reach it there); if none answers, this
    process runs it. A pool of this run leaves by itself if the manager dies: its workers
    exit after ``lost_after`` + ``heartbeat`` without a call, and with them their jobs.
    """

    settings: Settings
    data_is_here: ClassVar[bool] = False

    @contextlib.contextmanager
    def open(self, cells_left: Callable[[], int], events: EventSink) -> Iterator[Workers]:
        from clusterfarm.launchers.slurm.launcher import SlurmLauncher

        settings = self.settings
        access = cluster_access(settings.security, create=True)
        host, port = settings.nameserver.host, settings.nameserver.port
        directory = WorkerDirectory(host, port, access)
        own_nameserver = None
        try:
            ns = locate(host, port, access, timeout=2)
        except NameServerError:
            own_nameserver = NameServer(host, port, access)
            ns = locate(host, port, access)
        try:
            workers = list_workers(ns)
            if workers:  # someone's start-workers pool: use it, and leave it running
                yield Workers(workers, directory, SlurmLauncher(settings, access=access), access)
                return
            run = settings.run
            launcher = SlurmLauncher(
                settings, exit_when_idle=run.lost_after + run.heartbeat, access=access
            )
            try:
                workers = launcher.start()
                LOG.info("SLURM pool: %d workers registered", len(workers))
                launcher.keep(
                    cells_left, lambda pending: events.event(WorkersPending(tuple(pending)))
                )
                yield Workers(workers, directory, launcher, access)
            finally:
                launcher.stop_keeping()
                try:
                    if launcher.submitted:
                        launcher.stop()
                except LaunchError as exc:
                    LOG.error("the run's SLURM workers may be left: %s", exc)
        finally:
            if own_nameserver is not None:
                own_nameserver.stop()
