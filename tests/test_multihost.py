"""A real multi-host run: three network namespaces on a bridge, an sshd in each (root only).

The nameserver and the manager live in the root namespace at the bridge's address; each host
has its own address, and its workers listen there. Every host shares one workdir, as hosts
sharing an NFS home would.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from clusterfarm.wire.nameserver import NameServer, list_workers, locate
from tests.harness.cli import run_cli
from tests.harness.netns import Lab
from tests.harness.processes import alive
from tests.harness.secret import ACCESS
from tests.harness.sshd import SSHLab, SSHServer, table_rows

HOSTS = ("alpha", "bravo", "charlie")


@pytest.fixture
def cluster(netns_hosts: Any, tmp_path: Path) -> Iterator[tuple[SSHLab, Lab, list[SSHServer]]]:
    """An SSHLab whose nameserver listens on the bridge, trusting the three hosts' sshds."""
    lab, servers = netns_hosts
    nameserver = NameServer(lab.gateway, 0, ACCESS)
    ssh = SSHLab(tmp_path, nameserver.host, nameserver.port, run_cli)
    ssh.trust(*servers)
    try:
        yield ssh, lab, servers
    finally:
        ssh.cleanup()
        nameserver.stop()


@pytest.mark.slow
def test_three_hosts_start_in_parallel_share_a_run_and_stop(
    cluster: tuple[SSHLab, Lab, list[SSHServer]],
) -> None:
    ssh, lab, servers = cluster
    hosts = [ssh.host(name, server, workers=2) for name, server in zip(HOSTS, servers, strict=True)]
    settings = ssh.settings(*hosts)

    started = ssh.cli(settings, "start-workers")
    assert started.code == 0, started.out + started.err
    assert [row.split()[0] for row in started.out.splitlines()[1:]] == list(HOSTS)
    listed = json.loads(ssh.cli(settings, "workers", "--json").out)
    assert len(listed) == 6
    for worker in listed:
        index = HOSTS.index(worker["host"])
        assert f"@{lab.address(index)}:" in worker["uri"]  # listens on its host's address

    run = ssh.cli(settings, "run", "--task", "sleep", "--years", "2000-2001", "--members", "0-23")
    assert run.code == 0, run.out + run.err
    with sqlite3.connect(ssh.folder / "run" / "state.sqlite") as db:
        ran_on = {host for (host,) in db.execute("SELECT DISTINCT host FROM cells")}
    assert ran_on == set(HOSTS)

    pids = {name: ssh.worker_pids(name) for name in HOSTS}
    assert all(len(recorded) == 2 for recorded in pids.values())
    stopped = ssh.cli(settings, "stop-workers")
    assert stopped.code == 0, stopped.out + stopped.err
    assert not [pid for recorded in pids.values() for pid in recorded.values() if alive(pid)]
    assert list_workers(locate(ssh.ns_host, ssh.ns_port, ACCESS)) == []


def test_no_route_to_a_host_is_one_line_in_bounded_time(
    cluster: tuple[SSHLab, Lab, list[SSHServer]],
) -> None:
    ssh, lab, servers = cluster
    nowhere = ssh.host("nowhere", servers[0], address=f"{lab.prefix}.99", port=22)
    settings = ssh.settings(nowhere)
    began = time.monotonic()
    result = ssh.cli(settings, "start-workers", "--connect-timeout", "8", timeout=60)
    assert result.code == 3
    assert result.out.splitlines()[1].startswith("nowhere ")
    assert "no route to host" in result.out
    assert time.monotonic() - began < 15


def test_doctor_passes_on_a_lab_host_and_flags_a_loopback_address(
    cluster: tuple[SSHLab, Lab, list[SSHServer]], sshd_server: SSHServer
) -> None:
    ssh, lab, servers = cluster
    (ssh.folder / "data").mkdir()
    ssh.trust(*servers, sshd_server)
    good = ssh.host("alpha", servers[0])
    local = ssh.host("local", sshd_server)  # 127.0.0.1, while the nameserver is not loopback
    result = ssh.cli(ssh.settings(good, local), "doctor")
    assert result.code == 1
    rows = table_rows(result.out)
    assert {verdict for host, _, verdict, _ in rows if host == "alpha"} == {"ok"}
    failed = [(host, check) for host, check, verdict, _ in rows if verdict != "ok"]
    assert failed == [("local", "address")]
    assert "loopback" in result.out and "127.0.1.1" in result.out


@pytest.mark.slow
def test_host_cut_off_mid_task_is_lost_in_time_and_its_cells_are_redone(
    cluster: tuple[SSHLab, Lab, list[SSHServer]],
) -> None:
    import subprocess
    import sys

    from tests.harness.cli import cli_env
    from tests.harness.faults import complete_cells

    ssh, lab, servers = cluster
    hosts = [
        ssh.host(name, server, workers=1)
        for name, server in zip(HOSTS[:2], servers[:2], strict=True)
    ]
    settings = ssh.settings(*hosts)
    heartbeat, lost_after = 0.5, 3.0
    settings.write_text(
        settings.read_text().replace(
            "[run]\n", f"[run]\nheartbeat = {heartbeat}\nlost_after = {lost_after}\n", 1
        )
        + "[tasks.sleep]\nseconds = 0.4\n"
    )
    assert ssh.cli(settings, "start-workers").code == 0
    run = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "clusterfarm",
            "--settings",
            str(settings),
            "run",
            "--task",
            "sleep",
            "--years",
            "2000",
            "--members",
            "0-29",
            "--json",
        ],
        cwd=ssh.folder,
        env=cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while complete_cells(ssh.folder / "run") < 4:
        assert run.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    # bravo's cable out: its packets vanish, no reset reaches anyone
    subprocess.run(["ip", "link", "set", f"{lab.tag}v1", "down"], check=True)
    cut_at = time.time()
    try:
        out, err = run.communicate(timeout=120)
    finally:
        subprocess.run(["ip", "link", "set", f"{lab.tag}v1", "up"], check=True)
    assert run.returncode == 0, err
    assert json.loads(out)["progress"]["sleep"]["2000"] == "+" * 30
    log = (ssh.folder / "run/logs/manager.log").read_text().splitlines()
    (lost,) = [line for line in log if "worker clusterfarm.worker.bravo.0 lost" in line]
    stamp, millis = lost[:23].split(",")
    lost_at = time.mktime(time.strptime(stamp, "%Y-%m-%d %H:%M:%S")) + int(millis) / 1000
    print(f"cut detected after {lost_at - cut_at:.2f} s (lost_after {lost_after:g} s)")
    assert lost_at - cut_at <= lost_after + heartbeat + 1.0, lost
    with sqlite3.connect(ssh.folder / "run" / "state.sqlite") as db:
        after_cut = db.execute(
            "SELECT DISTINCT host FROM cells WHERE started > ?", (cut_at + lost_after,)
        ).fetchall()
    assert after_cut == [("alpha",)]  # the rest ran on the host still connected
    assert ssh.cli(settings, "stop-workers").code == 0
