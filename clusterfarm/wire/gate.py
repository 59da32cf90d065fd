"""Who may talk to our daemons, and what a stranger may cost them before it is known.

Two checks on every clusterfarm daemon (workers and the nameserver):

- **The secret.** With ``[security] auth`` (the default) every connection's Pyro5 handshake
  must carry the run's or the cluster's secret (:class:`clusterfarm.wire.access.Access`);
  any other is refused before it can list, register or call anything.
- **The gate.** Until that handshake has been read whole, a connection costs a file
  descriptor and a few bytes, never a thread. Accepted connections wait in one selector
  thread, which reads their first message itself, without blocking: it must be a Pyro5
  handshake (``MSG_CONNECT``), not compressed (nothing is ever inflated for a stranger), of
  at most ``HANDSHAKE_BYTES``, and complete within ``HANDSHAKE_SECONDS`` of the connection in
  all (a total deadline, not one per read: a byte every few seconds does not keep it open).
  A TLS handshake runs in a small pool of its own, under the same deadline. At most
  ``MAX_WAITING`` connections wait; one more closes the oldest (a client that speaks at once
  is never the oldest). Only then is the connection handed, with the bytes read, to a
  Pyro5 pool thread, which checks the secret in a moment and closes it if wrong.

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
import struct
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import Pyro5.errors
import Pyro5.nameserver
import Pyro5.server
import Pyro5.svr_threads as svr_threads
from Pyro5 import config, protocol, serializers, socketutil

from clusterfarm.wire.access import Access

LOG = logging.getLogger("clusterfarm.gate")
HANDSHAKE_SECONDS = 5.0  # a new connection must have shaken hands (TLS, Pyro5) by then
HANDSHAKE_BYTES = 64 * 1024  # the largest first message of a connection not yet authenticated
MAX_WAITING = 1024  # connections whose handshake is still coming; one more drops the oldest
TLS_HANDSHAKERS = 8  # threads doing TLS handshakes at once
_HEADER = struct.Struct(protocol._header_format)  # Pyro5's message header


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


class _Read(socketutil.SocketConnection):
    """A connection whose first bytes the gate has read already: they come first."""

    def __init__(self, sock: socket.socket, first: bytes) -> None:
        super().__init__(sock)
        self._first = memoryview(first)

    def recv(self, size: int) -> bytes:
        if not self._first:
            return bytes(super().recv(size))
        head, self._first = self._first[:size], self._first[size:]
        return bytes(head) + (bytes(super().recv(size - len(head))) if len(head) < size else b"")


class _Job(svr_threads.ClientConnectionJob):
    """A connection whose handshake the gate has read: Pyro5 checks it (the secret), then
    serves the connection's calls."""

    def __init__(self, csock: socket.socket, caddr: Any, daemon: Any, first: bytes) -> None:
        # not super().__init__: the connection it makes would close the socket when dropped
        self.csock = _Read(csock, first)
        self.caddr, self.daemon = caddr, daemon

    def handleConnection(self) -> bool:  # noqa: N802 - Pyro5's name
        self.csock.timeout = HANDSHAKE_SECONDS  # only the answer is left to send
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

    def hand_on(self, csock: socket.socket, caddr: Any, first: bytes) -> None:
        """A connection whose handshake came whole and in time: to Pyro5's pool."""
        csock.setblocking(True)
        job = _Job(csock, caddr, self.daemon, first)
        try:
            self.pool.process(job)
        except svr_threads.NoFreeWorkersError:
            job.denyConnection("no free workers, increase server threadpool size")

    def close(self) -> None:
        gate = getattr(self, "_gate", None)
        if gate is not None:
            gate.stop()
        super().close()


@dataclass(eq=False)
class _Waiting:
    """A connection whose handshake is still coming."""

    caddr: Any
    deadline: float  # of the whole handshake (TLS and Pyro5), from its acceptance
    inbox: bytearray = field(default_factory=bytearray)


class _Gate:
    """Connections whose handshake is still coming, read by one thread (see the module)."""

    def __init__(self, server: GatedServer) -> None:
        self.server = server
        self._selector = selectors.DefaultSelector()
        self._waiting: dict[socket.socket, _Waiting] = {}  # oldest first
        self._lock = threading.Lock()
        self._wake_r, self._wake_w = socket.socketpair()
        self._selector.register(self._wake_r, selectors.EVENT_READ)
        self._handshakers = ThreadPoolExecutor(TLS_HANDSHAKERS, thread_name_prefix="tls")
        self._decrypted: list[socket.socket] = []  # TLS ones with bytes the selector misses
        self._stopped = False
        self._thread = threading.Thread(target=self._loop, name="gate", daemon=True)
        self._thread.start()

    def admit(self, csock: socket.socket, caddr: Any) -> None:
        csock.setblocking(False)
        self._wait(csock, _Waiting(caddr, time.monotonic() + HANDSHAKE_SECONDS))

    def _wait(self, csock: socket.socket, waiting: _Waiting) -> None:
        dropped = None
        with self._lock:
            if self._stopped:
                csock.close()
                return
            if len(self._waiting) >= MAX_WAITING:  # the oldest goes: it has had its chance
                dropped = next(iter(self._waiting))
                del self._waiting[dropped]
                self._selector.unregister(dropped)
            self._waiting[csock] = waiting
            self._selector.register(csock, selectors.EVENT_READ)
        if dropped is not None:
            _close(dropped)
            LOG.debug("%d connections waiting to shake hands: closed the oldest", MAX_WAITING)
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")

    def _loop(self) -> None:
        while not self._stopped:
            for key, _ in self._selector.select(timeout=0.5):
                if key.fileobj is self._wake_r:
                    with contextlib.suppress(OSError):
                        self._wake_r.recv(4096)
                    continue
                self._readable(key.fileobj)  # type: ignore[arg-type]
            with self._lock:
                decrypted, self._decrypted = self._decrypted, []
            for csock in decrypted:
                self._readable(csock)
            self._close_late(time.monotonic())

    def _take(self, csock: socket.socket) -> _Waiting | None:
        with self._lock:
            waiting = self._waiting.pop(csock, None)
            if waiting is not None:
                self._selector.unregister(csock)
            return waiting

    def _readable(self, csock: socket.socket) -> None:
        waiting = self._waiting.get(csock)
        if waiting is None:
            return
        if isinstance(csock, ssl.SSLSocket) and not _handshake_done(csock):
            self._take(csock)
            self._handshakers.submit(self._shake_hands, csock, waiting)
            return
        problem = _read_handshake(csock, waiting.inbox)
        if problem is None and not _complete(waiting.inbox):
            return  # more to come
        self._take(csock)
        if problem is not None:
            LOG.info("closed a connection from %s: %s", _address(waiting.caddr), problem)
            _refuse(csock, waiting.inbox, problem)
            return
        self.server.hand_on(csock, waiting.caddr, bytes(waiting.inbox))

    def _shake_hands(self, csock: ssl.SSLSocket, waiting: _Waiting) -> None:
        try:
            csock.settimeout(max(0.1, waiting.deadline - time.monotonic()))
            csock.do_handshake()
            csock.setblocking(False)
        except (OSError, ValueError) as exc:
            LOG.debug("TLS handshake with %s failed: %s", waiting.caddr, exc)
            _close(csock)
            return
        if csock.pending():  # decrypted already: the selector would not say so
            with self._lock:
                self._decrypted.append(csock)
        self._wait(csock, waiting)  # now its Pyro5 handshake, under the same deadline

    def _close_late(self, now: float) -> None:
        with self._lock:
            late = [s for s, waiting in self._waiting.items() if waiting.deadline < now]
            for csock in late:
                del self._waiting[csock]
                self._selector.unregister(csock)
        for csock in late:
            _close(csock)
        if late:
            LOG.info("closed %d connection(s) without a handshake in %g s", len(late),
                     HANDSHAKE_SECONDS)  # fmt: skip

    def stop(self) -> None:
        self._stopped = True
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")
        self._thread.join(2)
        self._handshakers.shutdown(wait=False, cancel_futures=True)
        with self._lock:
            for csock in self._waiting:
                _close(csock)
            self._waiting.clear()


def _read_handshake(csock: socket.socket, inbox: bytearray) -> str | None:
    """Read what has come of the first message, never past its end; what is wrong with it,
    or None while it is fine so far."""
    try:
        while not _complete(inbox):
            chunk = csock.recv(_wanted(inbox))
            if not chunk:
                return "closed before its handshake"
            inbox += chunk
            if (problem := _check_header(inbox)) is not None:
                return problem
    except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
        return None
    except OSError as exc:
        return f"reading its handshake: {exc}"
    return None


def _wanted(inbox: bytearray) -> int:
    if len(inbox) < _HEADER.size:
        return _HEADER.size - len(inbox)
    return _size(inbox) - len(inbox)


def _size(inbox: bytearray) -> int:
    fields = _HEADER.unpack_from(inbox)
    return _HEADER.size + fields[6] + fields[7]  # header, data, annotations


def _complete(inbox: bytearray) -> bool:
    return len(inbox) >= _HEADER.size and len(inbox) >= _size(inbox)


def _check_header(inbox: bytearray) -> str | None:
    """What makes this first message one the gate will not pass on, or None."""
    if inbox[:1] == b"\x16":  # a TLS record: a ClientHello
        return "a TLS handshake, but this daemon speaks plain Pyro5 ([security] tls differs)"
    if inbox[:4] != b"PYRO"[: len(inbox[:4])]:
        return "not Pyro5"
    if len(inbox) < _HEADER.size:
        return None
    tag, version, kind, _, flags, _, data, notes, _, _, magic = _HEADER.unpack_from(inbox)
    if version != protocol.PROTOCOL_VERSION or magic != protocol._magic_number:
        return f"Pyro5 protocol {version}, not {protocol.PROTOCOL_VERSION}"
    if kind != protocol.MSG_CONNECT:
        return f"a message of type {kind} before its handshake"
    if flags & protocol.FLAGS_COMPRESSED:
        return "a compressed handshake (nothing is inflated before authentication)"
    if data + notes > HANDSHAKE_BYTES:
        return f"a handshake of {data + notes:,} bytes (at most {HANDSHAKE_BYTES:,})"
    return None


def _refuse(csock: socket.socket, inbox: bytearray, problem: str) -> None:
    """Say why in a Pyro5 CONNECTFAIL (best effort: a Pyro5 client shows it; a TLS client
    reads it as "wrong version number", which says what is wrong), then close."""
    serializer = serializers.serializers_by_id.get(
        inbox[7] if len(inbox) >= _HEADER.size else -1,
        serializers.serializers["serpent"],
    )
    answer = protocol.SendingMessage(
        protocol.MSG_CONNECTFAIL, 0, 0, serializer.serializer_id, serializer.dumps(problem)
    )
    with contextlib.suppress(OSError, ValueError):
        csock.send(answer.data)
    _close(csock)


def _close(csock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        csock.close()


def _address(caddr: Any) -> str:
    return str(caddr[0]) if isinstance(caddr, tuple) and caddr else str(caddr)


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
