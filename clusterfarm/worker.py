"""The worker daemon: a Pyro5 object that runs one task at a time in a child process.

``PyroWorker.do_work`` validates the call, hands the job to the :class:`Executor` (a warm child
process it can kill) and answers a plain dict (SPEC §7). Its other calls (``ping``, ``info``,
``cancel``) are served by other daemon threads while a task runs.
"""

from __future__ import annotations

import logging
import os
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
from clusterfarm.settings import Settings
from clusterfarm.tasks.registry import get_task, load_task_modules
from clusterfarm.transport import WORKER_PREFIX, configure_pyro

LOG = logging.getLogger("clusterfarm.worker")
RUN_KEYS = ("data_dir", "results_dir", "scratch_dir", "timeout")


@behavior(instance_mode="single")
class PyroWorker:
    """Runs tasks for the manager; one task at a time, never dying with it."""

    def __init__(self, name: str, host: str, executor: Executor, run: dict[str, Any]) -> None:
        self.name = name
        self.host = host
        self._executor = executor
        self._run = dict(run)
        self._busy = threading.Lock()
        self._current: dict[str, Any] | None = None
        self._done = 0
        self._started = time.time()

    @expose
    def configure(self, run: dict[str, Any]) -> dict[str, Any]:
        """Set where this run's data and results are, and its time limit."""
        unknown = set(run) - set(RUN_KEYS)
        if unknown:
            return {"ok": False, "error": f"unknown run settings {sorted(unknown)}"}
        self._run.update(run)
        return {"ok": True, "worker": self.name, "version": __version__}

    @expose
    def do_work(
        self, year: int, member: int, task: str, params: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Run ``task`` for ``year`` and ``member``; answer how it went (never raises)."""
        answer: dict[str, Any] = {
            "year": year,
            "member": member,
            "task": task,
            "worker": self.name,
            "host": self.host,
        }
        problem = _check_call(year, member, task, params)
        if problem is not None:
            return {**answer, **_refused(problem, "input")}
        if not self._busy.acquire(blocking=False):
            current = self._current or {}
            return {
                **answer,
                **_refused(
                    f"{self.name} is busy with {current.get('task')} "
                    f"{current.get('year')} m{current.get('member')}",
                    "busy",
                ),
            }
        try:
            try:
                spec = get_task(task)
                resolved = spec.resolve_params(params)
            except ClusterFarmError as exc:
                return {**answer, **_refused(str(exc), "input")}
            self._executor.new_job()
            self._current = {"task": task, "year": year, "member": member, "since": time.time()}
            job = {
                "task": task,
                "year": year,
                "member": member,
                "params": resolved,
                "data_dir": self._run["data_dir"],
                "results_dir": self._run["results_dir"],
                "scratch_dir": self._run.get("scratch_dir"),
            }
            outcome = self._executor.run(job, float(self._run["timeout"]))
            self._done += 1
            return {**answer, **outcome}
        finally:
            self._current = None
            self._busy.release()

    @expose
    def ping(self) -> dict[str, Any]:
        """Answer at once: the manager's liveness check."""
        return {"name": self.name, "busy": self._current is not None}

    @expose
    def info(self) -> dict[str, Any]:
        """Describe this worker (for ``clusterfarm workers``)."""
        current = self._current
        return {
            "name": self.name,
            "host": self.host,
            "pid": os.getpid(),
            "state": "busy" if current else "idle",
            "task": dict(current) if current else None,
            "done": self._done,
            "uptime": time.time() - self._started,
            "version": __version__,
            "task_pid": self._executor.pid,
        }

    @expose
    def cancel(self) -> bool:
        """Stop the running task, if any; its ``do_work`` answers ``cancelled``."""
        if self._current is None:
            return False
        self._executor.kill("cancelled")
        return True


def _check_call(year: Any, member: Any, task: Any, params: Any) -> str | None:
    for label, value in (("year", year), ("member", member)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
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
) -> None:
    """Run a worker daemon until SIGTERM (or end of stdin with ``die_with_stdin``)."""
    configure_pyro()
    load_task_modules(settings.tasks.modules)
    ns = locate(ns_host, ns_port)
    executor = Executor(settings.tasks.modules)
    run = {
        "data_dir": str(Path(settings.run.data_dir).absolute()),
        "results_dir": str(Path(settings.run.results_path).absolute()),
        "scratch_dir": None,
        "timeout": settings.run.timeout,
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

    def stop(*_: Any) -> None:
        threading.Thread(target=daemon.shutdown, daemon=True).start()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, stop)
        if die_with_stdin:
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # the manager decides when we stop
    if die_with_stdin:
        threading.Thread(target=_wait_for_eof, args=(stop,), daemon=True).start()
    if ready is not None:
        ready.set()
    try:
        daemon.requestLoop()
    finally:
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
        metadata = {"clusterfarm.worker", f"host={host_label}", f"pid={os.getpid()}"}
        try:
            ns.register(full_name, uri, safe=True, metadata=metadata)
            return full_name
        except Pyro5.errors.NamingError:
            daemon.unregister(full_name)
            if name and _is_dead(ns.lookup(full_name)):
                ns.remove(full_name)  # a stale entry of a worker that died
                return _register(ns, daemon, executor, host_label, name, run)
    raise WorkerError(
        f"worker name {name or host_label + '.<n>'} is taken by a live worker; give another --name"
    )


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
