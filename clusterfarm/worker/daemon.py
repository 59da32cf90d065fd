"""The worker daemon around a :class:`~clusterfarm.worker.service.PyroWorker`: its whole life.

:class:`WorkerDaemon` sets up (Pyro5, the task process, the listening socket, its name in the
nameserver), installs its signal handlers, starts its watchers, serves until told to stop,
and closes (hands its running cells back, unregisters). The watchers:

- *contact*: a task whose manager has been silent for the run's ``lost_after`` is abandoned,
  because that manager has declared this worker lost and runs the cells elsewhere;
- *nameserver*: one kept connection, checked every ``NS_CHECK_SECONDS``; a nameserver that
  was restarted and forgot this worker gets it registered again. The worker leaves as an
  orphan only after ``orphan_after`` seconds without contact with any nameserver *or*
  manager: while a manager is using it, the nameserver's fate does not matter;
- *stdin* (local mode): end of file means the manager that started it is gone.
"""

from __future__ import annotations

import contextlib
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
from Pyro5.api import Proxy

from clusterfarm.config.settings import Settings
from clusterfarm.errors import NameServerError, WorkerError
from clusterfarm.tasks.registry import load_task_modules
from clusterfarm.wire.access import Access
from clusterfarm.wire.gate import GatedDaemon
from clusterfarm.wire.nameserver import locate
from clusterfarm.wire.pyro import (
    WORKER_PREFIX,
    check_listen_address,
    configure_pyro,
    raise_open_files_limit,
)
from clusterfarm.worker.executor import Executor
from clusterfarm.worker.service import Own, PyroWorker
from clusterfarm.worker.task_output import RotatingOutput
from clusterfarm.worker.walltime import Walltime

LOG = logging.getLogger("clusterfarm.worker")
NS_CHECK_SECONDS = 30.0  # how often a worker checks its nameserver connection


class WorkerDaemon:
    """One worker daemon: set up, signals, watchers, run, close."""

    def __init__(
        self,
        settings: Settings,
        access: Access,
        bind_host: str,
        name: str | None,
        ns_host: str,
        ns_port: int,
        die_with_stdin: bool = False,
        orphan_after: float = 0.0,
        log_file: Path | None = None,
        exit_when_idle: float = 0.0,
    ) -> None:
        self.settings = settings
        self.access = access  # what it demands of callers and presents to the nameserver
        self.exit_when_idle = exit_when_idle
        self.bind_host = bind_host
        self.wanted_name = name
        self.ns_host, self.ns_port = ns_host, ns_port
        self.die_with_stdin = die_with_stdin
        self.orphan_after = orphan_after
        self.log_file = log_file
        self.stop_asked = threading.Event()  # a stop came (signal, stdin, orphan)
        self.leaving = threading.Event()  # the daemon stopped serving: never register again
        self.daemon: GatedDaemon | None = None
        self.worker: PyroWorker | None = None
        self.executor: Executor | None = None
        self.full_name = ""
        self._ns: Proxy
        self._ns_contact = time.monotonic()

    # -- set-up -----------------------------------------------------------------------------

    def set_up(self) -> None:
        """Everything before serving; raises WorkerError or NameServerError on trouble."""
        configure_pyro()
        raise_open_files_limit()
        check_listen_address(self.bind_host)  # the manager would refuse to talk to it
        load_task_modules(self.settings.tasks.modules)
        ns = locate(self.ns_host, self.ns_port, self.access)
        logging_settings = self.settings.logging
        output = None
        if self.log_file is not None:
            output = RotatingOutput(
                self.log_file.with_suffix(".out"),
                logging_settings.max_bytes,
                logging_settings.backups,
            )
        self.executor = Executor(self.settings.tasks.modules, output.fileno() if output else None)
        try:
            self.daemon = GatedDaemon(host=self.bind_host, port=0, access=self.access)
        except OSError as exc:
            self.executor.close()
            raise WorkerError(
                f"cannot listen on {self.bind_host} ({exc.strerror}); "
                "give --host an address of this machine"
            ) from exc
        host_label = (self.wanted_name or "").rsplit(".", 1)[0] or socket.gethostname().split(".")[
            0
        ]
        run = self.settings.run
        own = Own(
            data_dir=str(Path(run.data_dir).absolute()),
            results_dir=str(Path(run.results_path).absolute()),
            scratch_dir=str(Path(self.settings.workers.workdir).expanduser() / "scratch"),
            timeout=run.timeout,
            min_free_mb=self.settings.workers.min_free_mb,
        )
        self.full_name = self._register(ns, host_label, own)
        self.worker = self.daemon.objectsById[self.full_name]
        self._ns = ns
        LOG.info("worker %s listening at %s (pid %d)", self.full_name, self.bind_host, os.getpid())

    def _register(self, ns: Proxy, host_label: str, own: Own) -> str:
        """Register under the wanted name or the first free ``<host>.<n>``."""
        assert self.daemon is not None and self.executor is not None
        name = self.wanted_name
        candidates = [name] if name else [f"{host_label}.{n}" for n in range(1000)]
        for candidate in candidates:
            full = candidate if candidate.startswith(WORKER_PREFIX) else WORKER_PREFIX + candidate
            worker = PyroWorker(full, host_label, self.executor, own)
            uri = self.daemon.register(worker, objectId=full)
            try:
                ns.register(full, uri, safe=True, metadata=metadata(host_label))
                return full
            except Pyro5.errors.NamingError:
                self.daemon.unregister(full)
                if name and _is_dead(ns.lookup(full), self.access):
                    ns.remove(full)  # a stale entry of a worker that died
                    return self._register(ns, host_label, own)
        raise WorkerError(
            f"worker name {name or host_label + '.<n>'} is taken by a live worker; "
            "give another --name"
        )

    # -- signals and watchers ---------------------------------------------------------------

    def install_signals(self) -> None:
        """SIGTERM stops the worker cleanly; in local mode Ctrl-C is the manager's business."""
        if threading.current_thread() is not threading.main_thread():
            return
        signal.signal(signal.SIGTERM, lambda *_: self.stop())
        if self.die_with_stdin:
            signal.signal(signal.SIGINT, signal.SIG_IGN)

    def start_watchers(self) -> None:
        assert self.worker is not None
        _thread(self._watch_contact, "watch-contact")
        if self.orphan_after > 0:
            _thread(self._watch_nameserver, "watch-nameserver")
        if self.die_with_stdin:
            _thread(self._wait_for_eof, "watch-stdin")
        if self.exit_when_idle > 0:
            _thread(self._watch_idle, "watch-idle")
        walltime = self.worker.walltime = Walltime.of_this_job()
        if walltime is not None:
            LOG.info("batch job ends in %.0f s", walltime.end - time.time())
            _thread(lambda: walltime.watch(self.stop), "watch-walltime")

    def _watch_idle(self) -> None:
        """Leave once no manager has called for ``exit_when_idle`` seconds.

        For a pool started for one run: if that run's manager dies, even by SIGKILL, its
        workers leave by themselves and their batch jobs end.
        """
        assert self.worker is not None
        limit = self.exit_when_idle
        while not self.leaving.wait(min(1.0, limit / 4)):
            if not self.worker.busy and time.monotonic() - self.worker.last_contact > limit:
                LOG.warning("%s: no manager for %g s: leaving", self.full_name, limit)
                return self.stop()

    def _watch_contact(self) -> None:
        assert self.worker is not None
        while not self.leaving.wait(1.0):
            silence = self.worker.silent_for(time.monotonic())
            if silence is not None:
                self.worker.abandon(f"no word from the manager for {silence:.0f} s")

    def _watch_nameserver(self) -> None:
        """Keep this worker registered; leave only when nobody has been in touch for long."""
        assert self.worker is not None and self.daemon is not None
        interval = max(0.2, min(NS_CHECK_SECONDS, self.orphan_after / 5))
        uri = self.daemon.uriFor(self.full_name)
        ns: Proxy | None = self._ns
        self._ns._pyroClaimOwnership()  # made by set-up in another thread; this thread's now
        while not self.leaving.wait(interval):
            try:
                if ns is None:
                    ns = locate(self.ns_host, self.ns_port, self.access, min(3.0, interval))
                registered = self._ensure_registered(ns, uri)
                self._ns_contact = time.monotonic()
            except (NameServerError, Pyro5.errors.PyroError) as exc:
                if ns is not None:
                    ns._pyroRelease()
                ns = None
                last = max(self._ns_contact, self.worker.last_contact)
                if self.worker.busy or time.monotonic() - last < self.orphan_after:
                    continue
                LOG.warning(
                    "no nameserver and no manager for %.0f s (%s): stopping, an orphan",
                    self.orphan_after,
                    exc,
                )
                return self.stop()
            if registered != str(uri):
                LOG.warning(
                    "another worker took the name %s (%s): stopping", self.full_name, registered
                )
                return self.stop()

    def _ensure_registered(self, ns: Proxy, uri: Any) -> str:
        try:
            return str(ns.lookup(self.full_name))
        except Pyro5.errors.NamingError:
            if self.leaving.is_set():
                return str(uri)  # it unregistered itself on the way out
            host_label = host_of(self.full_name.removeprefix(WORKER_PREFIX))
            ns.register(self.full_name, uri, safe=True, metadata=metadata(host_label))
            LOG.warning("the nameserver had forgotten %s: registered again", self.full_name)
            return str(uri)

    def _wait_for_eof(self) -> None:
        # local workers get a pipe from the manager as stdin: EOF means the manager is gone
        try:
            while os.read(sys.stdin.fileno(), 1024):
                pass
        except (OSError, ValueError):
            pass
        self.stop()

    # -- run and close ----------------------------------------------------------------------

    def stop(self) -> None:
        """Stop serving (from any thread or a signal handler), handing the cells back."""
        if self.stop_asked.is_set():
            return
        self.stop_asked.set()
        _thread(self._shut_down, "shut-down")

    def _shut_down(self) -> None:
        if self.worker is None or self.daemon is None:
            return  # still setting up: run() stops as soon as it may
        self.worker.retire()
        self.worker.wait_idle(5)
        self.leaving.set()
        self.daemon.shutdown()
        self.daemon.drop_connections()

    def serve(self) -> None:
        """Run until SIGTERM (or end of stdin with ``die_with_stdin``): set up, then serve.

        With ``orphan_after`` > 0 it also stops after that long without a nameserver or a
        manager; with ``exit_when_idle`` > 0 once no manager has called it that long. In a
        batch job with a time limit it leaves before that limit (see ``walltime.py``).
        """
        self.install_signals()  # before set-up: a SIGTERM then is kept, not fatal
        self.set_up()
        self.start_watchers()
        self.run()

    def run(self) -> None:
        """Serve until stopped; always closes."""
        assert self.daemon is not None
        if self.stop_asked.is_set():  # a SIGTERM during set-up: honoured now it can unregister
            self.stop_asked.clear()
            self.stop()
        try:
            self.daemon.requestLoop()
        finally:
            self.close()

    def close(self) -> None:
        self.leaving.set()
        if self.executor is not None:
            self.executor.close()
        with contextlib.suppress(NameServerError, Pyro5.errors.PyroError):
            locate(self.ns_host, self.ns_port, self.access, timeout=2).remove(self.full_name)
        if self.daemon is not None:
            self.daemon.close()
        LOG.info("worker %s stopped", self.full_name)


def host_of(name: str | None) -> str:
    """The host a worker says it runs on: from its name ``<host>.<n>``, else this machine's
    (a SLURM worker, ``slurm-<job>_<task>``, says its node)."""
    if name and "." in name:
        return name.rsplit(".", 1)[0]
    return os.environ.get("SLURMD_NODENAME") or socket.gethostname().split(".")[0]


def metadata(host_label: str) -> set[str]:
    return {"clusterfarm.worker", f"host={host_label}", f"pid={os.getpid()}"}


def _thread(target: Any, name: str) -> None:
    threading.Thread(target=target, name=name, daemon=True).start()


def _is_dead(uri: Any, access: Access) -> bool:
    try:
        with access.proxy(uri) as proxy:
            proxy._pyroTimeout = 2
            proxy._pyroBind()
        return False
    except Pyro5.errors.CommunicationError:
        return True
