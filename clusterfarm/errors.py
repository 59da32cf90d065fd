"""The one exception hierarchy of clusterfarm.

Every error a user can cause or meet derives from :class:`ClusterFarmError`; the CLI turns
each into one ``Error: ...`` line and the exit code of SPEC §5 (``exit_code``).
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INFRA = 3
EXIT_INTERRUPTED = 130


class ClusterFarmError(Exception):
    """Base of every clusterfarm error; the message says what, where and what to do."""

    exit_code = EXIT_FAILED


class UsageError(ClusterFarmError):
    """A command line argument is malformed (bad year spec, unknown option value...)."""

    exit_code = EXIT_USAGE


class SettingsError(ClusterFarmError):
    """The settings file is unreadable or invalid; the message names file and key."""

    exit_code = EXIT_USAGE


class UnknownTaskError(UsageError):
    """A task name is not in the registry."""


class InputError(ClusterFarmError):
    """A task's input is missing or malformed; such a failure is not retried."""

    exit_code = EXIT_FAILED


class TaskError(ClusterFarmError):
    """A task failed for a reason other than its input."""

    exit_code = EXIT_FAILED


class NameServerError(ClusterFarmError):
    """The Pyro5 nameserver cannot be reached or started."""

    exit_code = EXIT_INFRA


class WorkerError(ClusterFarmError):
    """No usable worker, or a worker could not be started or reached."""

    exit_code = EXIT_INFRA


class StateError(ClusterFarmError):
    """The run state database cannot be opened or is not a clusterfarm run."""

    exit_code = EXIT_USAGE


class StateWriteError(StateError):
    """The run state could not be written during a run (disk full...): the run stopped."""

    exit_code = EXIT_INFRA


class LaunchError(ClusterFarmError):
    """Starting or stopping workers over SSH failed; carries one outcome per host."""

    exit_code = EXIT_INFRA

    def __init__(self, message: str, outcomes: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.outcomes = dict(outcomes or {})
