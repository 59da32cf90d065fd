"""What every command shares: the ``clusterfarm`` group, the options every command takes,
the parameter types, and loading the settings."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import click

from clusterfarm import __version__
from clusterfarm.config.settings import Settings, check_seconds, load_settings
from clusterfarm.config.specs import MAX_MEMBER, MAX_YEAR
from clusterfarm.errors import SettingsError

_options: dict[str, Any] = {"settings": None, "verbose": False, "debug": False}


class Whole(click.ParamType):
    """A whole number in ASCII digits (no sign, ``_`` or other scripts' digits), low to high."""

    name = "integer"

    def __init__(self, low: int = 0, high: int = 10**15) -> None:
        self.low, self.high = low, high

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):  # a default
            return value
        text = str(value).strip()
        if not text.isascii() or not text.isdigit():
            self.fail(f"{value!r} is not a whole number (ASCII digits 0-9)", param, ctx)
        digits = text.lstrip("0") or "0"
        if len(digits) > len(str(self.high)) or not self.low <= int(digits) <= self.high:
            self.fail(f"{text} is out of range; give {self.low} to {self.high}", param, ctx)
        return int(digits)


class Seconds(click.ParamType):
    """A duration in seconds (ASCII), finite, from ``minimum`` (or 0 with ``zero``) up to
    the settings' MAX_SECONDS."""

    name = "seconds"

    def __init__(self, minimum: float = 0.0, zero: bool = False) -> None:
        self.minimum, self.zero = minimum, zero

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        if isinstance(value, int | float):  # a default
            return float(value)
        text = str(value).strip()
        try:
            if not text.isascii() or "_" in text:
                raise ValueError(text)
            seconds = float(text)
            check_seconds(seconds, "", self.minimum, self.zero)
        except ValueError:
            self.fail(f"{value!r} is not a number of seconds", param, ctx)
        except SettingsError as exc:
            self.fail(str(exc).strip(), param, ctx)
        return seconds


# the types of --year and --member: the ranges year and member specs allow
YEAR = Whole(0, MAX_YEAR)
MEMBER = Whole(0, MAX_MEMBER)
PORT = Whole(1, 65535)


def _remember(name: str) -> Callable[[click.Context, click.Parameter, Any], Any]:
    def callback(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
        if value:  # given before or after the command name: either counts
            _options[name] = value
        return value

    return callback


def common(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Add ``--settings``, ``-v`` and ``--debug`` to a command (and the group), and turn a
    failure to write its standard output into one ``Error:`` line."""
    fn = _output_guarded(fn)
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


def _output_guarded(fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def command(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except OSError as exc:
            if exc.filename is not None:
                raise  # a file: the command's own business
            from clusterfarm.cli.outputs import stdout_error

            raise stdout_error(exc) from exc  # a full disk or a reader gone under stdout

    return command


def load(check_tasks: bool = True) -> Settings:
    """Load the settings (``--settings``, ``$CLUSTERFARM_SETTINGS``, ``./clusterfarm.toml``,
    else the default) and check every ``[tasks.<name>]`` table."""
    from clusterfarm.tasks.registry import resolve_task_params

    config = load_settings(_options["settings"])
    if check_tasks:
        resolve_task_params(config, [])
    return config


def settings() -> Settings:
    """Load the settings and configure Pyro5 (TLS included) once, before any connection."""
    from clusterfarm.wire.pyro import configure_pyro

    config = load()
    configure_pyro(config.security)
    return config


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="clusterfarm")
@common
def cli() -> None:
    """Run one analysis over every year x ensemble member across the lab's machines."""
