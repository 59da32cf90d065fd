"""What every launcher is: the interface, per-host outcomes, tables and small shared helpers.

A launcher places worker daemons somewhere and removes them again: :mod:`.local` as
subprocesses of ``run`` (local mode), :mod:`.ssh` on the settings' hosts, :mod:`.slurm` as a
SLURM job array. Each implements :class:`Launcher`; none imports another, and what two of them
share lives here.
"""

from __future__ import annotations

import functools
import logging
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from Pyro5.api import Proxy

from clusterfarm.config.settings import Host, Settings
from clusterfarm.errors import EXIT_FAILED, EXIT_INFRA, EXIT_OK, ClusterFarmError, WorkerError
from clusterfarm.wire.access import Access, cluster_access
from clusterfarm.wire.nameserver import WorkerEntry, locate
from clusterfarm.wire.pyro import CALL_TIMEOUT

LOG = logging.getLogger("clusterfarm.launchers")
START_TIMEOUT = 30.0  # seconds for started workers to register
SETUP_FAILED = 97  # exit status of the shell when the setup line failed


class Launcher(Protocol):
    """Starts a set of worker daemons, keeps them, says why one went, and stops them."""

    def start(self, timeout: float = START_TIMEOUT) -> list[WorkerEntry]:
        """Start the workers, wait until they are registered; return them."""
        ...

    def stop(self) -> None:
        """Stop the workers and confirm they are gone."""
        ...

    def maintain(self, cells_left: int) -> None:
        """Called by ``run`` every few seconds: keep the pool at size while cells remain."""
        ...

    def why_lost(self, worker: str) -> str | None:
        """Why ``worker`` (its full name) is gone, as a few words; None when not known."""
        ...

    def log_tail(self, worker: str, lines: int) -> str:
        """The last ``lines`` lines of ``worker``'s log."""
        ...


class ClusterLauncher:
    """What the SSH and SLURM launchers share: the settings' nameserver, reached with the
    cluster's access (the one given, else the secret file's)."""

    settings: Settings
    _access: Access | None

    @functools.cached_property
    def access(self) -> Access:
        """The cluster's access (read when first needed: ``doctor`` needs none)."""
        return self._access or cluster_access(self.settings.security)

    def nameserver_proxy(self, timeout: float = CALL_TIMEOUT) -> Proxy:
        """The settings' nameserver, or NameServerError when none answers there."""
        ns = self.settings.nameserver
        return locate(ns.host, ns.port, self.access, timeout)


def setup_then(setup: str, setup_key: str, line: str) -> str:
    """Shell text that runs the ``setup`` line (``setup_key`` in the settings), then ``line``.

    A failing setup exits with :data:`SETUP_FAILED` after saying so on stderr.
    """
    if not setup.strip():
        return line
    # braces, not a subshell: an activated environment must still be there for python
    return (
        f"{{ {setup}\n}} </dev/null >&2\n"
        "cf_status=$?\n"
        'if [ "$cf_status" -ne 0 ]; then\n'
        f'  echo "{setup_key} exited with $cf_status" >&2; exit {SETUP_FAILED}\n'
        f"fi\n{line}"
    )


def tail_file(path: Path, lines: int, hint: str) -> str:
    """The last ``lines`` lines of the log at ``path``; ``hint`` says where logs live."""
    try:
        with open(path, errors="replace") as handle:
            return "".join(deque(handle, maxlen=lines)).rstrip("\n")
    except FileNotFoundError:
        raise WorkerError(f"{path}: no such log; {hint}") from None


@dataclass
class HostOutcome:
    """What start-workers or stop-workers did on one host."""

    host: str
    wanted: int = 0
    started: list[str] = field(default_factory=list)  # daemons started now
    running: list[str] = field(default_factory=list)  # already running: left alone
    workers: list[WorkerEntry] = field(default_factory=list)  # registered
    stopped: list[str] = field(default_factory=list)  # ended by SIGTERM
    killed: list[str] = field(default_factory=list)  # needed SIGKILL
    error: str = ""  # one line naming the host; empty when all went well


def on_hosts(
    hosts: Sequence[Host], action: Callable[[Host, HostOutcome], None]
) -> list[HostOutcome]:
    """Run ``action`` on every host at once (a thread each); collect one outcome per host."""

    def one(host: Host) -> HostOutcome:
        outcome = HostOutcome(host.name, host.workers)
        try:
            action(host, outcome)
        except ClusterFarmError as exc:
            outcome.error = str(exc)
        except Exception as exc:  # a surprise on one host must not take the others down
            LOG.exception("%s: unexpected error", host.name)
            outcome.error = f"{host.name}: unexpected {type(exc).__name__}: {exc}"
        return outcome

    with ThreadPoolExecutor(max_workers=max(1, len(hosts))) as pool:
        return list(pool.map(one, hosts))


def exit_code(outcomes: Sequence[HostOutcome]) -> int:
    """The exit code of a command over hosts: 0 all fine, 1 some failed, 3 every one failed."""
    failed = sum(1 for outcome in outcomes if outcome.error)
    return EXIT_OK if not failed else EXIT_INFRA if failed == len(outcomes) else EXIT_FAILED


def text_table(rows: Sequence[Sequence[str]]) -> str:
    """Align rows of cells into columns; the last column is left ragged."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    return "\n".join(
        "  ".join([*(v.ljust(n) for v, n in zip(row[:-1], widths, strict=True)), row[-1]]).rstrip()
        for row in rows
    )


def outcomes_table(outcomes: Sequence[HostOutcome], action: str) -> str:
    """One row per host: what start-workers (``action="start"``) or stop-workers did."""
    rows: list[tuple[str, ...]]
    if action == "start":
        rows = [("HOST", "STARTED", "RUNNING", "REGISTERED", "RESULT")]
        rows += [
            (
                o.host,
                str(len(o.started)),
                str(len(o.running)),
                f"{len(o.workers)}/{o.wanted}",
                _result(o),
            )
            for o in outcomes
        ]
    else:
        rows = [("HOST", "STOPPED", "KILLED", "RESULT")]
        rows += [(o.host, str(len(o.stopped)), str(len(o.killed)), _result(o)) for o in outcomes]
    return text_table(rows)


def _result(outcome: HostOutcome) -> str:
    return f"error: {outcome.error.removeprefix(outcome.host + ': ')}" if outcome.error else "ok"
