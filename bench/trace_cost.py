"""What recording every attempt costs dispatch: the same noop run with and without it.

Runs ``clusterfarm run --local 2 --task noop`` over 20,000 cells (bench/dispatch.py's first
row) alternately with this tree and with a tree without the attempt record (``git archive`` of
``--base``, default: the commit this branch started from), three times each, in one run of
this script, and prints the median tasks per second of each and their ratio. Both trees run in
this environment (``PYTHONPATH`` picks the tree), so only the code differs.

    .venv/bin/python bench/trace_cost.py [--base COMMIT] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
YEARS, MEMBERS = 20, 1000


def export(commit: str, into: Path) -> Path:
    """A copy of ``commit``'s tree (no git worktree: nothing shared is touched)."""
    into.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", commit], check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def noop_run(tree: Path, work: Path) -> tuple[float, float]:
    """Tasks per second of one run with ``tree``'s clusterfarm: (dispatch, whole command)."""
    env = dict(os.environ, PYTHONPATH=str(tree))
    run_dir = work / f"run-{time.monotonic_ns()}"
    began = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "clusterfarm", "run", "--json", "--run-dir", str(run_dir),
         "--local", "2", "--task", "noop", "--years", f"2000-{2000 + YEARS - 1}",
         "--members", f"0-{MEMBERS - 1}"],
        capture_output=True, text=True, cwd=work, env=env, check=False,
    )  # fmt: skip
    command = time.perf_counter() - began
    if done.returncode != 0:
        raise SystemExit(f"run with {tree} failed: {done.stderr.strip()}")
    report = json.loads(done.stdout)
    assert report["complete"] == YEARS * MEMBERS, report
    return YEARS * MEMBERS / report["elapsed"], YEARS * MEMBERS / command


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="main", help="commit without the record")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    base = subprocess.run(
        ["git", "-C", str(ROOT), "merge-base", "HEAD", args.base],
        check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="cf-bench-trace-") as tmp:
        work = Path(tmp)
        trees = {"without": export(base, work / "base"), "with": ROOT}
        figures: dict[str, list[tuple[float, float]]] = {"without": [], "with": []}
        for _ in range(args.rounds):
            for name, tree in trees.items():
                figures[name].append(noop_run(tree, work))
    print(f"attempt record cost, {YEARS * MEMBERS:,} noop cells, 2 local workers, base {base[:8]}")
    medians = {}
    for name, runs in figures.items():
        dispatch = statistics.median(r[0] for r in runs)
        command = statistics.median(r[1] for r in runs)
        medians[name] = (dispatch, command)
        each = ", ".join(f"{r[0]:,.0f}" for r in runs)
        print(f"  {name:8} record: {dispatch:,.0f} tasks/s dispatch ({each}); "
              f"{command:,.0f} tasks/s whole command")  # fmt: skip
    ratio = medians["with"][0] / medians["without"][0]
    whole = medians["with"][1] / medians["without"][1]
    print(f"  with/without: {ratio:.3f} dispatch, {whole:.3f} whole command (goal >= 0.95)")


if __name__ == "__main__":
    main()
