"""Put one ``clusterfarm run`` together: schedule, state, workers, manager, view.

Local mode (no ``[[hosts]]``, or ``--local N``) starts a nameserver in this process and N
worker processes, and stops them at the end whatever happens. Cluster mode finds the workers
already registered with the settings' nameserver.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from clusterfarm.errors import (
    EXIT_FAILED,
    EXIT_INFRA,
    EXIT_INTERRUPTED,
    EXIT_OK,
    SettingsError,
    UsageError,
    WorkerError,
)
from clusterfarm.launcher import LocalLauncher
from clusterfarm.logs import setup_logging
from clusterfarm.manager import Manager, RunConfig
from clusterfarm.nameserver import NameServer, WorkerEntry, list_workers, locate
from clusterfarm.schedule import TaskSchedule
from clusterfarm.settings import Settings
from clusterfarm.specs import format_spec, parse_spec
from clusterfarm.state import Ledger, RunReport, RunState, read_report
from clusterfarm.tasks.registry import get_task, load_task_modules, params_hash
from clusterfarm.view import Board, View

LOG = logging.getLogger("clusterfarm.runner")


@dataclass(frozen=True)
class RunRequest:
    """What the user asked ``run`` to do, after command line overrides."""

    settings: Settings
    local: int | None = None  # None: local mode only when there are no hosts

    @property
    def local_workers(self) -> int | None:
        if self.local is not None:
            return self.local
        return None if self.settings.hosts else (os.cpu_count() or 1)


def resolve_task_params(settings: Settings, tasks: list[str]) -> dict[str, dict[str, object]]:
    """Check the task names and every ``[tasks.<name>]`` table; return the params of ``tasks``."""
    load_task_modules(settings.tasks.modules)
    for name in settings.tasks.params:
        try:
            get_task(name)
        except UsageError:
            raise SettingsError(
                f"{settings.source}: [tasks.{name}]: no task named {name!r} "
                "is registered; check the name or tasks.modules"
            ) from None
    resolved = {
        name: get_task(name).resolve_params(table, f"{settings.source}: ")
        for name, table in settings.tasks.params.items()
    }
    return {name: resolved.get(name) or get_task(name).resolve_params({}) for name in tasks}


def execute(request: RunRequest, view: View) -> tuple[RunReport, int]:
    """Run the schedule to the end; return the final report and the exit code."""
    settings = request.settings
    run = settings.run
    tasks = run.tasks
    params = resolve_task_params(settings, tasks)
    years = parse_spec(run.years, "year")
    members = parse_spec(run.members, "member")
    if request.local is not None and request.local < 1:
        raise UsageError(f"--local {request.local}: give at least 1 worker")
    run_dir = Path(run.run_dir)
    schedule = TaskSchedule(years, members, tasks, run.retries)
    ledger = Ledger(
        {t: get_task(t).version for t in tasks}, {t: params_hash(params[t]) for t in tasks}
    )
    with _run_dir_lock(run_dir):
        setup_logging(settings, run_dir / "logs" / "manager.log")
        state = RunState(run_dir)
        try:
            skipped = state.load(schedule, ledger, _output_intact)
            invocation = state.begin_invocation(tasks, format_spec(years), format_spec(members))
            state.update_invocation_counts(invocation, 0, skipped)
            code, ran = _dispatch(request, schedule, state, ledger, params, view)
            state.end_invocation(invocation, ran, skipped, _STATE_NAMES[code], code)
            return read_report(state.db), code
        finally:
            state.close()


_STATE_NAMES = {
    EXIT_OK: "finished",
    EXIT_FAILED: "finished",
    EXIT_INFRA: "workers lost",
    EXIT_INTERRUPTED: "interrupted",
}


def _dispatch(
    request: RunRequest,
    schedule: TaskSchedule,
    state: RunState,
    ledger: Ledger,
    params: dict[str, dict[str, object]],
    view: View,
) -> tuple[int, int]:
    """Run the manager over whatever is not complete yet; return (exit code, cells ran)."""
    board = Board(schedule)
    view.start(board)
    if schedule.is_finished:  # everything was complete already: no workers needed
        view.close()
        return (EXIT_FAILED if schedule.failures() else EXIT_OK), 0
    run = request.settings.run
    config = RunConfig(
        data_dir=str(Path(run.data_dir).absolute()),
        results_dir=str(Path(run.results_path).absolute()),
        timeout=run.timeout,
        params=params,
        heartbeat=run.heartbeat,
        lost_after=run.lost_after,
        quarantine_after=run.quarantine_after,
        quarantine_for=run.quarantine_for,
    )
    with _workers(request) as (workers, discover), _sigterm_interrupts():
        manager = Manager(schedule, state.db, ledger, config, board.apply, discover)
        try:
            outcome = manager.run(workers, tick=view.tick)
        except KeyboardInterrupt:
            view.close()
            return EXIT_INTERRUPTED, len(manager.ran)
    view.close()
    if outcome.workers_lost:
        LOG.error("all workers lost: %s", ", ".join(outcome.lost))
        return EXIT_INFRA, outcome.ran
    return (EXIT_FAILED if schedule.failures() else EXIT_OK), outcome.ran


Discover = Callable[[], list[WorkerEntry]]


@contextlib.contextmanager
def _workers(request: RunRequest) -> Iterator[tuple[list[WorkerEntry], Discover]]:
    """The workers of this run (started here in local mode, else found in the nameserver),
    and how to look for workers that join or come back later."""
    settings = request.settings
    count = request.local_workers
    if count is None:
        host, port = settings.nameserver.host, settings.nameserver.port
        workers = list_workers(locate(host, port))
        if not workers:
            raise WorkerError(
                f"no workers registered with the nameserver at {settings.nameserver.host}:"
                f"{settings.nameserver.port}; start them with `clusterfarm start-workers` "
                "or run with --local N"
            )
        yield workers, _discover_at(host, port)
        return
    nameserver = NameServer("127.0.0.1", 0)
    explicit = None if settings.source.endswith("default.toml") else settings.source
    launcher = LocalLauncher(
        count,
        nameserver.host,
        nameserver.port,
        Path(settings.run.run_dir) / "logs",
        str(Path(explicit).absolute()) if explicit else None,
    )
    try:
        yield launcher.start(), _discover_at(nameserver.host, nameserver.port)
    finally:
        launcher.stop()
        nameserver.stop()


def _discover_at(host: str, port: int) -> Discover:
    return lambda: list_workers(locate(host, port, timeout=2))


@contextlib.contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """Treat SIGTERM like Ctrl-C while the run is going: stop, save, exit 130."""

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def _run_dir_lock(run_dir: Path) -> Iterator[None]:
    """Hold an exclusive lock on the run dir: two managers must never share one."""
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / "run.lock", "a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            holder = lock.read().strip() or "another process"
            raise UsageError(
                f"{run_dir}: another clusterfarm run ({holder}) is using this run "
                "dir; wait for it, or give another --run-dir"
            ) from None
        lock.seek(0)
        lock.truncate()
        lock.write(f"pid {os.getpid()}")
        lock.flush()
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _output_intact(path: str) -> bool:
    return os.path.isfile(path) and os.path.getsize(path) > 0


def wait_seconds(since: float) -> float:
    return time.monotonic() - since
