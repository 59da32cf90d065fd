"""Dispatch benchmark: clusterfarm beside multiprocessing.Pool, a bare Pyro5 farm and Dask.

Two local workers each, on this machine, in rounds (default 3); every figure is the median
over the rounds, and every ratio is taken within a round (the machine is shared and noisy,
so only figures measured side by side compare):

1. 20,000 ``noop`` cells: cells per second. For clusterfarm twice: on workers started
   beforehand, as every baseline runs on a pool started beforehand (the run's own elapsed
   time: state, joins and shutdown included), and as the whole ``clusterfarm run --local 2``
   command (Python start-up, workers started and stopped, every change persisted);
2. 200 ``sleep`` cells of 50 ms: efficiency = ideal makespan / measured;
3. 100 ``burn`` cells of 40 ms CPU: efficiency;
4. start-up until 2 workers are ready.

The bare Pyro5 farm is one call per task, one thread per worker, serpent (bench/baselines.py).
Dask is measured with ``--dask``: it is installed into bench/.venv-dask on first use, never
into the project's environment.

    .venv/bin/python bench/dispatch.py [--rounds N] [--dask]
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
from typing import Any

from clusterfarm.wire.access import Access

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
DASK_ENV = BENCH / ".venv-dask"
WORKERS = 2
NOOP_CELLS = (20, 1000)  # years x members = 20,000
SLEEP_CELLS, SLEEP_S = 200, 0.05
BURN_CELLS, BURN_S = 100, 0.04
GOALS = {
    "noop": ">= 0.6x Pool, >= 2.5x bare Pyro5",
    "sleep": ">= 0.98",
    "burn": ">= 0.95",
    "startup": "<= 0.5 s",
}


def clusterfarm_figures(work: Path) -> dict[str, float]:
    """Measure clusterfarm: the whole local-mode command, then runs on pre-started workers."""
    from clusterfarm.launchers.local import LocalLauncher
    from clusterfarm.wire.nameserver import NameServer

    figures: dict[str, float] = {}
    years, members = NOOP_CELLS
    noop_args = ("--task", "noop", "--years", f"2000-{2000 + years - 1}")
    noop_args += ("--members", f"0-{members - 1}")
    began = time.perf_counter()
    report = run_command(work, "noop-command", "--local", str(WORKERS), *noop_args)
    figures["noop_command_s"] = time.perf_counter() - began
    assert report["complete"] == years * members, report

    access = cluster_access(work)
    nameserver = NameServer("127.0.0.1", 0, access)
    began = time.perf_counter()
    launcher = LocalLauncher(WORKERS, nameserver.host, nameserver.port, work / "logs", access)
    launcher.start()
    figures["startup_s"] = time.perf_counter() - began
    settings = work / "cluster.toml"
    settings.write_text(
        f'[security]\nsecret_file = "{work / "secret"}"\n'
        f"[nameserver]\nport = {nameserver.port}\n"
        f'[[hosts]]\nname = "bench"\naddress = "127.0.0.1"\n'
        f"[tasks.sleep]\nseconds = {SLEEP_S}\n[tasks.burn]\nseconds = {BURN_S}\n"
    )
    try:
        time.sleep(1.0)  # the workers' task processes are started in the background
        report = run_command(work, "noop-run", "--settings", str(settings), *noop_args)
        assert report["complete"] == years * members, report
        figures["noop_s"] = report["elapsed"]
        for task, cells in (("sleep", SLEEP_CELLS), ("burn", BURN_CELLS)):
            cell_args = ("--task", task, "--years", "2000", "--members", f"0-{cells - 1}")
            report = run_command(work, f"{task}-run", "--settings", str(settings), *cell_args)
            assert report["complete"] == cells, report
            figures[f"{task}_s"] = report["elapsed"]
    finally:
        launcher.stop()
        nameserver.stop()
    return figures


def cluster_access(work: Path) -> Access:
    """The benchmark's own cluster: its secret in ``work/secret``."""
    from clusterfarm.wire.secret import new_secret, write_secret

    return Access(write_secret(work / "secret", new_secret()))


def run_command(work: Path, name: str, *args: str) -> dict[str, Any]:
    command = [sys.executable, "-m", "clusterfarm", "run", "--json", "--run-dir", str(work / name)]
    done = subprocess.run([*command, *args], capture_output=True, text=True, cwd=work, check=False)
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


def rates(figures: dict[str, float]) -> dict[str, float]:
    """Cells per second and efficiencies from one system's seconds."""
    noop = NOOP_CELLS[0] * NOOP_CELLS[1]
    out = {
        "noop": noop / figures["noop_s"],
        "sleep": SLEEP_CELLS * SLEEP_S / WORKERS / figures["sleep_s"],
        "burn": BURN_CELLS * BURN_S / WORKERS / figures["burn_s"],
        "startup": figures["startup_s"],
    }
    if "noop_command_s" in figures:
        out["noop_command"] = noop / figures["noop_command_s"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--dask", action="store_true", help="measure Dask LocalCluster too")
    options = parser.parse_args()
    systems = {"clusterfarm": None, "multiprocessing.Pool": "pool", "bare Pyro5": "pyro5"}
    if options.dask:
        systems["dask LocalCluster"] = "dask"
    rounds: list[dict[str, dict[str, float]]] = []
    for n in range(options.rounds):
        measured: dict[str, dict[str, float]] = {}
        for name, which in systems.items():
            if which is None:
                with tempfile.TemporaryDirectory(prefix="cf-bench-") as tmp:
                    measured[name] = rates(clusterfarm_figures(Path(tmp)))
            else:
                python = dask_python() if which == "dask" else sys.executable
                measured[name] = rates(baseline_figures(python, which))
        rounds.append(measured)
        print(
            f"round {n + 1}: "
            + ", ".join(f"{name} {m['noop']:,.0f}/s" for name, m in measured.items()),
            file=sys.stderr,
        )
    print_table(rounds, list(systems))


def median(rounds: list[dict[str, dict[str, float]]], system: str, key: str) -> float:
    return statistics.median(r[system][key] for r in rounds)


def print_table(rounds: list[dict[str, dict[str, float]]], systems: list[str]) -> None:
    cf = "clusterfarm"
    noop = NOOP_CELLS[0] * NOOP_CELLS[1]
    labels = {
        "noop": f"{noop:,} noop: cells/s",
        "sleep": f"{SLEEP_CELLS} sleep {SLEEP_S * 1000:.0f} ms: efficiency",
        "burn": f"{BURN_CELLS} burn {BURN_S * 1000:.0f} ms: efficiency",
        "startup": f"start-up to {WORKERS} ready workers",
    }
    formats = {"noop": "{:,.0f}", "sleep": "{:.3f}", "burn": "{:.3f}", "startup": "{:.2f} s"}
    table = [["", *systems, "goal (clusterfarm)"]]
    for key, label in labels.items():
        row = [label] + [formats[key].format(median(rounds, s, key)) for s in systems]
        table.append([*row, GOALS[key]])
    command = median(rounds, cf, "noop_command")
    table.append(["  whole run --local 2 command", f"{command:,.0f}", *[""] * len(systems)])
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    print(
        f"dispatch benchmark: {WORKERS} local workers, {os.cpu_count()} CPUs, "
        f"medians of {len(rounds)} rounds"
    )
    for row in table:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))
    print("\nnoop ratios, each within one round (median):")
    for other in systems[1:]:
        ratio = statistics.median(r[cf]["noop"] / r[other]["noop"] for r in rounds)
        print(f"  clusterfarm / {other}: {ratio:.2f}x")


if __name__ == "__main__":
    main()
