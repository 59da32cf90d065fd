"""Dispatch benchmark: clusterfarm against multiprocessing.Pool and Dask LocalCluster.

Two local workers each, in one run, on this machine:

1. 20,000 ``noop`` cells: tasks per second (clusterfarm: the whole ``clusterfarm run``
   command in local mode, with every status change persisted; also its dispatch alone);
2. 200 ``sleep`` cells of 50 ms: efficiency = ideal makespan / measured;
3. 100 ``burn`` cells of 40 ms CPU: efficiency;
4. start-up until 2 workers are ready.

For 2 and 3 clusterfarm runs in cluster mode against workers started beforehand, as the
baselines run on pools started beforehand; start-up is row 4. Dask is installed into
bench/.venv-dask on first use, never into the project's environment.

    .venv/bin/python bench/dispatch.py [--no-dask]
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
DASK_ENV = BENCH / ".venv-dask"
WORKERS = 2
NOOP_CELLS = (20, 1000)  # years x members = 20,000
SLEEP_CELLS, SLEEP_S = 200, 0.05
BURN_CELLS, BURN_S = 100, 0.04
GOALS = {
    "noop": ">= 5,000 (aim 10,000)",
    "sleep": ">= 0.98",
    "burn": ">= 0.95",
    "startup": "<= 0.5 s",
}


def clusterfarm_figures(work: Path) -> dict[str, float]:
    """Measure clusterfarm: the whole run command, then runs on pre-started workers."""
    from clusterfarm.launchers.local import LocalLauncher
    from clusterfarm.nameserver import NameServer

    figures: dict[str, float] = {}
    years, members = NOOP_CELLS
    began = time.perf_counter()
    report = run_command(
        work,
        "noop-run",
        "--local",
        str(WORKERS),
        "--task",
        "noop",
        "--years",
        f"2000-{2000 + years - 1}",
        "--members",
        f"0-{members - 1}",
    )
    figures["noop_command_s"] = time.perf_counter() - began
    figures["noop_dispatch_s"] = report["elapsed"]
    assert report["complete"] == years * members, report

    nameserver = NameServer("127.0.0.1", 0)
    began = time.perf_counter()
    launcher = LocalLauncher(WORKERS, nameserver.host, nameserver.port, work / "logs")
    launcher.start()
    figures["startup_s"] = time.perf_counter() - began
    settings = work / "cluster.toml"
    settings.write_text(
        f"[nameserver]\nport = {nameserver.port}\n"
        f'[[hosts]]\nname = "bench"\naddress = "127.0.0.1"\n'
        f"[tasks.sleep]\nseconds = {SLEEP_S}\n[tasks.burn]\nseconds = {BURN_S}\n"
    )
    try:
        for task, cells in (("sleep", SLEEP_CELLS), ("burn", BURN_CELLS)):
            report = run_command(
                work,
                f"{task}-run",
                "--settings",
                str(settings),
                "--task",
                task,
                "--years",
                "2000",
                "--members",
                f"0-{cells - 1}",
            )
            assert report["complete"] == cells, report
            figures[f"{task}_s"] = report["elapsed"]
    finally:
        launcher.stop()
        nameserver.stop()
    return figures


def run_command(work: Path, name: str, *args: str) -> dict[str, Any]:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "clusterfarm",
            "run",
            "--json",
            "--run-dir",
            str(work / name),
            *args,
        ],
        capture_output=True,
        text=True,
        cwd=work,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"clusterfarm run failed ({done.returncode}): {done.stderr.strip()}")
    return dict(json.loads(done.stdout))


def baseline_figures(python: str, which: str) -> dict[str, float]:
    counts = {"noop": NOOP_CELLS[0] * NOOP_CELLS[1], "sleep": SLEEP_CELLS, "burn": BURN_CELLS}
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    done = subprocess.run(
        [python, str(BENCH / "baselines.py"), which, json.dumps(counts)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(done.stderr.strip().splitlines()[-1] if done.stderr else "failed")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def dask_python() -> str:
    """The benchmark's own environment with Dask (made on first use)."""
    python = DASK_ENV / "bin" / "python"
    if not python.exists():
        print("installing dask[distributed] into bench/.venv-dask ...", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(DASK_ENV)], check=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", "dask[distributed]"], check=True
        )
    return str(python)


def rows(figures: dict[str, float]) -> dict[str, str]:
    noop = NOOP_CELLS[0] * NOOP_CELLS[1]
    ideal_sleep = SLEEP_CELLS * SLEEP_S / WORKERS
    ideal_burn = BURN_CELLS * BURN_S / WORKERS
    out = {
        "noop": f"{noop / figures['noop_s']:,.0f}"
        if "noop_s" in figures
        else f"{noop / figures['noop_command_s']:,.0f}",
        "sleep": f"{ideal_sleep / figures['sleep_s']:.3f}",
        "burn": f"{ideal_burn / figures['burn_s']:.3f}",
        "startup": f"{figures['startup_s']:.2f} s",
    }
    if "noop_dispatch_s" in figures:
        out["noop"] += f" ({noop / figures['noop_dispatch_s']:,.0f} dispatch)"
    return out


def main() -> None:
    columns: dict[str, dict[str, str]] = {}
    with tempfile.TemporaryDirectory(prefix="cf-bench-") as tmp:
        columns["clusterfarm"] = rows(clusterfarm_figures(Path(tmp)))
    columns["multiprocessing.Pool"] = rows(baseline_figures(sys.executable, "pool"))
    if "--no-dask" not in sys.argv:
        try:
            columns["dask LocalCluster"] = rows(baseline_figures(dask_python(), "dask"))
        except (RuntimeError, subprocess.CalledProcessError) as exc:
            print(f"dask: not measured ({exc})", file=sys.stderr)
    labels = {
        "noop": f"{NOOP_CELLS[0] * NOOP_CELLS[1]:,} noop: tasks/s",
        "sleep": f"{SLEEP_CELLS} sleep {SLEEP_S * 1000:.0f} ms: efficiency",
        "burn": f"{BURN_CELLS} burn {BURN_S * 1000:.0f} ms: efficiency",
        "startup": f"start-up to {WORKERS} ready workers",
    }
    headers = ["", *columns, "goal (clusterfarm)"]
    table = [headers] + [
        [labels[key], *(c[key] for c in columns.values()), GOALS[key]] for key in labels
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(headers))]
    print(f"dispatch benchmark, {WORKERS} local workers, {os.cpu_count()} CPUs")
    for row in table:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))


if __name__ == "__main__":
    main()
