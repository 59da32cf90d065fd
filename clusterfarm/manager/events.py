"""What the manager tells the run's display about its workers: plain immutable records.

The cells' own changes reach the display from the state writer once they are saved
(:class:`~clusterfarm.record.state_writer.SavedCells`); these events say what the cells
cannot: a worker joined or left, is held back, a host is quarantined, batch jobs wait.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class WorkerJoined:
    """A worker took part in the run (at the start, or when it came back)."""

    name: str
    host: str


@dataclass(frozen=True)
class WorkerLeft:
    """A worker stopped taking part: lost, unreachable, or refused the run."""

    name: str
    reason: str


@dataclass(frozen=True)
class WorkersPending:
    """Worker jobs queued by a batch system, each with the scheduler's reason (Resources...)."""

    workers: tuple[tuple[str, str], ...]  # (worker name, reason)


@dataclass(frozen=True)
class HostQuarantined:
    """A host whose workers kept failing rests for ``seconds``."""

    host: str
    seconds: float
    failures: int


@dataclass(frozen=True)
class WorkerNote:
    """What keeps a worker from taking cells now (another run's lease, a full disk...)."""

    name: str
    note: str


Event = WorkerJoined | WorkerLeft | HostQuarantined | WorkerNote | WorkersPending


class EventSink(Protocol):
    """Who hears the manager's events (the run's display); called from any of its threads."""

    def event(self, event: Event) -> None: ...


class NoSink:
    """Hears nothing (a run nobody watches: tests, benchmarks)."""

    def event(self, event: Event) -> None:
        pass
