"""Who may talk to our daemons, and how long a stranger may hold a door open.

Two checks on every clusterfarm daemon (workers and the nameserver):

- **The secret.** With ``[security] auth`` (the default) every connection's Pyro5 handshake
  must carry the run's or the cluster's secret (:class:`clusterfarm.wire.access.Access`);
  any other is refused before it can list, register or call anything.
- **The gate.** Pyro5's thread-pool server gives each accepted connection a pool thread at
  once, and that thread waits for the client's first bytes (and, with TLS, for its
  handshake) without a deadline: a hundred connections that never say a word take every
  thread. Here accepted connections wait in one selector thread instead, each with a
  deadline of ``HANDSHAKE_SECONDS``; a TLS handshake runs in a small pool of its own, with
  the same deadline; only a connection that has spoken goes on to a Pyro5 thread. Silent
  connections cost a file descriptor each, never a thread, and are closed at the deadline.

:class:`GatedDaemon` and :class:`GatedNameServerDaemon` also remember their connections,
so stopping one closes them (an in-process nameserver that stopped must not keep answering
on connections made before).
"""

from __future__ import annotations

import contextlib
import logging
import selectors
import socket
import ssl
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import Pyro5.errors
import Pyro5.nameserver
import Pyro5.server
import Pyro5.svr_threads as svr_threads
from Pyro5 import config

from clusterfarm.wire.access import Access

LOG = logging.getLogger("clusterfarm.gate")
HANDSHAKE_SECONDS = 5.0  # a new connection must have spoken (and shaken hands) by then
TLS_HANDSHAKERS = 8  # threads doing TLS handshakes at once


class _SecretCheck:
    """What both daemons add to Pyro5's: the secret check and their connections' list."""

    _connections: set[Any]
    _access: Access

    def validateHandshake(self, conn: Any, data: Any) -> Any:  # noqa: N802 - Pyro5's name
        if not self._access.admits(data):
            LOG.warning("refused a connection from %s: no valid secret", _peer(conn))
            raise Pyro5.errors.SecurityError(
                "authentication required: present the cluster's secret "
                "(proxy._pyroHandshake = {'secret': ...}); see [security] in the settings"
            )
        self._connections.add(conn)
        return "hello"

    def clientDisconnect(self, conn: Any) -> None:  # noqa: N802 - Pyro5's name
        self._connections.discard(conn)

    def drop_connections(self) -> None:
        """Close every client connection (after ``shutdown``)."""
        for conn in list(self._connections):
            with contextlib.suppress(OSError, AttributeError):
                conn.sock.shutdown(socket.SHUT_RDWR)
        self._connections.clear()


class GatedDaemon(_SecretCheck, Pyro5.server.Daemon):
    """A Pyro5 daemon behind ``access``'s secret and the gate (a worker's)."""

    def __init__(self, *args: Any, access: Access, **kwargs: Any) -> None:
        self._connections, self._access = set(), access
        install()
        super().__init__(*args, **kwargs)


class GatedNameServerDaemon(_SecretCheck, Pyro5.nameserver.NameServerDaemon):
    """Pyro5's nameserver daemon behind ``access``'s secret and the gate."""

    def __init__(self, *args: Any, access: Access, **kwargs: Any) -> None:
        self._connections, self._access = set(), access
        install()
        super().__init__(*args, **kwargs)


# -- the gate ---------------------------------------------------------------------------------


class _Job(svr_threads.ClientConnectionJob):
    """A connection that has spoken: Pyro5's handshake gets the gate's deadline, then none."""

    def handleConnection(self) -> bool:  # noqa: N802 - Pyro5's name
        self.csock.timeout = HANDSHAKE_SECONDS
        ok = bool(super().handleConnection())
        if ok:
            self.csock.timeout = config.COMMTIMEOUT or None
        return ok


class GatedServer(svr_threads.SocketServer_Threadpool):
    """Pyro5's thread-pool server with the gate in front of its pool (see the module)."""

    def init(self, daemon: Any, host: Any, port: Any, unixsocket: Any = None) -> None:
        super().init(daemon, host, port, unixsocket)
        self._gate = _Gate(self)

    def events(self, eventsockets: Any) -> None:
        assert self.sock in eventsockets
        with contextlib.suppress(socket.timeout):
            if not self._selector.select(config.POLLTIMEOUT):
                return
            csock, caddr = self.sock.accept()
            if self.shutting_down:
                csock.close()
                return
            self._gate.admit(csock, caddr)

    def hand_on(self, csock: socket.socket, caddr: Any) -> None:
        """A connection that spoke in time: to Pyro5's pool."""
        job = _Job(csock, caddr, self.daemon)
        try:
            self.pool.process(job)
        except svr_threads.NoFreeWorkersError:
            job.denyConnection("no free workers, increase server threadpool size")

    def close(self) -> None:
        gate = getattr(self, "_gate", None)
        if gate is not None:
            gate.stop()
        super().close()


class _Gate:
    """Connections waiting to speak, each with a deadline; one thread and a small pool."""

    def __init__(self, server: GatedServer) -> None:
        self.server = server
        self._selector = selectors.DefaultSelector()
        self._waiting: dict[socket.socket, tuple[Any, float]] = {}
        self._lock = threading.Lock()
        self._wake_r, self._wake_w = socket.socketpair()
        self._selector.register(self._wake_r, selectors.EVENT_READ)
        self._handshakers = ThreadPoolExecutor(TLS_HANDSHAKERS, thread_name_prefix="tls")
        self._stopped = False
        self._thread = threading.Thread(target=self._loop, name="gate", daemon=True)
        self._thread.start()

    def admit(self, csock: socket.socket, caddr: Any) -> None:
        self._wait(csock, caddr, time.monotonic() + HANDSHAKE_SECONDS)

    def _wait(self, csock: socket.socket, caddr: Any, deadline: float) -> None:
        with self._lock:
            if self._stopped:
                csock.close()
                return
            self._waiting[csock] = (caddr, deadline)
            self._selector.register(csock, selectors.EVENT_READ)
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")

    def _loop(self) -> None:
        while not self._stopped:
            for key, _ in self._selector.select(timeout=0.5):
                if key.fileobj is self._wake_r:
                    with contextlib.suppress(OSError):
                        self._wake_r.recv(4096)
                    continue
                self._spoke(key.fileobj)  # type: ignore[arg-type]
            self._close_late(time.monotonic())

    def _take(self, csock: socket.socket) -> tuple[Any, float] | None:
        with self._lock:
            entry = self._waiting.pop(csock, None)
            if entry is not None:
                self._selector.unregister(csock)
            return entry

    def _spoke(self, csock: socket.socket) -> None:
        entry = self._take(csock)
        if entry is None:
            return
        caddr, deadline = entry
        if isinstance(csock, ssl.SSLSocket) and not _handshake_done(csock):
            self._handshakers.submit(self._shake_hands, csock, caddr, deadline)
        else:
            self.server.hand_on(csock, caddr)

    def _shake_hands(self, csock: ssl.SSLSocket, caddr: Any, deadline: float) -> None:
        try:
            csock.settimeout(max(0.1, deadline - time.monotonic()))
            csock.do_handshake()
            csock.settimeout(None)
        except (OSError, ValueError) as exc:
            LOG.debug("TLS handshake with %s failed: %s", caddr, exc)
            with contextlib.suppress(OSError):
                csock.close()
            return
        if csock.pending():
            self.server.hand_on(csock, caddr)
        else:
            self._wait(csock, caddr, deadline)  # now wait for its first Pyro5 message

    def _close_late(self, now: float) -> None:
        with self._lock:
            late = [s for s, (_, deadline) in self._waiting.items() if deadline < now]
            for csock in late:
                del self._waiting[csock]
                self._selector.unregister(csock)
        for csock in late:
            with contextlib.suppress(OSError):
                csock.close()
        if late:
            LOG.info("closed %d connection(s) silent for %g s", len(late), HANDSHAKE_SECONDS)

    def stop(self) -> None:
        self._stopped = True
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")
        self._thread.join(2)
        self._handshakers.shutdown(wait=False, cancel_futures=True)
        with self._lock:
            for csock in self._waiting:
                with contextlib.suppress(OSError):
                    csock.close()
            self._waiting.clear()


def _handshake_done(csock: ssl.SSLSocket) -> bool:
    try:
        return csock.version() is not None
    except (OSError, ValueError):
        return False


def _peer(conn: Any) -> str:
    with contextlib.suppress(OSError, AttributeError):
        return str(conn.sock.getpeername()[0])
    return "?"


def install() -> None:
    """Make every Pyro5 daemon this process starts use the gate (see the module)."""
    svr_threads.SocketServer_Threadpool = GatedServer  # Daemon looks it up at start
