"""Commands about the machines: ``nameserver``, ``worker``, ``workers``, ``start-workers``,
``stop-workers``, ``doctor``, ``certs`` and ``logs``."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import click

from clusterfarm.cli.base import PORT, Seconds, Whole, _options, cli, common, load, settings
from clusterfarm.config.settings import Host, Settings
from clusterfarm.errors import EXIT_FAILED, EXIT_OK, UsageError


@cli.command()
@click.option("--host", help="Address to listen on (default: [nameserver] host).")
@click.option(
    "--port",
    type=Whole(0, 65535),
    help="Port to listen on; 0: a free one, printed at start (default: [nameserver] port).",
)
@common
def nameserver(host: str | None, port: int | None) -> None:
    """Run a Pyro5 nameserver in the foreground until Ctrl-C or SIGTERM."""
    import signal

    from clusterfarm.wire.access import cluster_access
    from clusterfarm.wire.nameserver import NameServer

    config = settings()
    access = cluster_access(config.security, create=True)
    ns = config.nameserver
    server = NameServer(host or ns.host, ns.port if port is None else port, access)
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
    "--secret-file",
    metavar="PATH",
    help="The cluster's secret (default: [security] secret_file).",
)
@click.option("--secret-stdin", is_flag=True, hidden=True, help="Read the secret from stdin.")
@click.option(
    "--orphan-after",
    type=Seconds(zero=True),
    metavar="SECONDS",
    help="Exit after this long without a nameserver; 0: never (default: [workers] orphan_after).",
)
@click.option(
    "--exit-when-idle",
    type=click.FloatRange(min=0),
    default=0.0,
    metavar="SECONDS",
    help="Exit once no manager has called for this long; 0: never (a pool started for one run).",
)
@common
def worker(
    host: str | None,
    name: str | None,
    ns_address: str | None,
    log_file: str | None,
    die_with_stdin: bool,
    secret_file: str | None,
    secret_stdin: bool,
    orphan_after: float | None,
    exit_when_idle: float,
) -> None:
    """Run one worker daemon in the foreground, registered with the nameserver."""
    from clusterfarm.config.logging_setup import setup_logging
    from clusterfarm.wire.access import access_from_stdin, cluster_access
    from clusterfarm.wire.pyro import address_towards
    from clusterfarm.worker import daemon as worker_daemon

    config = settings()
    if secret_stdin:  # local mode: the run's own secret, from the manager
        access = access_from_stdin()
    else:
        if secret_file:
            config = replace(config, security=replace(config.security, secret_file=secret_file))
        access = cluster_access(config.security)
    setup_logging(config, Path(log_file) if log_file else None, verbose=_options["verbose"])
    ns_host, ns_port = config.nameserver.host, config.nameserver.port
    if ns_address:
        ns_host, _, port_text = ns_address.rpartition(":")
        try:
            ns_port = PORT.convert(port_text, None, None)
        except click.BadParameter:
            ns_host = ""
        if not ns_host:
            raise UsageError(
                f"--nameserver {ns_address!r}: give HOST:PORT with a port from 1 to 65535, "
                "e.g. 10.0.0.1:9090"
            )
    bind = host or address_towards(ns_host, ns_port)
    orphan = config.workers.orphan_after if orphan_after is None else orphan_after
    worker_daemon.WorkerDaemon(
        config,
        access,
        bind,
        name,
        ns_host,
        ns_port,
        die_with_stdin,
        orphan_after=orphan,
        log_file=Path(log_file) if log_file else None,
        exit_when_idle=exit_when_idle,
    ).serve()


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list.")
@common
def workers(as_json: bool) -> None:
    """List the workers registered with the nameserver and what they are doing."""
    from clusterfarm.launchers.roster import describe_workers, workers_table
    from clusterfarm.wire.access import cluster_access

    config = settings()
    access = cluster_access(config.security)
    described = describe_workers(config.nameserver.host, config.nameserver.port, access)
    if config.launcher == "slurm":
        from clusterfarm.launchers.slurm.launcher import SlurmLauncher, with_jobs

        described = with_jobs(described, SlurmLauncher(config, access=access).jobs())
    click.echo(json.dumps(described) if as_json else workers_table(described))


def _seconds(
    flag: str, default: float, text: str, zero: bool = False
) -> Callable[[Callable[..., Any]], Any]:
    """A ``--flag SECONDS`` option: a positive number (or 0 too, with ``zero``)."""
    return click.option(
        flag,
        type=Seconds(zero=zero),
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
    from clusterfarm.config.logging_setup import setup_logging
    from clusterfarm.errors import LaunchError
    from clusterfarm.launchers.base import exit_code, outcomes_table

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


def _no_hosts_with_slurm(host_names: str | None) -> None:
    if host_names:
        raise UsageError(
            f"--hosts {host_names}: [run] launcher is slurm, which has no hosts; "
            "drop --hosts, or set [run] launcher"
        )


def _slurm_action(action: str, call: Callable[[Any], object], grace: float | None = None) -> int:
    """start-workers / stop-workers with the SLURM launcher: a row per worker job, then a
    summary line (or one ``Error:`` line)."""
    from clusterfarm.config.logging_setup import setup_logging
    from clusterfarm.errors import EXIT_INFRA, LaunchError
    from clusterfarm.launchers.slurm.launcher import STOP_GRACE, SlurmLauncher, rows_table

    config = settings()
    setup_logging(config, verbose=_options["verbose"])
    launcher = SlurmLauncher(config, grace=STOP_GRACE if grace is None else grace)
    try:
        call(launcher)
    except LaunchError as exc:
        if launcher.rows:
            click.echo(rows_table(launcher.rows))
        click.echo(f"Error: {action}-workers: {exc}", err=True)
        return EXIT_INFRA
    click.echo(rows_table(launcher.rows))
    if action == "stop":
        click.echo(f"no worker job of {launcher.job_name} left in the queue")
    else:
        pending = sum(row.state == "pending" for row in launcher.rows)
        if pending:
            click.echo(f"{pending} worker job(s) still pending: they register when they start")
    return EXIT_OK


@cli.command("start-workers")
@_ssh_options
@_accept_new_host_keys
@_seconds("--timeout", 30.0, "How long to wait for the started workers to register.")
@common
def start_workers(
    host_names: str | None, connect_timeout: float, accept_new_host_keys: bool, timeout: float
) -> int:
    """Start the worker daemons (SSH to every host, or one SLURM job array); wait until they
    are registered."""
    from clusterfarm.launchers.ssh.launcher import SSHLauncher
    from clusterfarm.wire.access import cluster_access

    config = settings()
    access = cluster_access(config.security, create=True)
    if config.launcher == "slurm":  # the jobs read the secret from the shared home
        _no_hosts_with_slurm(host_names)
        return _slurm_action("start", lambda launcher: launcher.start(timeout))
    hosts = _ssh_hosts(config, host_names)
    launcher = SSHLauncher(config, hosts, accept_new_host_keys, connect_timeout, access=access)
    return _report_hosts(launcher, "start", lambda: launcher.start(timeout))


@cli.command("stop-workers")
@_ssh_options
@_seconds("--grace", 10.0, "How long workers get to end after SIGTERM before SIGKILL.", True)
@common
def stop_workers(host_names: str | None, connect_timeout: float, grace: float) -> int:
    """Stop the worker daemons (SSH to every host, or cancel the SLURM jobs), forget their
    names."""
    from clusterfarm.launchers.ssh.launcher import SSHLauncher

    config = settings()
    if config.launcher == "slurm":
        _no_hosts_with_slurm(host_names)
        return _slurm_action("stop", lambda launcher: launcher.stop(), grace)
    hosts = _ssh_hosts(config, host_names)
    launcher = SSHLauncher(config, hosts, connect_timeout=connect_timeout, grace=grace)
    return _report_hosts(launcher, "stop", launcher.stop)


@cli.command()
@_ssh_options
@_accept_new_host_keys
@common
def doctor(host_names: str | None, connect_timeout: float, accept_new_host_keys: bool) -> int:
    """Check every host (or, with SLURM, a compute node) before a run; one row per check, with
    a hint for each failure."""
    from clusterfarm.launchers.preflight import checks_table

    config = settings()
    if config.launcher == "slurm":
        from clusterfarm.launchers.slurm.doctor import diagnose_node

        _no_hosts_with_slurm(host_names)
        checks = diagnose_node(config)
    else:
        from clusterfarm.launchers.ssh.doctor import diagnose

        hosts = _ssh_hosts(config, host_names)
        checks = diagnose(config, hosts, accept_new_host_keys, connect_timeout)
    click.echo(checks_table(checks))
    return EXIT_FAILED if any(check.ok is not True for check in checks) else EXIT_OK


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
    from clusterfarm.wire.certs import alt_names_of, make_certs

    # not settings(): the certificates it would check are the ones being made
    config = load()
    for line in make_certs(Path(out), alt_names_of(config, host_names), force):
        click.echo(line)


@cli.command()
@click.argument("worker")
@click.option(
    "-n",
    "lines",
    default=40,
    show_default=True,
    type=Whole(1),
    help="How many lines from the end.",
)
@click.option("--run-dir", help="Run dir of a local-mode run (for local.<n> workers).")
@common
def logs(worker: str, lines: int, run_dir: str | None) -> None:
    """Show the end of WORKER's log (e.g. berlin.0), over SSH for a remote host."""
    from clusterfarm.launchers.worker_logs import worker_log_tail

    config = settings()
    if run_dir is not None:
        config = config.with_run(run_dir=run_dir)
    click.echo(worker_log_tail(config, worker, lines))
