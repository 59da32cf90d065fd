"""Put one ``clusterfarm run`` together: schedule, state, workers, manager, view.

Local mode (no ``[[hosts]]``, or ``--local N``) starts a nameserver in this process and N
worker processes, and stops them at the end whatever happens. Cluster mode finds the workers
already registered with the settings' nameserver.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import logging
import os
import signal
import socket
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from clusterfarm.config.logging_setup import setup_logging
from clusterfarm.config.settings import MAX_WORKERS_PER_HOST, Settings
from clusterfarm.config.specs import format_spec, parse_spec
from clusterfarm.errors import (
    EXIT_FAILED,
    EXIT_INFRA,
    EXIT_INTERRUPTED,
    EXIT_OK,
    ClusterFarmError,
    LaunchError,
    NameServerError,
    StateError,
    StateWriteError,
    UsageError,
    WorkerError,
    writing,
)
from clusterfarm.launchers.local import LocalLauncher
from clusterfarm.manager import provenance
from clusterfarm.manager.dispatcher import check_results_on
from clusterfarm.manager.events import Event, WorkersPending
from clusterfarm.manager.manager import LauncherHooks, Manager, RunConfig, RunOutcome
from clusterfarm.record.ledger import Ledger, Plan, check_result, describe, needs_files_checked
from clusterfarm.record.manager_heartbeat import ManagerHeartbeat
from clusterfarm.record.schedule import Status, Task, TaskSchedule, TaskShape
from clusterfarm.record.state import RUN_DIR_HINT, RunState, StateWriter
from clusterfarm.record.status import RunReport, read_report
from clusterfarm.show.console import Board, View
from clusterfarm.tasks.registry import (
    get_task,
    load_task_modules,
    params_hash,
    resolve_task_params,
    with_prerequisites,
)
from clusterfarm.wire.nameserver import (
    NameServer,
    WorkerDirectory,
    WorkerEntry,
    list_workers,
    locate,
)
from clusterfarm.wire.protocol import RunSpec, TaskRef
from clusterfarm.wire.pyro import set_secret
from clusterfarm.wire.secret import new_secret, use_cluster_secret

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
        return (os.cpu_count() or 1) if self.settings.launcher == "local" else None


@dataclass(frozen=True)
class Prepared:
    """A run's tasks, cells and ledger, from the settings and the task registry.

    The schedule (an object per cell) is built on first use: a rerun with nothing to do
    never needs it.
    """

    tasks: list[str]
    years: list[int]
    members: list[int]
    shapes: dict[str, TaskShape]
    retries: int
    ledger: Ledger
    params: dict[str, dict[str, object]]

    @functools.cached_property
    def schedule(self) -> TaskSchedule:
        return TaskSchedule(self.years, self.members, self.tasks, self.retries, self.shapes)

    def cells_of(self, task: str) -> int:
        return len(self.years) * (1 if self.shapes[task].per_year else len(self.members))


def prepare(settings: Settings) -> Prepared:
    """Check ``[run]`` and its tasks (prerequisites added) and make the results ledger."""
    run = settings.run
    load_task_modules(settings.tasks.modules)
    tasks = with_prerequisites(run.tasks)
    params = resolve_task_params(settings, tasks)
    years, members = parse_spec(run.years, "year"), parse_spec(run.members, "member")
    specs = {name: get_task(name) for name in tasks}
    shapes = {name: TaskShape(spec.per_year, spec.after) for name, spec in specs.items()}
    results_dir = Path(run.results_path).absolute()

    def output_path(cell: Task) -> str | None:
        spec = specs[cell.task]
        return str(spec.output_path(results_dir, cell.year, cell.member))

    # a per-year task summarises the run's members: another member list is another result
    hashes = {
        name: params_hash({**params[name], **({"members": members} if spec.per_year else {})})
        for name, spec in specs.items()
    }
    ledger = Ledger({name: spec.version for name, spec in specs.items()}, hashes, output_path)
    return Prepared(tasks, years, members, shapes, run.retries, ledger, params)


def stale_cells(settings: Settings, run_dir: Path, report: RunReport) -> list[tuple[Task, str]]:
    """The complete cells of ``report``'s run that a rerun with ``settings`` computes again,
    as far as can be told without the files (their inputs are checked where the data is,
    when the run starts)."""
    same_run = settings.with_run(
        task=",".join(report.tasks),
        years=format_spec(report.years),
        members=format_spec(report.members),
        run_dir=str(run_dir),
    )
    prepared = prepare(same_run)
    state = RunState(run_dir, read_only=True)
    try:
        return state.plan(prepared.schedule, prepared.ledger).stale
    finally:
        state.close()


def execute(request: RunRequest, view: View) -> tuple[RunReport, int]:
    """Run the schedule to the end; return the final report and the exit code."""
    settings = request.settings
    if request.local is not None and not 1 <= request.local <= MAX_WORKERS_PER_HOST:
        raise UsageError(f"--local {request.local}: give from 1 to {MAX_WORKERS_PER_HOST} workers")
    prepared = prepare(settings)
    local = request.local_workers is not None
    if local:
        _check_data_dir(settings, prepared.tasks)
    run_dir = Path(settings.run.run_dir)
    with _run_dir_lock(run_dir):
        with writing(str(run_dir / "logs"), RUN_DIR_HINT, StateError):
            setup_logging(settings, run_dir / "logs" / "manager.log", verbose=request.verbose)
        state = RunState(run_dir)
        try:
            if state.nothing_to_do(prepared):  # skips building a schedule of every cell
                return _nothing_to_do(state, prepared, request, view), EXIT_OK
            schedule = prepared.schedule
            plan = state.load(schedule, prepared.ledger)
            if local:  # this machine is where the data is: check the kept results here
                _reopen(state, schedule, check_here(plan, settings, prepared.params))
            for cell, reason in plan.stale:
                LOG.info("%s runs again: %s", describe(cell), reason)
            skipped = len(plan.kept)
            invocation = _begin(state, prepared, skipped, request)
            spec = run_spec(settings, state.run_id(), schedule, prepared.params)
            with ManagerHeartbeat(run_dir, invocation):
                outcome = _dispatch(request, schedule, state, plan, spec, invocation, view)
            code = _exit_code(schedule, outcome)
            with contextlib.suppress(sqlite3.Error, OSError):  # a full disk was said already
                state.end_invocation(invocation, outcome.ran, skipped, _STATE_NAMES[code], code)
                provenance.write(run_dir, state.db)
            if outcome.problem is not None:
                raise outcome_error(outcome.problem)
            return read_report(state.db), code
        finally:
            state.close()


def _begin(state: RunState, prepared: Prepared, skipped: int, request: RunRequest) -> int:
    """Record the invocation (and its provenance: command line, settings, inputs)."""
    year_tasks = [t for t, shape in prepared.shapes.items() if shape.per_year]
    invocation = state.begin_invocation(
        prepared.tasks,
        format_spec(prepared.years),
        format_spec(prepared.members),
        year_tasks,
        skipped,
    )
    settings = request.settings
    provenance.begin(state.db, state.run_dir, invocation, settings, prepared, request.argv)
    return invocation


def _nothing_to_do(
    state: RunState, prepared: Prepared, request: RunRequest, view: View
) -> RunReport:
    """Every cell is complete and current: record the invocation and show the board."""
    total = sum(prepared.cells_of(task) for task in prepared.tasks)
    invocation = _begin(state, prepared, total, request)
    state.end_invocation(invocation, 0, total, _STATE_NAMES[EXIT_OK], EXIT_OK)
    provenance.write(state.run_dir, state.db)
    report = read_report(state.db)
    view.start(Board.of_report(report))
    view.close()
    return report


_STATE_NAMES = {
    EXIT_OK: "finished",
    EXIT_FAILED: "finished",
    EXIT_INFRA: "workers lost",
    EXIT_INTERRUPTED: "interrupted",
}


def _exit_code(schedule: TaskSchedule, outcome: RunOutcome) -> int:
    if outcome.interrupted:
        return EXIT_INTERRUPTED
    if outcome.problem is not None or outcome.workers_lost:
        return EXIT_INFRA
    return EXIT_FAILED if schedule.failures() else EXIT_OK


def outcome_error(problem: str) -> ClusterFarmError:
    """The error a run that gave up ends with (exit 3)."""
    if "cannot write the run state" in problem:
        return StateWriteError(f"{problem}; free some space, then run again to resume")
    return WorkerError(problem)


def run_spec(
    settings: Settings, run_id: str, schedule: TaskSchedule, params: dict[str, dict[str, object]]
) -> RunSpec:
    """What every worker of this run is told when it joins."""
    run = settings.run
    return RunSpec(
        run_id=run_id,
        data_dir=str(Path(run.data_dir).absolute()),
        results_dir=str(Path(run.results_path).absolute()),
        timeout=run.timeout,
        lost_after=run.lost_after,
        members=tuple(schedule.members),
        tasks={name: TaskRef(get_task(name).version, params[name]) for name in schedule.tasks},
        manager=f"{socket.gethostname()}:{os.getpid()}",
    )


def check_here(
    plan: Plan, settings: Settings, params: dict[str, dict[str, object]]
) -> list[tuple[Task, str]]:
    """Check the kept results' files from this process (local mode: the data is here)."""
    data_dir = Path(settings.run.data_dir).absolute()
    stale = []
    for cell, _ in plan.kept:
        if not needs_files_checked(cell):
            continue
        spec = get_task(cell.task)
        files = spec.input_files(cell.year, cell.member, params[cell.task], data_dir)
        reason = check_result(files, cell.inputs, cell.output, cell.output_sum)
        if reason is not None:
            stale.append((cell, reason))
    return stale


def check_on_workers(
    workers: list[WorkerEntry], spec: RunSpec, plan: Plan
) -> list[tuple[Task, str]]:
    """Check the kept results' files on a worker (a cluster: the data is there, not here)."""
    cells = [cell for cell, _ in plan.kept if needs_files_checked(cell)]
    if not cells:
        return []
    for entry in workers:
        reasons = check_results_on(entry, spec, cells)
        if reasons is not None:
            return [(cell, r) for cell, r in zip(cells, reasons, strict=True) if r is not None]
    LOG.warning(
        "no worker could check the inputs of %d kept cells; trusting their records", len(cells)
    )
    return []


def _reopen(state: RunState, schedule: TaskSchedule, stale: list[tuple[Task, str]]) -> None:
    for cell, reason in stale:
        LOG.info("%s runs again: %s", describe(cell), reason)
    reopened = schedule.reopen(cell for cell, _ in stale)
    state.reopen(reopened)


def _dispatch(
    request: RunRequest,
    schedule: TaskSchedule,
    state: RunState,
    plan: Plan,
    spec: RunSpec,
    invocation: int,
    view: View,
) -> RunOutcome:
    """Run the manager over whatever is not complete yet."""
    board = Board(schedule)
    view.start(board)
    cluster = request.local_workers is None
    to_check = cluster and any(needs_files_checked(cell) for cell, _ in plan.kept)
    if schedule.is_finished and not to_check:  # all complete already: no workers needed
        view.close()
        return RunOutcome(0)
    run = request.settings.run
    config = RunConfig(
        spec=spec,
        invocation=invocation,
        heartbeat=run.heartbeat,
        quarantine_after=run.quarantine_after,
        quarantine_for=run.quarantine_for,
    )
    pool = _workers(request, schedule, board.apply)
    with (
        pool as (workers, discover, hooks),
        _sigterm_interrupts(),
        provenance.asking_workers(state.db, workers),
    ):
        if to_check:  # the workers see the data; this machine may not
            _reopen(state, schedule, check_on_workers(workers, spec, plan))
            board.refresh()
        if schedule.is_finished:
            outcome = RunOutcome(0)
        else:
            outcome = _manage(schedule, state, config, board, (workers, discover, hooks), view)
    view.close()
    if outcome.workers_lost and outcome.problem is None:
        LOG.error("all workers lost: %s", ", ".join(outcome.lost))
    return outcome


def _manage(
    schedule: TaskSchedule,
    state: RunState,
    config: RunConfig,
    board: Board,
    pool: Pool,
    view: View,
) -> RunOutcome:
    workers, discover, hooks = pool
    writer = StateWriter(state.db, state.path)
    manager = Manager(schedule, writer, config, board.apply, discover, hooks)
    try:
        return manager.run(workers, tick=view.tick)
    except KeyboardInterrupt:
        return RunOutcome(len(manager.ran), interrupted=True)
    finally:
        with contextlib.suppress(StateError):
            writer.close()


Discover = Callable[[], list[WorkerEntry]]
Pool = tuple[list[WorkerEntry], Discover, LauncherHooks | None]


@contextlib.contextmanager
def _workers(
    request: RunRequest, schedule: TaskSchedule, on_event: Callable[[Event], None]
) -> Iterator[Pool]:
    """The workers of this run (started here in local mode, else found in the nameserver),
    how to look for workers that join or come back later, and what the launcher tells."""
    settings = request.settings
    count = request.local_workers
    if count is None and settings.launcher == "slurm":
        use_cluster_secret(settings.security, create=True)
        with _slurm_pool(settings, schedule, on_event) as pool:
            yield pool
        return
    if count is None:
        use_cluster_secret(settings.security)
        host, port = settings.nameserver.host, settings.nameserver.port
        workers = list_workers(locate(host, port))
        if not workers:
            raise WorkerError(
                f"no workers registered with the nameserver at {settings.nameserver.host}:"
                f"{settings.nameserver.port}; start them with `clusterfarm start-workers` "
                "or run with --local N"
            )
        yield workers, WorkerDirectory(host, port), None
        return
    secret = new_secret() if settings.security.auth else None
    previous = set_secret(secret)  # this run's own: nobody else may list or call its workers
    try:
        with _local_pool(settings, count, secret) as pool:
            yield pool
    finally:
        set_secret(previous)  # (a Python API caller may run more than one run)


@contextlib.contextmanager
def _local_pool(settings: Settings, count: int, secret: str | None) -> Iterator[Pool]:
    """A nameserver in this process and ``count`` worker processes, for one run."""
    nameserver = NameServer("127.0.0.1", 0)
    explicit = None if settings.source.endswith("default.toml") else settings.source
    launcher = LocalLauncher(
        count,
        nameserver.host,
        nameserver.port,
        Path(settings.run.run_dir) / "logs",
        str(Path(explicit).absolute()) if explicit else None,
        secret,
    )
    try:
        yield launcher.start(), WorkerDirectory(nameserver.host, nameserver.port), None
    finally:
        launcher.stop()
        nameserver.stop()


@contextlib.contextmanager
def _slurm_pool(
    settings: Settings, schedule: TaskSchedule, on_event: Callable[[Event], None]
) -> Iterator[Pool]:
    """SLURM workers: those registered already (``start-workers``), else a pool of this run.

    The nameserver is the settings' (compute nodes reach it there); if none answers, this
    process runs it. A pool of this run leaves by itself if the manager dies: its workers
    exit after ``lost_after`` + ``heartbeat`` without a call, and with them their jobs.
    """
    from clusterfarm.launchers.slurm.launcher import SlurmLauncher

    host, port = settings.nameserver.host, settings.nameserver.port
    own_nameserver = None
    try:
        ns = locate(host, port, timeout=2)
    except NameServerError:
        own_nameserver = NameServer(host, port)
        ns = locate(host, port)
    try:
        workers = list_workers(ns)
        if workers:  # someone's start-workers pool: use it, and leave it running
            yield workers, WorkerDirectory(host, port), SlurmLauncher(settings)
            return
        run = settings.run
        launcher = SlurmLauncher(settings, exit_when_idle=run.lost_after + run.heartbeat)
        try:
            workers = launcher.start()
            LOG.info("SLURM pool: %d workers registered", len(workers))
            launcher.keep(
                lambda: _cells_left(schedule),
                lambda pending: on_event(WorkersPending(tuple(pending))),
            )
            yield workers, WorkerDirectory(host, port), launcher
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


def _cells_left(schedule: TaskSchedule) -> int:
    """Cells not final yet (read without the manager's lock: a count, off by one at worst)."""
    counts = schedule.counts
    return counts[Status.OUTSTANDING] + counts[Status.WORKING]


def _check_data_dir(settings: Settings, tasks: list[str]) -> None:
    """In local mode the workers read this machine's data_dir: it must be there.

    (A missing folder would otherwise fail every cell, one by one. In cluster mode the
    workers may see another disk than this machine, so only they can tell.)
    """
    data_dir = Path(settings.run.data_dir)
    reads_input = any(get_task(name).inputs is not None for name in tasks)
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
    """Hold an exclusive lock on the run dir: two managers must never share one.

    Writing the lock file is also the first write of a run: a read-only run dir or a full
    disk stops the run here, with one line, before anything else is touched.
    """
    with writing(str(run_dir), RUN_DIR_HINT, StateError):
        run_dir.mkdir(parents=True, exist_ok=True)
        lock = open(run_dir / "run.lock", "a+")
    with lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            holder = lock.read().strip() or "another process"
            raise UsageError(
                f"{run_dir}: another clusterfarm run ({holder}) is using this run "
                "dir; wait for it, or give another --run-dir"
            ) from None
        with writing(str(run_dir / "run.lock"), RUN_DIR_HINT, StateError):
            # unbuffered, so that a full disk answers here and not again when the file closes
            os.ftruncate(lock.fileno(), 0)
            os.pwrite(lock.fileno(), f"pid {os.getpid()}".encode(), 0)
            os.fsync(lock.fileno())
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
