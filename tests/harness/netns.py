"""Network namespaces as extra hosts for the multi-host tests (root only).

A bridge in the root namespace holds the manager's address (``<prefix>.1``); each host is a
namespace joined to the bridge by a veth pair, with its own address (``<prefix>.11``,
``.12``...) where its own sshd listens. Every name carries this process's pid, and
:meth:`Lab.close` deletes whatever was made, so parallel or crashed sessions do not collide.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass, field

from tests.harness.sshd import sshd_missing


def netns_missing() -> str | None:
    """Why namespace hosts cannot be made here, or None if they can."""
    if os.geteuid() != 0:
        return "needs root to make network namespaces (ip netns) as extra hosts"
    if not shutil.which("ip"):
        return "needs iproute2's `ip` for network namespaces"
    return sshd_missing()


def _ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")


@dataclass
class Lab:
    """A bridge and some namespaces on it; ``addresses[i]`` is host i's address."""

    tag: str
    prefix: str  # the /24 as "10.77.N"
    bridge: str
    namespaces: list[str] = field(default_factory=list)

    @property
    def gateway(self) -> str:
        """The root namespace's address on the bridge (where the nameserver listens)."""
        return f"{self.prefix}.1"

    def address(self, index: int) -> str:
        return f"{self.prefix}.{11 + index}"

    def add_host(self) -> str:
        """Make one more namespace on the bridge; return its name."""
        index = len(self.namespaces)
        namespace, veth, peer = (f"{self.tag}{kind}{index}" for kind in ("h", "v", "p"))
        _ip("netns", "add", namespace)
        self.namespaces.append(namespace)
        _ip("link", "add", veth, "type", "veth", "peer", "name", peer)
        _ip("link", "set", peer, "netns", namespace)
        _ip("link", "set", veth, "master", self.bridge)
        _ip("link", "set", veth, "up")
        _ip("-n", namespace, "addr", "add", f"{self.address(index)}/24", "dev", peer)
        _ip("-n", namespace, "link", "set", peer, "up")
        _ip("-n", namespace, "link", "set", "lo", "up")
        return namespace

    def close(self) -> None:
        """Delete the veth pairs, the namespaces and the bridge."""
        for index, namespace in enumerate(self.namespaces):
            subprocess.run(["ip", "link", "del", f"{self.tag}v{index}"], capture_output=True)
            subprocess.run(["ip", "netns", "del", namespace], capture_output=True)
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True)


def make_lab(hosts: int) -> Lab:
    """Make a bridge with ``hosts`` namespaces on it (delete it with :meth:`Lab.close`)."""
    pid = os.getpid()
    lab = Lab(f"cf{pid % 100000}", f"10.77.{100 + pid % 150}", f"cf{pid % 100000}br")
    try:
        _ip("link", "add", "name", lab.bridge, "type", "bridge")
        _ip("addr", "add", f"{lab.gateway}/24", "dev", lab.bridge)
        _ip("link", "set", lab.bridge, "up")
        for _ in range(hosts):
            lab.add_host()
    except BaseException:
        lab.close()
        raise
    return lab
