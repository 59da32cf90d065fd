"""What a stranger may cost a daemon before it has shown the secret: nothing inflated, a
bounded wait, no thread. Attacks as an attacker would make them, on real nameserver and
worker processes."""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from Pyro5 import protocol

from clusterfarm.wire.gate import HANDSHAKE_SECONDS, MAX_WAITING, TLS_HANDSHAKERS
from clusterfarm.wire.nameserver import locate
from tests.harness.cli import cli_env
from tests.harness.processes import stop_process, wait_for_text
from tests.harness.secret import ACCESS

MIB = 1024 * 1024
HEADER = struct.Struct(protocol._header_format)


def compressed_bomb(size: int = MIB) -> bytes:
    """``size`` bytes of zlib that inflate to about a thousand times as much (zeros)."""
    squeeze = zlib.compressobj(9)
    out = bytearray()
    zeros = bytes(64 * MIB)
    while len(out) < size:
        out += squeeze.compress(zeros)
    return bytes(out[:size])


def message(kind: int, payload: bytes, flags: int = 0, serializer: int = 2, seq: int = 1) -> bytes:
    """A Pyro5 message of ``kind`` with ``payload`` as its data, built by hand."""
    header = HEADER.pack(b"PYRO", protocol.PROTOCOL_VERSION, kind, serializer, flags, seq,
                         len(payload), 0, b"\0" * 16, 0, protocol._magic_number)  # fmt: skip
    return header + payload


def peak_mb(pid: int) -> float:
    """The most memory ``pid`` has held at once so far (its resident high-water mark); 0
    once it has exited."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def threads(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    raise AssertionError("no Threads")


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[dict[str, object]]:
    """A nameserver and a worker daemon, each its own process, with the session's secret."""
    processes: list[subprocess.Popen[bytes]] = []

    def start(name: str, *args: str) -> subprocess.Popen[bytes]:
        log = open(tmp_path / f"{name}.log", "wb")
        process = subprocess.Popen([sys.executable, "-m", "clusterfarm", *args], cwd=tmp_path,
                                   env=cli_env(), stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
        processes.append(process)
        return process

    try:
        server = start("ns", "nameserver", "--host", "127.0.0.1", "--port", "0")
        said = wait_for_text(tmp_path / "ns.log", "listening at", server)
        port = int(said.split("listening at")[1].split(":")[-1].split()[0])
        worker = start("worker", "worker", "--host", "127.0.0.1", "--name", "gate.0",
                       "--nameserver", f"127.0.0.1:{port}",
                       "--orphan-after", "30")  # checks its nameserver every 6 s  # fmt: skip
        wait_for_text(tmp_path / "worker.log", "listening at", worker)
        uri = str(locate("127.0.0.1", port, ACCESS).lookup("clusterfarm.worker.gate.0"))
        yield {"ns": (server.pid, port), "worker": (worker.pid, int(uri.rsplit(":", 1)[1])),
               "uri": uri, "port": port}  # fmt: skip
    finally:
        for process in processes:
            stop_process(process)


def answers(cluster: dict[str, object]) -> float:
    """How long a client with the secret takes to be served by the worker and the nameserver."""
    began = time.monotonic()
    with ACCESS.proxy(cluster["uri"]) as worker:
        worker._pyroTimeout = 2
        assert worker.ping()["name"] == "clusterfarm.worker.gate.0"
    assert locate("127.0.0.1", cluster["port"], ACCESS, timeout=2).list(prefix="clusterfarm.")
    return time.monotonic() - began


@pytest.mark.slow
@pytest.mark.parametrize("target", ["ns", "worker"])
def test_a_compressed_megabyte_without_the_secret_is_never_inflated(cluster, target):
    pid, port = cluster[target]
    before = peak_mb(pid)
    bomb = compressed_bomb()
    for flags, payload in ((protocol.FLAGS_COMPRESSED, bomb),  # too big and compressed
                           (protocol.FLAGS_COMPRESSED, bomb[: 60 * 1024])):  # fmt: skip
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(message(protocol.MSG_CONNECT, payload, flags))
            sock.settimeout(5)
            refusal = sock.recv(4096)  # a CONNECTFAIL saying why, then the end
            assert refusal[:4] == b"PYRO" and refusal[6] == protocol.MSG_CONNECTFAIL
    time.sleep(0.5)
    assert peak_mb(pid) - before < 50
    assert answers(cluster) < 2


def slow_senders(port: int, count: int, stop: threading.Event) -> list[socket.socket]:
    """``count`` connections that send a Pyro5 header one byte every 3 s."""
    header = message(protocol.MSG_CONNECT, b"x" * 100)
    sockets = [socket.create_connection(("127.0.0.1", port)) for _ in range(count)]

    def trickle() -> None:
        sent = 0
        while not stop.wait(3.0) and sent < len(header):
            for sock in sockets:
                try:
                    sock.send(header[sent : sent + 1])
                except OSError:
                    pass  # closed by the daemon: what it should do
            sent += 1

    threading.Thread(target=trickle, daemon=True).start()
    return sockets


@pytest.mark.slow
def test_two_thousand_slow_senders_take_no_thread_and_lock_nobody_out(cluster):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 8192)), hard))
    stop = threading.Event()
    pids = [cluster["ns"][0], cluster["worker"][0]]
    before = {pid: threads(pid) for pid in pids}
    sockets = []
    try:
        for _, port in (cluster["ns"], cluster["worker"]):
            sockets += slow_senders(port, 2000, stop)
        time.sleep(1.0)
        for round_ in range(3):  # while they trickle (and some are past the deadline)
            assert answers(cluster) < 2, f"round {round_}"
            for pid in pids:  # the gate's one thread and its TLS handshakers, at most
                assert threads(pid) <= before[pid] + TLS_HANDSHAKERS + 4, (pid, threads(pid))
            time.sleep(HANDSHAKE_SECONDS / 2)
    finally:
        stop.set()
        for sock in sockets:
            sock.close()
    assert MAX_WAITING < 2000  # so the oldest were closed to make room, not the newest


def accept_each(server: socket.socket, serve: Callable[[socket.socket], None]) -> int:
    """Serve every connection to ``server`` on a thread of its own, until it is closed;
    return ``server``'s port."""

    def accept() -> None:
        while True:
            try:
                sock, _ = server.accept()
            except OSError:
                return
            threading.Thread(target=serve, args=(sock,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    return int(server.getsockname()[1])


class BombingWorker:
    """A fake worker speaking Pyro5 by hand, with the cluster's secret (a worker gone bad):
    it joins any run, then answers ``do_batch`` with a compressed megabyte that would
    inflate to a gigabyte."""

    def __init__(self) -> None:
        from clusterfarm import __version__
        from clusterfarm.wire.protocol import JoinAnswer

        self.answer = JoinAnswer("clusterfarm.worker.bomb.0", "bomb", __version__, {"noop": "1"})
        self.bomb = compressed_bomb()
        self.batches = 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = accept_each(self.listener, self._serve)

    def _serve(self, sock: socket.socket) -> None:
        from Pyro5 import serializers, socketutil

        conn = socketutil.SocketConnection(sock)
        try:
            while True:
                msg = protocol.recv_stub(conn)
                serializer = serializers.serializers_by_id[msg.serializer_id]
                if msg.type == protocol.MSG_CONNECT:  # it knows the secret: it proves it
                    theirs, ours = serializer.loads(msg.data)["handshake"]["nonce"], "n" * 32
                    proof = ACCESS.proof("server", theirs, ours)
                    methods = ["join", "do_batch", "ping", "release", "cancel", "info"]
                    meta = {"methods": methods, "oneway": [], "attrs": []}
                    hello = {"handshake": {"nonce": ours, "proof": proof}, "meta": meta}
                    reply = message(protocol.MSG_CONNECTOK, serializer.dumps(hello), 0,
                                    msg.serializer_id)  # fmt: skip
                elif msg.type == protocol.MSG_PING:
                    reply = message(protocol.MSG_PING, b"pong", 0, msg.serializer_id)
                else:
                    _, method, _, _ = serializer.loadsCall(msg.data)
                    if method == "do_batch":
                        self.batches += 1
                        reply = message(protocol.MSG_RESULT, self.bomb, protocol.FLAGS_COMPRESSED,
                                        msg.serializer_id)  # fmt: skip
                    else:
                        value = {"join": self.answer.to_wire(), "cf_prove": True}.get(method, {})
                        reply = message(protocol.MSG_RESULT, serializer.dumps(value), 0,
                                        msg.serializer_id)  # fmt: skip
                sock.sendall(reply[:10] + struct.pack("!H", msg.seq) + reply[12:])  # its seq
        except Exception:  # the manager hung up: this one is done
            sock.close()

    def close(self) -> None:
        self.listener.close()


@pytest.mark.slow
def test_a_worker_answering_a_compressed_megabyte_is_set_aside_and_never_inflated(
    tmp_path, nameserver, start_worker
):
    from tests.harness.cli import PLUGIN_SETTINGS, finish, start_run, write_settings

    bomber = BombingWorker()
    try:
        ns = locate(nameserver.host, nameserver.port, ACCESS)
        ns.register("clusterfarm.worker.bomb.0",
                    f"PYRO:clusterfarm.worker.bomb.0@127.0.0.1:{bomber.port}",
                    metadata={"host=bomb", "pid=1"})  # fmt: skip
        start_worker("real.0")
        cluster = f'[nameserver]\nport = {nameserver.port}\n[[hosts]]\nname = "test"\n'
        write_settings(tmp_path / "clusterfarm.toml", PLUGIN_SETTINGS + cluster)
        process = start_run(tmp_path, "--task", "noop", "--years", "2000", "--members", "0-39")
        log = tmp_path / "clusterfarm-run" / "logs" / "manager.log"
        deadline, grown = time.monotonic() + 60, 0.0
        while not (log.exists() and "set aside" in log.read_text()):
            assert process.poll() is None and time.monotonic() < deadline, log.read_text()
            grown = max(grown, peak_mb(process.pid))
            time.sleep(0.05)
        grown = max(grown, peak_mb(process.pid))  # (0 if it has ended: the last one stands)
        code, report, err = finish(process)
    finally:
        bomber.close()
    assert bomber.batches >= 1
    assert "compressed" in log.read_text()
    assert grown < 150  # a manager of a few tens of MB; inflated, it would be over a gigabyte
    assert code == 0 and report["complete"] == 40, err


class Listener:
    """A plain socket on a port, as anybody on a shared login node could bind one: it keeps
    every byte it is sent and, to a handshake, answers with a nonce and a made-up proof."""

    def __init__(self, port: int = 0) -> None:
        self.received = bytearray()
        self.connections = 0
        self.server = socket.create_server(("127.0.0.1", port))
        self.port = accept_each(self.server, self._serve)

    def _serve(self, sock: socket.socket) -> None:
        from Pyro5 import serializers

        self.connections += 1
        with sock:
            sock.settimeout(3)
            try:
                data = sock.recv(65536)
                self.received += data
                serializer = serializers.serializers_by_id[data[7]]
                hello = {"handshake": {"nonce": "n" * 64, "proof": "f" * 64},
                         "meta": {"methods": ["list", "register", "ping"], "oneway": [],
                                  "attrs": []}}  # fmt: skip
                sock.sendall(message(protocol.MSG_CONNECTOK, serializer.dumps(hello), 0,
                                     data[7], seq=HEADER.unpack_from(data)[5]))  # fmt: skip
                while chunk := sock.recv(65536):  # whatever else it sends
                    self.received += chunk
            except (OSError, IndexError, KeyError, struct.error):
                pass

    def close(self) -> None:
        self.server.close()


def learned_nothing(listener: Listener) -> None:
    """The listener holds neither the secret nor a proof, only handshakes with a nonce."""
    from tests.harness.secret import SECRET

    assert listener.connections >= 1 and listener.received
    assert SECRET.encode() not in listener.received
    assert b"cf_prove" not in listener.received  # nothing went after the bad proof
    assert listener.received.count(b"PYRO") == listener.connections  # a handshake each


@pytest.mark.slow
def test_clusterfarm_workers_tells_a_plain_listener_nothing(tmp_path):
    from tests.harness.cli import run_cli, write_settings

    listener = Listener()
    try:
        write_settings(tmp_path / "clusterfarm.toml", f"[nameserver]\nport = {listener.port}\n")
        result = run_cli("workers", cwd=tmp_path)
    finally:
        listener.close()
    assert result.code == 3 and "does not prove it knows the cluster's secret" in result.err
    learned_nothing(listener)


@pytest.mark.slow
def test_a_worker_registering_again_tells_a_listener_in_its_nameservers_place_nothing(
    cluster, tmp_path
):
    pid, port = cluster["ns"]
    os.kill(pid, signal.SIGKILL)  # the nameserver dies; somebody binds its port
    deadline = time.monotonic() + 5
    while True:
        try:
            listener = Listener(port)
            break
        except OSError:
            assert time.monotonic() < deadline, "the port never came free"
            time.sleep(0.1)
    try:
        deadline = time.monotonic() + 20  # the worker checks its nameserver every 6 s
        while listener.connections == 0:
            assert time.monotonic() < deadline, "the worker never came to register again"
            time.sleep(0.2)
        time.sleep(0.5)
    finally:
        listener.close()
    learned_nothing(listener)


class Recorder:
    """A TCP relay between a client and a real daemon that keeps what the client sent."""

    def __init__(self, upstream: int) -> None:
        self.upstream = upstream
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.sent = bytearray()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        client, _ = self.server.accept()
        daemon = socket.create_connection(("127.0.0.1", self.upstream))

        def pump(source: socket.socket, sink: socket.socket, keep: bytearray | None) -> None:
            try:
                while chunk := source.recv(65536):
                    if keep is not None:
                        keep += chunk
                    sink.sendall(chunk)
            except OSError:
                pass

        threading.Thread(target=pump, args=(daemon, client, None), daemon=True).start()
        pump(client, daemon, self.sent)


@pytest.mark.slow
def test_a_recorded_handshake_and_proof_replayed_to_the_daemon_are_refused(cluster):
    _, port = cluster["ns"]
    recorder = Recorder(port)
    proxy = locate("127.0.0.1", recorder.port, ACCESS)
    assert proxy.list(prefix="clusterfarm.")  # a real client, served through the relay
    time.sleep(0.3)
    handshake_and_proof = bytes(recorder.sent[: _two_messages(recorder.sent)])
    with socket.create_connection(("127.0.0.1", port)) as replay:
        replay.settimeout(5)
        replay.sendall(handshake_and_proof)
        answers = bytearray()
        with contextlib.suppress(OSError):  # a reset ends it too
            while chunk := replay.recv(65536):
                answers += chunk
    # the daemon answered the handshake with a fresh nonce, so the old proof fails: no
    # RESULT for the proof, the connection refused and closed
    kinds = _kinds(bytes(answers))
    assert kinds[0] == protocol.MSG_CONNECTOK and protocol.MSG_RESULT not in kinds


def _two_messages(data: bytearray) -> int:
    end = 0
    for _ in range(2):
        fields = HEADER.unpack_from(data, end)
        end += HEADER.size + fields[6] + fields[7]
    return end


def _kinds(data: bytes) -> list[int]:
    kinds, at = [], 0
    while at + HEADER.size <= len(data):
        fields = HEADER.unpack_from(data, at)
        kinds.append(fields[2])
        at += HEADER.size + fields[6] + fields[7]
    return kinds
