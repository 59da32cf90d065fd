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
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from clusterfarm import provenance, trace
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
from clusterfarm.ledger import Ledger, describe, input_identity, plan_resume
from clusterfarm.logs import setup_logging
from clusterfarm.manager import Manager, RunConfig
from clusterfarm.nameserver import (
    NameServer,
    WorkerDirectory,
    WorkerEntry,
    list_workers,
    locate,
)
from clusterfarm.report import RunReport, read_report
from clusterfarm.schedule import Task, TaskSchedule, TaskShape
from clusterfarm.settings import Settings
from clusterfarm.specs import format_spec, parse_spec
from clusterfarm.state import RunState
from clusterfarm.tasks.registry import (
    get_task,
    load_task_modules,
    params_hash,
    with_prerequisites,
)
from clusterfarm.view import Board, View

LOG = logging.getLogger("clusterfarm.runner")


@dataclass(frozen=True)
class RunRequest:
    """What the user asked ``run`` to do, after command line overrides."""

    settings: Settings
    local: int | None = None  # None: local mode only when there are no hosts
    verbose: bool = False  # the manager's log at DEBUG
    argv: tuple[str, ...] | None = None  # the command line for provenance (None: sys.argv)

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


@dataclass(frozen=True)
class Prepared:
    """A run's schedule and ledger, built from the settings and the task registry."""

    schedule: TaskSchedule
    ledger: Ledger
    params: dict[str, dict[str, object]]


def prepare(settings: Settings) -> Prepared:
    """Build the schedule (prerequisite tasks added) and the results ledger of ``[run]``."""
    run = settings.run
    load_task_modules(settings.tasks.modules)
    tasks = with_prerequisites(run.tasks)
    params = resolve_task_params(settings, tasks)
    years, members = parse_spec(run.years, "year"), parse_spec(run.members, "member")
    specs = {name: get_task(name) for name in tasks}
    shapes = {name: TaskShape(spec.per_year, spec.after) for name, spec in specs.items()}
    schedule = TaskSchedule(years, members, tasks, run.retries, shapes)
    data_dir = Path(run.data_dir).absolute()

    def inputs_now(cell: Task) -> str | None:
        spec = specs[cell.task]
        return input_identity(spec.input_files(cell.year, cell.member, params[cell.task], data_dir))

    # a per-year task summarises the run's members: another member list is another result
    hashes = {
        name: params_hash({**params[name], **({"members": members} if spec.per_year else {})})
        for name, spec in specs.items()
    }
    ledger = Ledger({name: spec.version for name, spec in specs.items()}, hashes, inputs_now)
    return Prepared(schedule, ledger, params)


def stale_cells(settings: Settings, run_dir: Path, report: RunReport) -> list[tuple[Task, str]]:
    """The complete cells of ``report``'s run that a rerun with ``settings`` computes again."""
    same_run = settings.with_run(
        task=",".join(report.tasks),
        years=format_spec(report.years),
        members=format_spec(report.members),
        run_dir=str(run_dir),
    )
    prepared = prepare(same_run)
    state = RunState(run_dir, create=False)
    try:
        records = state.records(prepared.schedule.tasks)
    finally:
        state.close()
    return plan_resume(prepared.schedule, records, prepared.ledger).stale


def execute(request: RunRequest, view: View) -> tuple[RunReport, int]:
    """Run the schedule to the end; return the final report and the exit code."""
    settings = request.settings
    if request.local is not None and request.local < 1:
        raise UsageError(f"--local {request.local}: give at least 1 worker")
    prepared = prepare(settings)
    schedule = prepared.schedule
    if request.local_workers is not None:
        _check_data_dir(settings, schedule)
    run_dir = Path(settings.run.run_dir)
    with _run_dir_lock(run_dir):
        setup_logging(settings, run_dir / "logs" / "manager.log", verbose=request.verbose)
        state = RunState(run_dir)
        try:
            plan = state.load(schedule, prepared.ledger)
            for cell, reason in plan.stale:
                LOG.info("%s runs again: %s", describe(cell), reason)
            skipped = len(plan.kept)
            year_tasks = [t for t, shape in schedule.shapes.items() if shape.per_year]
            invocation = state.begin_invocation(
                schedule.tasks,
                format_spec(schedule.years),
                format_spec(schedule.members),
                year_tasks,
                skipped,
            )
            provenance.begin(state.db, run_dir, invocation, settings, prepared, request.argv)
            code, ran = _dispatch(request, schedule, state, prepared.ledger, prepared.params, view)
            state.end_invocation(invocation, ran, skipped, _STATE_NAMES[code], code)
            provenance.write(run_dir, state.db)
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
        run_id=trace.run_id(state.db),
    )
    with (
        _workers(request) as (workers, discover),
        _sigterm_interrupts(),
        provenance.asking_workers(state.db, workers),
    ):
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
        yield workers, WorkerDirectory(host, port)
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
        yield launcher.start(), WorkerDirectory(nameserver.host, nameserver.port)
    finally:
        launcher.stop()
        nameserver.stop()


def _check_data_dir(settings: Settings, schedule: TaskSchedule) -> None:
    """In local mode the workers read this machine's data_dir: it must be there.

    (A missing folder would otherwise fail every cell, one by one. In cluster mode the
    workers may see another disk than this machine, so only they can tell.)
    """
    data_dir = Path(settings.run.data_dir)
    reads_input = any(get_task(name).inputs is not None for name in schedule.tasks)
    if reads_input and not data_dir.is_dir():
        raise UsageError(
            f"data_dir {settings.run.data_dir!r} does not exist (from {settings.source}); point "
            "[run] data_dir at the input data, or make sample data: "
            f"clusterfarm sample-data --out {settings.run.data_dir}"
        )


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
