"""The launchers without SSH: local mode, orphaned workers, the pieces the SSH launcher uses."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import paramiko
import pytest

from clusterfarm.config.settings import Host
from clusterfarm.errors import EXIT_FAILED, EXIT_INFRA, EXIT_OK
from clusterfarm.launchers.base import HostOutcome, Launcher, exit_code, outcomes_table
from clusterfarm.launchers.local import LocalLauncher
from clusterfarm.launchers.ssh.daemons import is_our_worker, recorded
from clusterfarm.launchers.ssh.session import resolve
from clusterfarm.wire.nameserver import NameServer, list_workers, locate
from tests.harness.cli import cli_env
from tests.harness.faults import wait_gone
from tests.harness.processes import descendants
from tests.harness.secret import ACCESS


@pytest.fixture
def spawned(tmp_path: Path) -> Iterator[list[subprocess.Popen[bytes]]]:
    """Processes a test starts; killed (by pid) at the end."""
    processes: list[subprocess.Popen[bytes]] = []
    yield processes
    for process in processes:
        if process.poll() is None:
            process.kill()
            process.wait()


def start_worker(
    spawned: list[subprocess.Popen[bytes]], ns: NameServer, name: str, *extra: str
) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "clusterfarm", "worker", "--host", "127.0.0.1"]
    command += ["--name", name, "--nameserver", f"{ns.host}:{ns.port}", *extra]
    process = subprocess.Popen(command, env=cli_env(), stderr=subprocess.DEVNULL)
    spawned.append(process)
    assert wait_for(lambda: names(ns) == [f"clusterfarm.worker.{name}"], 20)
    return process


def names(ns: NameServer) -> list[str]:
    return [w.name for w in list_workers(locate(ns.host, ns.port, ACCESS))]


def wait_for(condition: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


def test_local_launcher_starts_registered_workers_and_stops_them_all(tmp_path: Path) -> None:
    ns = NameServer("127.0.0.1", 0, ACCESS)
    try:
        launcher: Launcher = LocalLauncher(2, ns.host, ns.port, tmp_path / "logs", ACCESS)
        try:
            workers = launcher.start(timeout=30)
            assert [(w.name, w.host) for w in workers] == [
                ("clusterfarm.worker.local.0", "local"),
                ("clusterfarm.worker.local.1", "local"),
            ]
            pids = [w.pid for w in workers if w.pid]
            family = {child for pid in pids for child in descendants(pid)} | set(pids)
        finally:
            launcher.stop()
        wait_gone(family)  # task processes follow their daemon through its lifeline
        assert names(ns) == []
    finally:
        ns.stop()


@pytest.mark.slow
def test_worker_exits_by_itself_once_the_nameserver_is_gone(
    spawned: list[subprocess.Popen[bytes]],
) -> None:
    ns = NameServer("127.0.0.1", 0, ACCESS)
    try:
        worker = start_worker(spawned, ns, "orphan.0", "--orphan-after", "1")
    finally:
        ns.stop()
    worker.wait(timeout=15)  # ~1 s without a nameserver, then it stops in order


@pytest.mark.slow
def test_worker_registers_again_with_a_restarted_nameserver(
    spawned: list[subprocess.Popen[bytes]],
) -> None:
    ns = NameServer("127.0.0.1", 0, ACCESS)
    start_worker(spawned, ns, "steady.0", "--orphan-after", "5")
    ns.stop()
    ns = NameServer("127.0.0.1", ns.port, ACCESS)  # the same address, empty
    try:
        assert wait_for(lambda: names(ns) == ["clusterfarm.worker.steady.0"], 10)
    finally:
        ns.stop()


def test_a_pid_is_our_worker_only_with_its_command_line(
    spawned: list[subprocess.Popen[bytes]],
) -> None:
    lookalike = [sys.executable, "-c", "import time; time.sleep(60)", "clusterfarm", "worker"]
    process = subprocess.Popen([*lookalike, "--name", "berlin.0"])
    spawned.append(process)
    assert wait_for(lambda: is_our_worker(process.pid, "berlin.0"), 5)
    assert not is_our_worker(process.pid, "berlin.1")
    assert not is_our_worker(process.pid + 10**7, "berlin.0")  # no such pid


def test_pid_files_of_hosts_sharing_a_workdir_stay_apart(tmp_path: Path) -> None:
    (tmp_path / "pids").mkdir()
    for name, pid in [("berlin.0", 11), ("berlin.1", 12), ("berlin-2.0", 13), ("paris.0", 14)]:
        (tmp_path / "pids" / f"{name}.pid").write_text(f"{pid}\n")
    (tmp_path / "pids" / "berlin.x.pid").write_text("15\n")
    assert recorded(tmp_path, "berlin") == {"berlin.0": 11, "berlin.1": 12}
    assert recorded(tmp_path / "nowhere", "berlin") == {}


def test_exit_code_is_1_when_some_hosts_fail_and_3_when_all_do() -> None:
    ok, bad = HostOutcome("a"), HostOutcome("b", error="b: down")
    assert exit_code([ok, ok]) == EXIT_OK
    assert exit_code([ok, bad]) == EXIT_FAILED
    assert exit_code([bad, bad]) == EXIT_INFRA
    table = outcomes_table([ok, bad], "stop").splitlines()
    assert table == [
        "HOST  STOPPED  KILLED  RESULT",
        "a     0        0       ok",
        "b     0        0       error: down",
    ]


def test_settings_win_over_the_ssh_config_which_fills_in_the_rest() -> None:
    config = paramiko.SSHConfig.from_text(
        "Host berlin\n  HostName berlin.lab.example\n  User alice\n  Port 2222\n"
        "  IdentityFile ~/.ssh/lab\n"
    )
    plain = resolve(Host("berlin", "berlin"), config)
    assert (plain.hostname, plain.user, plain.port) == ("berlin.lab.example", "alice", 2222)
    assert plain.key_files[0].endswith("/.ssh/lab")
    own = resolve(Host("berlin", "berlin", "bob", 22022, key_file="/k"), config)
    assert (own.user, own.port, own.key_files[0]) == ("bob", 22022, "/k")
    elsewhere = resolve(Host("paris", "10.1.2.3"), config)
    assert (elsewhere.hostname, elsewhere.port, elsewhere.key_files) == ("10.1.2.3", 22, ())
