"""Preflight checks of the cluster's hosts (``clusterfarm doctor``), each with a fix-it hint.

Per host, in parallel: SSH login, then one small stdlib-only Python probe run remotely (after
``workers.setup``, with ``workers.python``) that reports the Python and clusterfarm versions,
whether ``data_dir`` is readable, the free disk under ``workers.workdir``, whether the
nameserver's port can be reached from there, and what the host's address resolves to.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clusterfarm import __version__
from clusterfarm.errors import LaunchError
from clusterfarm.launcher import text_table
from clusterfarm.remote import COMMAND_TIMEOUT, remote_command, remote_failure
from clusterfarm.settings import Host, Settings
from clusterfarm.ssh import CONNECT_TIMEOUT, connect
from clusterfarm.transport import is_loopback

CHECKS = ("ssh login", "python", "clusterfarm", "data_dir", "disk", "nameserver", "address")

# runs on the host with workers.python: stdlib only, and no clusterfarm needed to report on it
PROBE = r"""
import json, os, shutil, socket, sys
data_dir, workdir, ns_host, ns_port, address = sys.argv[1:6]
out = {"python": "%d.%d.%d" % sys.version_info[:3], "executable": sys.executable}
try:
    import clusterfarm
    out["clusterfarm"] = clusterfarm.__version__
except Exception as exc:
    out["clusterfarm_error"] = "%s: %s" % (type(exc).__name__, exc)
out["data_dir"] = os.path.isdir(data_dir) and os.access(data_dir, os.R_OK | os.X_OK)
path = os.path.abspath(os.path.expanduser(workdir))
while not os.path.exists(path):
    path = os.path.dirname(path)
out["workdir"], out["free"] = path, shutil.disk_usage(path).free
try:
    socket.create_connection((ns_host, int(ns_port)), 5).close()
    out["nameserver"] = ""
except OSError as exc:
    out["nameserver"] = str(exc) or type(exc).__name__
try:
    infos = socket.getaddrinfo(address, 0, 0, socket.SOCK_STREAM)
    out["addresses"] = sorted(set(info[4][0] for info in infos))
    probe = socket.socket(infos[0][0], socket.SOCK_STREAM)
    try:
        probe.bind(infos[0][4])
        out["bind"] = ""
    except OSError as exc:
        out["bind"] = str(exc)
    probe.close()
except OSError as exc:
    out["addresses"], out["bind"] = [], str(exc)
print(json.dumps(out))
"""


@dataclass(frozen=True)
class Check:
    """One check on one host: passed or not, what was found, and how to fix it."""

    host: str
    name: str
    ok: bool | None  # None: not run, because an earlier check failed
    detail: str
    hint: str = ""


def diagnose(
    settings: Settings,
    hosts: Sequence[Host],
    accept_new_host_keys: bool = False,
    connect_timeout: float = CONNECT_TIMEOUT,
) -> list[Check]:
    """Run every check on every host (hosts in parallel); return the checks in host order."""

    def one(host: Host) -> list[Check]:
        return _diagnose_host(settings, host, accept_new_host_keys, connect_timeout)

    with ThreadPoolExecutor(max_workers=max(1, len(hosts))) as pool:
        return [check for checks in pool.map(one, hosts) for check in checks]


def _diagnose_host(
    settings: Settings, host: Host, accept_new: bool, connect_timeout: float
) -> list[Check]:
    workers, ns = settings.workers, settings.nameserver
    checks: list[Check] = []

    def add(name: str, ok: bool | None, detail: str, hint: str = "") -> None:
        checks.append(Check(host.name, name, ok, detail, "" if ok else hint))

    def skip_rest(reason: str) -> list[Check]:
        for name in CHECKS[len(checks) :]:
            add(name, None, "not checked", reason)
        return checks

    data_dir = str(Path(settings.run.data_dir).absolute())  # what the manager sends workers
    try:
        with connect(host, accept_new, connect_timeout) as remote:
            endpoint = remote.endpoint
            add("ssh login", True, f"{endpoint.user}@{endpoint.where}")
            address = endpoint.hostname  # what the workers will listen on: ssh aliases resolved
            args = ["-c", PROBE, data_dir, workers.workdir, ns.host, str(ns.port), address]
            result = remote.run(remote_command(workers, args), COMMAND_TIMEOUT)
    except LaunchError as exc:
        name = "python" if checks else "ssh login"
        add(name, False, *_detail_and_hint(str(exc), host))
        return skip_rest(f"fix the {name} first")
    if result.code != 0:
        add("python", False, *_detail_and_hint(remote_failure(host.name, workers, result), host))
        return skip_rest("fix python first")
    try:
        probe: dict[str, Any] = json.loads(result.out.strip().splitlines()[-1])
    except (ValueError, IndexError):
        add(
            "python", False, f"unexpected probe output {result.out[-120:]!r}", "check workers.setup"
        )
        return skip_rest("fix python first")
    _judge(settings, host, address, probe, data_dir, add)
    return checks


def _judge(
    settings: Settings, host: Host, address: str, probe: dict[str, Any], data_dir: str, add: Any
) -> None:
    """Turn the probe's findings into the checks after ``python``."""
    workers, ns = settings.workers, settings.nameserver
    version = tuple(int(part) for part in probe["python"].split("."))
    add(
        "python",
        version >= (3, 11),
        f"{probe['python']} at {probe['executable']}",
        "clusterfarm needs Python 3.11 or newer: set workers.python (or workers.setup)",
    )
    remote_version = probe.get("clusterfarm")
    add(
        "clusterfarm",
        remote_version == __version__,
        f"{remote_version} (here {__version__})"
        if remote_version
        else f"not importable ({probe.get('clusterfarm_error')})",
        f"install clusterfarm {__version__} for {workers.python} on {host.name} "
        "(pip install), or fix workers.python / workers.setup",
    )
    add(
        "data_dir",
        bool(probe["data_dir"]),
        data_dir if probe["data_dir"] else f"{data_dir} missing or not readable",
        "every host needs the input data at the same path: mount or copy it, or fix run.data_dir",
    )
    add(
        "disk",
        probe["free"] >= workers.min_free_mb * 1e6,
        f"{probe['free'] / 1e9:.1f} GB free under {probe['workdir']}",
        f"free some space there or move workers.workdir (workers.min_free_mb is "
        f"{workers.min_free_mb:g})",
    )
    add(
        "nameserver",
        not probe["nameserver"],
        f"{ns.host}:{ns.port} "
        + ("reachable" if not probe["nameserver"] else f"unreachable ({probe['nameserver']})"),
        "run `clusterfarm nameserver` on an address the hosts can reach, set [nameserver] "
        "host to it (not 127.0.0.1), and open the port in the firewall",
    )
    addresses = ", ".join(probe["addresses"]) or "nothing"
    loopback = any(a.startswith("127.") or a == "::1" for a in probe["addresses"])
    if probe["bind"]:
        add(
            "address",
            False,
            f"{address} → {addresses}: cannot listen there ({probe['bind']})",
            f"set the host's address to one of {host.name}'s own addresses",
        )
    elif loopback and not is_loopback(ns.host):
        add(
            "address",
            False,
            f"{address} → {addresses} on {host.name}: loopback, other hosts cannot reach it",
            "set the host's address to its LAN IP or a name that resolves to it "
            "(Debian maps the hostname to 127.0.1.1 in /etc/hosts)",
        )
    else:
        add("address", True, f"{address} → {addresses}")


def _detail_and_hint(message: str, host: Host) -> tuple[str, str]:
    """Split ``host: what failed; what to do`` into its two halves."""
    detail, _, hint = message.removeprefix(f"{host.name}: ").partition("; ")
    return detail, hint


def checks_table(checks: Sequence[Check]) -> str:
    """Render the checks, one row each, as an aligned table."""
    rows = [("HOST", "CHECK", "RESULT", "DETAIL")]
    for check in checks:
        result = {True: "ok", False: "FAIL", None: "-"}[check.ok]
        detail = f"{check.detail}; {check.hint}" if check.hint else check.detail
        rows.append((check.host, check.name, result, detail))
    return text_table(rows)
