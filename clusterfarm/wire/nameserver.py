"""Start, find and query the Pyro5 nameserver where workers register.

Workers register as ``clusterfarm.worker.<host>.<n>`` with metadata ``host=...`` and
``pid=...``; the manager lists that prefix once at start and then talks to workers directly.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import Pyro5.errors
from Pyro5.api import Proxy

from clusterfarm.errors import NameServerError
from clusterfarm.wire.access import Access
from clusterfarm.wire.gate import GatedNameServerDaemon
from clusterfarm.wire.pyro import (
    CALL_TIMEOUT,
    WORKER_PREFIX,
    check_listen_address,
    configure_pyro,
    tls_problem,
)


@dataclass(frozen=True)
class WorkerEntry:
    """A worker as the nameserver knows it."""

    name: str
    uri: str
    host: str
    pid: int | None


class NameServer:
    """A nameserver running in a thread of this process (local mode, tests), admitting
    only those who present ``access``'s secret."""

    def __init__(self, host: str, port: int, access: Access) -> None:
        configure_pyro()
        check_listen_address(host)  # every client would refuse it
        try:
            self._daemon = GatedNameServerDaemon(host, port, access=access)
        except OSError as exc:
            raise NameServerError(
                f"cannot start a nameserver on {host}:{port} ({exc.strerror}); "
                "is another one running there? choose another [nameserver] port"
            ) from exc
        uri = self._daemon.uriFor(self._daemon.nameserver)
        self.uri = str(uri)
        self.host, self.port = uri.host, int(uri.port)
        self._thread = threading.Thread(
            target=self._daemon.requestLoop, name="nameserver", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._daemon.shutdown()
        self._daemon.drop_connections()
        self._thread.join(5)

    def serve_forever(self) -> None:
        """Block until the nameserver is stopped (by a signal handler calling stop)."""
        while self._thread.is_alive():
            self._thread.join(0.5)


def locate(host: str, port: int, access: Access, timeout: float = CALL_TIMEOUT) -> Proxy:
    """Return a proxy of the nameserver at ``host:port`` presenting ``access``, or raise
    NameServerError."""
    configure_pyro()
    proxy = access.proxy(f"PYRO:Pyro.NameServer@{host}:{port}")
    proxy._pyroTimeout = timeout
    try:
        proxy.ping()
    except Pyro5.errors.SecurityError as exc:  # it did not prove the secret: not ours
        raise NameServerError(
            f"nameserver at {host}:{port}: {exc}; check that [security] secret_file holds "
            "the cluster's secret"
        ) from exc
    except Pyro5.errors.CommunicationError as exc:
        problem = tls_problem(exc)
        if problem:  # something answers there: starting a nameserver would not help
            raise NameServerError(f"nameserver at {host}:{port}: {problem}") from exc
        raise NameServerError(
            f"no nameserver at {host}:{port} ({exc}); start one with `clusterfarm nameserver` "
            "or fix [nameserver] host/port in the settings"
        ) from exc
    return proxy


def list_workers(ns: Proxy) -> list[WorkerEntry]:
    """Return the registered workers, sorted by name."""
    try:
        entries: dict[str, Any] = ns.list(prefix=WORKER_PREFIX, return_metadata=True)
    except Pyro5.errors.CommunicationError as exc:
        raise NameServerError(f"nameserver stopped answering ({exc})") from exc
    workers = []
    for name, (uri, metadata) in sorted(entries.items(), key=lambda item: _natural(item[0])):
        tags = dict(tag.split("=", 1) for tag in metadata if "=" in tag)
        pid = int(tags["pid"]) if tags.get("pid", "").isdigit() else None
        workers.append(WorkerEntry(name, str(uri), tags.get("host", ""), pid))
    return workers


class WorkerDirectory:
    """Lists the registered workers over one kept connection (the manager's worker
    heartbeats ask every heartbeat); made lazily, so it belongs to the thread that first
    asks."""

    def __init__(self, host: str, port: int, access: Access) -> None:
        self.host, self.port, self.access = host, port, access
        self._ns: Proxy | None = None

    def __call__(self) -> list[WorkerEntry]:
        if self._ns is None:
            self._ns = locate(self.host, self.port, self.access, timeout=2)
            # the list comes back in JSON: serpent parses it with a compile, every
            # heartbeat; JSON gives metadata sets as lists, read the same
            self._ns._pyroSerializer = "json"
        try:
            return list_workers(self._ns)
        except NameServerError:
            self._ns._pyroRelease()  # connect afresh next time
            self._ns = None
            raise


def _natural(name: str) -> tuple[Any, ...]:
    # local.2 before local.10
    return tuple((0, int(part), "") if part.isdigit() else (1, 0, part) for part in name.split("."))
