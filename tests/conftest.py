"""The fixtures: a real nameserver, real worker daemons, and the real hosts of the SSH,
SLURM and disk tests. What tests share besides fixtures is in :mod:`tests.harness`.

Every process a fixture starts is stopped by pid at teardown.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from clusterfarm.wire.nameserver import NameServer, list_workers, locate
from tests.harness.cli import PLUGIN_SETTINGS, cli_env, run_cli, write_settings
from tests.harness.processes import stop_process
from tests.harness.secret import ACCESS

# A session started in the background of a shell without job control (`bin/test &` in a
# script) has SIGINT ignored, and every process it starts would inherit that: the tests that
# press Ctrl-C on a run need the default back.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

# fixtures that stand up real hosts: a test using one is marked ``hosts`` (bin/test --fast
# leaves those out)
HOST_FIXTURES = frozenset(
    {"sshd_server", "ssh_lab", "netns_hosts", "slurm_cluster", "walltime_run", "mounts"}
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HOST_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.hosts)


@pytest.fixture
def nameserver() -> Iterator[NameServer]:
    """A real Pyro5 nameserver on 127.0.0.1, on a free port."""
    server = NameServer("127.0.0.1", 0, ACCESS)
    yield server
    server.stop()


@pytest.fixture
def start_worker(
    nameserver: NameServer, tmp_path: Path
) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """Start real worker daemons (subprocesses) registered with ``nameserver``."""
    processes: list[subprocess.Popen[bytes]] = []

    def start(
        name: str,
        *extra: str,
        env: dict[str, str] | None = None,
        settings_text: str = PLUGIN_SETTINGS,
    ) -> subprocess.Popen[bytes]:
        settings = write_settings(tmp_path / f"worker-{name}.toml", settings_text)
        log = open(tmp_path / f"{name}.log", "ab")
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "clusterfarm",
                "--settings",
                str(settings),
                "worker",
                "--host",
                "127.0.0.1",
                "--name",
                name,
                "--nameserver",
                f"{nameserver.host}:{nameserver.port}",
                *extra,
            ],
            env=cli_env(**(env or {})),
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=tmp_path,
        )
        processes.append(process)
        ns = locate(nameserver.host, nameserver.port, ACCESS)
        deadline = time.monotonic() + 20
        while f"clusterfarm.worker.{name}" not in {w.name for w in list_workers(ns)}:
            assert process.poll() is None, (tmp_path / f"{name}.log").read_text()
            assert time.monotonic() < deadline, "worker did not register"
            time.sleep(0.02)
        return process

    yield start
    for process in processes:
        stop_process(process)


# -- SSH: a real sshd on 127.0.0.1, and hosts as network namespaces (root) ---------------------
# helpers live in tests/harness/sshd.py and netns.py; imported here so that collecting the
# suite needs neither sshd nor root


@pytest.fixture(scope="session")
def sshd_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """A real OpenSSH server on 127.0.0.1 (free port, throw-away keys); skipped without sshd."""
    from tests.harness.sshd import sshd_missing, start_sshds

    if reason := sshd_missing():
        pytest.skip(reason)
    [server] = start_sshds(tmp_path_factory.mktemp("sshd"), [("127.0.0.1", None)])
    yield server
    server.stop()


@pytest.fixture
def ssh_lab(tmp_path: Path, nameserver: NameServer) -> Iterator[object]:
    """Settings, HOME and workdir for the SSH commands; kills any worker a test left."""
    from tests.harness.sshd import SSHLab

    lab = SSHLab(tmp_path, nameserver.host, nameserver.port, run_cli)
    yield lab
    lab.cleanup()


@pytest.fixture(scope="session")
def netns_hosts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """Three hosts as network namespaces on a bridge, an sshd in each (root only)."""
    from tests.harness.netns import make_lab, netns_missing
    from tests.harness.sshd import start_sshds

    if reason := netns_missing():
        pytest.skip(reason)
    lab = make_lab(3)
    servers = []
    try:
        places = [(lab.address(i), namespace) for i, namespace in enumerate(lab.namespaces)]
        servers = start_sshds(tmp_path_factory.mktemp("netns"), places)
        yield lab, servers
    finally:
        for server in servers:
            server.stop()
        lab.close()


# -- SLURM: a real single-node cluster (root); helpers in tests/harness/slurm.py -------------


@pytest.fixture(scope="session")
def slurm_cluster() -> Iterator[object]:
    """A real SLURM cluster on this machine for the whole session; always stopped after."""
    from tests.harness.slurm import slurm_missing, start_cluster

    if reason := slurm_missing():
        pytest.skip(reason)
    cluster = start_cluster()
    print(f"SLURM ({cluster.proctrack}) ready in {cluster.started_in:.1f} s")
    try:
        yield cluster
    finally:
        cluster.stop()


# The SLURM walltime scenario takes a minute of real time (SLURM's shortest limit) while it
# mostly waits, so it starts with the session's first test and runs beside the others; its
# test (in test_launcher_slurm.py) collects it.
WALLTIME_TEST = "test_a_worker_near_its_time_limit_drains_and_is_replaced"


@pytest.fixture(scope="session")
def walltime_run(
    slurm_cluster: object, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[object, subprocess.Popen[str]]]:
    """A run of five 20-second cells on two workers with a 1-minute limit, in the background."""
    from tests.harness.slurm import Lab

    lab = Lab(tmp_path_factory.mktemp("walltime"))
    lab.write(slurm='time = "1"\nworkers = 2\n', tasks="[tasks.sleep]\nseconds = 20\n")
    process = lab.run_in_background("--task", "sleep", "--years", "2000", "--members", "0-4")
    try:
        yield lab, process
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
        lab.cleanup()


@pytest.fixture(scope="session", autouse=True)
def _start_walltime_run_early(request: pytest.FixtureRequest) -> None:
    from tests.harness.slurm import slurm_missing

    # without SLURM the test itself skips, saying why; skipping here would skip every test
    if not slurm_missing() and any(item.name == WALLTIME_TEST for item in request.session.items):
        try:
            request.getfixturevalue("walltime_run")
        except Exception:  # a cluster that does not start fails the SLURM tests, not all
            pass


@pytest.fixture
def mounts() -> Iterator[object]:
    """Full tmpfs disks and read-only folders for one test, all undone at teardown."""
    from tests.harness.mounts import Mounts

    made = Mounts()
    try:
        yield made
    finally:
        made.close()
