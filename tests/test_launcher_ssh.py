"""start-workers / stop-workers against a real sshd on 127.0.0.1 (no mocks of paramiko).

The "remote" host is this machine, reached over SSH with a throw-away key; its python is the
test interpreter. Every failure must come back as one line naming the host, the right exit
code, and in bounded time.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from clusterfarm.wire.nameserver import NameServer, list_workers, locate
from tests.harness.processes import alive, descendants
from tests.harness.secret import ACCESS
from tests.harness.sshd import SSHLab, SSHServer, free_port, make_key, started_lab

pytestmark = pytest.mark.usefixtures("sshd_server")


def registered(nameserver: NameServer) -> dict[str, int | None]:
    return {w.name: w.pid for w in list_workers(locate(nameserver.host, nameserver.port, ACCESS))}


def test_start_workers_copies_the_secret_and_its_workers_refuse_clients_without_it(
    ssh_lab: SSHLab, sshd_server: SSHServer, nameserver: NameServer
) -> None:
    import stat

    import Pyro5.api
    import Pyro5.errors

    from tests.harness.secret import SECRET

    settings = started_lab(ssh_lab, sshd_server, workers=1)
    copied = ssh_lab.workdir / "secret"
    assert copied.read_text().strip() == SECRET
    assert stat.S_IMODE(copied.stat().st_mode) == 0o600
    uri = str(locate(nameserver.host, nameserver.port, ACCESS).lookup("clusterfarm.worker.loc.0"))
    with Pyro5.api.Proxy(uri) as proxy, pytest.raises(Pyro5.errors.CommunicationError) as no:
        proxy._pyroBind()
    assert "authentication required" in str(no.value)
    with ACCESS.proxy(uri) as proxy:
        assert proxy.ping()["name"] == "clusterfarm.worker.loc.0"
    assert ssh_lab.cli(settings, "stop-workers").code == 0


@pytest.mark.slow
def test_started_workers_run_a_job_and_stop_workers_leaves_nothing(
    ssh_lab: SSHLab, sshd_server: SSHServer, nameserver: NameServer
) -> None:
    settings = started_lab(ssh_lab, sshd_server)
    listed = json.loads(ssh_lab.cli(settings, "workers", "--json").out)
    assert [(w["name"], w["host"]) for w in listed] == [
        ("clusterfarm.worker.loc.0", "loc"),
        ("clusterfarm.worker.loc.1", "loc"),
    ]
    pids = ssh_lab.worker_pids("loc")
    assert sorted(pids.values()) == sorted(w["pid"] for w in listed)
    children = {child for pid in pids.values() for child in descendants(pid)}

    run = ssh_lab.cli(settings, "run", "--task", "noop", "--years", "2000-2001", "--json")
    assert run.code == 0, run.err
    assert json.loads(run.out)["complete"] == 2 * 56

    stop = ssh_lab.cli(settings, "stop-workers")
    assert stop.code == 0, stop.err
    assert stop.out.splitlines()[1].split() == ["loc", "2", "0", "ok"]
    assert not [pid for pid in [*pids.values(), *children] if alive(pid)]
    assert registered(nameserver) == {}
    assert ssh_lab.worker_pids("loc") == {}


def test_starting_again_starts_no_duplicates(
    ssh_lab: SSHLab, sshd_server: SSHServer, nameserver: NameServer
) -> None:
    settings = started_lab(ssh_lab, sshd_server)
    before = ssh_lab.worker_pids("loc")
    again = ssh_lab.cli(settings, "start-workers")
    assert again.code == 0, again.err
    assert again.out.splitlines()[1].split() == ["loc", "0", "2", "2/2", "ok"]
    assert ssh_lab.worker_pids("loc") == before
    assert set(registered(nameserver).values()) == set(before.values())


def test_unknown_host_key_is_refused_until_accepted(
    ssh_lab: SSHLab, sshd_server: SSHServer
) -> None:
    ssh_lab.trust()  # an empty known_hosts
    settings = ssh_lab.settings(ssh_lab.host("loc", sshd_server))
    refused = ssh_lab.cli(settings, "start-workers")
    assert refused.code == 3
    assert refused.out.splitlines()[1].startswith("loc ")
    assert "unknown host key" in refused.out
    assert "--accept-new-host-keys" in refused.out
    assert "start-workers failed on 1 of 1 hosts (loc)" in refused.err
    assert ssh_lab.worker_pids("loc") == {}

    accepted = ssh_lab.cli(settings, "start-workers", "--accept-new-host-keys")
    assert accepted.code == 0, accepted.err
    known = (ssh_lab.home / ".ssh" / "known_hosts").read_text()
    assert sshd_server.host_key_line.split()[2] in known
    assert ssh_lab.cli(settings, "stop-workers").code == 0


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A TCP port that accepts connections and never says a word (no SSH banner)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    accepted: list[socket.socket] = []

    def serve() -> None:
        with contextlib.suppress(OSError):
            while True:
                accepted.append(listener.accept()[0])

    threading.Thread(target=serve, daemon=True).start()
    yield int(listener.getsockname()[1])
    listener.close()
    for connection in accepted:
        connection.close()


FAILURES: dict[str, tuple[dict[str, Any], dict[str, Any], str]] = {
    # case: ([[hosts]] changes, [workers] changes, what the host's line must say)
    "connection refused": ({"port": "FREE"}, {}, "connection refused"),
    "silent port": ({"port": "SILENT"}, {}, "no ssh answer from 127.0.0.1"),
    "wrong key": ({"key_file": "WRONG"}, {}, "ssh login failed as"),
    "missing key file": ({"key_file": "/nonexistent/key"}, {}, "key file /nonexistent/key"),
    "python missing": ({}, {"python": "/nonexistent/python3"}, "remote python"),
    "clusterfarm missing": ({}, {"python": f"{sys.executable} -S"}, "clusterfarm is not"),
    "setup failing": ({}, {"setup": "echo broken env >&2; false"}, "setup failed (broken env)"),
}


@pytest.mark.parametrize("case", list(FAILURES))
def test_each_failure_is_one_line_naming_the_host(
    case: str, ssh_lab: SSHLab, sshd_server: SSHServer, tmp_path: Path, silent_port: int
) -> None:
    host_changes, worker_changes, phrase = FAILURES[case]
    make_key(tmp_path / "wrong_key")
    placeholders = {
        "FREE": free_port(),
        "SILENT": silent_port,
        "WRONG": str(tmp_path / "wrong_key"),
    }
    host = ssh_lab.host("faraway", sshd_server)
    host.update({key: placeholders.get(value, value) for key, value in host_changes.items()})
    ssh_lab.trust(sshd_server)
    settings = ssh_lab.settings(host, **worker_changes)

    began = time.monotonic()
    result = ssh_lab.cli(settings, "start-workers", "--connect-timeout", "2", timeout=30)
    elapsed = time.monotonic() - began

    assert result.code == 3, result.out + result.err
    rows = result.out.splitlines()
    assert len(rows) == 2 and rows[1].startswith("faraway "), result.out + result.err
    assert phrase in rows[1]
    assert "; " in rows[1]  # ... and says what to do about it
    assert result.err.splitlines() == [
        "Error: start-workers failed on 1 of 1 hosts (faraway); see each host's row above"
    ]
    assert elapsed < 20


def test_failing_host_does_not_stop_the_others(
    ssh_lab: SSHLab, sshd_server: SSHServer, nameserver: NameServer
) -> None:
    ssh_lab.trust(sshd_server)
    good = ssh_lab.host("good", sshd_server, workers=1)
    bad = ssh_lab.host("bad", sshd_server, port=free_port())
    settings = ssh_lab.settings(good, bad)

    started = ssh_lab.cli(settings, "start-workers")
    assert started.code == 1
    assert started.out.splitlines()[1].split() == ["good", "1", "0", "1/1", "ok"]
    assert "bad" in started.out and "connection refused" in started.out
    assert list(registered(nameserver)) == ["clusterfarm.worker.good.0"]

    pid = ssh_lab.worker_pids("good")["good.0"]
    stopped = ssh_lab.cli(settings, "stop-workers")
    assert stopped.code == 1
    assert "stop-workers failed on 1 of 2 hosts (bad)" in stopped.err
    assert not alive(pid)
    assert registered(nameserver) == {}


def test_stop_kills_a_worker_that_ignores_sigterm_and_forgets_its_name(
    ssh_lab: SSHLab, sshd_server: SSHServer, nameserver: NameServer
) -> None:
    settings = started_lab(ssh_lab, sshd_server, workers=1)
    pid = ssh_lab.worker_pids("loc")["loc.0"]
    os.kill(pid, signal.SIGSTOP)  # a stopped process cannot act on SIGTERM
    try:
        stopped = ssh_lab.cli(settings, "stop-workers", "--grace", "0.5")
    finally:
        if alive(pid):
            os.kill(pid, signal.SIGCONT)
    assert stopped.code == 0, stopped.err
    assert stopped.out.splitlines()[1].split() == ["loc", "0", "1", "ok"]
    assert not alive(pid)
    assert registered(nameserver) == {}  # it could not unregister itself: stop-workers did


def test_stop_leaves_a_process_alone_whose_pid_was_recycled(
    ssh_lab: SSHLab, sshd_server: SSHServer
) -> None:
    ssh_lab.trust(sshd_server)
    settings = ssh_lab.settings(ssh_lab.host("loc", sshd_server))
    stranger = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (ssh_lab.workdir / "pids").mkdir(parents=True)
        (ssh_lab.workdir / "pids" / "loc.0.pid").write_text(f"{stranger.pid}\n")
        stopped = ssh_lab.cli(settings, "stop-workers")
        assert stopped.code == 0, stopped.err
        assert stopped.out.splitlines()[1].split() == ["loc", "0", "0", "ok"]
        assert stranger.poll() is None
        assert ssh_lab.worker_pids("loc") == {}  # the stale pid file is gone
    finally:
        stranger.kill()
        stranger.wait()


def test_proxyjump_chains_and_aliases_come_from_the_ssh_config(
    ssh_lab: SSHLab, sshd_server: SSHServer, nameserver: NameServer
) -> None:
    def config(second_gateway_port: int) -> str:
        # behind is reached through gw2, and gw2 through gw1 (all this one sshd)
        return (
            f"Host behind\n  HostName 127.0.0.1\n  Port {sshd_server.port}\n"
            "  ProxyJump gw1,gw2\n"
            f"Host gw1\n  HostName 127.0.0.1\n  Port {sshd_server.port}\n"
            f"Host gw2\n  HostName 127.0.0.1\n  Port {second_gateway_port}\n"
            f"Host *\n  User {sshd_server.user}\n  IdentityFile {sshd_server.key_file}\n"
        )

    settings = ssh_lab.settings({"name": "alias", "address": "behind", "workers": 1})
    ssh_lab.trust(sshd_server, config=config(sshd_server.port))
    started = ssh_lab.cli(settings, "start-workers")
    assert started.code == 0, started.out + started.err
    assert list(registered(nameserver)) == ["clusterfarm.worker.alias.0"]
    assert ssh_lab.cli(settings, "stop-workers").code == 0

    down = free_port()
    ssh_lab.trust(sshd_server, config=config(down))  # gw1 cannot reach gw2
    failed = ssh_lab.cli(settings, "stop-workers")
    assert failed.code == 3
    assert f"jump host 127.0.0.1:{sshd_server.port} cannot reach 127.0.0.1:{down}" in failed.out


def test_unknown_hosts_option_is_a_usage_error(ssh_lab: SSHLab, sshd_server: SSHServer) -> None:
    settings = ssh_lab.settings(ssh_lab.host("loc", sshd_server))
    result = ssh_lab.cli(settings, "stop-workers", "--hosts", "loc,nowhere")
    assert result.code == 2
    assert "unknown host nowhere" in result.err
