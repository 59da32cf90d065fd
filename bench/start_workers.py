"""Start-up benchmark: ``clusterfarm start-workers`` on 1 host vs 3 hosts (2, 1 worker each).

The hosts are network namespaces on a bridge, each with its own sshd (the helpers of
tests/test_multihost.py), so this needs root and openssh-server. Times the whole command
(CLI start, SSH to every host in parallel, start the daemons, wait until all are registered),
then stops the workers before the next round. Hosts are reached in parallel, so 3 hosts
would cost about as much as 1; but these "hosts" share this machine's CPUs, so starting 3x as
many Python daemons at once costs CPU time that real hosts would not share.

    .venv/bin/python bench/start_workers.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from clusterfarm.wire.nameserver import NameServer
from tests.harness.netns import make_lab, netns_missing
from tests.harness.secret import ACCESS
from tests.harness.sshd import SSHLab, start_sshds

WORKERS_PER_HOST = 2


def run_cli(*args: str, cwd: Path, timeout: float, **env: str) -> Any:
    done = subprocess.run(
        [sys.executable, "-m", "clusterfarm", *args],
        cwd=cwd,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if done.returncode != 0:
        raise SystemExit(f"clusterfarm {' '.join(args)} failed:\n{done.stdout}{done.stderr}")
    return done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="rounds per setup")
    repeat = parser.parse_args().repeat
    if reason := netns_missing():
        raise SystemExit(f"skipped: {reason}")
    folder = Path(tempfile.mkdtemp(prefix="cf-bench-"))
    lab = make_lab(3)
    servers = []
    nameserver = None
    try:
        places = [(lab.address(i), namespace) for i, namespace in enumerate(lab.namespaces)]
        servers = start_sshds(folder, places)
        nameserver = NameServer(lab.gateway, 0, ACCESS)
        ssh = SSHLab(folder, nameserver.host, nameserver.port, run_cli)
        ssh.trust(*servers)
        print(f"start-workers, {repeat} rounds each (seconds):")
        for per_host in (WORKERS_PER_HOST, 1):
            hosts = [
                ssh.host(f"h{i}", server, workers=per_host) for i, server in enumerate(servers)
            ]
            for count in (1, 3):
                settings = ssh.settings(*hosts[:count], file=f"hosts{count}x{per_host}.toml")
                times = []
                for _ in range(repeat):
                    began = time.perf_counter()
                    ssh.cli(settings, "start-workers")
                    times.append(time.perf_counter() - began)
                    ssh.cli(settings, "stop-workers")
                print(
                    f"  {count} host{'s' if count > 1 else ' '} x {per_host} worker"
                    f"{'s' if per_host > 1 else ' '}: median {statistics.median(times):.2f}  "
                    f"min {min(times):.2f}  max {max(times):.2f}"
                )
        ssh.cleanup()
    finally:
        if nameserver is not None:
            nameserver.stop()
        for server in servers:
            server.stop()
        lab.close()


if __name__ == "__main__":
    main()
