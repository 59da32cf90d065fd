"""Pyro5 configuration shared by every clusterfarm process: serializer and socket options.

Set once per process before any proxy or daemon is made, so the nameserver, the workers and
the manager all speak the same way.
"""

from __future__ import annotations

import socket

from Pyro5 import config

WORKER_PREFIX = "clusterfarm.worker."
CALL_TIMEOUT = 10.0  # seconds for short calls (ping, info, cancel, nameserver)


def configure_pyro() -> None:
    """Apply clusterfarm's Pyro5 settings to this process."""
    config.SERIALIZER = "serpent"  # plain data only: never pickle on the wire
    config.SOCK_NODELAY = True  # small request/answer messages: no Nagle delay
    config.SERVERTYPE = "thread"  # heartbeats are answered while a task runs
    config.THREADPOOL_SIZE_MIN = 4
    config.MAX_RETRIES = 0
    config.DETAILED_TRACEBACK = False


def is_loopback(address: str) -> bool:
    """True if ``address`` resolves to a loopback address (127.x, ::1)."""
    try:
        infos = socket.getaddrinfo(address, None)
    except OSError:
        return False
    addresses = {str(info[4][0]) for info in infos}
    return any(address.startswith("127.") or address == "::1" for address in addresses)


def address_towards(host: str, port: int) -> str:
    """Return this machine's address on the route to ``host`` (what other hosts can reach).

    Never trusts gethostname(), which on Debian resolves to 127.0.1.1.
    """
    if is_loopback(host):
        return "127.0.0.1"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect((host, port))  # UDP connect sends nothing; it only picks a route
            return str(probe.getsockname()[0])
        except OSError:
            return "127.0.0.1"
