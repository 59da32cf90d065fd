"""Put one ``clusterfarm run`` together: tasks, cells, state, workers, manager, display.

The runner is the top of the manager process. It prepares the run, takes the run dir's
lock, resumes the state (which results are kept, which run again), records the invocation
and its provenance, opens the workers it is given (a :class:`WorkerPool`: local processes
started for this run, the workers registered with a nameserver, a SLURM pool...), lets the
:class:`~clusterfarm.manager.manager.Manager` dispatch, and turns the outcome into an exit
code. It is shown through the :class:`Display` it is given, and knows neither how workers
are started nor how a run is drawn: the command line and the Python API choose both
(:func:`clusterfarm.launchers.pools.pool_for`, :mod:`clusterfarm.show`).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import signal
import socket
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import NamedTuple, Protocol

from clusterfarm.config.logging_setup import setup_logging
from clusterfarm.config.settings import Settings
from clusterfarm.config.specs import format_spec
from clusterfarm.errors import (
    EXIT_FAILED,
    EXIT_INFRA,
    EXIT_INTERRUPTED,
    EXIT_OK,
    ClusterFarmError,
    StateError,
    StateWriteError,
    UsageError,
    WorkerError,
    writing,
)
from clusterfarm.manager import provenance
from clusterfarm.manager.events import EventSink
from clusterfarm.manager.manager import LauncherHooks, Manager, RunConfig, RunOutcome
from clusterfarm.manager.prepare import Prepared, prepare
from clusterfarm.record.ledger import Plan, describe, needs_files_checked
from clusterfarm.record.manager_heartbeat import ManagerHeartbeat
from clusterfarm.record.schedule import Cell, Status, TaskSchedule
from clusterfarm.record.state import LOCK_FILE, RUN_DIR_HINT, RunState
from clusterfarm.record.state_writer import SavedCells, StateWriter
from clusterfarm.record.status import RunStatus, read_status
from clusterfarm.tasks.files import check_result
from clusterfarm.tasks.registry import get_task
from clusterfarm.wire.access import Access
from clusterfarm.wire.nameserver import WorkerEntry
from clusterfarm.wire.protocol import RunSpec, TaskRef
from clusterfarm.wire.worker_calls import check_results_on

LOG = logging.getLogger("clusterfarm.runner")


@dataclass(frozen=True)
class RunRequest:
    """What the user asked ``run`` to do, after command line overrides."""

    settings: Settings
    verbose: bool = False  # the manager's log at DEBUG
    argv: tuple[str, ...] | None = None  # the command line for provenance (None: sys.argv)


class Workers(NamedTuple):
    """The workers a pool gives a run."""

    entries: list[WorkerEntry]  # at the start
    discover: Callable[[], list[WorkerEntry]]  # those registered now (asked every heartbeat)
    hooks: LauncherHooks | None  # what the launcher can tell the manager (a batch system's)
    access: Access  # what they demand of whoever calls them


class WorkerPool(Protocol):
    """Where a run's workers come from (:mod:`clusterfarm.launchers.pools` has them)."""

    @property
    def data_is_here(self) -> bool:
        """True when the workers read this machine's files (local mode): ``data_dir`` and
        the kept results are checked here, not asked of a worker."""
        ...

    def open(
        self, cells_left: Callable[[], int], events: EventSink
    ) -> AbstractContextManager[Workers]:
        """The workers for the run, for as long as the block runs; they go when it ends.

        ``cells_left`` counts the cells not final yet (a batch system keeps that many
        workers); ``events`` hears what the pool has to say (jobs waiting in a queue)."""
        ...


class Display(SavedCells, EventSink, Protocol):
    """What shows the run (:class:`clusterfarm.show.board.BoardDisplay` over a terminal or
    notebook view). It hears of cells only once they are saved (``cells_saved``, from the
    state writer) and of workers from the manager (``event``)."""

    def open(self, schedule: TaskSchedule) -> None:
        """The run starts with these cells."""
        ...

    def show_finished(self, report: RunStatus) -> None:
        """Nothing is left to run: show the run as it stands."""
        ...

    def refresh(self) -> None:
        """Cells were reopened before dispatch: read them all again."""
        ...

    def tick(self) -> None:
        """Called a few times a second from the main thread while the run goes."""
        ...

    def close(self) -> None:
        """The run is over."""
        ...


def execute(request: RunRequest, display: Display, pool: WorkerPool) -> tuple[RunStatus, int]:
    """Run the schedule to the end with ``pool``'s workers; return the final report and the
    exit code."""
    settings = request.settings
    prepared = prepare(settings)
    if pool.data_is_here:
        _check_data_dir(settings, prepared.tasks)
    run_dir = Path(settings.run.run_dir)
    with _run_dir_lock(run_dir):
        with writing(str(run_dir / "logs"), RUN_DIR_HINT, StateError):
            setup_logging(settings, run_dir / "logs" / "manager.log", verbose=request.verbose)
        state = RunState(run_dir)
        try:
            if state.nothing_to_do(prepared):  # skips building a schedule of every cell
                return _nothing_to_do(state, prepared, request, display), EXIT_OK
            schedule = prepared.schedule
            plan = state.load(schedule, prepared.ledger)
            if pool.data_is_here:  # this machine is where the data is: check the kept here
                _reopen(state, schedule, check_here(plan, settings, prepared.params))
            for cell, reason in plan.stale:
                LOG.info("%s runs again: %s", describe(cell), reason)
            skipped = len(plan.kept)
            invocation = _begin(state, prepared, skipped, request)
            spec = run_spec(settings, state.run_id(), schedule, prepared.params)
            run = Run(schedule, state, plan, spec, invocation)
            with ManagerHeartbeat(run_dir, invocation):
                outcome = _dispatch(request, run, display, pool)
            code = _exit_code(schedule, outcome)
            with contextlib.suppress(sqlite3.Error, OSError):  # a full disk was said already
                state.end_invocation(invocation, outcome.ran, skipped, _STATE_NAMES[code], code)
                provenance.write(run_dir, state.db)
            if outcome.problem is not None:
                raise outcome_error(outcome.problem)
            return read_status(state.db), code
        finally:
            state.close()


class Run(NamedTuple):
    """One run under way: its cells, state, resume plan, spec and invocation."""

    schedule: TaskSchedule
    state: RunState
    plan: Plan
    spec: RunSpec
    invocation: int


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
    state: RunState, prepared: Prepared, request: RunRequest, display: Display
) -> RunStatus:
    """Every cell is complete and current: record the invocation and show the board."""
    total = sum(prepared.cells_of(task) for task in prepared.tasks)
    invocation = _begin(state, prepared, total, request)
    state.end_invocation(invocation, 0, total, _STATE_NAMES[EXIT_OK], EXIT_OK)
    provenance.write(state.run_dir, state.db)
    report = read_status(state.db)
    display.show_finished(report)
    display.close()
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
) -> list[tuple[Cell, str]]:
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


def check_on_workers(workers: Workers, spec: RunSpec, plan: Plan) -> list[tuple[Cell, str]]:
    """Check the kept results' files on a worker (a cluster: the data is there, not here)."""
    cells = [cell for cell, _ in plan.kept if needs_files_checked(cell)]
    if not cells:
        return []
    items = [[c.task, c.year, c.member, c.inputs, c.output, c.output_sum] for c in cells]
    for entry in workers.entries:
        reasons = check_results_on(entry, spec, items, workers.access)
        if reasons is not None:
            return [(cell, r) for cell, r in zip(cells, reasons, strict=True) if r is not None]
    LOG.warning(
        "no worker could check the inputs of %d kept cells; trusting their records", len(cells)
    )
    return []


def _reopen(state: RunState, schedule: TaskSchedule, stale: list[tuple[Cell, str]]) -> None:
    for cell, reason in stale:
        LOG.info("%s runs again: %s", describe(cell), reason)
    reopened = schedule.reopen(cell for cell, _ in stale)
    state.reopen(reopened)


def _dispatch(request: RunRequest, run: Run, display: Display, pool: WorkerPool) -> RunOutcome:
    """Run the manager over whatever is not complete yet."""
    schedule, state, plan = run.schedule, run.state, run.plan
    display.open(schedule)
    to_check = not pool.data_is_here and any(needs_files_checked(cell) for cell, _ in plan.kept)
    if schedule.is_finished and not to_check:  # all complete already: no workers needed
        display.close()
        return RunOutcome(0)
    limits = request.settings.run
    with (
        pool.open(lambda: _cells_left(schedule), display) as workers,
        _sigterm_interrupts(),
        provenance.asking_workers(state.db, workers.entries, workers.access),
    ):
        if to_check:  # the workers see the data; this machine may not
            _reopen(state, schedule, check_on_workers(workers, run.spec, plan))
            display.refresh()
        if schedule.is_finished:
            outcome = RunOutcome(0)
        else:
            config = RunConfig(
                spec=run.spec,
                access=workers.access,
                invocation=run.invocation,
                heartbeat=limits.heartbeat,
                quarantine_after=limits.quarantine_after,
                quarantine_for=limits.quarantine_for,
            )
            outcome = _manage(run, config, display, workers)
    display.close()
    if outcome.workers_lost and outcome.problem is None:
        LOG.error("all workers lost: %s", ", ".join(outcome.lost))
    return outcome


def _manage(run: Run, config: RunConfig, display: Display, workers: Workers) -> RunOutcome:
    state = run.state
    writer = StateWriter(state.db, state.path, shown=display)
    manager = Manager(run.schedule, writer, config, display, workers.discover, workers.hooks)
    try:
        return manager.run(workers.entries, tick=display.tick)
    except KeyboardInterrupt:
        return RunOutcome(len(manager.ran), interrupted=True)
    finally:
        with contextlib.suppress(StateError):
            writer.close()


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
    """Treat SIGTERM like Ctrl-C while the run is going: stop, save, exit 130.

    Only the main thread may set a signal handler (and only it hears Ctrl-C): a run from
    another thread, as the Python API allows, leaves the process's signals alone.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

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
        lock = open(run_dir / LOCK_FILE, "a+")
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
        with writing(str(run_dir / LOCK_FILE), RUN_DIR_HINT, StateError):
            # unbuffered, so that a full disk answers here and not again when the file closes
            os.ftruncate(lock.fileno(), 0)
            os.pwrite(lock.fileno(), f"pid {os.getpid()}".encode(), 0)
            os.fsync(lock.fileno())
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
