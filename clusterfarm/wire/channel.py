"""A Pyro5 connection driven by a selector: a call goes out, its reply comes in, no thread waits.

A blocking :class:`Pyro5.api.Proxy` connects, authenticates and makes the first call (the
join); then a :class:`Channel` takes over its socket and speaks the same wire format (Pyro5
protocol 502) without blocking: :meth:`Channel.call` queues one call, the owner's
selector says when the socket can be written or read, and :meth:`Channel.receive` hands back
each complete reply. The peer cannot tell it from a proxy, so workers stay plain Pyro5
objects. TLS sockets work the same way: they are read until OpenSSL wants more bytes.

A Channel's calls go in JSON, one of Pyro5's own serializers (a daemon answers each message in
the serializer it came in): serpent parses its replies with ``ast.literal_eval``, which
compiles every message and was a third of the dispatch thread's time. JSON is plain data, as
serpent is; pickle never crosses the wire.

One call is in flight at a time, as with a proxy: a Pyro5 daemon answers a connection's
calls in order. A Channel belongs to one thread (the dispatcher's).
"""

from __future__ import annotations

import contextlib
import json
import socket
import ssl
import struct
from typing import Any, NamedTuple

from Pyro5 import config, errors, protocol, serializers
from Pyro5.api import Proxy

_HEADER = struct.Struct(protocol._header_format)  # Pyro5's message header
HEADER = _HEADER.size
_MAGIC = protocol._magic_number
_NO_CORRELATION = b"\0" * 16
_JSON = serializers.JsonSerializer.serializer_id
_encode = json.JSONEncoder(ensure_ascii=False).encode  # made once: json.dumps makes one a call
_decode = json.JSONDecoder().decode  # Pyro5 sends JSON in UTF-8
_READ = 65536
_WOULD_BLOCK = (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError)


class ChannelClosed(Exception):
    """The connection ended or broke; the message says how."""


class Reply(NamedTuple):
    """One reply: the call's value, or the exception the remote method raised."""

    value: Any
    raised: bool


class Channel:
    """Calls and replies over one connected, authenticated Pyro5 socket, without blocking."""

    def __init__(self, proxy: Proxy) -> None:
        connection = proxy._pyroConnection
        if connection is None:
            raise ChannelClosed("the proxy is not connected")
        self.proxy = proxy
        self.sock: socket.socket = connection.sock
        self._object_id: str = connection.objectId
        self._seq: int = proxy._pyroSeq
        self._inbox = bytearray()
        self._outbox = memoryview(b"")
        self._tls = isinstance(self.sock, ssl.SSLSocket)
        self.sock.setblocking(False)

    def fileno(self) -> int:
        return self.sock.fileno()

    @property
    def wants_write(self) -> bool:
        """True while part of the last call still waits to be sent."""
        return bool(self._outbox)

    def call(self, method: str, *args: Any) -> None:
        """Send ``method(*args)``; the reply comes from a later :meth:`receive`."""
        self._seq = (self._seq + 1) & 0xFFFF
        call = {"object": self._object_id, "method": method, "params": args, "kwargs": {}}
        payload = _encode(call).encode()
        header = _HEADER.pack(
            b"PYRO", protocol.PROTOCOL_VERSION, protocol.MSG_INVOKE, _JSON, 0, self._seq,
            len(payload), 0, _NO_CORRELATION, 0, _MAGIC,
        )  # fmt: skip
        self._outbox = memoryview(header + payload)
        self.flush()

    def flush(self) -> None:
        """Send what the socket takes now; raises ChannelClosed when it cannot."""
        try:
            while self._outbox:
                sent = self.sock.send(self._outbox)
                self._outbox = self._outbox[sent:]
        except _WOULD_BLOCK:
            return
        except OSError as exc:
            raise ChannelClosed(f"sending: {exc}") from exc

    def receive(self) -> list[Reply]:
        """The replies complete so far (read what the socket has, without waiting).

        Raises ChannelClosed when the peer closed or the socket broke, and
        ``Pyro5.errors.ProtocolError`` when the bytes are not a reply to our call.
        """
        self._read()
        replies = []
        inbox = self._inbox
        start = 0  # of the next message in the inbox
        while len(inbox) - start >= HEADER:
            tag, version, kind, serializer, flags, seq, size, notes, _, _, magic = (
                _HEADER.unpack_from(inbox, start)
            )
            if tag != b"PYRO" or version != protocol.PROTOCOL_VERSION or magic != _MAGIC:
                raise errors.ProtocolError("not a Pyro5 message of protocol 502")
            if size + notes > config.MAX_MESSAGE_SIZE:
                raise errors.ProtocolError(f"a message of {size + notes} bytes")
            if flags & protocol.FLAGS_COMPRESSED:  # nothing is ever inflated (no bombs)
                raise errors.ProtocolError("a compressed reply (clusterfarm never compresses)")
            end = start + HEADER + notes + size
            if len(inbox) < end:
                break
            data = bytes(inbox[end - size : end])  # after the annotations: none we use
            start = end
            replies.append(self._reply(kind, serializer, flags, seq, data))
        del inbox[:start]
        return replies

    def _read(self) -> None:
        try:
            while True:
                chunk = self.sock.recv(_READ)
                if not chunk:
                    raise ChannelClosed("the worker closed the connection")
                self._inbox += chunk
                if len(chunk) < _READ and not (self._tls and self.sock.pending()):  # type: ignore[attr-defined]
                    return
        except _WOULD_BLOCK:
            return
        except OSError as exc:
            raise ChannelClosed(f"receiving: {exc}") from exc

    def _reply(self, kind: int, serializer: int, flags: int, seq: int, data: bytes) -> Reply:
        if kind != protocol.MSG_RESULT:
            raise errors.ProtocolError(f"a message of type {kind} instead of a reply")
        if seq != self._seq:
            raise errors.ProtocolError(f"reply {seq} to call {self._seq}")
        if serializer != _JSON:
            raise errors.ProtocolError(f"reply in serializer {serializer}")
        raised = bool(flags & protocol.FLAGS_EXCEPTION)
        try:
            if raised:  # Pyro5 rebuilds the exception's class from its dict
                value = serializers.serializers_by_id[_JSON].loads(data)
            else:  # plain data: no need for Pyro5's walk over every value in Python
                value = _decode(data.decode())
        except Exception as exc:  # a peer's garbage raises anything
            raise errors.ProtocolError(f"unreadable reply ({type(exc).__name__})") from exc
        return Reply(value, raised)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.proxy._pyroRelease()
