"""SSH sessions to the cluster's hosts: log in, check the host key, run commands, never hang.

The only module that imports paramiko. :func:`connect` resolves a settings host through
``~/.ssh/config`` (``HostName``, ``User``, ``Port``, ``IdentityFile``, ``ProxyJump``), checks
the server's key against ``~/.ssh/known_hosts`` and logs in with ``key_file``, the ssh agent
or the usual ``~/.ssh`` keys. Every step (TCP connect, handshake, login, each command) has a
time limit, and every failure becomes a one-line :class:`LaunchError` naming the host and
saying what to do.
"""

from __future__ import annotations

import errno
import fcntl
import getpass
import logging
import os
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paramiko

from clusterfarm.config.settings import Host
from clusterfarm.errors import LaunchError

LOG = logging.getLogger("clusterfarm.launchers.ssh")
# paramiko logs each failed connection from its own thread; our one-line errors say it better
logging.getLogger("paramiko").addHandler(logging.NullHandler())
logging.getLogger("paramiko").propagate = False
CONNECT_TIMEOUT = 10.0  # seconds for each of TCP connect, SSH handshake and login
_KNOWN_HOSTS_LOCK = threading.Lock()  # hosts are reached in parallel threads


def known_hosts_path() -> Path:
    return Path(os.path.expanduser("~/.ssh/known_hosts"))


@dataclass(frozen=True)
class Endpoint:
    """Where and as whom to log in for one host, after ``~/.ssh/config``."""

    name: str  # the settings' host name, for messages
    hostname: str
    port: int
    user: str
    key_files: tuple[str, ...] = ()
    proxy_jump: str = ""

    @property
    def where(self) -> str:
        return f"{self.hostname}:{self.port}"


@dataclass(frozen=True)
class CommandResult:
    """What a remote command printed and how it exited."""

    code: int
    out: str
    err: str


def _ssh_config() -> paramiko.SSHConfig:
    path = Path(os.path.expanduser("~/.ssh/config"))
    try:
        return paramiko.SSHConfig.from_path(str(path)) if path.is_file() else paramiko.SSHConfig()
    except (OSError, paramiko.ConfigParseError) as exc:
        raise LaunchError(f"{path}: cannot read ssh config ({exc}); fix or move it") from exc


def resolve(host: Host, config: paramiko.SSHConfig | None = None) -> Endpoint:
    """Combine a settings host with ``~/.ssh/config``; the settings win where they are set."""
    found: dict[str, Any] = dict((config or _ssh_config()).lookup(host.address))
    key_files = [os.path.expanduser(host.key_file)] if host.key_file else []
    key_files += [os.path.expanduser(path) for path in found.get("identityfile", [])]
    return Endpoint(
        name=host.name,
        hostname=found.get("hostname", host.address),
        port=host.port if host.port != 22 else int(found.get("port", 22)),
        user=host.user or found.get("user") or getpass.getuser(),
        key_files=tuple(dict.fromkeys(key_files)),
        proxy_jump=found.get("proxyjump", ""),
    )


def _jump_endpoint(
    name: str, spec: str, config: paramiko.SSHConfig, keys: tuple[str, ...]
) -> Endpoint:
    """The gateway right before a host, from its ``ProxyJump`` (``[user@]host[:port],...``).

    In ``ProxyJump a,b`` the host is reached through ``b``, and ``b`` through ``a``.
    """
    *before, last = (hop.strip() for hop in spec.split(","))
    user, _, address = last.rpartition("@")
    address, _, port = address.partition(":")
    endpoint = resolve(Host(name, address, user, int(port) if port.isdigit() else 22), config)
    # the host's keys are tried too: one key for the gateway and the host is the usual case
    return Endpoint(
        name,
        endpoint.hostname,
        endpoint.port,
        endpoint.user,
        tuple(dict.fromkeys(endpoint.key_files + keys)),
        ",".join(before) or endpoint.proxy_jump,
    )


@dataclass
class Remote:
    """One logged-in SSH connection to a host (plus the jump hosts it goes through)."""

    endpoint: Endpoint
    client: paramiko.SSHClient
    hops: list[paramiko.SSHClient] = field(default_factory=list)

    def __enter__(self) -> Remote:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for client in [self.client, *reversed(self.hops)]:
            client.close()

    def run(self, command: str, timeout: float, stdin: str | None = None) -> CommandResult:
        """Run a shell command on the host; give up (and say so) after ``timeout`` seconds.

        ``stdin`` is written to the command's standard input (a secret travels so, never on
        a command line that ``ps`` shows).
        """
        name = self.endpoint.name
        transport = self.client.get_transport()
        if transport is None or not transport.is_active():
            raise LaunchError(f"{name}: ssh connection to {self.endpoint.where} was lost")
        deadline = time.monotonic() + timeout
        try:
            channel = transport.open_session(timeout=min(timeout, CONNECT_TIMEOUT))
            # exec_command waits for the server without a time limit of its own
            watchdog = threading.Timer(timeout, channel.close)
            watchdog.start()
            try:
                channel.exec_command(command)
                if stdin is not None:
                    channel.sendall(stdin.encode())
                    channel.shutdown_write()
            finally:
                watchdog.cancel()
        except (paramiko.SSHException, OSError) as exc:
            raise LaunchError(
                f"{name}: cannot run a command over ssh ({exc}); check the host's sshd"
            ) from exc
        out, err = bytearray(), bytearray()
        with channel:
            while True:
                busy = False
                if channel.recv_ready():
                    out += channel.recv(65536)
                    busy = True
                if channel.recv_stderr_ready():
                    err += channel.recv_stderr(65536)
                    busy = True
                if busy:
                    continue
                if channel.exit_status_ready():  # data sent before it is in the buffers now
                    out += _drain(channel.recv_ready, channel.recv)
                    err += _drain(channel.recv_stderr_ready, channel.recv_stderr)
                    break
                if time.monotonic() > deadline:
                    raise LaunchError(
                        f"{name}: remote command gave no answer within {timeout:g} s: "
                        f"{command.strip().splitlines()[-1][:120]}"
                    )
                if not transport.is_active():
                    raise LaunchError(f"{name}: ssh connection to {self.endpoint.where} was lost")
                time.sleep(0.002)
            code = channel.recv_exit_status()
        return CommandResult(code, out.decode(errors="replace"), err.decode(errors="replace"))


def _drain(ready: Any, receive: Any) -> bytes:
    chunks = b""
    while ready():
        chunks += receive(65536)
    return chunks


def connect(
    host: Host, accept_new_host_keys: bool = False, timeout: float = CONNECT_TIMEOUT
) -> Remote:
    """Log in to ``host``; raise :class:`LaunchError` with a one-line reason on any failure."""
    config = _ssh_config()
    endpoint = resolve(host, config)
    *hops, client = _open(endpoint, config, accept_new_host_keys, timeout)
    return Remote(endpoint, client, hops)


def _open(
    endpoint: Endpoint, config: paramiko.SSHConfig, accept_new: bool, timeout: float, via: str = ""
) -> list[paramiko.SSHClient]:
    """Log in to ``endpoint`` through its ``ProxyJump`` chain; return the clients, its own last."""
    clients: list[paramiko.SSHClient] = []
    sock: Any = None
    try:
        if endpoint.proxy_jump and endpoint.proxy_jump.lower() != "none":
            jump = _jump_endpoint(endpoint.name, endpoint.proxy_jump, config, endpoint.key_files)
            clients = _open(jump, config, accept_new, timeout, via=" (jump host)")
            sock = _tunnel(clients[-1], jump, endpoint, timeout)
        clients.append(_login(endpoint, accept_new, timeout, sock, via))
    except BaseException:
        for client in reversed(clients):
            client.close()
        raise
    return clients


def _tunnel(gateway: paramiko.SSHClient, jump: Endpoint, target: Endpoint, timeout: float) -> Any:
    transport = gateway.get_transport()
    assert transport is not None
    try:
        return transport.open_channel(
            "direct-tcpip", (target.hostname, target.port), ("127.0.0.1", 0), timeout=timeout
        )
    except (paramiko.SSHException, OSError) as exc:
        raise LaunchError(
            f"{target.name}: jump host {jump.where} cannot reach {target.where} ({exc}); "
            "check ProxyJump and the address, and that the jump host allows TCP forwarding"
        ) from exc


def _login(
    endpoint: Endpoint, accept_new: bool, timeout: float, sock: Any, via: str = ""
) -> paramiko.SSHClient:
    for key_file in endpoint.key_files:
        if not os.path.isfile(key_file):
            raise LaunchError(
                f"{endpoint.name}: key file {key_file} not found; fix key_file (or IdentityFile "
                "in ~/.ssh/config)"
            )
    client = paramiko.SSHClient()
    path = known_hosts_path()
    if path.is_file():
        try:
            client.load_host_keys(str(path))
        except (OSError, paramiko.SSHException) as exc:
            raise LaunchError(f"{path}: cannot read known hosts ({exc}); fix the file") from exc
    client.set_missing_host_key_policy(_AcceptNew(path) if accept_new else _RefuseUnknown())
    try:
        client.connect(
            endpoint.hostname,
            endpoint.port,
            username=endpoint.user,
            key_filename=list(endpoint.key_files) or None,
            timeout=timeout,
            banner_timeout=timeout,
            auth_timeout=timeout,
            channel_timeout=timeout,
            sock=sock,
        )
    except BaseException as exc:
        client.close()
        error = _login_error(endpoint, exc, via, timeout)
        if error is None:
            raise
        raise error from exc
    transport = client.get_transport()
    if transport is not None:
        transport.set_keepalive(15)  # notice a dead host while waiting on long steps
    return client


class _RefuseUnknown(paramiko.MissingHostKeyPolicy):
    def missing_host_key(
        self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey
    ) -> None:
        raise _UnknownHostKey(hostname, key)


class _AcceptNew(paramiko.MissingHostKeyPolicy):
    """Accept an unknown host key and append it to known_hosts (a changed key is still refused)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def missing_host_key(
        self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey
    ) -> None:
        line = f"{hostname} {key.get_name()} {key.get_base64()}\n"
        with _KNOWN_HOSTS_LOCK:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            with open(self.path, "a") as known_hosts:
                fcntl.flock(known_hosts, fcntl.LOCK_EX)  # other clusterfarm processes, too
                known_hosts.write(line)
        client.get_host_keys().add(hostname, key.get_name(), key)
        LOG.warning("added the host key of %s to %s: %s", hostname, self.path, _fingerprint(key))


class _UnknownHostKey(paramiko.SSHException):
    def __init__(self, hostname: str, key: paramiko.PKey) -> None:
        super().__init__(f"unknown host key for {hostname}")
        self.hostname, self.key = hostname, key


def _fingerprint(key: paramiko.PKey) -> str:
    return f"{key.get_name()} {key.fingerprint}"


def _login_error(
    endpoint: Endpoint, exc: BaseException, via: str, timeout: float
) -> LaunchError | None:
    """Turn what paramiko or the socket raised into one line naming the host; None: not ours."""
    name, where, user = endpoint.name, endpoint.where + via, endpoint.user
    if isinstance(exc, _UnknownHostKey):
        return LaunchError(
            f"{name}: unknown host key for {exc.hostname} ({_fingerprint(exc.key)}), not in "
            f"{known_hosts_path()}; if it is right, run `clusterfarm start-workers "
            "--accept-new-host-keys` to add it"
        )
    if isinstance(exc, paramiko.BadHostKeyException):
        return LaunchError(
            f"{name}: host key of {where} has changed ({_fingerprint(exc.key)}) — possibly an "
            f"attack; if the host was reinstalled, remove the old key with "
            f"`ssh-keygen -R {exc.hostname}`"
        )
    if isinstance(exc, paramiko.BadAuthenticationType):
        return LaunchError(
            f"{name}: ssh login failed as {user} (server allows only "
            f"{', '.join(exc.allowed_types)}); install a key for {user} there (ssh-copy-id)"
        )
    if isinstance(exc, paramiko.PasswordRequiredException):
        return LaunchError(
            f"{name}: ssh key for {user} is protected by a passphrase; load it into the agent "
            "(ssh-add) and leave key_file empty"
        )
    if isinstance(exc, paramiko.AuthenticationException) and "timeout" in str(exc).lower():
        return LaunchError(
            f"{name}: ssh login as {user} at {where} got no answer within {timeout:g} s; "
            "is the host overloaded?"
        )
    if isinstance(exc, paramiko.AuthenticationException):
        return LaunchError(
            f"{name}: ssh login failed as {user} at {where} (publickey refused); "
            "check key_file or ssh-add"
        )
    if isinstance(exc, paramiko.SSHException):
        text = str(exc)
        if "No authentication methods available" in text:
            return LaunchError(
                f"{name}: ssh login failed as {user} at {where} (no key to offer: no key_file, "
                "no agent key, no ~/.ssh/id_* key); set key_file or ssh-add"
            )
        if any(sign in text.lower() for sign in ("banner", "timed out", "no existing session")):
            return LaunchError(
                f"{name}: no ssh answer from {where} within {timeout:g} s; "
                "is it an ssh server, and is the port right?"
            )
        return LaunchError(f"{name}: ssh to {where} failed ({text}); check the host's sshd")
    if isinstance(exc, socket.gaierror):
        return LaunchError(
            f"{name}: cannot resolve {endpoint.hostname} ({exc.strerror}); fix the host's address"
        )
    if isinstance(exc, TimeoutError | socket.timeout):
        return LaunchError(
            f"{name}: ssh connection to {where} timed out; is the host up, and the address "
            "and port right?"
        )
    if isinstance(exc, paramiko.ssh_exception.NoValidConnectionsError):
        codes = {error.errno for error in exc.errors.values()}
        exc = OSError(codes.pop() if len(codes) == 1 else None, str(exc))
    if isinstance(exc, OSError):
        reason = {
            errno.ECONNREFUSED: "connection refused; is sshd running there, and the port right?",
            errno.EHOSTUNREACH: "no route to host; is the host up and the address right?",
            errno.ENETUNREACH: "network unreachable; check the address and this machine's network",
        }.get(exc.errno or 0, f"{exc.strerror or exc}; check the address and port")
        return LaunchError(f"{name}: ssh to {where}: {reason}")
    return None
