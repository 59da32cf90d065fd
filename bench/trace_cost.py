"""What recording every attempt costs dispatch: the same noop run with and without it.

Runs ``clusterfarm run --local 2 --task noop`` over 20,000 cells (bench/dispatch.py's first
row) alternately with the record and without it (``CLUSTERFARM_RECORD=off``, a switch for
this measurement only: no usage measured in the task processes, no attempt rows written),
three times each, in one run of this script, and prints the median cells per second of each
and their ratio.

    .venv/bin/python bench/trace_cost.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

YEARS, MEMBERS = 20, 1000


def _cpu_of_children() -> float:
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return used.ru_utime + used.ru_stime


def noop_run(record: bool, work: Path) -> tuple[float, float, float]:
    """One run, with or without the record: cells per second (dispatch, whole command) and
    CPU µs per cell of all its processes (manager, workers, task processes)."""
    env = dict(os.environ, CLUSTERFARM_RECORD="on" if record else "off")
    run_dir = work / f"run-{time.monotonic_ns()}"
    cpu = _cpu_of_children()
    began = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "clusterfarm", "run", "--json", "--run-dir", str(run_dir),
         "--local", "2", "--task", "noop", "--years", f"2000-{2000 + YEARS - 1}",
         "--members", f"0-{MEMBERS - 1}"],
        capture_output=True, text=True, cwd=work, env=env, check=False,
    )  # fmt: skip
    command = time.perf_counter() - began
    cpu = _cpu_of_children() - cpu  # the manager reaps its workers, so theirs count too
    if done.returncode != 0:
        raise SystemExit(f"run failed: {done.stderr.strip()}")
    report = json.loads(done.stdout)
    assert report["complete"] == YEARS * MEMBERS, report
    cells = YEARS * MEMBERS
    return cells / report["elapsed"], cells / command, cpu / cells * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cf-bench-trace-") as tmp:
        work = Path(tmp)
        figures: dict[str, list[tuple[float, float, float]]] = {"without": [], "with": []}
        for _ in range(args.rounds):
            for name in figures:
                figures[name].append(noop_run(name == "with", work))
    load = os.getloadavg()[0]
    print(f"attempt record cost, {YEARS * MEMBERS:,} noop cells, 2 local workers")
    print(f"  load average at the end: {load:.1f} (other work on this machine adds noise)")
    medians = {}
    for name, runs in figures.items():
        medians[name] = [statistics.median(r[k] for r in runs) for k in range(3)]
        dispatch, command, cpu = medians[name]
        each = ", ".join(f"{r[0]:,.0f}" for r in runs)
        print(f"  {name:8} record: {dispatch:,.0f} tasks/s dispatch ({each}); "
              f"{command:,.0f} tasks/s whole command; {cpu:.0f} CPU µs per cell")  # fmt: skip
    ratio = medians["with"][0] / medians["without"][0]
    whole = medians["with"][1] / medians["without"][1]
    cpu_ratio = medians["without"][2] / medians["with"][2]
    print(
        f"  with/without: {ratio:.3f} dispatch, {whole:.3f} whole command, "
        f"{cpu_ratio:.3f} by CPU per cell (goal >= 0.95)"
    )


if __name__ == "__main__":
    main()
