"""The task registry: ``@task("name", version="1")`` and the context a task runs with.

A task is a plain function ``fn(year, member, ctx) -> dict | None``. The registry
knows each task's version and parameter defaults, so the manager can validate settings and
the ledger can tell whether a finished result is still valid.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clusterfarm.config.settings import Settings
from clusterfarm.errors import SettingsError, UnknownTaskError

TaskFunction = Callable[[int, int, "TaskContext"], "dict[str, Any] | None"]
InputsFunction = Callable[[int, int, dict[str, Any], Path], list[Path]]

BUILTIN_MODULES = (
    "clusterfarm.tasks.builtin",
    "clusterfarm.tasks.vort_track",
    "clusterfarm.tasks.year_summary",
)


@dataclass(frozen=True)
class TaskSpec:
    """A registered task: its function, version and parameter defaults."""

    name: str
    version: str
    fn: TaskFunction
    defaults: Mapping[str, Any] = field(default_factory=dict)
    writes_output: bool = True
    check: Callable[[dict[str, Any]], None] | None = None
    per_year: bool = False
    after: tuple[str, ...] = ()
    inputs: InputsFunction | None = None

    def resolve_params(self, given: Mapping[str, Any] | None, where: str = "") -> dict[str, Any]:
        """Merge ``given`` over the defaults; unknown names and wrong types are errors."""
        params = dict(self.defaults)
        for key, value in (given or {}).items():
            place = f"{where}[tasks.{self.name}] {key}" if where else f"task {self.name} {key}"
            if key not in self.defaults:
                known = ", ".join(sorted(self.defaults)) or "none"
                raise SettingsError(f"{place}: unknown parameter (known: {known})")
            params[key] = _checked(value, self.defaults[key], place)
        if self.check is not None:
            self.check(params)  # values that have the right type but make no sense
        return params

    def output_path(self, results_dir: Path, year: int, member: int) -> Path:
        """Where this task writes the result of one cell: ``{results_dir}/{task}/{year}/`` and
        :meth:`output_name`."""
        return self.output_dir(results_dir, year) / self.output_name(year, member)

    def output_dir(self, results_dir: Path, year: int) -> Path:
        """The folder of one year's results."""
        return results_dir / self.name / str(year)

    def output_name(self, year: int, member: int) -> str:
        """The file name of one cell's result."""
        if self.per_year:
            return f"{self.name}_{year}.nc"
        return f"{self.name}_{year}_m{member:03d}.nc"

    def input_files(
        self, year: int, member: int, params: dict[str, Any], data_dir: Path
    ) -> list[Path]:
        """The input files one cell reads (for the results ledger); [] if not declared."""
        return self.inputs(year, member, params, data_dir) if self.inputs else []


def params_hash(params: Mapping[str, Any]) -> str:
    """A short stable hash of a parameter table, for the results ledger."""
    text = json.dumps(params, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _checked(value: Any, default: Any, place: str) -> Any:
    if default is None or value is None:
        return value
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, float):
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(default, list | tuple):
        ok = isinstance(value, list | tuple)
        value = list(value) if ok else value
    else:
        ok = isinstance(value, type(default))
    if not ok:
        raise SettingsError(
            f"{place}: expected {type(default).__name__}, got {type(value).__name__} {value!r}"
        )
    return value


@dataclass
class TaskContext:
    """What a task gets besides year and member."""

    task: str
    params: dict[str, Any]
    data_dir: Path
    results_dir: Path
    output_path: Path
    log: logging.Logger
    scratch_root: Path | None = None
    members: list[int] | None = None  # the run's members (what a per-year task summarises)
    run_id: str | None = None  # the run this cell belongs to (result files name it)
    _workdir: Path | None = field(default=None, init=False, repr=False)

    @property
    def workdir(self) -> Path:
        """A scratch folder for this cell, made on first use and removed afterwards."""
        if self._workdir is None:
            if self.scratch_root is not None:
                self.scratch_root.mkdir(parents=True, exist_ok=True)
            self._workdir = Path(tempfile.mkdtemp(prefix=f"{self.task}-", dir=self.scratch_root))
        return self._workdir

    def remove_workdir(self) -> None:
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)

    @contextlib.contextmanager
    def atomic_output(self) -> Iterator[Path]:
        """Yield a temporary path that becomes ``output_path`` only if the block succeeds."""
        self.output_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = temporary_output(self.output_path, os.getpid())
        try:
            yield tmp
            os.replace(tmp, self.output_path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()


def temporary_output(final: Path, pid: int) -> Path:
    """Where process ``pid`` writes ``final`` before renaming it (a killed one leaves it)."""
    return final.with_name(f".{final.name}.{pid}.tmp")


_REGISTRY: dict[str, TaskSpec] = {}
_loaded_modules: set[str] = set()


def task(
    name: str,
    version: str = "1",
    params: Mapping[str, Any] | None = None,
    writes_output: bool = True,
    check: Callable[[dict[str, Any]], None] | None = None,
    per_year: bool = False,
    after: str | tuple[str, ...] = (),
    inputs: InputsFunction | None = None,
) -> Callable[[TaskFunction], TaskFunction]:
    """Register ``fn`` as the task ``name``; ``params`` are its parameters and defaults.

    ``check(params)`` may raise :class:`SettingsError` for values that make no sense; it runs
    when a run starts, so a bad value stops the run at once instead of failing every cell.
    ``per_year`` tasks run once per year (member -1); ``after`` names the tasks
    whose cells must be complete first: the same year and member, or every member of the year
    for a per-year task. ``inputs(year, member, params, data_dir)`` lists the files a cell
    reads, so a rerun notices when they change.
    """
    needs = (after,) if isinstance(after, str) else tuple(after)

    def register(fn: TaskFunction) -> TaskFunction:
        spec = TaskSpec(
            name,
            str(version),
            fn,
            dict(params or {}),
            writes_output,
            check,
            per_year,
            needs,
            inputs,
        )
        _REGISTRY[name] = spec
        return fn

    return register


def load_task_modules(modules: tuple[str, ...] | list[str] = ()) -> None:
    """Import the built-in task modules and the plugin modules that register tasks."""
    for module in (*BUILTIN_MODULES, *modules):
        if module in _loaded_modules:
            continue
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise SettingsError(
                f"tasks.modules: cannot import {module!r} ({exc}); "
                "check the module name and that it is installed on this machine"
            ) from exc
        _loaded_modules.add(module)


def get_task(name: str) -> TaskSpec:
    """Return the registered task ``name``, or raise :class:`UnknownTaskError`."""
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY)) or "none"
        raise UnknownTaskError(f"unknown task {name!r} (known: {known})") from None


def with_prerequisites(names: list[str]) -> list[str]:
    """``names`` with the tasks they need added in front, each task after its prerequisites.

    Unknown tasks and cycles are usage errors naming the tasks involved.
    """
    ordered: list[str] = []
    visiting: list[str] = []

    def visit(name: str, needed_by: str | None) -> None:
        if name in ordered:
            return
        if name in visiting:
            cycle = " -> ".join([*visiting[visiting.index(name) :], name])
            raise UnknownTaskError(f"task dependencies form a cycle: {cycle}")
        try:
            spec = get_task(name)
        except UnknownTaskError:
            if needed_by is None:
                raise
            raise UnknownTaskError(
                f"task {needed_by!r} runs after {name!r}, which is not a registered task"
            ) from None
        visiting.append(name)
        for prerequisite in spec.after:
            visit(prerequisite, name)
        visiting.pop()
        ordered.append(name)

    for name in names:
        visit(name, None)
    return ordered


def task_names() -> list[str]:
    """Names of all registered tasks."""
    return sorted(_REGISTRY)


def resolve_task_params(settings: Settings, tasks: list[str]) -> dict[str, dict[str, Any]]:
    """Check the task names and every ``[tasks.<name>]`` table; return the params of ``tasks``."""
    load_task_modules(settings.tasks.modules)
    for name in settings.tasks.params:
        try:
            get_task(name)
        except UnknownTaskError:
            raise SettingsError(
                f"{settings.source}: [tasks.{name}]: no task named {name!r} "
                "is registered; check the name or tasks.modules"
            ) from None
    resolved = {
        name: get_task(name).resolve_params(table, f"{settings.source}: ")
        for name, table in settings.tasks.params.items()
    }
    return {name: resolved.get(name) or get_task(name).resolve_params({}) for name in tasks}
