"""The manager's non-blocking Pyro5 framing, against bytes written by hand and by Pyro5."""

from __future__ import annotations

import json
import socket
from types import SimpleNamespace

import pytest
from Pyro5 import errors, protocol, serializers

from clusterfarm.wire.channel import HEADER, Channel, ChannelClosed

JSON = serializers.JsonSerializer.serializer_id


@pytest.fixture
def pair():
    ours, theirs = socket.socketpair()
    proxy = SimpleNamespace(
        _pyroConnection=SimpleNamespace(sock=ours, objectId="clusterfarm.worker.w"),
        _pyroSeq=7,
        _pyroRelease=ours.close,
    )
    yield Channel(proxy), theirs  # type: ignore[arg-type]
    theirs.close()
    ours.close()


def reply(seq: int, value: object, flags: int = 0, serializer: int = JSON) -> bytes:
    """A reply as a Pyro5 daemon builds it."""
    data = serializers.serializers_by_id[serializer].dumps(value)
    return protocol.SendingMessage(protocol.MSG_RESULT, flags, seq, serializer, data).data


def test_a_call_is_a_pyro5_message_a_daemon_can_read(pair):
    channel, theirs = pair
    channel.call("do_batch", "run-1", "noop", "2000 0 1")
    header = theirs.recv(HEADER)
    message = protocol.ReceivingMessage(header)
    message.add_payload(theirs.recv(message.data_size + message.annotations_size))
    assert (message.type, message.seq, message.serializer_id) == (protocol.MSG_INVOKE, 8, JSON)
    obj, method, args, kwargs = serializers.serializers_by_id[JSON].loadsCall(message.data)
    assert (obj, method, args, kwargs) == (
        "clusterfarm.worker.w",
        "do_batch",
        ["run-1", "noop", "2000 0 1"],
        {},
    )


def test_a_reply_that_comes_in_pieces_is_read_once_whole(pair):
    channel, theirs = pair
    channel.call("ping")
    message = reply(8, ["++", "0.1 - - - - - - -", {"1": ["x"]}])
    theirs.sendall(message[:10])
    assert channel.receive() == []
    theirs.sendall(message[10:-3])
    assert channel.receive() == []
    theirs.sendall(message[-3:])
    (got,) = channel.receive()
    assert not got.raised
    assert got.value == ["++", "0.1 - - - - - - -", {"1": ["x"]}]


def test_an_exception_crossing_the_wire_comes_back_as_one(pair):
    channel, theirs = pair
    channel.call("do_batch")
    theirs.sendall(reply(8, ValueError("nope"), flags=protocol.FLAGS_EXCEPTION))
    (got,) = channel.receive()
    assert got.raised and isinstance(got.value, ValueError)


@pytest.mark.parametrize(
    "garbage",
    [
        b"HTTP/1.1 200 OK\r\n" + b"x" * HEADER,  # not Pyro5 at all
        reply(99, [1, 2, 3]),  # the reply to another call
        reply(8, [1], serializer=serializers.SerpentSerializer.serializer_id),  # not ours
        reply(8, [1])[:HEADER] + b"{not json" + b" " * 100,  # unreadable payload
    ],
)
def test_garbage_is_a_protocol_error_never_a_hang(pair, garbage):
    channel, theirs = pair
    channel.call("do_batch")
    theirs.sendall(garbage)
    with pytest.raises(errors.ProtocolError):
        channel.receive()


def test_a_closed_connection_is_channel_closed(pair):
    channel, theirs = pair
    channel.call("do_batch")
    theirs.close()
    with pytest.raises(ChannelClosed, match="closed|reset"):
        channel.receive()


def test_a_big_reply_is_read_across_many_reads(pair):
    channel, theirs = pair
    channel.call("check_results")
    value = ["x" * 1000] * 500  # half a megabyte: more than one read of the socket
    message = reply(8, value)
    theirs.setblocking(False)
    sent = 0
    replies = []
    while sent < len(message) or not replies:
        try:
            sent += theirs.send(message[sent:])
        except BlockingIOError:
            pass
        replies += channel.receive()
    assert replies[0].value == json.loads(json.dumps(value))
