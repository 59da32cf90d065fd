"""Nobody gets in by default, silent connections lock nobody out, and a nameserver that dies
mid-run costs nothing: real processes throughout."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
import time

import Pyro5.api
import Pyro5.errors
import pytest

from clusterfarm.wire.access import Access
from clusterfarm.wire.nameserver import locate
from tests.harness.cli import (
    FAST_LIVENESS,
    PLUGIN_SETTINGS,
    cli_env,
    finish,
    start_run,
    write_settings,
)
from tests.harness.faults import cmdline, worker_daemons
from tests.harness.processes import alive, stop_process, wait_for_text, wait_until
from tests.harness.secret import ACCESS, SECRET

REFUSED = "authentication required"


def refusal(uri: str, secret: str | None) -> str | None:
    """What a plain Pyro5 client presenting ``secret`` gets from ``uri``: None if served."""
    try:
        with Pyro5.api.Proxy(uri) as proxy:
            if secret is not None:
                proxy._pyroHandshake = {"secret": secret}
            proxy._pyroTimeout = 5
            proxy._pyroBind()
        return None
    except Pyro5.errors.PyroError as exc:
        return str(exc)


@pytest.mark.slow
def test_a_local_run_refuses_every_client_without_its_secret(tmp_path):
    write_settings(tmp_path / "clusterfarm.toml", "[tasks.sleep]\nseconds = 1.0\n")
    process = start_run(
        tmp_path, "--local", "2", "--task", "sleep", "--years", "2000", "--members", "0-5"
    )
    try:
        log = tmp_path / "clusterfarm-run" / "logs" / "manager.log"
        wait_until(lambda: log.exists() and log.read_text().count(" joined (") >= 2)
        worker_uris = re.findall(r"joined \((PYRO:\S+),", log.read_text())
        daemon = next(iter(worker_daemons(process.pid).values()))
        words = cmdline(daemon).split()
        ns_address = words[words.index("--nameserver") + 1]
        ns_uri = f"PYRO:Pyro.NameServer@{ns_address}"
        for uri in [ns_uri, *worker_uris]:
            for secret in (None, "not-the-secret", SECRET):  # not even ours
                assert REFUSED in (refusal(uri, secret) or ""), (uri, secret)
    finally:
        code, report, err = finish(process)
    assert code == 0 and report["complete"] == 6, err


def test_a_cluster_refuses_clients_without_its_secret_and_serves_those_with_it(
    nameserver, start_worker
):
    start_worker("sec.0")
    worker_uri = str(
        locate(nameserver.host, nameserver.port, ACCESS).lookup("clusterfarm.worker.sec.0")
    )
    for uri in (nameserver.uri, worker_uri):
        assert REFUSED in (refusal(uri, None) or "")
        assert REFUSED in (refusal(uri, "a guess") or "")
        assert REFUSED in (refusal(uri, SECRET) or "")  # never sent: the right one neither
        with pytest.raises(Pyro5.errors.SecurityError, match="does not prove"):
            with Access("a guess of 32 characters, wrong!").proxy(uri) as guess:
                guess._pyroBind()
        with ACCESS.proxy(uri) as proxy:
            proxy._pyroBind()  # proved both ways: served


@pytest.mark.parametrize("silent", [200])
@pytest.mark.slow
def test_silent_connections_lock_nobody_out_of_the_nameserver_or_a_worker(
    nameserver, start_worker, silent
):
    start_worker("busy.0")
    worker_uri = str(
        locate(nameserver.host, nameserver.port, ACCESS).lookup("clusterfarm.worker.busy.0")
    )
    ports = (nameserver.port, int(worker_uri.rsplit(":", 1)[1]))
    sockets = [
        socket.create_connection(("127.0.0.1", port)) for port in ports for _ in range(silent)
    ]
    try:
        time.sleep(0.5)  # they are all accepted, and say nothing
        began = time.monotonic()
        with ACCESS.proxy(worker_uri) as worker:
            worker._pyroTimeout = 2
            assert worker.ping()["name"] == "clusterfarm.worker.busy.0"
        assert locate(nameserver.host, nameserver.port, ACCESS, timeout=2).list(
            prefix="clusterfarm."
        )
        assert time.monotonic() - began < 2
    finally:
        for sock in sockets:
            sock.close()


@pytest.mark.slow
def test_a_nameserver_killed_and_restarted_mid_run_costs_no_cell_and_no_worker(tmp_path):

    port_probe = socket.socket()
    port_probe.bind(("127.0.0.1", 0))
    port = port_probe.getsockname()[1]
    port_probe.close()
    settings = write_settings(
        tmp_path / "clusterfarm.toml",
        PLUGIN_SETTINGS
        + FAST_LIVENESS
        + "[tasks.sleep]\nseconds = 0.4\n"
        + f'[nameserver]\nport = {port}\n[[hosts]]\nname = "test"\n',
    )
    processes: list[subprocess.Popen[bytes]] = []

    def start(name: str, *args: str) -> subprocess.Popen[bytes]:
        log = open(tmp_path / f"{name}.log", "ab")  # noqa: SIM115 - the child keeps it
        command = [sys.executable, "-m", "clusterfarm", "--settings", str(settings), *args]
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path, env=cli_env()
        )
        processes.append(process)
        return process

    try:
        server = start("ns", "nameserver")
        wait_for_text(tmp_path / "ns.log", "listening at", server)
        workers = [
            start(
                f"w{n}", "worker", "--host", "127.0.0.1", "--name", f"ns.{n}", "--orphan-after", "2"
            )
            for n in range(2)
        ]
        for n, worker in enumerate(workers):
            wait_for_text(tmp_path / f"w{n}.log", "listening at", worker)
        run = start_run(tmp_path, "--task", "sleep", "--years", "2000", "--members", "0-19")
        time.sleep(1.5)
        server.send_signal(signal.SIGKILL)
        server.wait()
        time.sleep(3.0)  # longer than the workers' orphan_after: they stay, a manager uses them
        server = start("ns2", "nameserver")
        wait_for_text(tmp_path / "ns2.log", "listening at", server)
        code, report, err = finish(run)
        assert code == 0 and report["progress"] == {"sleep": {"2000": "+" * 20}}, err
        assert all(alive(worker.pid) for worker in workers)
        # and they registered again with the new nameserver
        wait_until(
            lambda: len(locate("127.0.0.1", port, ACCESS).list(prefix="clusterfarm.worker.")) == 2,
            timeout=40,
            what="the workers registered again",
        )
    finally:
        for process in reversed(processes):
            stop_process(process)
