"""The worker: a Pyro5 object that runs one run's cells at a time in a child process.

A worker holds no run's configuration of its own. A manager ``join``\\ s it with the run's
:class:`~clusterfarm.wire.protocol.RunSpec`, which the worker keeps by run id; the join also
*leases* the worker to that run: while the lease holds (renewed by every call of its run,
lapsing after the run's ``lost_after`` of silence, or released at the run's end) another
run's calls are refused as ``leased``, so two runs sharing a pool never cross. Then
``do_batch(run_id, task, cells)`` runs cells and answers compact tuples. Up to two calls of
the leased run may be in the worker at once: one runs, the next waits its turn, so the child
never idles while the manager reads an answer and sends more.

``do_work(year, member, task, params)`` stays as the public single-cell call for
plain Pyro5 clients; it runs with the worker's own settings and answers a dict. Other calls
(``ping``, ``info``, ``cancel``) are served by other daemon threads while a task runs.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from Pyro5.api import behavior, expose

from clusterfarm import __version__
from clusterfarm.tasks.registry import get_task, params_hash, task_names
from clusterfarm.versions import library_versions
from clusterfarm.wire.protocol import (
    YEAR,
    Answer,
    ErrorKind,
    JoinAnswer,
    ProtocolError,
    RunSpec,
    TaskRef,
    batch_cells,
    failed,
    pack_answers,
    parse_answer,
)
from clusterfarm.worker import oom
from clusterfarm.worker.executor import Executor
from clusterfarm.worker.walltime import Walltime

LOG = logging.getLogger("clusterfarm.worker")
IN_FLIGHT = 2  # calls of the leased run the worker accepts at once (one runs, one waits)
KEPT_RUNS = 8  # run specs remembered (a worker serves one run at a time; a few past ones)
_CHECK_BATCH = 10_000  # cells one check_results call may ask about


@dataclass
class Lease:
    """Which run holds this worker, and when it was last heard from."""

    run_id: str
    manager: str
    lost_after: float
    last_contact: float  # time.monotonic()

    def holds(self, now: float) -> bool:
        return now - self.last_contact < self.lost_after


@dataclass(frozen=True)
class Own:
    """The worker's own settings: for plain ``do_work`` calls, and its scratch and disk."""

    data_dir: str
    results_dir: str
    scratch_dir: str
    timeout: float
    min_free_mb: float


@behavior(instance_mode="single")
class PyroWorker:
    """Runs cells for one run at a time; never dies with a task."""

    def __init__(self, name: str, host: str, executor: Executor, own: Own) -> None:
        self.name = name
        self.host = host
        self._executor = executor
        self._own = own
        self._runs: OrderedDict[str, RunSpec] = OrderedDict()
        self._contexts: dict[tuple[str, str], dict[str, Any]] = {}
        self._lease: Lease | None = None
        self._lock = threading.Lock()  # guards the lease, the run specs and the counters
        self._slots = threading.BoundedSemaphore(IN_FLIGHT)
        self._running = threading.Lock()  # held while a batch runs in the child
        self._cancels = 0  # bumped by cancel(): a waiting call that sees a change gives up
        self._current: dict[str, Any] | None = None
        self._done = 0
        self._started = time.time()
        self.last_contact = time.monotonic()  # any manager's last call
        self._quarantined_until = 0.0
        self.stopping = False
        self.walltime: Walltime | None = None  # set when it runs in a batch job with a limit
        self._disk = DiskCheck()
        self._oom = oom.OomCounter()

    # -- the run's calls --------------------------------------------------------------------

    @expose
    def join(self, spec: Any) -> dict[str, Any]:
        """Take the run ``spec`` (and the lease, when free); say what this worker can run."""
        tasks = {name: get_task(name).version for name in task_names()}
        answer = JoinAnswer(self.name, self.host, __version__, tasks)
        try:
            run = RunSpec.from_wire(spec)
        except ProtocolError as exc:
            return replace(answer, error=str(exc)).to_wire()
        now = time.monotonic()
        with self._lock:
            self.last_contact = now
            lease = self._lease
            if lease is not None and lease.run_id != run.run_id and lease.holds(now):
                return replace(answer, leased_by=_holder(lease)).to_wire()
            self._runs[run.run_id] = run
            self._runs.move_to_end(run.run_id)
            while len(self._runs) > KEPT_RUNS:
                old, _ = self._runs.popitem(last=False)
                self._contexts = {k: v for k, v in self._contexts.items() if k[0] != old}
            self._lease = Lease(run.run_id, run.manager, run.lost_after, now)
        LOG.info("%s joined run %s of %s", self.name, run.run_id, run.manager or "a manager")
        return answer.to_wire()

    @expose
    def do_batch(self, run_id: Any, task: Any, cells: Any) -> Any:
        """Run ``task`` for ``[[year, member, attempt], ...]`` of run ``run_id``, in order.

        Answers one answer per cell, packed by column (see :mod:`clusterfarm.wire.protocol`);
        each cell has its own time limit. Never raises.
        """
        try:
            checked = batch_cells(cells)
        except ProtocolError as exc:
            return pack_answers([failed(ErrorKind.PROTOCOL, str(exc)).to_wire()])
        refusal, run = self._admit(run_id, task, checked)
        if refusal is not None:
            return pack_answers([refusal.to_wire()] * len(checked))
        assert run is not None
        return pack_answers(self._run(run, str(task), [(y, m) for y, m, _ in checked]))

    def _admit(
        self, run_id: Any, task: Any, cells: list[tuple[int, int, int]]
    ) -> tuple[Answer | None, RunSpec | None]:
        """The run's spec when this call may run now, else the refusal to answer."""
        now = time.monotonic()
        with self._lock:
            run = self._runs.get(run_id) if isinstance(run_id, str) else None
            if run is None:
                return failed(
                    ErrorKind.UNKNOWN_RUN, f"{self.name} does not know run {run_id!r}: join first"
                ), None
            lease = self._lease
            if lease is not None and lease.run_id != run_id and lease.holds(now):
                return failed(ErrorKind.LEASED, f"{self.name} works for {_holder(lease)}"), None
            self._lease = Lease(run.run_id, run.manager, run.lost_after, now)
            self.last_contact = now
        going = self._going(task, len(cells))
        if going is not None:
            return going, None
        ref = run.tasks.get(task) if isinstance(task, str) else None
        problem = self._cannot_run(task, ref, cells)
        if problem is not None:
            return problem, None
        short = self._disk.problem(self._own, run.results_dir)
        if short is not None:
            return failed(ErrorKind.RESOURCE, short), None
        return None, run

    def _going(self, task: Any, count: int) -> Answer | None:
        """The refusal of a worker on its way out (stopping, or its batch job ending)."""
        if self.stopping:
            return failed(ErrorKind.STOPPING, f"{self.name} is stopping")
        if self.walltime and (late := self.walltime.refusal(str(task), count)):
            return failed(ErrorKind.DRAINING, f"{self.name} is leaving: {late}")
        return None

    def _cannot_run(
        self, task: Any, ref: TaskRef | None, cells: list[tuple[int, int, int]]
    ) -> Answer | None:
        if ref is None:
            return failed(ErrorKind.PROTOCOL, f"task {task!r} is not part of this run")
        try:
            spec = get_task(task)
        except Exception:
            return failed(ErrorKind.UNSUPPORTED, f"{self.name} has no task {task!r}")
        if spec.version != ref.version:
            return failed(
                ErrorKind.UNSUPPORTED,
                f"{self.name} has {task} version {spec.version}, the run needs {ref.version}",
            )
        if any((member == YEAR) != spec.per_year for _, member, _ in cells):
            shape = f"member {YEAR} (once per year)" if spec.per_year else "a member >= 0"
            return failed(ErrorKind.INPUT, f"task {task} takes {shape}")
        return None

    def _context(self, run: RunSpec, task: str) -> dict[str, Any]:
        """What the cells of ``task`` in ``run`` share in the task process (kept per joined
        run; a plain ``do_work`` call's is made afresh)."""
        key = (run.run_id, task)
        context = self._contexts.get(key)
        if context is None:
            context = {
                "task": task,
                "params": dict(run.tasks[task].params),
                "data_dir": run.data_dir,
                "results_dir": run.results_dir,
                "scratch_dir": self._own.scratch_dir,
                "members": list(run.members),
                "run_id": run.run_id,
            }
            if run.run_id in self._runs:
                self._contexts[key] = context
        return context

    def _run(
        self, run: RunSpec, task: str, cells: list[tuple[int, int]], wait: bool = True
    ) -> list[Any]:
        """Run ``cells`` in the task process; with ``wait``, after the batch running now."""
        if (not wait and self._running.locked()) or not self._slots.acquire(blocking=False):
            current = self._current or {}
            busy = failed(
                ErrorKind.BUSY,
                f"{self.name} is busy with {current.get('task')} {current.get('year')} "
                f"m{current.get('member')}",
            )
            return [busy.to_wire()] * len(cells)
        try:
            cancels = self._cancels
            with self._running:
                if self._cancels != cancels or self.stopping:  # cancelled while waiting
                    kind = ErrorKind.STOPPING if self.stopping else ErrorKind.CANCELLED
                    return [failed(kind, f"task {kind.value}").to_wire()] * len(cells)
                self._executor.new_job()
                year, member = cells[0]
                self._current = {
                    "task": task,
                    "year": year,
                    "member": member,
                    "cells": len(cells),
                    "since": time.time(),
                    "run_id": run.run_id,
                }
                try:
                    answers = self._executor.run_batch(self._context(run, task), cells, run.timeout)
                finally:
                    self._current = None
                answers = self._oom.explain(answers)
                if self.walltime:
                    self.walltime.record(task, [a[1] for a in answers if a[0] == "+"])
                self._done += len(cells)
                return answers
        finally:
            self._slots.release()

    @expose
    def check_results(self, run_id: Any, items: Any) -> list[str | None]:
        """Say for each earlier result whether it still holds where this worker sees it.

        ``items``: ``[[task, year, member, inputs, output, output_sum], ...]`` as the run
        recorded them. Answers, per item, None or why the cell must run again. The inputs
        and outputs are measured here, where the data is, not on the manager's machine.
        """
        from clusterfarm.tasks.files import check_result

        run = self._runs.get(run_id) if isinstance(run_id, str) else None
        if run is None or not isinstance(items, list) or len(items) > _CHECK_BATCH:
            count = len(items) if isinstance(items, list) else 1
            return [f"cannot check: join first; at most {_CHECK_BATCH:,} a call"] * count
        self.last_contact = time.monotonic()
        reasons: list[str | None] = []
        for item in items:
            try:
                task, year, member, inputs, output, output_sum = item
                spec = get_task(task)
                params = dict(run.tasks[task].params)
                files = spec.input_files(year, member, params, Path(run.data_dir))
            except Exception:
                reasons.append(f"cannot check {item!r:.60}")
                continue
            reasons.append(check_result(files, inputs, output, output_sum))
        return reasons

    @expose
    def release(self, run_id: Any) -> bool:
        """End run ``run_id``'s lease (its manager is done with this worker)."""
        with self._lock:
            if self._lease is not None and self._lease.run_id == run_id:
                self._lease = None
                return True
        return False

    @expose
    def ping(self, run_id: Any = None) -> dict[str, Any]:
        """Answer at once: a manager's liveness check (renews its run's lease)."""
        now = time.monotonic()
        with self._lock:
            self.last_contact = now  # a manager wants this worker
            lease = self._lease
            if lease is not None and lease.run_id == run_id:
                lease.last_contact = now
        return {"name": self.name, "busy": self._current is not None}

    @expose
    def cancel(self, run_id: Any = None) -> bool:
        """Stop the running batch (and any waiting one) of run ``run_id`` (any with None)."""
        current = self._current
        if current is None or (run_id is not None and current.get("run_id") != run_id):
            return False
        self._cancels += 1
        self._executor.kill("cancelled")
        return True

    # -- the public single-cell call, for plain Pyro5 clients -----------------------------

    @expose
    def do_work(self, year: Any, member: Any, task: Any, params: Any = None) -> dict[str, Any]:
        """Run ``task`` for one cell with this worker's own settings; answer a dict."""
        names = {"year": year, "member": member, "task": task, "worker": self.name}
        names["host"] = self.host
        answer = self._work(year, member, task, params)
        return {**names, **answer.to_dict()}

    def _work(self, year: Any, member: Any, task: Any, params: Any) -> Answer:
        try:
            ((year, member, _),) = batch_cells([[year, member]])
            if not isinstance(task, str):
                raise ProtocolError(f"task must be a task name, not {task!r:.40}")
            if params is not None and not isinstance(params, dict):
                raise ProtocolError(f"params must be a dict, not {type(params).__name__}")
            spec = get_task(task)
            resolved = spec.resolve_params(params)
        except Exception as exc:  # a bad call or an unknown task: refused, never raised
            return failed(ErrorKind.INPUT, str(exc))
        own = self._own
        run = RunSpec(
            run_id=f"do_work-{params_hash(resolved)}-{task}",  # never joined: not kept
            data_dir=own.data_dir,
            results_dir=own.results_dir,
            timeout=own.timeout,
            lost_after=own.timeout,
            members=(member,),
            tasks={task: TaskRef(spec.version, resolved)},
        )
        with self._lock:
            lease = self._lease
            if lease is not None and lease.holds(time.monotonic()):
                return failed(ErrorKind.LEASED, f"{self.name} works for {_holder(lease)}")
        problem = self._going(task, 1) or self._cannot_run(
            task, run.tasks[task], [(year, member, 0)]
        )
        if problem is not None:
            return problem
        short = self._disk.problem(own, own.results_dir)
        if short is not None:
            return failed(ErrorKind.RESOURCE, short)
        return parse_answer(self._run(run, task, [(year, member)], wait=False)[0])

    # -- for operators ----------------------------------------------------------------------

    @expose
    def quarantine(self, seconds: float) -> None:
        """Note that the manager rests this worker's host (shown by ``info``)."""
        self._quarantined_until = time.time() + float(seconds)

    @expose
    def info(self) -> dict[str, Any]:
        """Describe this worker (for ``clusterfarm workers``)."""
        current = self._current
        lease = self._lease
        now = time.monotonic()
        leased = _holder(lease) if lease is not None and lease.holds(now) else None
        return {
            "name": self.name,
            "host": self.host,
            "pid": os.getpid(),
            "state": "busy" if current else self._idle_state(),
            "task": dict(current) if current else None,
            "done": self._done,
            "uptime": time.time() - self._started,
            "version": __version__,
            "task_pid": self._executor.pid,
            "leased_by": leased,
            "run_id": lease.run_id if leased and lease else None,
            "draining": self.walltime is not None and self.walltime.leaving.is_set(),
            "versions": library_versions(),
        }

    def _idle_state(self) -> str:
        if self.walltime is not None and self.walltime.leaving.is_set():
            return "draining"
        return "quarantined" if self._quarantined_until > time.time() else "idle"

    # -- for the daemon around it -----------------------------------------------------------

    @property
    def busy(self) -> bool:
        return self._current is not None

    def retire(self) -> None:
        """Take no more cells and hand the running ones back (before the daemon stops)."""
        self.stopping = True
        self.abandon("worker stopping", "shutdown")

    def abandon(self, why: str, reason: str = "abandoned") -> None:
        """Stop the running batch; its cells are answered as handed back, not attempted."""
        if self._current is not None:
            LOG.warning("%s: abandoning %s (%s)", self.name, self._current, why)
            self._cancels += 1
            self._executor.kill(reason)

    def wait_idle(self, timeout: float) -> None:
        """Wait until the running call has answered (bounded)."""
        if self._running.acquire(timeout=timeout):
            self._running.release()

    def silent_for(self, now: float) -> float | None:
        """How long the leased run's manager has been silent while a task runs, else None."""
        lease = self._lease
        if self._current is None or lease is None:
            return None
        silence = now - lease.last_contact  # its own manager's silence, not another's
        return silence if silence > lease.lost_after else None


def _holder(lease: Lease) -> str:
    return f"run {lease.run_id}" + (f" ({lease.manager})" if lease.manager else "")


class DiskCheck:
    """Whether this worker has the disk space to take cells, checked at most once a second.

    Free space does not change much between two cells, and asking the file systems after an
    idle moment costs more than a short cell does.
    """

    INTERVAL = 1.0

    def __init__(self) -> None:
        self._checked: dict[str, float] = {}
        self._problem: dict[str, str | None] = {}

    def problem(self, own: Own, results_dir: str) -> str | None:
        now = time.monotonic()
        if now - self._checked.get(results_dir, -self.INTERVAL) >= self.INTERVAL:
            # the answer first, then its time: another lane may ask in between
            self._problem[results_dir] = short_of_disk(own, results_dir)
            self._checked[results_dir] = now
        return self._problem.get(results_dir)


def short_of_disk(own: Own, results_dir: str) -> str | None:
    """Why this worker should not take a cell for lack of disk space, or None."""
    needed = float(own.min_free_mb or 0)
    if not needed:
        return None
    for folder in (own.scratch_dir, results_dir):
        place = Path(folder)
        while not place.exists() and place != place.parent:
            place = place.parent
        free = shutil.disk_usage(place).free / 1e6
        if free < needed:
            return (
                f"{folder}: only {free:.0f} MB free, below [workers] min_free_mb = "
                f"{needed:g}; free some space on this host"
            )
    return None
