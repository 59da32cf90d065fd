"""The one exception hierarchy of clusterfarm.

Every error a user can cause or meet derives from :class:`ClusterFarmError`; the CLI turns
each into one ``Error: ...`` line and its class's ``exit_code``: 0 everything asked for is
complete, 1 failures or timeouts, 2 bad input, 3 infrastructure unavailable, 130 interrupted.
"""

from __future__ import annotations

import contextlib
import errno
from collections.abc import Iterator

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


class NameServerError(ClusterFarmError):
    """The Pyro5 nameserver cannot be reached or started."""

    exit_code = EXIT_INFRA


class WorkerError(ClusterFarmError):
    """No usable worker, or a worker could not be started or reached."""

    exit_code = EXIT_INFRA


class StateError(ClusterFarmError):
    """The run state database cannot be opened or is not a clusterfarm run."""

    exit_code = EXIT_USAGE


class StorageError(StateError):
    """The disk refuses to store the run state or results (full, over quota, I/O error)."""

    exit_code = EXIT_INFRA


class StateWriteError(StorageError):
    """The run state could not be written during a run (disk full...): the run stopped."""


class LaunchError(ClusterFarmError):
    """Starting or stopping workers over SSH failed; carries one outcome per host."""

    exit_code = EXIT_INFRA

    def __init__(self, message: str, outcomes: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.outcomes = dict(outcomes or {})


# a disk that cannot take more is infrastructure (exit 3); any other OSError met while
# writing (no such folder, permission, read-only file system) is a bad place given (exit 2)
_DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EFBIG})


def os_error(
    exc: OSError, where: str, hint: str, kind: type[ClusterFarmError] = UsageError
) -> ClusterFarmError:
    """The error to raise for ``exc`` met at ``where`` (a path): StorageError for a full or
    failing disk, else ``kind`` with ``hint`` saying what to do."""
    reason = exc.strerror or str(exc)
    if exc.errno in _DISK_ERRNOS:
        return StorageError(f"{where}: cannot write ({reason}); free some space there, then retry")
    return kind(f"{where}: {reason}; {hint}")


@contextlib.contextmanager
def writing(where: str, hint: str, kind: type[ClusterFarmError] = UsageError) -> Iterator[None]:
    """Turn an OSError in the block into :func:`os_error`'s error for ``where``."""
    try:
        yield
    except OSError as exc:
        raise os_error(exc, where, hint, kind) from exc
