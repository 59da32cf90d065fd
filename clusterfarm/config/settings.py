"""Load, validate and print clusterfarm settings.

The packaged ``settings/default.toml`` is the single source of defaults: a user's file is
merged over it, ``${VAR}`` / ``${VAR:-default}`` are substituted in every string, and the
result is checked against the frozen dataclasses below, so every error names the file and key.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import tomllib
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from clusterfarm.config.specs import parse_spec
from clusterfarm.config.substitution import substitute
from clusterfarm.errors import SettingsError, UsageError

ENV_VARIABLE = "CLUSTERFARM_SETTINGS"
# CLUSTERFARM_RECORD=off: no cell's cost is measured and no earlier attempt is kept, in every
# process of the run (only bench/trace_cost.py sets it, to show what the record costs)
RECORD = os.environ.get("CLUSTERFARM_RECORD", "on") != "off"
LOCAL_FILE = "clusterfarm.toml"
_HOST_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
LAUNCHERS = ("auto", "local", "ssh", "slurm")
# sbatch --time: minutes, MM:SS, HH:MM:SS, D-HH, D-HH:MM or D-HH:MM:SS
_SLURM_TIME = re.compile(r"^(\d+-\d+(:\d+){0,2}|\d+(:\d+){0,2})$")
_SLURM_MEM = re.compile(r"^\d+[KMGT]?$")

# Limits that keep a typo from hurting (each error message states its limit)
MAX_SECONDS = 10_000_000.0  # any duration: about 16 weeks; threads cannot wait much longer
MIN_TIMEOUT = 0.1  # [run] timeout
MIN_HEARTBEAT = 0.1  # [run] heartbeat: quiet busy workers are pinged this often
MAX_CELLS = 1_000_000  # cells (tasks x years x members) of one run: about 0.5 GB in the manager
MAX_WORKERS_PER_HOST = 256  # run --local N, workers.per_host, hosts[].workers


@dataclass(frozen=True)
class NameServerSettings:
    host: str
    port: int


@dataclass(frozen=True)
class RunSettings:
    task: str
    years: str
    members: str
    run_dir: str
    results_dir: str
    data_dir: str
    timeout: float
    retries: int
    heartbeat: float
    lost_after: float
    quarantine_after: int
    quarantine_for: float
    launcher: str = "auto"

    @property
    def tasks(self) -> list[str]:
        return [name.strip() for name in self.task.split(",") if name.strip()]

    @property
    def results_path(self) -> str:
        return self.results_dir or str(Path(self.run_dir) / "results")


@dataclass(frozen=True)
class WorkerSettings:
    per_host: int
    python: str
    setup: str
    workdir: str
    orphan_after: float
    min_free_mb: float


@dataclass(frozen=True)
class SlurmSettings:
    workers: int
    max_running: int
    partition: str
    account: str
    qos: str
    time: str
    cpus_per_worker: int
    mem: str
    sbatch_args: tuple[str, ...]
    setup: str
    python: str


@dataclass(frozen=True)
class Host:
    name: str
    address: str = ""
    user: str = ""
    port: int = 22
    workers: int = 0
    key_file: str = ""


@dataclass(frozen=True)
class TaskSettings:
    modules: tuple[str, ...] = ()
    params: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True)
class SecuritySettings:
    tls: bool
    ca: str
    cert: str
    key: str
    auth: bool = True
    secret_file: str = "~/.clusterfarm/secret"


@dataclass(frozen=True)
class LoggingSettings:
    level: str
    format: str
    max_bytes: int
    backups: int


def _option(key: str) -> str:
    """How the command line names a ``[run]`` key: ``--run-dir`` for ``run_dir``."""
    return f"--{key.replace('_', '-')}"


@dataclass(frozen=True)
class Settings:
    """The effective settings of one clusterfarm invocation."""

    nameserver: NameServerSettings
    run: RunSettings
    workers: WorkerSettings
    hosts: tuple[Host, ...]
    tasks: TaskSettings
    security: SecuritySettings
    logging: LoggingSettings
    slurm: SlurmSettings
    source: str = "<default>"

    @property
    def launcher(self) -> str:
        """The launcher ``[run] launcher`` means: ``auto`` is ``ssh`` with hosts, else ``local``."""
        if self.run.launcher != "auto":
            return self.run.launcher
        return "ssh" if self.hosts else "local"

    @property
    def user_file(self) -> str | None:
        """The settings file the user gave, as an absolute path (what a worker started
        elsewhere is told to read), or None for the embedded default."""
        if self.source == str(default_settings_path()):
            return None
        return str(Path(self.source).absolute())

    def with_run(self, **changes: Any) -> Settings:
        """Return a copy with some ``[run]`` values replaced (command line overrides)."""
        return self.replace_run(changes)

    def replace_run(
        self, changes: Mapping[str, Any], name_of: Callable[[str], str] = _option
    ) -> Settings:
        """Return a copy with ``changes`` to ``[run]``, each checked; an error names a value
        as ``name_of(key)`` says (the command line's ``--key`` by default)."""
        hints = typing.get_type_hints(RunSettings)
        checked = {}
        for key, value in changes.items():
            if key not in hints:
                known = ", ".join(f.name for f in dataclasses.fields(RunSettings))
                raise SettingsError(f"{name_of(key)}: not a [run] key (known: {known})")
            checked[key] = _typed(value, hints[key], name_of(key))
        run = dataclasses.replace(self.run, **checked)
        check_run(run, name_of)
        return dataclasses.replace(self, run=run)

    def started_in(self, cwd: str) -> Settings:
        """A copy whose relative ``data_dir`` and ``results_dir`` start at ``cwd``: read from
        another directory, they point where they did for the run started in ``cwd``."""

        def rebased(path: str) -> str:
            return path if not path or Path(path).is_absolute() else str(Path(cwd) / path)

        run = dataclasses.replace(
            self.run, data_dir=rebased(self.run.data_dir), results_dir=rebased(self.run.results_dir)
        )
        return dataclasses.replace(self, run=run)

    def select_hosts(self, names: str | None) -> tuple[Host, ...]:
        """Return the hosts named in a comma list (all hosts when ``names`` is empty)."""
        if not names:
            return self.hosts
        by_name = {host.name: host for host in self.hosts}
        wanted = [name.strip() for name in names.split(",") if name.strip()]
        unknown = [name for name in wanted if name not in by_name]
        if unknown:
            raise UsageError(
                f"--hosts: unknown host {', '.join(unknown)} "
                f"(settings {self.source} has: {', '.join(by_name) or 'no hosts'})"
            )
        return tuple(by_name[name] for name in wanted)


_SECTIONS: dict[str, type] = {
    "nameserver": NameServerSettings,
    "run": RunSettings,
    "workers": WorkerSettings,
    "security": SecuritySettings,
    "logging": LoggingSettings,
    "slurm": SlurmSettings,
}


def default_settings_path() -> Path:
    """Return the embedded default settings file, which lives beside this module."""
    return Path(str(resources.files("clusterfarm.config") / "default.toml"))


def find_settings_file(explicit: str | None = None) -> Path | None:
    """Return the user's settings file (``explicit``, else ``$CLUSTERFARM_SETTINGS``, else
    ``./clusterfarm.toml``), or None for the default."""
    if explicit:
        return Path(explicit)
    if os.environ.get(ENV_VARIABLE):
        return Path(os.environ[ENV_VARIABLE])
    if Path(LOCAL_FILE).is_file():
        return Path(LOCAL_FILE)
    return None


def load_settings(explicit: str | None = None) -> Settings:
    """Load the effective settings: the default file with the user's file merged over it."""
    default_path = default_settings_path()
    merged = _read_toml(default_path)
    user_path = find_settings_file(explicit)
    source = str(default_path)
    if user_path is not None:
        user = _read_toml(user_path)
        source = str(user_path)
        if "hosts" in user:
            merged.pop("hosts", None)
        merged = _merge(merged, user)
    return parse_settings(merged, source)


def parse_settings(table: Mapping[str, Any], source: str) -> Settings:
    """Validate a merged settings table and build :class:`Settings` from it."""
    table = _substitute(dict(table), source, "")
    for key in table:
        if key not in (*_SECTIONS, "hosts", "tasks"):
            raise SettingsError(f"{source}: unknown key {key!r}; known: {_known(_SECTIONS)}")
    sections = {
        name: _build(cls, table.get(name, {}), source, name) for name, cls in _SECTIONS.items()
    }
    workers: WorkerSettings = sections["workers"]
    settings = Settings(
        hosts=_hosts(table.get("hosts", []), workers.per_host, source),
        tasks=_tasks(table.get("tasks", {}), source),
        source=source,
        **sections,
    )
    _check_values(settings)
    return settings


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise SettingsError(f"{path}: settings file not found") from None
    except OSError as exc:
        raise SettingsError(f"{path}: cannot read settings ({exc.strerror})") from exc
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"{path}: not valid TOML ({exc})") from exc
    except UnicodeDecodeError as exc:
        raise SettingsError(
            f"{path}: not UTF-8 text (byte {exc.object[exc.start]:#04x} at offset {exc.start}); "
            "save the settings file as UTF-8"
        ) from None


def _merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _merge(dict(merged[key]), value)
        else:
            merged[key] = value
    return merged


def _substitute(value: Any, source: str, where: str) -> Any:
    if isinstance(value, str):
        try:
            return substitute(value, os.environ)
        except SettingsError as exc:
            raise SettingsError(f"{source}: {where}: {exc}") from None
    if isinstance(value, Mapping):
        return {k: _substitute(v, source, f"{where}.{k}" if where else k) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(item, source, f"{where}[{i}]") for i, item in enumerate(value)]
    return value


def _build(cls: type, table: Any, source: str, where: str) -> Any:
    if not isinstance(table, Mapping):
        raise SettingsError(f"{source}: {where} must be a table")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    values: dict[str, Any] = {}
    for key, value in table.items():
        if key not in fields:
            raise SettingsError(
                f"{source}: unknown key {where}.{key}; known in [{where.split('[')[0]}]: "
                f"{', '.join(fields)}"
            )
        values[key] = _typed(value, hints[key], f"{source}: {where}.{key}")
    for name, spec in fields.items():
        if name not in values and spec.default is dataclasses.MISSING:
            raise SettingsError(f"{source}: missing key {where}.{name}")
    return cls(**values)


def _typed(value: Any, kind: Any, place: str) -> Any:
    """``value`` checked against the field type ``kind``; ``place`` names it in the error."""
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if kind is float and isinstance(value, float) and not math.isfinite(value):
        raise SettingsError(f"{place} must be a finite number, not {value!r}")
    if kind == tuple[str, ...]:
        if isinstance(value, list) and all(isinstance(item, str) for item in value):
            return tuple(value)
        raise SettingsError(f"{place} must be a list of strings, not {value!r}")
    if kind in (str, int, float, bool):
        if isinstance(value, kind) and not (kind is int and isinstance(value, bool)):
            return value
        raise SettingsError(
            f"{place} must be {_TYPE_NAMES[kind]}, not {type(value).__name__} {value!r:.60}"
        )
    raise AssertionError(f"no validator for {kind}")  # pragma: no cover - schema bug


_TYPE_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "true or false"}


def _hosts(entries: Any, per_host: int, source: str) -> tuple[Host, ...]:
    if not isinstance(entries, list):
        raise SettingsError(f"{source}: hosts must be an array of tables ([[hosts]])")
    hosts: list[Host] = []
    seen: set[str] = set()
    for i, entry in enumerate(entries):
        host: Host = _build(Host, entry, source, f"hosts[{i}]")
        if not _HOST_NAME.match(host.name):
            raise SettingsError(
                f"{source}: hosts[{i}].name {host.name!r} must be a non-empty name of "
                "letters, digits, '-' and '_' (put the DNS name in address)"
            )
        if host.name in seen:
            raise SettingsError(f"{source}: hosts[{i}].name: duplicate host {host.name!r}")
        seen.add(host.name)
        if not 0 < host.port < 65536:
            raise SettingsError(f"{source}: hosts[{i}].port {host.port} is not a TCP port")
        if not 0 <= host.workers <= MAX_WORKERS_PER_HOST:
            raise SettingsError(
                f"{source}: hosts[{i}].workers must be from 1 to {MAX_WORKERS_PER_HOST} "
                f"(0: workers.per_host; got {host.workers})"
            )
        hosts.append(
            dataclasses.replace(
                host, address=host.address or host.name, workers=host.workers or per_host
            )
        )
    return tuple(hosts)


def _tasks(table: Any, source: str) -> TaskSettings:
    if not isinstance(table, Mapping):
        raise SettingsError(f"{source}: tasks must be a table")
    modules = table.get("modules", [])
    if not isinstance(modules, list) or not all(isinstance(m, str) for m in modules):
        raise SettingsError(f"{source}: tasks.modules must be a list of module names")
    params = {}
    for name, value in table.items():
        if name == "modules":
            continue
        if not isinstance(value, Mapping):
            raise SettingsError(f"{source}: tasks.{name} must be a table of task parameters")
        params[name] = dict(value)
    return TaskSettings(tuple(modules), params)


def _check_values(settings: Settings) -> None:
    source = settings.source

    def require(ok: bool, key: str, message: str) -> None:
        if not ok:
            raise SettingsError(f"{source}: {key} {message}")

    port = settings.nameserver.port
    require(0 < port < 65536, "nameserver.port", f"{port} is not a TCP port (1 to 65535)")
    require(bool(settings.nameserver.host), "nameserver.host", "must not be empty")
    check_run(settings.run, lambda key: f"{source}: run.{key}")
    per_host = settings.workers.per_host
    require(
        1 <= per_host <= MAX_WORKERS_PER_HOST,
        "workers.per_host",
        f"must be from 1 to {MAX_WORKERS_PER_HOST} (got {per_host})",
    )
    check_seconds(settings.workers.orphan_after, f"{source}: workers.orphan_after", 0.0, True)
    require(settings.workers.min_free_mb >= 0, "workers.min_free_mb", "must not be negative")
    _check_slurm(settings.slurm, require)
    level = settings.logging.level.upper()
    require(level in LOG_LEVELS, "logging.level", f"must be one of {', '.join(LOG_LEVELS)}")
    require(settings.logging.format in ("text", "json"), "logging.format", "must be text or json")
    require(settings.logging.max_bytes > 0, "logging.max_bytes", "must be positive")
    require(settings.logging.backups >= 0, "logging.backups", "must not be negative")
    if settings.security.tls:
        for key in ("ca", "cert", "key"):
            require(bool(getattr(settings.security, key)), f"security.{key}", "is needed for tls")


def _check_slurm(slurm: SlurmSettings, require: Callable[[bool, str, str], None]) -> None:
    require(slurm.workers >= 1, "slurm.workers", "must be at least 1")
    require(slurm.max_running >= 0, "slurm.max_running", "must not be negative (0: no limit)")
    require(slurm.cpus_per_worker >= 1, "slurm.cpus_per_worker", "must be at least 1")
    require(
        bool(_SLURM_TIME.match(slurm.time)),
        "slurm.time",
        f"{slurm.time!r} is not a SLURM time limit (e.g. 30, 01:00:00 or 1-12:00:00)",
    )
    require(
        not slurm.mem or bool(_SLURM_MEM.match(slurm.mem)),
        "slurm.mem",
        f"{slurm.mem!r} is not a SLURM memory size (e.g. 4G or 500M; empty: the default)",
    )
    require(bool(slurm.python.strip()), "slurm.python", "must not be empty")
    for i, arg in enumerate(slurm.sbatch_args):
        require(arg.startswith("-"), f"slurm.sbatch_args[{i}]", f"{arg!r} is not an option")


def check_run(run: RunSettings, name_of: Callable[[str], str]) -> None:
    """Check ``[run]`` values; ``name_of`` says where a key came from (file key or option)."""

    def require(ok: bool, key: str, message: str) -> None:
        if not ok:
            raise SettingsError(f"{name_of(key)} {message}")

    check_seconds(run.timeout, name_of("timeout"), MIN_TIMEOUT)
    require(run.retries >= 0, "retries", f"must not be negative (got {run.retries})")
    check_seconds(run.heartbeat, name_of("heartbeat"), MIN_HEARTBEAT)
    check_seconds(run.lost_after, name_of("lost_after"), MIN_HEARTBEAT)
    require(
        run.lost_after > run.heartbeat,
        "lost_after",
        f"must be longer than heartbeat ({run.lost_after:g} <= {run.heartbeat:g})",
    )
    require(run.quarantine_after >= 1, "quarantine_after", "must be at least 1")
    check_seconds(run.quarantine_for, name_of("quarantine_for"), 0.0, True)
    require(bool(run.tasks), "task", "must name at least one task")
    require(
        run.launcher in LAUNCHERS,
        "launcher",
        f"must be one of {', '.join(LAUNCHERS)} (got {run.launcher!r})",
    )
    require(bool(run.run_dir), "run_dir", "must not be empty")
    counts = []
    for key in ("years", "members"):
        try:
            counts.append(len(parse_spec(getattr(run, key), key[:-1])))
        except UsageError as exc:
            raise SettingsError(f"{name_of(key)}: {exc}") from None
    cells = counts[0] * counts[1] * len(run.tasks)
    require(
        cells <= MAX_CELLS,
        "years",
        f"and members make {cells:,} cells ({len(run.tasks)} task(s) x {counts[0]:,} years x "
        f"{counts[1]:,} members); one run takes at most {MAX_CELLS:,}: split it into "
        "several runs (each with its own run_dir)",
    )


def check_seconds(value: float, name: str, minimum: float, zero: bool = False) -> None:
    """Check a duration: finite, from ``minimum`` to MAX_SECONDS (or 0, with ``zero``)."""
    if not math.isfinite(value):
        problem = "must be a finite number of seconds"
    elif value < 0 or (value == 0 and not zero):
        problem = "must not be negative" if zero else "must be positive"
    elif value < minimum and not (zero and value == 0):
        problem = f"must be at least {minimum:g} s" + (" (or 0)" if zero else "")
    elif value > MAX_SECONDS:
        problem = f"must be at most {MAX_SECONDS:,.0f} s (about 16 weeks)"
    else:
        return
    raise SettingsError(f"{name} {problem} (got {value:g})")


def _known(sections: Mapping[str, type]) -> str:
    return ", ".join([*sections, "hosts", "tasks"])


def to_toml(settings: Settings, task_params: Mapping[str, Mapping[str, Any]] | None = None) -> str:
    """Render the effective settings as TOML (what ``clusterfarm settings`` prints).

    ``task_params``: the tasks' effective parameters (defaults included) to print instead of
    the ``[tasks.<name>]`` tables as written.
    """
    lines = [f"# effective settings (from {settings.source})"]
    for name in ("nameserver", "run", "workers"):
        lines += _toml_table(name, dataclasses.asdict(getattr(settings, name)))
    for host in settings.hosts:
        lines += ["", "[[hosts]]"] + [
            f"{k} = {_toml_value(v)}" for k, v in dataclasses.asdict(host).items()
        ]
    lines += _toml_table("tasks", {"modules": list(settings.tasks.modules)})
    for task, params in (settings.tasks.params if task_params is None else task_params).items():
        lines += _toml_table(f"tasks.{task}", dict(params))
    for name in ("security", "logging", "slurm"):
        lines += _toml_table(name, dataclasses.asdict(getattr(settings, name)))
    return "\n".join(lines) + "\n"


def _toml_table(name: str, values: Mapping[str, Any]) -> list[str]:
    return ["", f"[{name}]"] + [
        f"# {key}: not set" if value is None else f"{key} = {_toml_value(value)}"
        for key, value in values.items()
    ]


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + "}"
    escaped = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'
