"""Commands about a run: ``run``, ``status`` and ``run-task``."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from clusterfarm.cli.base import MEMBER, YEAR, Seconds, Whole, _options, cli, common, load, settings
from clusterfarm.config.settings import MAX_WORKERS_PER_HOST, MIN_TIMEOUT
from clusterfarm.errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, ClusterFarmError


@cli.command()
@click.option("--years", help="Years to run, e.g. 2000-2012 or 2000,2003 (default: [run]).")
@click.option("--members", help="Ensemble members, e.g. 0-55 (default: [run]).")
@click.option("--task", help="Task name, or several: vort_track,year_summary.")
@click.option("--run-dir", help="Run directory: state, logs, results (default: [run]).")
@click.option(
    "--local",
    type=Whole(1, MAX_WORKERS_PER_HOST),
    metavar="N",
    help="Local mode with N workers, whatever the hosts in the settings.",
)
@click.option(
    "--timeout",
    type=Seconds(MIN_TIMEOUT),
    help="Seconds a task may run before it is marked T.",
)
@click.option("--retries", type=Whole(), help="Further attempts after F, T or a lost worker.")
@click.option(
    "--progress",
    type=click.Choice(["auto", "rich", "plain", "none"]),
    default="auto",
    show_default=True,
    help="How to show progress.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object at the end.")
@common
def run(
    years: str | None,
    members: str | None,
    task: str | None,
    run_dir: str | None,
    local: int | None,
    timeout: float | None,
    retries: int | None,
    progress: str,
    as_json: bool,
) -> int:
    """Farm the (task, year, member) schedule out to the workers and show progress."""
    from clusterfarm.launchers.pools import pool_for
    from clusterfarm.manager import runner
    from clusterfarm.show.board import BoardDisplay
    from clusterfarm.show.console import make_view
    from clusterfarm.show.text import status_footer, status_json

    overrides = {
        "years": years,
        "members": members,
        "task": task,
        "run_dir": run_dir,
        "timeout": timeout,
        "retries": retries,
    }
    config = settings()
    config = config.with_run(**{k: v for k, v in overrides.items() if v is not None})
    view = make_view("none" if as_json else progress, sys.stdout.isatty())
    request = runner.RunRequest(config, verbose=_options["verbose"])
    report, code = runner.execute(request, BoardDisplay(view), pool_for(config, local))
    if as_json:
        click.echo(status_json(report))
    elif progress != "none":
        click.echo("\n".join(status_footer(report)))
    if code == EXIT_INTERRUPTED:
        click.echo(
            f"Interrupted: state saved in {config.run.run_dir}; run the same command "
            "again to resume",
            err=True,
        )
    return code


@cli.command()
@click.option("--run-dir", help="Run directory (default: [run] run_dir).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option(
    "--plan",
    is_flag=True,
    help="Also say which complete cells the next run would compute again, and why.",
)
@common
def status(run_dir: str | None, as_json: bool, plan: bool) -> int:
    """Show the progress of a run, live or finished, from its state database.

    With ``--plan`` it also says which complete cells the next ``run`` (with these settings)
    would compute again, and why: a new task version, changed parameters, another results
    dir. Inputs and outputs are checked where the data is, when the run starts: from here
    status cannot check them. Relative paths in the settings are taken from where the run
    was started. A run whose manager died shows "manager gone since ..."; the cells it was
    working on show as ``-``. Reads only: the state database is opened read-only, so a
    read-only run dir works.
    """

    from clusterfarm.manager.prepare import stale_cells
    from clusterfarm.record.state import connect_read_only
    from clusterfarm.record.status import read_status
    from clusterfarm.show.text import stale_lines, status_json, status_text

    # no connections, so no TLS set-up; and a broken task table must not hide the progress
    # (the plan of the next run below says what is wrong with it)
    config = load(check_tasks=False)
    path = Path(run_dir or config.run.run_dir)
    db = connect_read_only(path)
    try:
        report = read_status(db)
    finally:
        db.close()
    stale: list[Any] | None = None
    unknown = ""
    if plan and report.state != "running":
        try:
            started = config.started_in(report.cwd) if report.cwd else config
            stale = stale_cells(started, path, report)
        except ClusterFarmError as exc:  # the progress is still worth showing
            stale, unknown = None, f"(cannot tell which cells the next run redoes: {exc})"
    if as_json:
        click.echo(status_json(report, stale))
    else:
        lines = [status_text(report), *stale_lines(stale or []), unknown]
        if stale is not None:
            lines.append("(inputs and outputs are checked where the data is, when the run starts)")
        click.echo("\n".join(lines).rstrip())
    return EXIT_FAILED if report.failures else EXIT_OK


@cli.command("run-task")
@click.option("--year", type=YEAR, required=True, help="Year to run.")
@click.option("--member", type=MEMBER, required=True, help="Ensemble member to run.")
@click.option("--task", help="Task name (default: the first of [run] task).")
@common
def run_task(year: int, member: int, task: str | None) -> int:
    """Run one task in this process, without the cluster (for debugging a task)."""

    from clusterfarm.tasks.registry import resolve_task_params
    from clusterfarm.wire.protocol import named, parse_answer
    from clusterfarm.worker.task_process import run_cells

    config = settings()
    name = task or config.run.tasks[0]
    params = resolve_task_params(config, [name])[name]
    context = {
        "task": name,
        "params": params,
        "data_dir": str(Path(config.run.data_dir).absolute()),
        "results_dir": str(Path(config.run.results_path).absolute()),
    }
    answer = parse_answer(next(run_cells(context, [(year, member)])))
    outcome = {"task": name, "year": year, "member": member, **answer.to_dict()}
    outcome["usage"] = named(answer.usage)
    click.echo(json.dumps(outcome))
    return EXIT_OK if answer.complete else EXIT_FAILED
