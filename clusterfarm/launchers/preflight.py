"""Preflight checks shared by the launchers' ``doctor``: a probe run where workers will run.

The probe is a small stdlib-only Python program, run with the workers' interpreter on a host
(over SSH) or on a compute node (in a SLURM job); it prints one JSON line saying the Python and
clusterfarm versions, whether ``data_dir`` is readable, the free disk, whether the nameserver
can be reached from there and what an address resolves to. :func:`judge` turns that into
:class:`Check` rows with a fix-it hint each.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from clusterfarm import __version__
from clusterfarm.config.settings import Settings
from clusterfarm.launchers.base import text_table

# runs where the workers will, with their python: stdlib only, and no clusterfarm needed
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


Add = Callable[..., None]


def judge(
    settings: Settings, where: str, probe: dict[str, Any], data_dir: str, add: Add, keys: str
) -> None:
    """Turn the probe's findings into the checks python … nameserver.

    ``keys`` is the settings table whose ``python`` and ``setup`` the hints name
    (``workers`` for SSH hosts, ``slurm`` for compute nodes).
    """
    ns = settings.nameserver
    python = getattr(settings, keys).python
    version = tuple(int(part) for part in probe["python"].split("."))
    add(
        "python",
        version >= (3, 11),
        f"{probe['python']} at {probe['executable']}",
        f"clusterfarm needs Python 3.11 or newer: set {keys}.python (or {keys}.setup)",
    )
    remote_version = probe.get("clusterfarm")
    add(
        "clusterfarm",
        remote_version == __version__,
        f"{remote_version} (here {__version__})"
        if remote_version
        else f"not importable ({probe.get('clusterfarm_error')})",
        f"install clusterfarm {__version__} for {python} on {where} "
        f"(pip install), or fix {keys}.python / {keys}.setup",
    )
    add(
        "data_dir",
        bool(probe["data_dir"]),
        data_dir if probe["data_dir"] else f"{data_dir} missing or not readable",
        f"{where} needs the input data at the same path: mount or copy it, or fix run.data_dir",
    )
    add(
        "disk",
        probe["free"] >= settings.workers.min_free_mb * 1e6,
        f"{probe['free'] / 1e9:.1f} GB free under {probe['workdir']}",
        f"free some space there or move workers.workdir (workers.min_free_mb is "
        f"{settings.workers.min_free_mb:g})",
    )
    add(
        "nameserver",
        not probe["nameserver"],
        f"{ns.host}:{ns.port} "
        + ("reachable" if not probe["nameserver"] else f"unreachable ({probe['nameserver']})"),
        f"run `clusterfarm nameserver` on an address {where} can reach, set [nameserver] "
        "host to it (not 127.0.0.1), and open the port in the firewall",
    )


def checks_table(checks: Sequence[Check]) -> str:
    """Render the checks, one row each, as an aligned table."""
    rows = [("HOST", "CHECK", "RESULT", "DETAIL")]
    for check in checks:
        result = {True: "ok", False: "FAIL", None: "-"}[check.ok]
        detail = f"{check.detail}; {check.hint}" if check.hint else check.detail
        rows.append((check.host, check.name, result, detail))
    return text_table(rows)
