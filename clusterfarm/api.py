"""The Python API: run a farm, watch it and read its results from a script or a notebook.

::

    from clusterfarm import Farm, open_tracks
    farm = Farm(run_dir="runs/a")                       # keyword overrides of [run] keys
    report = farm.run("vort_track", years="2000-2001", members="0-3", local=2)
    report.complete, report.failures                    # the figures of `run --json`
    rows = farm.trace()                                 # one row per attempt (pandas if present)
    ds = open_tracks("runs/a", years=2000)              # xarray.Dataset (list without xarray)

:meth:`Farm.run` goes through :func:`clusterfarm.manager.runner.execute`, the code path of
``clusterfarm run``; errors are the :class:`~clusterfarm.errors.ClusterFarmError` classes the
command line turns into exit codes. A run that ends with failed cells is not an error (its
report says so); losing every worker raises :class:`~clusterfarm.errors.WorkerError`, and an
interrupted run raises ``KeyboardInterrupt`` (state saved: run again to resume).
"""

from __future__ import annotations

import os
import sqlite3
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from clusterfarm.config.settings import Settings, load_settings
from clusterfarm.config.specs import parse_spec
from clusterfarm.errors import (
    EXIT_INFRA,
    EXIT_INTERRUPTED,
    SettingsError,
    UsageError,
    WorkerError,
)
from clusterfarm.record.status import RunStatus, read_status
from clusterfarm.show.board import View

Spec = str | int | Iterable[int] | None
PROGRESS = ("auto", "notebook", "rich", "plain", "none")


class Farm:
    """One run directory and the settings to run it with.

    ``settings`` is a settings file (path) or a :class:`Settings`; None finds them as the
    command line does (``$CLUSTERFARM_SETTINGS``, ``./clusterfarm.toml``, the default).
    ``overrides`` replace ``[run]`` keys (``run_dir``, ``data_dir``, ``timeout``...).
    """

    def __init__(self, settings: str | os.PathLike[str] | Settings | None = None, **overrides: Any):
        from clusterfarm.wire.pyro import configure_pyro

        if not isinstance(settings, Settings | str | os.PathLike | None):
            raise UsageError(
                f"Farm: settings={settings!r:.60} must be a settings file's path, a Settings "
                "or None"
            )
        if not isinstance(settings, Settings):
            settings = load_settings(os.fspath(settings) if settings is not None else None)
        configure_pyro(settings.security)
        self.settings = _with_run(settings, overrides)

    @property
    def run_dir(self) -> Path:
        return Path(self.settings.run.run_dir)

    def run(
        self,
        task: str | None = None,
        years: Spec = None,
        members: Spec = None,
        local: int | None = None,
        progress: str | View = "auto",
        **overrides: Any,
    ) -> RunStatus:
        """Run ``task`` over ``years`` × ``members`` (default: the settings'); wait for the end.

        ``local=N`` starts N local workers (as ``--local N``); ``progress`` is ``auto``
        (a live block in Jupyter, else as on the command line), ``notebook``, ``rich``,
        ``plain``, ``none`` or a :class:`~clusterfarm.show.board.View`.
        """
        from clusterfarm.launchers.pools import pool_for
        from clusterfarm.manager import runner
        from clusterfarm.show.board import BoardDisplay

        if task is not None and not isinstance(task, str):
            raise UsageError(f"Farm.run: task={task!r:.60} must be a task name (a string)")
        if local is not None and (not isinstance(local, int) or isinstance(local, bool)):
            raise UsageError(f"Farm.run: local={local!r:.60} must be a whole number of workers")
        changes = {
            "task": task,
            "years": _spec(years, "years"),
            "members": _spec(members, "members"),
            **overrides,
        }
        settings = _with_run(self.settings, changes)
        argv = ("clusterfarm.api", f"Farm.run({_call(changes, local)})")
        request = runner.RunRequest(settings, argv=argv)
        report, code = runner.execute(
            request, BoardDisplay(_view(progress)), pool_for(settings, local)
        )
        if code == EXIT_INTERRUPTED:
            raise KeyboardInterrupt(f"run interrupted; state saved in {settings.run.run_dir}")
        if code == EXIT_INFRA:
            raise WorkerError(
                f"{settings.run.run_dir}: every worker was lost ({report.complete} cells "
                "complete, state saved); see logs/manager.log, then run again to resume"
            )
        return report

    def status(self) -> RunStatus:
        """The progress of this run dir's latest run, live or finished."""
        with _state(self.run_dir) as db:
            return read_status(db)

    def trace(self) -> Any:
        """Every attempt, as ``clusterfarm trace`` prints it: a pandas DataFrame when pandas
        is installed (times as UTC timestamps), else a list of dicts."""
        from clusterfarm.record.trace import trace_rows

        with _state(self.run_dir) as db:
            rows = trace_rows(db)
        try:
            import pandas
        except ImportError:
            return rows
        from clusterfarm.record.trace import COLUMNS, TIME_COLUMNS

        frame = pandas.DataFrame(rows, columns=list(COLUMNS))
        for column in TIME_COLUMNS:
            frame[column] = pandas.to_datetime(frame[column], utc=True, format="ISO8601")
        return frame

    def open_tracks(self, years: Spec = None, members: Spec = None) -> Any:
        """This run's vort_track tracks; see :func:`open_tracks`."""
        return open_tracks(self.run_dir, years, members)


def open_tracks(run_dir: str | os.PathLike[str], years: Spec = None, members: Spec = None) -> Any:
    """The tracks of the complete vort_track cells of ``run_dir`` (optionally some years and
    members): an ``xarray.Dataset`` in the CF ragged layout of the result files (dimensions
    ``track`` and ``obs``; ``year``, ``member``, ``track_id``, ``row_size`` per track) when
    xarray is installed, else a list of numpy structured arrays, one per track."""
    from clusterfarm.analysis.gather import gather_tracks, tracks_dataset
    from clusterfarm.record.trace import run_id

    wanted_years = (
        set(parse_spec(_spec(years, "years") or "", "year")) if years is not None else None
    )
    wanted_members = (
        set(parse_spec(_spec(members, "members") or "", "member")) if members is not None else None
    )
    with _state(Path(run_dir)) as db:
        files = [
            (year, member, output)
            for year, member, output in db.execute(
                "SELECT year, member, output FROM cells WHERE task='vort_track' AND status='+' "
                "AND output IS NOT NULL ORDER BY year, member"
            )
            if (wanted_years is None or year in wanted_years)
            and (wanted_members is None or member in wanted_members)
        ]
        ident = run_id(db)
    tracks = gather_tracks(files)
    try:
        import xarray  # noqa: F401
    except ImportError:
        return tracks
    return tracks_dataset(tracks, {"run_id": ident or "", "source_files": len(files)})


class _state:
    """The state database of a run dir, opened read-only for one question."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir

    def __enter__(self) -> sqlite3.Connection:
        from clusterfarm.record.state import connect

        self.db = connect(self.run_dir, create=False)
        return self.db

    def __exit__(self, *exc: object) -> None:
        self.db.close()


def _spec(value: Spec, name: str) -> str | None:
    """A year or member spec from ``"2000-2003"``, ``2000``, ``range(...)`` or a list."""
    if value is None or isinstance(value, str):
        return value
    numbers = [value] if isinstance(value, int) else value
    if isinstance(numbers, Iterable) and not isinstance(numbers, bytes | dict):
        numbers = list(numbers)
        if all(isinstance(n, int) and not isinstance(n, bool) for n in numbers):
            return ",".join(str(n) for n in numbers)
    raise UsageError(
        f"{name}={value!r:.60}: give a spec such as '2000-2012' or '0,3,5-7', a whole number, "
        "or a list or range of them"
    )


def _with_run(settings: Settings, changes: dict[str, Any]) -> Settings:
    from clusterfarm.config.settings import RunSettings

    known = set(RunSettings.__dataclass_fields__)
    unknown = sorted(set(changes) - known)
    if unknown:
        raise UsageError(
            f"Farm: unknown [run] key(s) {', '.join(unknown)} (known: {sorted(known)})"
        )
    values = {k: os.fspath(v) if isinstance(v, os.PathLike) else v for k, v in changes.items()}
    try:  # named as the Python caller wrote them, not as command line options
        return settings.replace_run({k: v for k, v in values.items() if v is not None}, str)
    except SettingsError as exc:
        raise UsageError(f"Farm: {exc}") from None


def _call(changes: dict[str, Any], local: int | None) -> str:
    given = {**{k: v for k, v in changes.items() if v is not None}, "local": local}
    return ", ".join(f"{k}={v!r}" for k, v in given.items() if v is not None)


def _view(progress: str | View) -> View:
    from clusterfarm.show.console import make_view
    from clusterfarm.show.notebook import NotebookView, in_notebook

    if not isinstance(progress, str):
        return progress
    if progress not in PROGRESS:
        raise UsageError(f"progress={progress!r}: give one of {', '.join(PROGRESS)}")
    if progress == "notebook" or (progress == "auto" and in_notebook()):
        return NotebookView()
    return make_view(progress, sys.stdout.isatty())
