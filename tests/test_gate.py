"""What a stranger may cost a daemon before it has shown the secret: nothing inflated, a
bounded wait, no thread. Attacks as an attacker would make them, on real nameserver and
worker processes."""

from __future__ import annotations

import resource
import socket
import struct
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import Pyro5.api
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
    """The most memory ``pid`` has held at once so far (its resident high-water mark)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


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
                       "--nameserver", f"127.0.0.1:{port}")  # fmt: skip
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
    with ACCESS.present(Pyro5.api.Proxy(cluster["uri"])) as worker:
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


class BombingWorker:
    """A fake worker speaking Pyro5 by hand: it joins any run, then answers ``do_batch`` with
    a compressed megabyte that would inflate to a gigabyte."""

    def __init__(self) -> None:
        from clusterfarm import __version__
        from clusterfarm.wire.protocol import JoinAnswer

        self.answer = JoinAnswer("clusterfarm.worker.bomb.0", "bomb", __version__, {"noop": "1"})
        self.bomb = compressed_bomb()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.batches = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(sock,), daemon=True).start()

    def _serve(self, sock: socket.socket) -> None:
        from Pyro5 import serializers, socketutil

        conn = socketutil.SocketConnection(sock)
        try:
            while True:
                msg = protocol.recv_stub(conn)
                serializer = serializers.serializers_by_id[msg.serializer_id]
                if msg.type == protocol.MSG_CONNECT:
                    methods = ["join", "do_batch", "ping", "release", "cancel", "info"]
                    meta = {"methods": methods, "oneway": [], "attrs": []}
                    hello = serializer.dumps({"handshake": "hello", "meta": meta})
                    reply = message(protocol.MSG_CONNECTOK, hello, 0, msg.serializer_id)
                elif msg.type == protocol.MSG_PING:
                    reply = message(protocol.MSG_PING, b"pong", 0, msg.serializer_id)
                else:
                    _, method, _, _ = serializer.loadsCall(msg.data)
                    if method == "do_batch":
                        self.batches += 1
                        reply = message(protocol.MSG_RESULT, self.bomb, protocol.FLAGS_COMPRESSED,
                                        msg.serializer_id)  # fmt: skip
                    else:
                        value = self.answer.to_wire() if method == "join" else {}
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
        deadline = time.monotonic() + 60
        while not (log.exists() and "set aside" in log.read_text()):
            assert process.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        grown = peak_mb(process.pid)
        code, report, err = finish(process)
    finally:
        bomber.close()
    assert bomber.batches >= 1
    assert "compressed" in log.read_text()
    assert grown < 150  # a manager of a few tens of MB; inflated, it would be over a gigabyte
    assert code == 0 and report["complete"] == 40, err
