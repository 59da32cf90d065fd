"""The worker daemon: a Pyro5 object that runs one task at a time in a child process.

``PyroWorker.do_work`` validates the call, hands the job to the :class:`Executor` (a warm child
process it can kill) and answers a plain dict (SPEC §7). Its other calls (``ping``, ``info``,
``cancel``) are served by other daemon threads while a task runs.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

import Pyro5.errors
from Pyro5.api import Daemon, behavior, expose

from clusterfarm import __version__
from clusterfarm.errors import ClusterFarmError, NameServerError, WorkerError
from clusterfarm.executor import Executor
from clusterfarm.nameserver import locate
from clusterfarm.schedule import YEAR
from clusterfarm.settings import Settings
from clusterfarm.tasks.registry import get_task, load_task_modules
from clusterfarm.transport import WORKER_PREFIX, check_listen_address, configure_pyro

LOG = logging.getLogger("clusterfarm.worker")
# what the manager may set per run; scratch space stays the worker's own ([workers] workdir)
RUN_KEYS = ("data_dir", "results_dir", "timeout", "abandon_after", "members", "run_id")


@behavior(instance_mode="single")
class PyroWorker:
    """Runs tasks for the manager; one task at a time, never dying with it."""

    def __init__(self, name: str, host: str, executor: Executor, run: dict[str, Any]) -> None:
        self.name = name
        self.host = host
        self._executor = executor
        self._run_settings = dict(run)
        self._busy = threading.Lock()
        self._current: dict[str, Any] | None = None
        self._done = 0
        self._started = time.time()
        self._last_contact = time.monotonic()  # the manager's last call or heartbeat
        self._quarantined_until = 0.0
        self._stopping = False
        self._disk = DiskCheck()

    @expose
    def configure(self, run: dict[str, Any]) -> dict[str, Any]:
        """Set where this run's data and results are, and its time limit."""
        unknown = set(run) - set(RUN_KEYS)
        if unknown:
            return {"ok": False, "error": f"unknown run settings {sorted(unknown)}"}
        self._run_settings.update(run)
        self._last_contact = time.monotonic()
        return {"ok": True, "worker": self.name, "version": __version__}

    @expose
    def do_work(
        self, year: int, member: int, task: str, params: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Run ``task`` for ``year`` and ``member``; answer how it went (never raises)."""
        answer = {
            "year": year,
            "member": member,
            "task": task,
            "worker": self.name,
            "host": self.host,
        }
        return {**answer, **self._run(task, params, [[year, member]])[0]}

    @expose
    def do_batch(
        self, task: str, params: dict[str, Any] | None, cells: list[list[int]]
    ) -> list[dict[str, Any]]:
        """Run ``task`` for several ``[year, member]`` cells, one after another.

        The manager batches cells of short tasks to save a round trip per task; each cell
        still has its own time limit. Answers one outcome per cell, in order.
        """
        if not isinstance(cells, list) or not cells:
            return [_refused("cells must be a non-empty list of [year, member]", "input")]
        return self._run(task, params, cells)

    def _run(self, task: str, params: Any, cells: list[Any]) -> list[dict[str, Any]]:
        problem = _check_call(task, params, cells)
        if problem is not None:
            return [_refused(problem, "input")] * len(cells)
        if self._stopping:
            return [_refused(f"{self.name} is stopping", "stopping")] * len(cells)
        if not self._busy.acquire(blocking=False):
            current = self._current or {}
            message = (
                f"{self.name} is busy with {current.get('task')} {current.get('year')} "
                f"m{current.get('member')}"
            )
            return [_refused(message, "busy")] * len(cells)
        try:
            self._last_contact = time.monotonic()
            try:
                spec = get_task(task)
                resolved = spec.resolve_params(params)
            except ClusterFarmError as exc:
                return [_refused(str(exc), "input")] * len(cells)
            if any((member == YEAR) != spec.per_year for _, member in cells):
                shape = f"member {YEAR} (once per year)" if spec.per_year else "a member >= 0"
                return [_refused(f"task {task} takes {shape}", "input")] * len(cells)
            run = self._run_settings
            short = self._disk.problem(run)
            if short is not None:
                return [_refused(short, "resource")] * len(cells)
            jobs = [
                {
                    "task": task,
                    "year": year,
                    "member": member,
                    "params": resolved,
                    "data_dir": run["data_dir"],
                    "results_dir": run["results_dir"],
                    "scratch_dir": run.get("scratch_dir"),
                    "members": run.get("members") if spec.per_year else None,
                    "run_id": run.get("run_id"),
                }
                for year, member in cells
            ]
            self._executor.new_job()
            self._current = {
                "task": task,
                "year": cells[0][0],
                "member": cells[0][1],
                "cells": len(cells),
                "since": time.time(),
            }
            outcomes = self._executor.run_batch(jobs, float(run["timeout"]))
            self._done += len(cells)
            return outcomes
        finally:
            self._current = None
            self._busy.release()

    @expose
    def ping(self) -> dict[str, Any]:
        """Answer at once: the manager's liveness check."""
        self._last_contact = time.monotonic()
        return {"name": self.name, "busy": self._current is not None}

    @expose
    def quarantine(self, seconds: float) -> None:
        """Note that the manager rests this worker's host (shown by ``info``)."""
        self._quarantined_until = time.time() + float(seconds)

    @expose
    def info(self) -> dict[str, Any]:
        """Describe this worker (for ``clusterfarm workers``)."""
        from clusterfarm.provenance import library_versions

        current = self._current
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
            "versions": library_versions(),  # for provenance.json
        }

    def _idle_state(self) -> str:
        return "quarantined" if self._quarantined_until > time.time() else "idle"

    def retire(self) -> None:
        """Take no more tasks and hand the running one back (before the daemon stops)."""
        self._stopping = True
        self.abandon("worker stopping")

    def abandon(self, why: str) -> None:
        """Stop the running task; ``do_work`` answers ``abandoned`` and the manager requeues."""
        if self._current is not None:
            LOG.warning("%s: abandoning %s (%s)", self.name, self._current, why)
            self._executor.kill("abandoned")

    def wait_idle(self, timeout: float) -> None:
        """Wait until the running call has answered (bounded)."""
        if self._busy.acquire(timeout=timeout):
            self._busy.release()

    def watch_contact(self, stopped: threading.Event) -> None:
        """Abandon a task when the manager has been silent for ``abandon_after`` seconds.

        The manager declares this worker lost after the same time without an answer and runs
        the cell elsewhere: stopping here keeps the two from both finishing it.
        """
        while not stopped.wait(1.0):
            limit = self._run_settings.get("abandon_after")
            if limit and self._current and time.monotonic() - self._last_contact > limit:
                self.abandon(f"no word from the manager for {limit:g} s")

    @expose
    def cancel(self) -> bool:
        """Stop the running task, if any; its ``do_work`` answers ``cancelled``."""
        if self._current is None:
            return False
        self._executor.kill("cancelled")
        return True


def _check_call(task: Any, params: Any, cells: list[Any]) -> str | None:
    for cell in cells:
        if not isinstance(cell, list | tuple) or len(cell) != 2:
            return f"a cell must be [year, member], not {cell!r}"
        # member -1 (YEAR) is the one cell of a per-year task
        for label, value, lowest in zip(("year", "member"), cell, (0, YEAR), strict=True):
            if not isinstance(value, int) or isinstance(value, bool) or value < lowest:
                return f"{label} must be a non-negative integer, not {value!r}"
    if not isinstance(task, str):
        return f"task must be a task name, not {task!r}"
    if params is not None and not isinstance(params, dict):
        return f"params must be a dict, not {type(params).__name__}"
    return None


def _refused(error: str, kind: str) -> dict[str, Any]:
    return {
        "status": "failure",
        "error": error,
        "error_kind": kind,
        "output": None,
        "summary": None,
        "elapsed": 0.0,
    }


def serve(
    settings: Settings,
    bind_host: str,
    name: str | None,
    ns_host: str,
    ns_port: int,
    die_with_stdin: bool = False,
    ready: threading.Event | None = None,
    orphan_after: float = 0.0,
) -> None:
    """Run a worker daemon until SIGTERM (or end of stdin with ``die_with_stdin``).

    With ``orphan_after`` > 0 it also stops once the nameserver has been unreachable that long.
    """
    in_main_thread = threading.current_thread() is threading.main_thread()
    stop_asked = threading.Event()
    if in_main_thread:
        # a SIGTERM while starting up is kept and honoured once the worker can unregister;
        # the default action would kill it with its name left in the nameserver
        signal.signal(signal.SIGTERM, lambda *_: stop_asked.set())
        if die_with_stdin:
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # the manager decides when we stop
    configure_pyro()
    check_listen_address(bind_host)  # the manager would refuse to talk to it
    load_task_modules(settings.tasks.modules)
    ns = locate(ns_host, ns_port)
    executor = Executor(settings.tasks.modules)
    run = {
        "data_dir": str(Path(settings.run.data_dir).absolute()),
        "results_dir": str(Path(settings.run.results_path).absolute()),
        "scratch_dir": str(Path(settings.workers.workdir).expanduser() / "scratch"),
        "timeout": settings.run.timeout,
        "min_free_mb": settings.workers.min_free_mb,
    }
    try:
        daemon = Daemon(host=bind_host, port=0)
    except OSError as exc:
        executor.close()
        raise WorkerError(
            f"cannot listen on {bind_host} ({exc.strerror}); give --host an address of this machine"
        ) from exc
    host_label = (name or "").rsplit(".", 1)[0] or socket.gethostname().split(".")[0]
    full_name = _register(ns, daemon, executor, host_label, name, run)
    LOG.info("worker %s listening at %s (pid %d)", full_name, bind_host, os.getpid())

    worker: PyroWorker = daemon.objectsById[full_name]
    stopped = threading.Event()
    threading.Thread(target=worker.watch_contact, args=(stopped,), daemon=True).start()

    def shut_down() -> None:
        # hand the running cell back cleanly (the manager requeues it), then go
        worker.retire()
        worker.wait_idle(5)
        stopped.set()
        daemon.shutdown()

    def stop(*_: Any) -> None:
        threading.Thread(target=shut_down, daemon=True).start()

    if in_main_thread:
        signal.signal(signal.SIGTERM, stop)
    if stop_asked.is_set():
        stop()
    if die_with_stdin:
        threading.Thread(target=_wait_for_eof, args=(stop,), daemon=True).start()
    leaving = threading.Event()  # set once the daemon stops serving: never register again
    if orphan_after > 0:
        uri = daemon.uriFor(full_name)
        watch = (ns_host, ns_port, full_name, uri, orphan_after, stop, leaving)
        threading.Thread(target=_watch_nameserver, args=watch, daemon=True).start()
    if ready is not None:
        ready.set()
    try:
        daemon.requestLoop()
    finally:
        leaving.set()
        executor.close()
        _unregister(ns_host, ns_port, full_name)
        daemon.close()
        LOG.info("worker %s stopped", full_name)


def _register(
    ns: Any,
    daemon: Daemon,
    executor: Executor,
    host_label: str,
    name: str | None,
    run: dict[str, Any],
) -> str:
    """Register under ``name`` or the first free ``<host>.<n>``; return the full name."""
    candidates = [name] if name else [f"{host_label}.{n}" for n in range(1000)]
    for candidate in candidates:
        full_name = candidate if candidate.startswith(WORKER_PREFIX) else WORKER_PREFIX + candidate
        worker = PyroWorker(full_name, host_label, executor, run)
        uri = daemon.register(worker, objectId=full_name)
        try:
            ns.register(full_name, uri, safe=True, metadata=_metadata(host_label))
            return full_name
        except Pyro5.errors.NamingError:
            daemon.unregister(full_name)
            if name and _is_dead(ns.lookup(full_name)):
                ns.remove(full_name)  # a stale entry of a worker that died
                return _register(ns, daemon, executor, host_label, name, run)
    raise WorkerError(
        f"worker name {name or host_label + '.<n>'} is taken by a live worker; give another --name"
    )


class DiskCheck:
    """Whether this worker has the disk space to take tasks, checked at most once a second.

    Free space does not change much between two tasks, and asking the file systems costs
    about 0.1 ms after an idle moment, which a stream of short tasks would pay every time.
    """

    INTERVAL = 1.0

    def __init__(self) -> None:
        self._checked = -self.INTERVAL
        self._problem: str | None = None

    def problem(self, run: dict[str, Any]) -> str | None:
        now = time.monotonic()
        if now - self._checked >= self.INTERVAL:
            self._checked, self._problem = now, _short_of_disk(run)
        return self._problem


def _short_of_disk(run: dict[str, Any]) -> str | None:
    """Why this worker should not take a task for lack of disk space, or None."""
    needed = float(run.get("min_free_mb") or 0)
    if not needed:
        return None
    for key in ("scratch_dir", "results_dir"):
        if not run.get(key):
            continue
        place = Path(run[key])
        while not place.exists() and place != place.parent:
            place = place.parent
        free = shutil.disk_usage(place).free / 1e6
        if free < needed:
            return (
                f"{run[key]}: only {free:.0f} MB free, below [workers] min_free_mb = "
                f"{needed:g}; free some space on this host"
            )
    return None


def _metadata(host_label: str) -> set[str]:
    return {"clusterfarm.worker", f"host={host_label}", f"pid={os.getpid()}"}


def _watch_nameserver(
    ns_host: str,
    ns_port: int,
    full_name: str,
    uri: Any,
    orphan_after: float,
    stop: Any,
    leaving: threading.Event,
) -> None:
    """Stop the worker once the nameserver has been gone ``orphan_after`` s (no orphans).

    A nameserver that answers but has forgotten this worker (it was restarted) gets it
    registered again. Runs in its own thread every few seconds: no cost per task.
    """
    interval = min(5.0, max(0.2, orphan_after / 5))
    last_seen = time.monotonic()
    while not leaving.wait(interval):
        try:
            ns = locate(ns_host, ns_port, timeout=min(3.0, interval))
            with ns:
                try:
                    registered = str(ns.lookup(full_name))
                except Pyro5.errors.NamingError:
                    if leaving.is_set():
                        return  # it unregistered itself on the way out
                    host_label = full_name.removeprefix(WORKER_PREFIX).rsplit(".", 1)[0]
                    ns.register(full_name, uri, safe=True, metadata=_metadata(host_label))
                    LOG.warning("the nameserver had forgotten %s: registered again", full_name)
                    registered = str(uri)
        except (NameServerError, Pyro5.errors.PyroError) as exc:
            if time.monotonic() - last_seen < orphan_after:
                continue
            LOG.warning("no nameserver for %.0f s (%s): stopping, an orphan", orphan_after, exc)
            return stop()
        if registered != str(uri):
            LOG.warning("another worker took the name %s (%s): stopping", full_name, registered)
            return stop()
        last_seen = time.monotonic()


def _is_dead(uri: Any) -> bool:
    from Pyro5.api import Proxy

    try:
        with Proxy(uri) as proxy:
            proxy._pyroTimeout = 2
            proxy._pyroBind()
        return False
    except Pyro5.errors.CommunicationError:
        return True


def _unregister(ns_host: str, ns_port: int, full_name: str) -> None:
    try:
        locate(ns_host, ns_port, timeout=2).remove(full_name)
    except (NameServerError, Pyro5.errors.PyroError):
        pass  # the nameserver is gone already: nothing to clean


def _wait_for_eof(stop: Any) -> None:
    # local workers get a pipe from the manager as stdin: EOF means the manager is gone
    try:
        while os.read(sys.stdin.fileno(), 1024):
            pass
    except (OSError, ValueError):
        pass
    stop()
