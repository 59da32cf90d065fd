"""Prepare a run: its tasks (prerequisites added), years, members, cells and ledger.

Everything here comes from the settings and the task registry, before any state is read or
any worker is asked: ``run`` prepares before it starts, ``status --plan`` to say which cells
the next run computes again, and provenance reads what was prepared.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

from clusterfarm.config.settings import Settings
from clusterfarm.config.specs import format_spec, parse_spec
from clusterfarm.record.ledger import Ledger
from clusterfarm.record.schedule import Cell, TaskSchedule, TaskShape
from clusterfarm.record.state import RunState
from clusterfarm.record.status import RunStatus
from clusterfarm.tasks.registry import (
    get_task,
    load_task_modules,
    params_hash,
    resolve_task_params,
    with_prerequisites,
)


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

    def output_path(cell: Cell) -> str | None:
        spec = specs[cell.task]
        return str(spec.output_path(results_dir, cell.year, cell.member))

    # a per-year task summarises the run's members: another member list is another result
    hashes = {
        name: params_hash({**params[name], **({"members": members} if spec.per_year else {})})
        for name, spec in specs.items()
    }
    ledger = Ledger({name: spec.version for name, spec in specs.items()}, hashes, output_path)
    return Prepared(tasks, years, members, shapes, run.retries, ledger, params)


def stale_cells(settings: Settings, run_dir: Path, report: RunStatus) -> list[tuple[Cell, str]]:
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
