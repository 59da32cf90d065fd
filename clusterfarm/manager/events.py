"""What the manager tells the view: plain immutable records, emitted after the state is saved."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple


class CellChange(NamedTuple):
    """One cell's new state: its status character, who ran it, its last error."""

    task: str
    year: int
    member: int
    status: str
    worker: str | None
    error: str | None


@dataclass(frozen=True)
class CellsChanged:
    """Cells whose new status is now in the state database."""

    changes: list[CellChange]


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


Event = CellsChanged | WorkerJoined | WorkerLeft | HostQuarantined | WorkerNote | WorkersPending
