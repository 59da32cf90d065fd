"""Shared fixtures: a real nameserver, real worker daemons, the CLI as a subprocess.

Every process a fixture starts is stopped by pid at teardown.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from clusterfarm.wire.nameserver import NameServer, list_workers, locate
from clusterfarm.wire.pyro import set_secret
from clusterfarm.wire.secret import new_secret, write_secret

TESTS = Path(__file__).resolve().parent
PLUGINS = TESTS / "plugins"

# The cluster secret of this test session (SPEC §12): in a throw-away file that the default
# settings find through $CLUSTERFARM_SECRET_FILE, so no test touches ~/.clusterfarm. This
# process presents it too (and its in-process nameservers demand it).
SECRET = new_secret()
SECRET_FILE = Path(tempfile.mkdtemp(prefix="cf-secret-")) / "secret"
write_secret(SECRET_FILE, SECRET)
os.environ["CLUSTERFARM_SECRET_FILE"] = str(SECRET_FILE)
set_secret(SECRET)


def handshake() -> dict[str, str]:
    """What a plain Pyro5 client sets as ``proxy._pyroHandshake`` (SPEC §12)."""
    return {"secret": SECRET}


def cli_env(**extra: str) -> dict[str, str]:
    """The environment for clusterfarm subprocesses: test plugins importable."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PLUGINS), env.get("PYTHONPATH")]))
    env.pop("CLUSTERFARM_SETTINGS", None)
    env.update(extra)
    return env


@dataclass
class Result:
    code: int
    out: str
    err: str


def run_cli(*args: str, cwd: Path, timeout: float = 120, **env: str) -> Result:
    """Run ``clusterfarm ARGS`` as a subprocess and return its exit code and output."""
    done = subprocess.run(
        [sys.executable, "-m", "clusterfarm", *args],
        cwd=cwd,
        env=cli_env(**env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return Result(done.returncode, done.stdout, done.stderr)


def write_settings(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


PLUGIN_SETTINGS = '[tasks]\nmodules = ["cf_test_tasks"]\n'


@pytest.fixture
def nameserver() -> Iterator[NameServer]:
    """A real Pyro5 nameserver on 127.0.0.1, on a free port."""
    server = NameServer("127.0.0.1", 0)
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
        ns = locate(nameserver.host, nameserver.port)
        deadline = time.monotonic() + 20
        while f"clusterfarm.worker.{name}" not in {w.name for w in list_workers(ns)}:
            assert process.poll() is None, (tmp_path / f"{name}.log").read_text()
            assert time.monotonic() < deadline, "worker did not register"
            time.sleep(0.02)
        return process

    yield start
    for process in processes:
        stop_process(process)


def stop_process(process: subprocess.Popen[Any], grace: float = 10.0) -> None:
    """Stop a process a test started, by pid: SIGTERM, then SIGKILL after ``grace`` s."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def descendants(pid: int) -> set[int]:
    """All processes below ``pid`` (children, grandchildren...), from /proc."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        parents.setdefault(ppid, []).append(int(entry.name))
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def alive(pid: int) -> bool:
    """True if ``pid`` is a running (not zombie) process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


# -- SSH: a real sshd on 127.0.0.1, and hosts as network namespaces (root) ---------------------
# helpers live in tests/sshd.py and tests/netns.py; imported here so that collecting the
# suite needs neither sshd nor root


@pytest.fixture(scope="session")
def sshd_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """A real OpenSSH server on 127.0.0.1 (free port, throw-away keys); skipped without sshd."""
    from tests.sshd import sshd_missing, start_sshds

    if reason := sshd_missing():
        pytest.skip(reason)
    [server] = start_sshds(tmp_path_factory.mktemp("sshd"), [("127.0.0.1", None)])
    yield server
    server.stop()


@pytest.fixture
def ssh_lab(tmp_path: Path, nameserver: NameServer) -> Iterator[object]:
    """Settings, HOME and workdir for the SSH commands; kills any worker a test left."""
    from tests.sshd import SSHLab

    lab = SSHLab(tmp_path, nameserver.host, nameserver.port, run_cli)
    yield lab
    lab.cleanup()


@pytest.fixture(scope="session")
def netns_hosts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """Three hosts as network namespaces on a bridge, an sshd in each (root only)."""
    from tests.netns import make_lab, netns_missing
    from tests.sshd import start_sshds

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


# -- SLURM: a real single-node cluster (root); helpers in tests/slurm.py ---------------------


@pytest.fixture(scope="session")
def slurm_cluster() -> Iterator[object]:
    """A real SLURM cluster on this machine for the whole session; always stopped after."""
    from tests.slurm import slurm_missing, start_cluster

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
    from tests.slurm import Lab

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
    from tests.slurm import slurm_missing

    # without SLURM the test itself skips, saying why; skipping here would skip every test
    if not slurm_missing() and any(item.name == WALLTIME_TEST for item in request.session.items):
        try:
            request.getfixturevalue("walltime_run")
        except Exception:  # a cluster that does not start fails the SLURM tests, not all
            pass


@pytest.fixture
def mounts() -> Iterator[object]:
    """Full tmpfs disks and read-only folders for one test, all undone at teardown."""
    from tests.mounts import Mounts

    made = Mounts()
    try:
        yield made
    finally:
        made.close()
