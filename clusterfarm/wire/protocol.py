"""The wire between the manager and its workers: every message, its builder and its check.

A worker holds no run's configuration. A manager first *joins* a worker with its
:class:`RunSpec` (where the run's data and results are, its time limit, the version and
parameters of each task); the worker caches it by ``run_id``, is leased to that run, and
answers what it can run (:class:`JoinAnswer`). Then every call names the run:
``do_batch(run_id, task, [[year, member, attempt], ...])`` answers one :class:`Answer` per cell.

On the wire everything stays plain values (never pickle): serpent for the calls a proxy makes,
JSON for the manager's batches (see :mod:`clusterfarm.wire.channel`; JSON turns tuples into lists
and dict keys into strings, and the checks below accept both). And compact, because
decoding is the manager's main cost per cell (each number or tuple is a node to build). One
cell's answer is a short tuple::

    ("+", elapsed, usage)                                       complete, nothing to record
    ("+", elapsed, usage, output, output_sum, inputs, summary)  complete with an output
    ("F", elapsed, usage, kind, error)                          failure ("T": timeout)

``usage`` is None or what the cell cost the task process (:data:`USAGE_FIELDS`: when it
started, CPU seconds, peak RSS, bytes through read/write calls and to/from disk; byte counts
None when not measured, see :mod:`clusterfarm.worker.usage`).
A batch's answers travel by column, so a batch of no-op cells is three literals whatever
its size (``pack_answers``)::

    (statuses, figures, details)
    statuses  "++F+"      one status character per cell
    figures   per cell: elapsed, then the seven usage figures ("-" where unknown)
    details   {index: [output, output_sum, inputs, summary]} for complete cells with an
              output, {index: [kind, error]} for the others; only cells that have them

and a batch's cells go as one string ``"year member attempt;year member attempt;..."``.
Both ends check what they receive: a malformed message raises :class:`ProtocolError`, which
the receiver turns into a clear failure for the sender (never a dead thread).
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from clusterfarm.config.specs import format_spec, parse_spec
from clusterfarm.errors import UsageError

# a run's cells never number more than this in one call (a bound on what a peer may send)
MAX_BATCH_CELLS = 4096
MAX_ERROR_CHARS = 2000  # one line; longer errors are cut
YEAR = -1  # the member of a per-year cell (a task that runs once per year, such as a summary)


class ProtocolError(Exception):
    """A peer sent a message that does not follow this module's rules."""


class ErrorKind(enum.StrEnum):
    """Why a cell did not complete; decides retries, attempts and host quarantine."""

    INPUT = "input"  # bad or missing input: retrying cannot help
    TASK = "task"  # the task raised
    TIMEOUT = "timeout"  # over its time limit
    CRASH = "crash"  # the task process died
    LOST = "lost"  # its worker stopped answering
    DEPENDENCY = "dependency"  # a cell it waits for ended F or T
    # hand-backs: the cell never really ran, so it goes back without using an attempt
    RESOURCE = "resource"  # the worker is short of disk: another worker, or later
    BUSY = "busy"  # the worker is running something else
    LEASED = "leased"  # the worker belongs to another run
    CANCELLED = "cancelled"  # the manager cancelled it
    NOT_STARTED = "not_started"  # an earlier cell of its batch ended the task process
    ABANDONED = "abandoned"  # the worker heard nothing from the manager for too long
    STOPPING = "stopping"  # the worker is shutting down
    DRAINING = "draining"  # the worker's time (e.g. a batch job's walltime) is running out
    UNSUPPORTED = "unsupported"  # the worker lacks the task, or has another version
    UNKNOWN_RUN = "unknown_run"  # the worker does not know the run (restarted): join again
    PROTOCOL = "protocol"  # the worker sent something malformed

    @property
    def is_attempt(self) -> bool:
        """True when the cell really ran (or was lost running) and so used an attempt."""
        return self in _ATTEMPTS

    @property
    def retried(self) -> bool:
        """False for failures that another attempt cannot fix."""
        return self not in (ErrorKind.INPUT, ErrorKind.DEPENDENCY)

    @property
    def host_fault(self) -> bool:
        """True for failures that say something about the host rather than the input."""
        return self in _HOST_FAULTS

    @classmethod
    def parse(cls, value: Any) -> ErrorKind:
        try:
            return cls(value)
        except ValueError:
            raise ProtocolError(f"unknown error kind {value!r}") from None


_ATTEMPTS = frozenset(
    {
        ErrorKind.INPUT,
        ErrorKind.TASK,
        ErrorKind.TIMEOUT,
        ErrorKind.CRASH,
        ErrorKind.LOST,
        ErrorKind.DEPENDENCY,
    }
)
_HOST_FAULTS = frozenset(
    {ErrorKind.TASK, ErrorKind.CRASH, ErrorKind.TIMEOUT, ErrorKind.LOST, ErrorKind.RESOURCE}
)

COMPLETE, FAILURE, TIMEOUT = "+", "F", "T"
_STATUSES = (COMPLETE, FAILURE, TIMEOUT)


# -- the run a worker is joined to ---------------------------------------------------------


@dataclass(frozen=True)
class TaskRef:
    """A task as a run uses it: the version it expects and its resolved parameters."""

    version: str
    params: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RunSpec:
    """Everything a worker needs to run a run's cells (sent once, cached by ``run_id``)."""

    run_id: str
    data_dir: str
    results_dir: str
    timeout: float
    lost_after: float
    members: tuple[int, ...]
    tasks: Mapping[str, TaskRef]
    manager: str = ""  # "host:pid" of the manager, shown by ``clusterfarm workers``

    def to_wire(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "data_dir": self.data_dir,
            "results_dir": self.results_dir,
            "timeout": self.timeout,
            "lost_after": self.lost_after,
            "members": format_spec(list(self.members)),  # "0-959": cheaper than 960 numbers
            "tasks": {n: [t.version, dict(t.params)] for n, t in self.tasks.items()},
            "manager": self.manager,
        }

    @classmethod
    def from_wire(cls, raw: Any) -> RunSpec:
        """Check and build a spec a manager sent; raise ProtocolError when malformed."""
        body = _mapping(raw, "run spec")
        tasks_raw = _mapping(body.get("tasks"), "run spec tasks")
        tasks = {}
        for name, ref in tasks_raw.items():
            if not (isinstance(name, str) and isinstance(ref, list | tuple) and len(ref) == 2):
                raise ProtocolError(f"run spec task {name!r}: expected [version, params]")
            version, params = ref
            tasks[name] = TaskRef(_text(version, "task version"), _mapping(params, "params"))
        try:
            members = parse_spec(_text(body.get("members"), "members"), "member")
        except UsageError as exc:
            raise ProtocolError(f"run spec members: {exc}") from None
        return cls(
            run_id=_text(body.get("run_id"), "run_id"),
            data_dir=_text(body.get("data_dir"), "data_dir"),
            results_dir=_text(body.get("results_dir"), "results_dir"),
            timeout=_positive(body.get("timeout"), "timeout"),
            lost_after=_positive(body.get("lost_after"), "lost_after"),
            members=tuple(members),
            tasks=tasks,
            manager=str(body.get("manager") or ""),
        )


@dataclass(frozen=True)
class JoinAnswer:
    """A worker's answer to ``join``: who it is and what it can run for this run."""

    worker: str
    host: str
    version: str  # clusterfarm version of the worker
    tasks: Mapping[str, str]  # every task it has, with its version
    leased_by: str | None = None  # the run that holds it, when not this one
    error: str | None = None  # why it refused the run (e.g. its spec was malformed)

    def to_wire(self) -> dict[str, Any]:
        return {
            "worker": self.worker,
            "host": self.host,
            "version": self.version,
            "tasks": dict(self.tasks),
            "leased_by": self.leased_by,
            "error": self.error,
        }

    @classmethod
    def from_wire(cls, raw: Any) -> JoinAnswer:
        body = _mapping(raw, "join answer")
        tasks = _mapping(body.get("tasks"), "join answer tasks")
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in tasks.items()):
            raise ProtocolError("join answer tasks: expected {name: version}")
        leased_by, error = body.get("leased_by"), body.get("error")
        return cls(
            worker=_text(body.get("worker"), "worker"),
            host=str(body.get("host") or ""),
            version=str(body.get("version") or "?"),
            tasks=dict(tasks),
            leased_by=None if leased_by is None else str(leased_by),
            error=None if error is None else str(error),
        )

    def missing(self, spec: RunSpec) -> dict[str, str]:
        """The run's tasks this worker cannot run, each with why (for one clear line)."""
        problems = {}
        for name, ref in spec.tasks.items():
            have = self.tasks.get(name)
            if have is None:
                problems[name] = f"no task {name!r} (a tasks.modules plugin missing there?)"
            elif have != ref.version:
                problems[name] = f"{name} version {have}, the run needs {ref.version}"
        return problems


# -- a batch of cells ------------------------------------------------------------------------


def pack_cells(cells: Sequence[tuple[int, int, int]]) -> str:
    """A batch's cells as they travel: ``"year member attempt;..."``."""
    return ";".join(f"{y} {m} {a}" for y, m, a in cells)


def batch_cells(cells: Any) -> list[tuple[int, int, int]]:
    """Check the cells of a ``do_batch`` call: ``[[year, member, attempt], ...]`` or the
    packed string of :func:`pack_cells`."""
    if isinstance(cells, str) and cells:
        try:
            cells = [[int(v) for v in part.split()] for part in cells.split(";")]
        except ValueError:
            raise ProtocolError(
                f"cells {cells!r:.60}: expected 'year member attempt;...'"
            ) from None
    if not isinstance(cells, list | tuple) or not cells:
        raise ProtocolError("cells must be a non-empty list of [year, member, attempt]")
    if len(cells) > MAX_BATCH_CELLS:
        raise ProtocolError(f"at most {MAX_BATCH_CELLS} cells in one call, not {len(cells)}")
    checked = []
    for cell in cells:
        if not isinstance(cell, list | tuple) or len(cell) not in (2, 3):
            raise ProtocolError(f"a cell must be [year, member, attempt], not {cell!r:.40}")
        # member -1 is the one cell of a per-year task
        labels = ("year", "member", "attempt")[: len(cell)]
        for label, value, lowest in zip(labels, cell, (0, -1, 0)[: len(cell)], strict=True):
            if not _is_int(value) or value < lowest:
                raise ProtocolError(f"{label} must be an integer >= {lowest}, not {value!r:.40}")
        checked.append((cell[0], cell[1], cell[2] if len(cell) == 3 else 0))
    return checked


# -- the answer for one cell -----------------------------------------------------------------

# started (epoch s), cpu (s), peak RSS, rchar, wchar, read_bytes, write_bytes (bytes)
Usage = tuple[float, float, int, int | None, int | None, int | None, int | None]
USAGE_FIELDS = ("started", "cpu", "peak_rss", "rchar", "wchar", "read_bytes", "write_bytes")


def named(usage: Usage | None) -> dict[str, float | int | None]:
    """The figures of a usage tuple by name ({} for None)."""
    return {} if usage is None else dict(zip(USAGE_FIELDS, usage, strict=True))


_FIGURES = 1 + len(USAGE_FIELDS)  # per cell on the wire: elapsed, then the usage
_NO_USAGE = " -" * len(USAGE_FIELDS)


@dataclass(slots=True)
class Answer:
    """How one cell went, as the manager records it."""

    status: str  # "+", "F" or "T"
    elapsed: float
    usage: Usage | None = None
    kind: ErrorKind | None = None
    error: str | None = None
    output: str | None = None
    output_sum: str | None = None
    inputs: str | None = None
    summary: dict[str, Any] | None = None

    @property
    def complete(self) -> bool:
        return self.status == COMPLETE

    def to_wire(self) -> tuple[Any, ...]:
        if self.status == COMPLETE:
            if self.output is None and self.inputs is None and self.summary is None:
                return (COMPLETE, self.elapsed, self.usage)
            extra = (self.output, self.output_sum, self.inputs, self.summary)
            return (COMPLETE, self.elapsed, self.usage, *extra)
        kind = self.kind.value if self.kind else ErrorKind.TASK.value
        return (self.status, self.elapsed, self.usage, kind, self.error or "")

    def to_dict(self) -> dict[str, Any]:
        """The public fields of this answer, as ``do_work`` returns them (it adds the cell's
        names)."""
        return {
            "status": {COMPLETE: "complete", FAILURE: "failure", TIMEOUT: "timeout"}[self.status],
            "elapsed": self.elapsed,
            "output": self.output,
            "summary": self.summary,
            "error": self.error,
            "error_kind": self.kind.value if self.kind else None,
        }


def complete(
    elapsed: float,
    usage: Usage | None = None,
    output: str | None = None,
    output_sum: str | None = None,
    inputs: str | None = None,
    summary: dict[str, Any] | None = None,
) -> Answer:
    """Build a complete answer."""
    return Answer(COMPLETE, elapsed, usage, None, None, output, output_sum, inputs, summary)


def failed(kind: ErrorKind, error: str, elapsed: float = 0.0, usage: Usage | None = None) -> Answer:
    """Build a failure (or, for kind timeout, a timeout) answer with a one-line error."""
    status = TIMEOUT if kind is ErrorKind.TIMEOUT else FAILURE
    return Answer(status, elapsed, usage, kind, one_line(error))


def one_line(text: str) -> str:
    """``text`` on one line, cut to a length a table can show."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= MAX_ERROR_CHARS else flat[: MAX_ERROR_CHARS - 1] + "…"


def parse_answer(raw: Any) -> Answer:
    """Check one wire answer and build it; raise ProtocolError when it is malformed."""
    if not isinstance(raw, list | tuple) or len(raw) < 3:
        raise ProtocolError(f"an answer is a tuple (status, elapsed, usage, ...), not {raw!r:.80}")
    status, elapsed, usage = raw[0], _elapsed(raw[1]), raw[2]
    if status not in _STATUSES:
        raise ProtocolError(f"answer status must be one of {_STATUSES}, not {status!r:.40}")
    checked_usage = _usage(usage)
    if status == COMPLETE:
        if len(raw) == 3:
            return Answer(COMPLETE, elapsed, checked_usage)
        if len(raw) != 7:
            raise ProtocolError(f"a complete answer has 3 or 7 fields, not {len(raw)}")
        output, output_sum, inputs, summary = raw[3:]
        for label, value in (("output", output), ("output_sum", output_sum), ("inputs", inputs)):
            if value is not None and not isinstance(value, str):
                raise ProtocolError(f"answer {label} must be a string or None")
        if summary is not None and not isinstance(summary, dict):
            raise ProtocolError("answer summary must be a dict or None")
        if (where := non_finite(summary)) is not None:
            raise ProtocolError(f"answer summary holds a number that is not finite ({where})")
        return complete(elapsed, checked_usage, output, output_sum, inputs, summary)
    if len(raw) != 5:
        raise ProtocolError(f"a failure answer has 5 fields, not {len(raw)}")
    kind, error = ErrorKind.parse(raw[3]), raw[4]
    if not isinstance(error, str):
        raise ProtocolError("answer error must be a string")
    return Answer(status, elapsed, checked_usage, kind, one_line(error))


def _elapsed(value: Any) -> float:
    if not _is_number(value) or not 0 <= value < math.inf:  # NaN is not >= 0
        raise ProtocolError(f"answer elapsed must be a number of seconds, not {value!r:.40}")
    return float(value)


def pack_answers(answers: Sequence[tuple[Any, ...]]) -> tuple[str, str, dict[int, list[Any]]]:
    """A batch's answers (each as :meth:`Answer.to_wire` makes it) by column, for the wire."""
    statuses = []
    figures = []
    details: dict[int, list[Any]] = {}
    for index, answer in enumerate(answers):
        statuses.append(answer[0])
        usage = answer[2]
        figures.append(f"{answer[1]:.6g}" + (_NO_USAGE if usage is None else _usage_text(usage)))
        if len(answer) > 3:
            details[index] = list(answer[3:])
    return "".join(statuses), " ".join(figures), details


def parse_answers(raw: Any, expected: int) -> list[Answer]:
    """Check a batch's packed answers (see :func:`pack_answers`): exactly ``expected``."""
    if not isinstance(raw, list | tuple) or len(raw) != 3:
        raise ProtocolError(f"a batch answer is (statuses, figures, details), not {raw!r:.80}")
    statuses, figures, details = raw
    if not isinstance(statuses, str) or len(statuses) != expected:
        raise ProtocolError(f"{_count(statuses)} answers for {expected} cells")
    if not isinstance(figures, str) or not isinstance(details, dict):
        raise ProtocolError("a batch answer's figures must be a string, its details a dict")
    details = _by_index(details) if details else {}
    numbers = figures.split()
    if len(numbers) != _FIGURES * expected:
        raise ProtocolError(f"{len(numbers)} figures for {expected} cells ({_FIGURES} each)")
    answers = []
    for index, status in enumerate(statuses):
        at = _FIGURES * index
        elapsed = _seconds(numbers[at])
        usage = None if numbers[at + 1] == "-" else _usage(numbers[at + 1 : at + _FIGURES])
        extra = details.get(index)
        if extra is None and status == COMPLETE:  # most answers: nothing more to check
            answers.append(Answer(COMPLETE, elapsed, usage))
            continue
        if extra is not None and not isinstance(extra, list | tuple):
            raise ProtocolError(f"details of cell {index} must be a list")
        answers.append(parse_answer((status, elapsed, usage, *(extra or ()))))
    return answers


def _by_index(details: dict[Any, Any]) -> dict[int, Any]:
    """``details`` keyed by cell index (JSON carries the keys as strings)."""
    try:
        return {int(key): value for key, value in details.items()}
    except (TypeError, ValueError):
        raise ProtocolError("a batch answer's details must be keyed by cell index") from None


def _seconds(text: str) -> float:
    """An elapsed time as packed on the wire (its text), checked as :func:`_elapsed` does."""
    try:
        return _elapsed(float(text))
    except ValueError:
        raise ProtocolError(
            f"answer elapsed must be a number of seconds, not {text!r:.40}"
        ) from None


def _count(value: Any) -> str:
    return str(len(value)) if isinstance(value, str | list | tuple) else "no"


# -- small checks ---------------------------------------------------------------------------


def _usage_text(usage: Usage) -> str:
    started, cpu, peak, *moved = usage
    text = f" {started:.3f} {cpu:.6g} {peak:d}"
    return text + "".join(" -" if n is None else f" {n:d}" for n in moved)


def _usage(value: Any) -> Usage | None:
    """Check a usage tuple (numbers, or their text as packed on the wire)."""
    if value is None:
        return None
    if not isinstance(value, list | tuple) or len(value) != len(USAGE_FIELDS):
        raise ProtocolError(f"answer usage must hold {USAGE_FIELDS}, not {value!r:.80}")
    try:
        started, cpu, peak = float(value[0]), float(value[1]), int(value[2])
        moved = [None if v in (None, "-") else int(v) for v in value[3:]]
    except (TypeError, ValueError):
        raise ProtocolError(f"answer usage must be numbers, not {value!r:.80}") from None
    if not (math.isfinite(started) and math.isfinite(cpu)):
        raise ProtocolError(f"answer usage must be finite, not {value!r:.80}")
    return (started, cpu, peak, moved[0], moved[1], moved[2], moved[3])


def non_finite(value: Any, where: str = "") -> str | None:
    """Where ``value`` (plain JSON data) holds NaN or an infinity, e.g. ``['speeds'][2]``;
    None when it holds none. JSON has no such numbers, and SQLite's JSON functions refuse
    them, so they never enter a summary."""
    if isinstance(value, float) and not math.isfinite(value):
        return where or "the value"
    items: Any = ()
    if isinstance(value, dict):
        items = ((f"{where}[{key!r}]", item) for key, item in value.items())
    elif isinstance(value, list | tuple):
        items = ((f"{where}[{index}]", item) for index, item in enumerate(value))
    for place, item in items:
        if (found := non_finite(item, place)) is not None:
            return found
    return None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _mapping(value: Any, label: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ProtocolError(f"{label}: expected a dict, not {type(value).__name__}")
    return value


def _text(value: Any, label: str) -> str:
    if not isinstance(value, str) or not value:
        raise ProtocolError(f"{label}: expected a non-empty string, not {value!r:.40}")
    return value


def _positive(value: Any, label: str) -> float:
    if not _is_number(value) or not math.isfinite(value) or value <= 0:
        raise ProtocolError(f"{label}: expected a positive number, not {value!r:.40}")
    return float(value)
