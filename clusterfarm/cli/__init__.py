"""The ``clusterfarm`` command: parse, validate, call; one ``Error:`` line per failure.

The only package that imports click. Each command turns its options into a call of the module
that does the work; :func:`main` maps :class:`ClusterFarmError` to the exit codes of SPEC §5.
The commands are grouped by what they work on: :mod:`.runs` (a run and its state),
:mod:`.hosts` (nameserver, workers, hosts, certificates) and :mod:`.analysis` (sample data,
scores, maps); this module holds the group, the options every command shares, and ``main``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import click

from clusterfarm import __version__
from clusterfarm.errors import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    ClusterFarmError,
)
from clusterfarm.settings import Settings, load_settings

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


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the command, turn errors into one line and an exit code."""
    try:
        code = cli.main(args=argv, prog_name="clusterfarm", standalone_mode=False)
    except click.exceptions.Exit as exc:
        code = exc.exit_code
    except (ClusterFarmError, click.ClickException, KeyboardInterrupt, click.Abort) as exc:
        if _options["debug"]:
            raise
        message, code = _one_line(exc)
        click.echo(f"Error: {message}", err=True)
    sys.exit(code if isinstance(code, int) else EXIT_OK)


def _one_line(exc: BaseException) -> tuple[str, int]:
    """The ``Error:`` line and exit code (SPEC §5) for an error that ends a command."""
    if isinstance(exc, ClusterFarmError):
        return str(exc), exc.exit_code
    if isinstance(exc, click.ClickException):
        return exc.format_message(), EXIT_USAGE
    return "interrupted; state saved, run again to resume", EXIT_INTERRUPTED


# the commands register themselves with ``cli`` when their modules are imported
from clusterfarm.cli import analysis, hosts, observe, runs  # noqa: E402, F401
