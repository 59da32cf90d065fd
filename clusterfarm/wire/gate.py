"""Who may talk to our daemons, and what a stranger may cost them before it is known.

Every clusterfarm daemon (workers and the nameserver) has a gate in front of Pyro5's thread
pool, and the gate authenticates each new connection itself, in one selector thread,
without blocking and without a thread per connection:

1. It reads the connection's first message, which must be a Pyro5 handshake
   (``MSG_CONNECT``), not compressed (nothing is ever inflated for a stranger), of at most
   ``HANDSHAKE_BYTES``, in JSON or serpent, carrying the client's fresh nonce.
2. It answers with its own nonce and its proof (see :mod:`.access`): a client that finds no
   valid proof sends nothing more, so an impostor never gets a client's proof to reuse.
3. It reads the client's proof, one small call of at most ``PROOF_BYTES``, and answers it.

All of it within ``HANDSHAKE_SECONDS`` of the connection in all (a total deadline, not one
per read: a byte every few seconds does not keep a connection open); a TLS handshake runs
first, in a small pool of its own, under the same deadline. At most ``MAX_WAITING``
connections wait; one more closes the oldest (a client that speaks at once is never the
oldest). Only an authenticated connection is handed to a Pyro5 pool thread. With
``[security] auth = false`` step 3 is skipped and nobody proves anything.

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
from Pyro5 import config, protocol, serializers

from clusterfarm.wire.access import PROVE, Access, nonce

LOG = logging.getLogger("clusterfarm.gate")
HANDSHAKE_SECONDS = 5.0  # a new connection must have shaken hands (TLS, Pyro5) by then
HANDSHAKE_BYTES = 64 * 1024  # the largest first message of a connection not yet authenticated
PROOF_BYTES = 4096  # the largest message with a client's proof
MAX_WAITING = 1024  # connections whose handshake is still coming; one more drops the oldest
TLS_HANDSHAKERS = 8  # threads doing TLS handshakes at once
_HEADER = struct.Struct(protocol._header_format)  # Pyro5's message header
_SERIALIZERS = frozenset({1, 3})  # serpent and JSON: plain data, nothing runs as it loads
DAEMON_NAME = "Pyro.Daemon"  # the daemon's own object, which knows every object's metadata


class _Gated:
    """What both gated daemons add to Pyro5's: the access their gate demands, and the list
    of their (authenticated) connections."""

    _connections: set[Any]
    _access: Access

    def clientDisconnect(self, conn: Any) -> None:  # noqa: N802 - Pyro5's name
        self._connections.discard(conn)

    def drop_connections(self) -> None:
        """Close every client connection (after ``shutdown``)."""
        for conn in list(self._connections):
            with contextlib.suppress(OSError, AttributeError):
                conn.sock.shutdown(socket.SHUT_RDWR)
        self._connections.clear()


class GatedDaemon(_Gated, Pyro5.server.Daemon):
    """A Pyro5 daemon behind ``access``'s secret and the gate (a worker's)."""

    def __init__(self, *args: Any, access: Access, **kwargs: Any) -> None:
        self._connections, self._access = set(), access
        install()
        super().__init__(*args, **kwargs)


class GatedNameServerDaemon(_Gated, Pyro5.nameserver.NameServerDaemon):
    """Pyro5's nameserver daemon behind ``access``'s secret and the gate."""

    def __init__(self, *args: Any, access: Access, **kwargs: Any) -> None:
        self._connections, self._access = set(), access
        install()
        super().__init__(*args, **kwargs)


# -- the gate ---------------------------------------------------------------------------------


class _Job(svr_threads.ClientConnectionJob):
    """A connection the gate has authenticated: Pyro5 serves its calls."""

    def handleConnection(self) -> bool:  # noqa: N802 - Pyro5's name
        self.csock.timeout = config.COMMTIMEOUT or None
        connections = getattr(self.daemon, "_connections", None)
        if connections is not None:  # a gated daemon's (see _access_of)
            connections.add(self.csock)
        return True


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
        """A connection the gate has authenticated: to Pyro5's pool."""
        csock.setblocking(True)
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


@dataclass(eq=False)
class _Waiting:
    """A connection whose handshake is still coming."""

    caddr: Any
    deadline: float  # of the whole handshake (TLS and Pyro5), from its acceptance
    inbox: bytearray = field(default_factory=bytearray)
    nonces: tuple[str, str] | None = None  # the client's and ours, once it has ours


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
                self._guarded(key.fileobj)  # type: ignore[arg-type]
            with self._lock:
                decrypted, self._decrypted = self._decrypted, []
            for csock in decrypted:
                self._guarded(csock)
            self._close_late(time.monotonic())

    def _guarded(self, csock: socket.socket) -> None:
        """Serve one connection's turn; a bug here drops that connection, never the gate."""
        try:
            self._readable(csock)
        except Exception:
            LOG.exception("the gate failed on a connection; closed it")
            if self._take(csock) is not None:
                _close(csock)

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
        proving = waiting.nonces is not None
        problem = _read_message(csock, waiting.inbox, proving)
        if problem is None and not _complete(waiting.inbox):
            return  # more to come
        if problem is None and proving:
            problem = self._proved(csock, waiting)
        elif problem is None:
            problem = self._answer(csock, waiting)
            if problem is None and waiting.nonces is not None:
                waiting.inbox.clear()  # answered with our proof: now the client's
                return
        self._take(csock)
        if problem is not None:
            LOG.info("refused a connection from %s: %s", _address(waiting.caddr), problem)
            _refuse(csock, waiting.inbox, problem)
            return
        self.server.hand_on(csock, waiting.caddr)

    def _answer(self, csock: socket.socket, waiting: _Waiting) -> str | None:
        """Answer a client's handshake with our nonce and proof (or refuse it): a problem,
        or None when sent."""
        access = _access_of(self.server.daemon)
        seq, serializer, body = _body(waiting.inbox)
        if not isinstance(body, dict):
            return "a handshake that is not a table"
        try:
            meta = self.server.daemon.objectsById[DAEMON_NAME].get_metadata(body.get("object"))
        except Exception:  # Pyro5 raises its DaemonError, or the id is no string
            return f"no object {str(body.get('object'))[:60]!r} here"
        hello: Any = "hello"
        if access.secret is not None:
            handshake = body.get("handshake")
            theirs = handshake.get("nonce") if isinstance(handshake, dict) else None
            if not isinstance(theirs, str) or not 16 <= len(theirs) <= 128:
                return ("authentication required: connect with the cluster's secret "
                        "(clusterfarm.wire.access.Access(secret).proxy(uri))")  # fmt: skip
            ours = nonce()
            hello = {"nonce": ours, "proof": access.proof("server", theirs, ours)}
            waiting.nonces = (theirs, ours)
        answer = {"handshake": hello, "meta": meta}
        return _send(csock, protocol.MSG_CONNECTOK, seq, serializer, serializer.dumps(answer))

    def _proved(self, csock: socket.socket, waiting: _Waiting) -> str | None:
        """Check the client's proof and answer it: a problem, or None when it is good."""
        access = _access_of(self.server.daemon)
        assert waiting.nonces is not None
        theirs, ours = waiting.nonces
        seq, serializer, _ = _body(waiting.inbox, call=False)
        try:
            _, method, vargs, _ = serializer.loadsCall(bytes(_payload(waiting.inbox)))
        except Exception:  # a peer's garbage raises anything
            return "a proof that cannot be read"
        if method != PROVE or not vargs or not access.proves("client", ours, theirs, vargs[0]):
            return "a wrong proof of the secret"
        return _send(csock, protocol.MSG_RESULT, seq, serializer, serializer.dumps(True))

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


def _access_of(daemon: Any) -> Access:
    """What ``daemon`` demands: a plain Pyro5 daemon in a process that has gated ones (a
    test's, a tool's) is open, as Pyro5 made it."""
    return getattr(daemon, "_access", None) or Access()


def _read_message(csock: socket.socket, inbox: bytearray, proving: bool) -> str | None:
    """Read what has come of the message, never past its end; what is wrong with it, or
    None while it is fine so far."""
    try:
        while not _complete(inbox):
            chunk = csock.recv(_wanted(inbox))
            if not chunk:
                return "closed before its handshake"
            inbox += chunk
            if (problem := _check_header(inbox, proving)) is not None:
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


def _check_header(inbox: bytearray, proving: bool) -> str | None:
    """What makes this message one the gate will not take, or None."""
    if inbox[:1] == b"\x16":  # a TLS record: a ClientHello
        return "a TLS handshake, but this daemon speaks plain Pyro5 ([security] tls differs)"
    if inbox[:4] != b"PYRO"[: len(inbox[:4])]:
        return "not Pyro5"
    if len(inbox) < _HEADER.size:
        return None
    tag, version, kind, serializer, flags, _, data, notes, _, _, magic = _HEADER.unpack_from(inbox)
    if version != protocol.PROTOCOL_VERSION or magic != protocol._magic_number:
        return f"Pyro5 protocol {version}, not {protocol.PROTOCOL_VERSION}"
    expected = protocol.MSG_INVOKE if proving else protocol.MSG_CONNECT
    if kind != expected:
        return f"a message of type {kind} before its {'proof' if proving else 'handshake'}"
    if flags & protocol.FLAGS_COMPRESSED:
        return "a compressed handshake (nothing is inflated before authentication)"
    if serializer not in _SERIALIZERS:
        return f"serializer {serializer} (JSON or serpent before authentication)"
    most = PROOF_BYTES if proving else HANDSHAKE_BYTES
    if data + notes > most:
        return (
            f"a {'proof' if proving else 'handshake'} of {data + notes:,} bytes (at most {most:,})"
        )
    return None


def _payload(inbox: bytearray) -> memoryview:
    notes = _HEADER.unpack_from(inbox)[7]
    return memoryview(inbox)[_HEADER.size + notes :]


def _body(inbox: bytearray, call: bool = True) -> tuple[int, Any, Any]:
    """The message's sequence number, serializer, and (``call``) its data, loaded."""
    fields = _HEADER.unpack_from(inbox)
    serializer = serializers.serializers_by_id[fields[3]]
    body = None
    if call:
        try:
            body = serializer.loads(bytes(_payload(inbox)))
        except Exception:  # a peer's garbage raises anything
            body = None
    return fields[5], serializer, body


def _send(csock: socket.socket, kind: int, seq: int, serializer: Any, data: bytes) -> str | None:
    """Send one small message without blocking: a problem, or None when it all went."""
    message = protocol.SendingMessage(kind, 0, seq, serializer.serializer_id, data).data
    try:
        sent = csock.send(message)
    except (OSError, ValueError) as exc:
        return f"answering its handshake: {exc}"
    return None if sent == len(message) else "too slow to take a short answer"


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


def install() -> None:
    """Make every Pyro5 daemon this process starts use the gate (see the module)."""
    svr_threads.SocketServer_Threadpool = GatedServer  # Daemon looks it up at start
