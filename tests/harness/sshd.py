"""A real OpenSSH server for the SSH tests: throw-away keys, a free port, stopped by pid.

:func:`start_sshd` runs Debian's ``/usr/sbin/sshd -D -e`` with its own host key, one user key
in its ``authorized_keys`` and a ``HOME`` (``.ssh/known_hosts``) for the client side, all in
a temporary folder. With ``netns`` it runs inside that network namespace (see ``netns.py``).
"""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clusterfarm.launchers.ssh.daemons import is_our_worker, recorded
from tests.harness.processes import stop_process

SSHD = Path("/usr/sbin/sshd")
SSH_KEYGEN = shutil.which("ssh-keygen") or "/usr/bin/ssh-keygen"


def sshd_missing() -> str | None:
    """Why the SSH tests cannot run here, or None if they can."""
    if not SSHD.is_file() or not Path(SSH_KEYGEN).is_file():
        return "needs OpenSSH's /usr/sbin/sshd and ssh-keygen (apt-get install openssh-server)"
    return None


def make_key(path: Path) -> str:
    """Write a new ed25519 key pair at ``path`` (no passphrase); return the public line."""
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [SSH_KEYGEN, "-q", "-t", "ed25519", "-N", "", "-C", "clusterfarm-test", "-f", str(path)],
        check=True,
    )
    return path.with_suffix(".pub").read_text().strip()


def free_port(address: str = "127.0.0.1") -> int:
    """Return a TCP port nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind((address, 0))
        return int(probe.getsockname()[1])


def known_hosts_line(address: str, port: int, public_key: str) -> str:
    """The known_hosts line for a server's public key (OpenSSH's ``[host]:port`` form)."""
    name = address if port == 22 else f"[{address}]:{port}"
    return f"{name} {' '.join(public_key.split()[:2])}\n"


@dataclass
class SSHServer:
    """A running sshd and what a client needs to log in to it."""

    address: str
    port: int
    user: str
    key_file: Path  # the user's private key, in authorized_keys
    host_key_line: str  # this server's line for a known_hosts file
    process: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> None:
        """Stop this sshd (by pid) and wait for it."""
        stop_process(self.process, grace=5)


def start_sshd(
    folder: Path,
    user_key: Path,
    address: str = "127.0.0.1",
    port: int | None = None,
    netns: str | None = None,
) -> SSHServer:
    """Start sshd on ``address`` with its own host key; ``user_key`` may log in."""
    folder.mkdir(parents=True, exist_ok=True)
    host_public = make_key(folder / "host_key")
    authorized = folder / "authorized_keys"
    authorized.write_text(user_key.with_suffix(".pub").read_text())
    port = port or (22 if netns else free_port(address))
    config = folder / "sshd_config"
    config.write_text(
        "\n".join(
            [
                f"ListenAddress {address}:{port}",
                f"HostKey {folder / 'host_key'}",
                f"AuthorizedKeysFile {authorized}",
                "UsePAM no",
                "StrictModes no",
                "PidFile none",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "PermitRootLogin prohibit-password",
                "AllowTcpForwarding yes",
                "LogLevel VERBOSE",
                "",
            ]
        )
    )
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation dir
    command = [str(SSHD), "-D", "-e", "-f", str(config)]
    if netns:
        command = ["ip", "netns", "exec", netns, *command]
    log = folder / "sshd.log"
    with open(log, "ab") as out:
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=out, stderr=out)
    server = SSHServer(
        address,
        port,
        getpass.getuser(),
        user_key,
        known_hosts_line(address, port, host_public),
        process,
        log,
    )
    _wait_listening(server)
    return server


def start_sshds(folder: Path, places: list[tuple[str, str | None]]) -> list[SSHServer]:
    """Start one sshd per ``(address, netns)``, all letting in one new user key."""
    make_key(folder / "user_key")
    servers: list[SSHServer] = []
    try:
        for i, (address, netns) in enumerate(places):
            servers.append(
                start_sshd(folder / f"sshd{i}", folder / "user_key", address, None, netns)
            )
    except BaseException:
        for server in servers:
            server.stop()
        raise
    return servers


def _wait_listening(server: SSHServer, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if server.process.poll() is not None:
            raise RuntimeError(f"sshd exited at start: {server.log.read_text()[-2000:]}")
        if _banner(server.address, server.port):
            return
        if time.monotonic() > deadline:
            server.stop()
            raise RuntimeError(f"sshd not listening after {timeout} s: {server.log.read_text()}")
        time.sleep(0.02)


def _banner(address: str, port: int) -> bool:
    """True once something answers with an SSH banner at ``address:port``."""
    with contextlib.suppress(OSError), socket.create_connection((address, port), 1) as sock:
        return sock.recv(4).startswith(b"SSH-")
    return False


def client_home(folder: Path, *servers: SSHServer, config: str = "") -> Path:
    """Make a ``HOME`` whose ``.ssh/known_hosts`` trusts ``servers`` (and ``.ssh/config``)."""
    ssh_dir = folder / ".ssh"
    ssh_dir.mkdir(parents=True, exist_ok=True)
    (ssh_dir / "known_hosts").write_text("".join(s.host_key_line for s in servers))
    if config:
        (ssh_dir / "config").write_text(config)
    return folder


def table_rows(output: str) -> list[list[str]]:
    """Split an aligned table as the CLI prints it into cells, by its header's columns."""
    header, *lines = output.splitlines()
    starts = [match.start() for match in re.finditer(r"\S+", header)]
    ends: list[int | None] = [*starts[1:], None]
    return [[line[a:b].strip() for a, b in zip(starts, ends, strict=True)] for line in lines]


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value) if isinstance(value, int | float) else json.dumps(str(value))


@dataclass
class SSHLab:
    """Settings, a client HOME and a workdir for driving the SSH commands at test sshds.

    The remote python is this test's own interpreter, so clusterfarm is importable "there".
    :meth:`cleanup` kills (by recorded pid) any worker a test left running.
    """

    folder: Path
    ns_host: str
    ns_port: int
    run_cli: Callable[..., Any]

    @property
    def home(self) -> Path:
        return self.folder / "home"

    @property
    def workdir(self) -> Path:
        return self.folder / "work"

    def host(self, name: str, server: SSHServer, **extra: Any) -> dict[str, Any]:
        """A ``[[hosts]]`` table that logs in to ``server`` with its user key."""
        entry = {"name": name, "address": server.address, "port": server.port}
        return {**entry, "key_file": str(server.key_file), **extra}

    def settings(self, *hosts: dict[str, Any], file: str = "cf.toml", **workers: Any) -> Path:
        """Write a settings file with ``hosts``; ``workers`` overrides ``[workers]`` keys."""
        tables: dict[str, dict[str, Any]] = {
            "nameserver": {"host": self.ns_host, "port": self.ns_port},
            "run": {"run_dir": self.folder / "run", "data_dir": self.folder / "data"},
            "workers": {
                "python": sys.executable,
                "workdir": self.workdir,
                "orphan_after": 120,
                **workers,
            },
        }
        lines = []
        for name, table in tables.items():
            lines += [f"[{name}]", *(f"{k} = {_toml(v)}" for k, v in table.items())]
        for host in hosts:
            lines += ["[[hosts]]", *(f"{k} = {_toml(v)}" for k, v in host.items())]
        path = self.folder / file
        path.write_text("\n".join(lines) + "\n")
        return path

    def trust(self, *servers: SSHServer, config: str = "") -> None:
        """Let ``HOME/.ssh/known_hosts`` hold exactly these servers' keys."""
        client_home(self.home, *servers, config=config)

    def cli(self, settings: Path, *args: str, timeout: float = 90) -> Any:
        """Run ``clusterfarm --settings SETTINGS ARGS`` with this lab's HOME and no ssh agent."""
        return self.run_cli(
            "--settings",
            str(settings),
            *args,
            cwd=self.folder,
            timeout=timeout,
            HOME=str(self.home),
            SSH_AUTH_SOCK="",
        )

    def worker_pids(self, host: str) -> dict[str, int]:
        """The pids ``host``'s daemons recorded under the workdir."""
        return recorded(self.workdir, host)

    def cleanup(self) -> None:
        """Kill every worker still recorded under the workdir (by pid, if it is ours)."""
        folder = self.workdir / "pids"
        for path in folder.glob("*.pid") if folder.is_dir() else []:
            name, pid = path.stem, int(path.read_text().strip() or 0)
            if pid and is_our_worker(pid, name):
                os.kill(pid, signal.SIGKILL)


def started_lab(lab: SSHLab, server: SSHServer, workers: int = 2) -> Path:
    """Trust ``server``, write settings for one host ``loc`` on it and start its workers."""
    lab.trust(server)
    settings = lab.settings(lab.host("loc", server, workers=workers))
    result = lab.cli(settings, "start-workers")
    assert result.code == 0, result.err
    return settings
