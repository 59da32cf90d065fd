"""SLURM start-up and shut-down: submit to registered workers, and stop to nothing left.

Starts the single-node SLURM cluster of the tests (tests/harness/slurm.py, root only), a nameserver,
then times, for 2 and 4 workers: ``SlurmLauncher.start`` (sbatch of one array until every
worker is registered with the nameserver) and ``SlurmLauncher.stop`` (``scancel --signal=TERM``
to the daemons, then until no job of ours is in ``squeue``). Stops the cluster at the end.

    .venv/bin/python bench/slurm_workers.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from clusterfarm.config.settings import load_settings
from clusterfarm.launchers.slurm.launcher import SlurmLauncher
from clusterfarm.wire.nameserver import NameServer
from tests.harness.cli import cli_env
from tests.harness.secret import ACCESS
from tests.harness.slurm import Lab, slurm_missing, start_cluster


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    if reason := slurm_missing():
        sys.exit(f"skipped: {reason}")
    os.environ.update(cli_env())  # the jobs inherit it: the test tasks importable there
    cluster = start_cluster()
    print(f"SLURM cluster ({cluster.proctrack}) ready in {cluster.started_in:.2f} s")
    try:
        with tempfile.TemporaryDirectory() as folder:
            lab = Lab(Path(folder))
            server = NameServer("127.0.0.1", lab.port, ACCESS)
            try:
                for workers in (2, 4):
                    lab.write(slurm=f"workers = {workers}\n")
                    launcher = SlurmLauncher(load_settings(str(lab.settings)))
                    starts, stops = [], []
                    for _ in range(args.repeat):
                        began = time.perf_counter()
                        registered = launcher.start(timeout=60)
                        starts.append(time.perf_counter() - began)
                        assert len(registered) == workers, registered
                        began = time.perf_counter()
                        launcher.stop()
                        stops.append(time.perf_counter() - began)
                        assert not lab.jobs() and not lab.worker_processes()
                    print(
                        f"{workers} workers: submit -> all registered "
                        f"{statistics.median(starts):.2f} s (min {min(starts):.2f}), "
                        f"stop -> no job, no process {statistics.median(stops):.2f} s "
                        f"(min {min(stops):.2f}), median of {args.repeat}"
                    )
            finally:
                lab.cleanup()
                server.stop()
    finally:
        cluster.stop()


if __name__ == "__main__":
    main()
