"""The ``clusterfarm`` command: parse, validate, call; one ``Error:`` line per failure.

The only package that imports click. Each command turns its options into a call of the module
that does the work; :func:`main` maps :class:`ClusterFarmError` to one ``Error:`` line
and its exit code. The commands are grouped by what they work on: :mod:`.runs` (a run and its
state), :mod:`.observe` (its trace and report), :mod:`.hosts` (nameserver, workers, hosts,
certificates) and :mod:`.science` (sample data, scores, maps, exports, tasks); :mod:`.base`
holds the group and the options every command shares; this module has ``main`` and the
``settings`` command.
"""

from __future__ import annotations

import contextlib
import sys

import click

from clusterfarm.cli.base import _options, cli, common, load
from clusterfarm.errors import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    ClusterFarmError,
    os_error,
)


@cli.command("settings")
@common
def settings_command() -> None:
    """Print the effective settings (after ${VAR} substitution) as TOML.

    The parameters of the run's tasks, and of every task with a ``[tasks.<name>]`` table,
    are printed in full: defaults and the values set.
    """
    from clusterfarm.config.settings import to_toml
    from clusterfarm.tasks.registry import resolve_task_params, with_prerequisites

    # not settings(): printing them must work while the certificate files are still missing
    config = load()
    names = [*with_prerequisites(config.run.tasks), *config.tasks.params]
    params = resolve_task_params(config, list(dict.fromkeys(names)))
    click.echo(to_toml(config, params), nl=False)


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the command, turn errors into one line and an exit code."""
    try:
        code = cli.main(args=argv, prog_name="clusterfarm", standalone_mode=False)
        sys.stdout.flush()  # what the command printed reaches its reader now, or fails here
    except click.exceptions.Exit as exc:
        code = exc.exit_code
    except (ClusterFarmError, click.ClickException, KeyboardInterrupt, click.Abort) as exc:
        if _options["debug"]:
            raise
        message, code = _one_line(exc)
        _say(f"Error: {message}")
    except OSError as exc:  # standard output's last flush, or a file no command checked
        if _options["debug"]:
            raise
        if exc.filename is None:
            from clusterfarm.cli.outputs import stdout_error

            error = stdout_error(exc)
        else:
            error = os_error(exc, str(exc.filename), "check the path and its permissions")
        _say(f"Error: {error}")
        code = error.exit_code
    sys.exit(code if isinstance(code, int) else EXIT_OK)


def _say(line: str) -> None:
    with contextlib.suppress(OSError):  # standard error may be gone too
        click.echo(line, err=True)


def _one_line(exc: BaseException) -> tuple[str, int]:
    """The ``Error:`` line and exit code for an error that ends a command."""
    if isinstance(exc, ClusterFarmError):
        return str(exc), exc.exit_code
    if isinstance(exc, click.ClickException):
        return exc.format_message(), EXIT_USAGE
    return "interrupted; state saved, run again to resume", EXIT_INTERRUPTED


# the commands register themselves with the group when their modules are imported
from clusterfarm.cli import hosts, observe, runs, science  # noqa: E402, F401
