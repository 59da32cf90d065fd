"""Report benchmark: size and headless-Chromium load time of the HTML report of a 100,000-cell run.

Builds a synthetic state database with the real schema (``clusterfarm.state.connect``): one
vort_track run of 2,000 years x 50 members on 8 workers of 4 hosts, about 2% of cells retried,
0.5% failed for good and 0.1% timed out, so about 102,000 attempts. Then it times
``clusterfarm report`` (the command, as a subprocess) and opening the file in headless Chromium
until its canvases are drawn (median of 3, fresh browser each), and writes a screenshot.

    .venv/bin/python bench/report.py [--cells-years 2000] [--members 50] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from clusterfarm.record.state import connect
from clusterfarm.record.trace import INSERT_ATTEMPT
from tests.harness.browser import Browser, chromium_missing

GOALS = {"size": "<= 5 MB", "load": "<= 5 s"}
WORKERS = [f"clusterfarm.worker.host{h}.{n}" for h in range(4) for n in range(2)]


def make_run(run_dir: Path, years: int, members: int, seed: int = 1) -> int:
    """Write a finished synthetic run into ``run_dir``; return the number of attempts."""
    rng = random.Random(seed)
    db = connect(run_dir)
    t0 = time.time() - 86_400
    free = dict.fromkeys(WORKERS, t0)
    cells, attempts = [], []
    for year in range(1001, 1001 + years):
        for member in range(members):
            roll = rng.random()
            tries = 2 if roll < 0.02 else 1
            final = "F" if roll < 0.005 else "T" if roll < 0.006 else "+"
            for attempt in range(1, tries + 1):
                worker = min(free, key=free.__getitem__)
                queued = free[worker]
                started = queued + 0.002
                elapsed = rng.lognormvariate(3.5, 0.4)
                last = attempt == tries
                status = (
                    {"F": "failure", "T": "timeout"}[final]
                    if last and final != "+"
                    else ("complete" if last else "failure")
                )
                error = None if status == "complete" else f"RuntimeError: bad data in {year}"
                free[worker] = started + elapsed
                attempts.append(
                    ("vort_track", year, member, attempt, status, None if not error else "task",
                     error, worker, worker.split(".")[2], queued, started, started + elapsed,
                     elapsed, elapsed * 0.97, rng.randint(180, 900) * 2**20, 6 * 2**20,
                     40_000, 0, 40_960)
                )  # fmt: skip
            cells.append(
                (final, tries, worker, worker.split(".")[2], queued, started + elapsed, elapsed,
                 f"/results/vort_track/{year}/vort_track_{year}_m{member:03d}.nc",
                 json.dumps({"n_tracks": rng.randint(5, 40)}),
                 error if final != "+" else None, "task" if final != "+" else None,
                 "vort_track", year, member)
            )  # fmt: skip
    end = max(free.values())
    with db:
        db.execute(
            "INSERT INTO invocations (pid, started, finished, tasks, years, members, ran, "
            "skipped, state, exit_code, argv, settings) VALUES (1, ?, ?, 'vort_track', ?, ?, ?, "
            "0, 'finished', 1, ?, ?)",
            (
                t0,
                end,
                f"1001-{1000 + years}",
                f"0-{members - 1}",
                len(cells),
                json.dumps(["clusterfarm", "run"]),
                json.dumps({"tasks": {"vort_track": {"version": "3", "params_hash": "0" * 16}}}),
            ),
        )
        db.executemany(
            "INSERT INTO cells (status, attempts, worker, host, started, finished, elapsed, "
            "output, summary, error, error_kind, task, year, member) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            cells,
        )
        db.executemany(INSERT_ATTEMPT, attempts)
    db.close()
    return len(attempts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--years", type=int, default=2000)
    parser.add_argument("--members", type=int, default=50)
    parser.add_argument("--out", type=Path, default=None, help="keep report and screenshot here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cf-bench-report-") as tmp:
        out_dir = args.out or Path(tmp)
        out_dir.mkdir(parents=True, exist_ok=True)
        run_dir = Path(tmp) / "run"
        n_attempts = make_run(run_dir, args.years, args.members)
        report = out_dir / "report-100k.html"
        began = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "clusterfarm", "report", "--run-dir", str(run_dir),
             "--out", str(report)],
            check=True, capture_output=True, cwd=tmp,
        )  # fmt: skip
        build_s = time.perf_counter() - began
        size = report.stat().st_size
        loads = []
        if reason := chromium_missing():
            print(f"load time not measured: {reason}", file=sys.stderr)
        else:
            for k in range(3):
                browser = Browser()
                try:
                    loads.append(browser.open(report.as_uri()))
                    errors, requests = browser.console_errors(), browser.requests()
                    if k == 0:
                        browser.screenshot(out_dir / "report-100k.png")
                finally:
                    browser.close()
                assert not errors and requests == [report.as_uri()], (errors, requests)
    cells = args.years * args.members
    print(f"report benchmark: {cells:,} cells, {n_attempts:,} attempts")
    print(f"  clusterfarm report (whole command): {build_s:.2f} s")
    print(f"  file size: {size / 1e6:.2f} MB (goal {GOALS['size']})")
    if loads:
        print(
            f"  headless Chromium load until drawn: median {statistics.median(loads):.2f} s of "
            f"{', '.join(f'{s:.2f}' for s in loads)} (goal {GOALS['load']})"
        )
    if args.out:
        print(f"  report and screenshot in {args.out}")


if __name__ == "__main__":
    main()
