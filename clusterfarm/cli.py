"""The ``clusterfarm`` command: parse, validate, call; one ``Error:`` line per failure.

The only module that imports click. Each command turns its options into a call of the module
that does the work; :func:`main` maps :class:`ClusterFarmError` to the exit codes of SPEC §5.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from clusterfarm import __version__
from clusterfarm.errors import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    ClusterFarmError,
    UsageError,
)
from clusterfarm.settings import Host, Settings, load_settings

_options: dict[str, Any] = {"settings": None, "verbose": False, "debug": False}


def _remember(name: str) -> Callable[[click.Context, click.Parameter, Any], Any]:
    def callback(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
        if value:  # given before or after the command name: either counts
            _options[name] = value
        return value

    return callback


def common(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Add ``--settings``, ``-v`` and ``--debug`` to a command (and the group)."""
    fn = click.option(
        "--debug",
        is_flag=True,
        expose_value=False,
        is_eager=True,
        callback=_remember("debug"),
        help="Show tracebacks of errors.",
    )(fn)
    fn = click.option(
        "-v",
        "--verbose",
        is_flag=True,
        expose_value=False,
        callback=_remember("verbose"),
        help="Log more (DEBUG).",
    )(fn)
    fn = click.option(
        "--settings",
        "settings_path",
        metavar="PATH",
        expose_value=False,
        callback=_remember("settings"),
        help="Settings file (default: $CLUSTERFARM_SETTINGS, ./clusterfarm.toml, "
        "else the embedded default).",
    )(fn)
    return fn


def settings() -> Settings:
    """Load the settings and configure Pyro5 (TLS included) once, before any connection."""
    from clusterfarm.transport import configure_pyro

    config = load_settings(_options["settings"])
    configure_pyro(config.security)
    return config


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="clusterfarm")
@common
def cli() -> None:
    """Run one analysis over every year x ensemble member across the lab's machines."""


@cli.command("settings")
@common
def settings_command() -> None:
    """Print the effective settings (after ${VAR} substitution) as TOML."""
    from clusterfarm.settings import to_toml

    # not settings(): printing them must work while the certificate files are still missing
    click.echo(to_toml(load_settings(_options["settings"])), nl=False)


@cli.command()
@click.option("--host", help="Address to listen on (default: [nameserver] host).")
@click.option("--port", type=int, help="Port to listen on (default: [nameserver] port).")
@common
def nameserver(host: str | None, port: int | None) -> None:
    """Run a Pyro5 nameserver in the foreground until Ctrl-C or SIGTERM."""
    import signal

    from clusterfarm.nameserver import NameServer

    config = settings().nameserver
    server = NameServer(host or config.host, config.port if port is None else port)
    signal.signal(signal.SIGTERM, lambda *_: server.stop())
    click.echo(f"nameserver listening at {server.uri}")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        server.stop()


@cli.command()
@click.option(
    "--host",
    help="Address to listen on; one other hosts can reach "
    "(default: this machine's address towards the nameserver).",
)
@click.option(
    "--name",
    help="Worker name, registered as clusterfarm.worker.NAME (default: <hostname>.<first free n>).",
)
@click.option(
    "--nameserver",
    "ns_address",
    metavar="HOST:PORT",
    help="Nameserver to register with (default: [nameserver] in the settings).",
)
@click.option(
    "--log-file", metavar="PATH", help="Log here, rotated per [logging] (default: stderr)."
)
@click.option(
    "--die-with-stdin",
    is_flag=True,
    hidden=True,
    help="Exit when stdin closes (local mode: die with the manager).",
)
@click.option(
    "--orphan-after",
    type=click.FloatRange(min=0),
    metavar="SECONDS",
    help="Exit after this long without a nameserver; 0: never (default: [workers] orphan_after).",
)
@common
def worker(
    host: str | None,
    name: str | None,
    ns_address: str | None,
    log_file: str | None,
    die_with_stdin: bool,
    orphan_after: float | None,
) -> None:
    """Run one worker daemon in the foreground, registered with the nameserver."""
    from clusterfarm import worker as worker_module
    from clusterfarm.logs import setup_logging
    from clusterfarm.transport import address_towards

    config = settings()
    setup_logging(config, Path(log_file) if log_file else None, verbose=_options["verbose"])
    ns_host, ns_port = config.nameserver.host, config.nameserver.port
    if ns_address:
        ns_host, _, port_text = ns_address.rpartition(":")
        if not ns_host or not port_text.isdigit():
            raise UsageError(f"--nameserver {ns_address!r}: give HOST:PORT, e.g. 10.0.0.1:9090")
        ns_port = int(port_text)
    bind = host or address_towards(ns_host, ns_port)
    orphan = config.workers.orphan_after if orphan_after is None else orphan_after
    worker_module.serve(config, bind, name, ns_host, ns_port, die_with_stdin, orphan_after=orphan)


@cli.command()
@click.option("--years", help="Years to run, e.g. 2000-2012 or 2000,2003 (default: [run]).")
@click.option("--members", help="Ensemble members, e.g. 0-55 (default: [run]).")
@click.option("--task", help="Task name, or several: vort_track,year_summary.")
@click.option("--run-dir", help="Run directory: state, logs, results (default: [run]).")
@click.option(
    "--local",
    type=int,
    metavar="N",
    help="Local mode with N workers, whatever the hosts in the settings.",
)
@click.option("--timeout", type=float, help="Seconds a task may run before it is marked T.")
@click.option("--retries", type=int, help="Further attempts after F, T or a lost worker.")
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
    from clusterfarm import runner
    from clusterfarm.view import make_view, report_footer, report_json

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
    request = runner.RunRequest(config, local, verbose=_options["verbose"])
    report, code = runner.execute(request, view)
    if as_json:
        click.echo(report_json(report))
    elif progress != "none":
        click.echo("\n".join(report_footer(report)))
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
@common
def status(run_dir: str | None, as_json: bool) -> int:
    """Show the progress of a run, live or finished, from its state database.

    Also says which complete cells the next ``run`` (with these settings) would compute again,
    and why: a new task version, changed parameters or inputs, a missing or changed output.
    """
    from pathlib import Path

    from clusterfarm.report import read_report
    from clusterfarm.runner import stale_cells
    from clusterfarm.state import connect
    from clusterfarm.view import report_json, report_text, stale_lines

    config = settings()
    path = Path(run_dir or config.run.run_dir)
    db = connect(path, create=False)
    try:
        report = read_report(db)
    finally:
        db.close()
    stale = stale_cells(config, path, report) if report.state != "running" else []
    if as_json:
        click.echo(report_json(report, stale))
    else:
        click.echo("\n".join([report_text(report), *stale_lines(stale)]))
    return EXIT_FAILED if report.failures else EXIT_OK


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list.")
@common
def workers(as_json: bool) -> None:
    """List the workers registered with the nameserver and what they are doing."""
    from clusterfarm.roster import describe_workers, workers_table

    config = settings().nameserver
    described = describe_workers(config.host, config.port)
    click.echo(json.dumps(described) if as_json else workers_table(described))


@cli.command("run-task")
@click.option("--year", type=int, required=True, help="Year to run.")
@click.option("--member", type=int, required=True, help="Ensemble member to run.")
@click.option("--task", help="Task name (default: the first of [run] task).")
@common
def run_task(year: int, member: int, task: str | None) -> int:
    """Run one task in this process, without the cluster (for debugging a task)."""
    from pathlib import Path

    from clusterfarm.executor import run_job
    from clusterfarm.runner import resolve_task_params

    config = settings()
    name = task or config.run.tasks[0]
    params = resolve_task_params(config, [name])[name]
    outcome = run_job(
        {
            "task": name,
            "year": year,
            "member": member,
            "params": params,
            "data_dir": str(Path(config.run.data_dir).absolute()),
            "results_dir": str(Path(config.run.results_path).absolute()),
        }
    )
    click.echo(json.dumps({"task": name, "year": year, "member": member, **outcome}))
    return EXIT_OK if outcome["status"] == "complete" else EXIT_FAILED


def _seconds(
    flag: str, default: float, text: str, zero: bool = False
) -> Callable[[Callable[..., Any]], Any]:
    """A ``--flag SECONDS`` option: a positive number (or 0 too, with ``zero``)."""
    return click.option(
        flag,
        type=click.FloatRange(min=0, min_open=not zero),
        default=default,
        show_default=True,
        metavar="SECONDS",
        help=text,
    )


def _ssh_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Add ``--hosts`` and ``--connect-timeout`` to a command that reaches the hosts by SSH."""
    fn = _seconds(
        "--connect-timeout", 10.0, "Time limit for each of TCP connect, SSH handshake and login."
    )(fn)
    return click.option(
        "--hosts", "host_names", metavar="A,B", help="Only these hosts (default: all [[hosts]])."
    )(fn)


_accept_new_host_keys = click.option(
    "--accept-new-host-keys",
    is_flag=True,
    help="Accept the key of a host not in ~/.ssh/known_hosts, and add it there.",
)


def _ssh_hosts(config: Settings, host_names: str | None) -> tuple[Host, ...]:
    hosts = config.select_hosts(host_names)
    if not hosts:
        raise UsageError(
            f"{config.source}: no [[hosts]]; add one per machine (see "
            "settings/example-cluster.toml), or use `clusterfarm run` in local mode"
        )
    return hosts


def _report_hosts(launcher: Any, action: str, call: Callable[[], object]) -> int:
    """Run a launcher action; print one row per host (with its error), then a summary line."""
    from clusterfarm.errors import LaunchError
    from clusterfarm.launcher import exit_code, outcomes_table
    from clusterfarm.logs import setup_logging

    setup_logging(launcher.settings, verbose=_options["verbose"])
    try:
        call()
    except LaunchError as exc:
        click.echo(outcomes_table(launcher.outcomes, action))
        failed = ", ".join(exc.outcomes)
        click.echo(
            f"Error: {action}-workers failed on {len(exc.outcomes)} of "
            f"{len(launcher.outcomes)} hosts ({failed}); see each host's row above",
            err=True,
        )
        return exit_code(launcher.outcomes)
    click.echo(outcomes_table(launcher.outcomes, action))
    return EXIT_OK


@cli.command("start-workers")
@_ssh_options
@_accept_new_host_keys
@_seconds("--timeout", 30.0, "How long to wait for the started workers to register.")
@common
def start_workers(
    host_names: str | None, connect_timeout: float, accept_new_host_keys: bool, timeout: float
) -> int:
    """SSH to every host in parallel, start its worker daemons, wait until they are registered."""
    from clusterfarm.remote import SSHLauncher

    config = settings()
    hosts = _ssh_hosts(config, host_names)
    launcher = SSHLauncher(config, hosts, accept_new_host_keys, connect_timeout)
    return _report_hosts(launcher, "start", lambda: launcher.start(timeout))


@cli.command("stop-workers")
@_ssh_options
@_seconds("--grace", 10.0, "How long workers get to end after SIGTERM before SIGKILL.", True)
@common
def stop_workers(host_names: str | None, connect_timeout: float, grace: float) -> int:
    """SSH to every host, stop the worker daemons started there, forget their names."""
    from clusterfarm.remote import SSHLauncher

    config = settings()
    hosts = _ssh_hosts(config, host_names)
    launcher = SSHLauncher(config, hosts, connect_timeout=connect_timeout, grace=grace)
    return _report_hosts(launcher, "stop", launcher.stop)


@cli.command()
@_ssh_options
@_accept_new_host_keys
@common
def doctor(host_names: str | None, connect_timeout: float, accept_new_host_keys: bool) -> int:
    """Check every host before a run; one row per check, with a hint for each failure."""
    from clusterfarm.doctor import checks_table, diagnose

    config = settings()
    hosts = _ssh_hosts(config, host_names)
    checks = diagnose(config, hosts, accept_new_host_keys, connect_timeout)
    click.echo(checks_table(checks))
    return EXIT_FAILED if any(check.ok is not True for check in checks) else EXIT_OK


@cli.command("sample-data")
@click.option("--out", required=True, metavar="DIR", help="Where to write the data.")
@click.option("--years", default="2000-2002", show_default=True, help="Years to write.")
@click.option(
    "--members",
    default=4,
    show_default=True,
    type=click.IntRange(min=1),
    help="Ensemble members per year.",
)
@click.option(
    "--size",
    type=click.Choice(["small", "full"]),
    default="small",
    show_default=True,
    help="small: a few dozen steps (tests, demo); full: 1460 steps like a real year.",
)
@click.option("--seed", default=0, show_default=True, help="Seed of the random parts.")
@click.option("--packed", is_flag=True, help="Write int16 with scale_factor/add_offset and zlib.")
@common
def sample_data(out: str, years: str, members: int, size: str, seed: int, packed: bool) -> None:
    """Write synthetic 20CR-like u850/v850 files with known vortex tracks (and the truth)."""
    from clusterfarm.analysis import write_sample_data
    from clusterfarm.specs import parse_spec

    year_list = parse_spec(years, "year")
    written = write_sample_data(out, year_list, members, size, seed, packed)  # type: ignore[arg-type]
    click.echo(
        f"wrote {len(written)} files for {len(year_list)} year(s) x {members} members "
        f"({size}{', packed' if packed else ''}) to {out}; truth tracks in {out}/truth"
    )


@cli.command()
@click.option("--run-dir", help="Run directory whose vort_track results to score.")
@click.option("--truth", required=True, metavar="DIR", help="Sample data folder (or its truth/).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@common
def score(run_dir: str | None, truth: str, as_json: bool) -> None:
    """Score vort_track results against the true tracks of sample data."""
    from clusterfarm.analysis import score_results

    figures = score_results(_results_dir(run_dir), truth)
    if as_json:
        click.echo(json.dumps(figures))
        return
    error = figures["error_km"]
    click.echo(
        f"recall {figures['recall']:.3f}  precision {figures['precision']:.3f}  "
        f"f1 {figures['f1']:.3f}  ({figures['found_tracks']} found, "
        f"{figures['truth_tracks']} true tracks)\n"
        f"position error: mean {error['mean']:.1f} km, median {error['median']:.1f} km, "
        f"95th percentile {error['p95']:.1f} km"
    )


@cli.command()
@click.option("--run-dir", help="Run directory whose vort_track results to draw.")
@click.option("--year", type=int, required=True, help="Year to draw.")
@click.option("--member", type=int, help="One member (default: all members of the year).")
@click.option("--out", required=True, metavar="FILE.png", help="PNG file to write.")
@click.option(
    "--density",
    is_flag=True,
    help="Draw the year's ensemble-mean track density (from year_summary) instead.",
)
@common
def plot(run_dir: str | None, year: int, member: int | None, out: str, density: bool) -> None:
    """Draw the tracks of a year on a lat/lon map (PNG), or their density."""
    from clusterfarm.analysis import find_results, plot_density, plot_tracks

    results_dir = _results_dir(run_dir)
    if density:
        from clusterfarm.tasks.registry import get_task, load_task_modules

        load_task_modules()
        summary = get_task("year_summary").output_path(Path(results_dir), year, -1)
        if not summary.is_file():
            raise UsageError(
                f"{summary}: no year_summary for {year}; run --task vort_track,year_summary first"
            )
        click.echo(f"wrote {plot_density(summary, out, f'track density {year}')}")
        return
    files = find_results(results_dir, year, member)
    if not files:
        which = f"year {year}" + (f" member {member}" if member is not None else "")
        raise UsageError(f"{results_dir}: no vort_track results for {which}; run it first")
    title = f"vort_track {year}" + (
        f" member {member}" if member is not None else f", {len(files)} members"
    )
    click.echo(f"wrote {plot_tracks(files.values(), out, title)}")


def _results_dir(run_dir: str | None) -> str:
    config = settings()
    if run_dir is not None:
        config = config.with_run(run_dir=run_dir)
    return config.run.results_path


@cli.command()
@click.option("--out", required=True, metavar="DIR", help="Folder to write the files into.")
@click.option(
    "--hosts",
    "host_names",
    metavar="A,B",
    help="Hosts of the settings (their name and address), or other names or addresses "
    "(default: every host and localhost).",
)
@click.option("--force", is_flag=True, help="Replace an existing CA in DIR.")
@common
def certs(out: str, host_names: str | None, force: bool) -> None:
    """Make a CA and a certificate per host (and the manager) for [security] tls."""
    from clusterfarm.certs import alt_names_of, make_certs

    # not settings(): the certificates it would check are the ones being made
    config = load_settings(_options["settings"])
    for line in make_certs(Path(out), alt_names_of(config, host_names), force):
        click.echo(line)


@cli.command()
@click.argument("worker")
@click.option(
    "-n",
    "lines",
    default=40,
    show_default=True,
    type=click.IntRange(min=1),
    help="How many lines from the end.",
)
@click.option("--run-dir", help="Run dir of a local-mode run (for local.<n> workers).")
@common
def logs(worker: str, lines: int, run_dir: str | None) -> None:
    """Show the end of WORKER's log (e.g. berlin.0), over SSH for a remote host."""
    from clusterfarm.worker_logs import worker_log_tail

    config = settings()
    if run_dir is not None:
        config = config.with_run(run_dir=run_dir)
    click.echo(worker_log_tail(config, worker, lines))


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the command, turn errors into one line and an exit code."""
    try:
        code = cli.main(args=argv, prog_name="clusterfarm", standalone_mode=False)
    except ClusterFarmError as exc:
        code = _fail(str(exc), exc.exit_code)
    except click.exceptions.Exit as exc:
        code = exc.exit_code
    except click.ClickException as exc:
        code = _fail(exc.format_message(), EXIT_USAGE)
    except (KeyboardInterrupt, click.exceptions.Abort):
        code = _fail("interrupted; state saved, run again to resume", EXIT_INTERRUPTED)
    sys.exit(code if isinstance(code, int) else EXIT_OK)


def _fail(message: str, code: int) -> int:
    if _options["debug"]:
        raise
    click.echo(f"Error: {message}", err=True)
    return code
