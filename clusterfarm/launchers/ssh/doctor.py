"""Preflight checks of the cluster's hosts over SSH (``clusterfarm doctor``), with fix-it hints.

Per host, in parallel: SSH login, then the probe of
:mod:`clusterfarm.launchers.preflight` run remotely (after ``workers.setup``, with
``workers.python``), judged there, plus whether the host's address is one other hosts can
reach.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from clusterfarm.config.settings import Host, Settings
from clusterfarm.errors import LaunchError
from clusterfarm.launchers.preflight import PROBE, Add, Check, judge
from clusterfarm.launchers.ssh.launcher import COMMAND_TIMEOUT, remote_command, remote_failure
from clusterfarm.launchers.ssh.session import CONNECT_TIMEOUT, connect
from clusterfarm.wire.pyro import is_loopback

CHECKS = ("ssh login", "python", "clusterfarm", "data_dir", "disk", "nameserver", "address")


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
    judge(settings, host.name, probe, data_dir, add, "workers")
    _judge_address(settings, host, address, probe, add)
    return checks


def _judge_address(
    settings: Settings, host: Host, address: str, probe: dict[str, Any], add: Add
) -> None:
    """Whether the workers can listen on the host's address, and others reach it there."""
    addresses = ", ".join(probe["addresses"]) or "nothing"
    loopback = any(a.startswith("127.") or a == "::1" for a in probe["addresses"])
    if probe["bind"]:
        add(
            "address",
            False,
            f"{address} → {addresses}: cannot listen there ({probe['bind']})",
            f"set the host's address to one of {host.name}'s own addresses",
        )
    elif loopback and not is_loopback(settings.nameserver.host):
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
