"""Scale benchmark: the manager's cost with many workers, and status/rerun on a large state.

1. **Many workers.** Worker daemons are hosted many to a process (``HOSTS`` processes, each
   serving its share of PyroWorker objects on one Pyro5 daemon), but each worker still runs
   its cells in a task process of its own, as in production. For 16, 64 and 256 workers,
   ``clusterfarm run`` farms ``sleep`` cells of 0.2 s, ``SHORT`` and ``LONG`` of them a
   worker, and the table gives: start-up (until every worker has started a cell),
   efficiency (ideal makespan / the run's dispatch time), cells per call, what one more
   call and one more cell cost the manager's process in CPU (the long run's less the short
   one's, from the manager's log), and calls per second. A last row does the same with
   cells of 0.5 s at 64 workers, which go one a call: the manager's CPU per single-cell call.
2. **A large state.** A real 100,000-cell ``noop`` run is made once; then, in this process,
   medians of ``ROUNDS``: a bare ``sqlite3`` read of the same rows, what ``clusterfarm
   status`` does, and a rerun that finds everything complete.

    .venv/bin/python bench/scale.py [--workers 16,64,256] [--skip-state]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
HOSTS = 4  # processes hosting the worker daemons
SLEEP_S = 0.2
SHORT, LONG = 15, 50  # cells per worker in a short and a long run
# single-cell calls: cells of 0.5 s go one a call (BATCH_SECONDS in manager.py); the long run
# is long so that the start-up's CPU, which varies by 20-30 ms, is spread over 1,792 calls more
SINGLE_WORKERS, SINGLE_SLEEP_S, SINGLE_SHORT, SINGLE_LONG = 64, 0.5, 4, 32
ROUNDS = 3
STATE_YEARS, STATE_MEMBERS = 100, 1000  # 100,000 cells


# -- hosting many workers in one process --------------------------------------------------------


def host(prefix: str, count: int, ns_port: int) -> None:
    """Serve ``count`` workers named ``<prefix>.<n>`` from this process until stdin closes."""
    import threading

    from clusterfarm.config.settings import load_settings
    from clusterfarm.tasks.registry import load_task_modules
    from clusterfarm.wire.access import cluster_access
    from clusterfarm.wire.gate import GatedDaemon
    from clusterfarm.wire.nameserver import locate
    from clusterfarm.wire.pyro import WORKER_PREFIX, configure_pyro, raise_open_files_limit
    from clusterfarm.worker.daemon import metadata
    from clusterfarm.worker.executor import Executor
    from clusterfarm.worker.service import Own, PyroWorker

    configure_pyro()
    raise_open_files_limit()
    access = cluster_access(load_settings(None).security)  # $CLUSTERFARM_SECRET_FILE, below
    load_task_modules()
    daemon = GatedDaemon(host="127.0.0.1", port=0, access=access)
    ns = locate("127.0.0.1", ns_port, access)
    tmp = tempfile.gettempdir()
    own = Own(tmp, tmp, tmp, 60.0, 0.0)
    executors = []
    for n in range(count):
        name = f"{WORKER_PREFIX}{prefix}.{n}"
        executor = Executor()
        executors.append(executor)
        uri = daemon.register(PyroWorker(name, prefix, executor, own), objectId=name)
        ns.register(name, uri, metadata=metadata(prefix))
    for executor in executors:
        executor.wait_ready(120)
    print("ready", flush=True)
    threading.Thread(target=daemon.requestLoop, daemon=True).start()
    sys.stdin.read()  # until the benchmark closes our stdin
    for executor in executors:
        executor.close()
    os._exit(0)


class Pool:
    """Worker-hosting processes registered with one nameserver; grows on demand."""

    def __init__(self, work: Path) -> None:
        from clusterfarm.wire.secret import new_secret, write_secret

        self.work = work
        self.port = free_port()
        # the pool's secret: every process started here finds it through the default settings
        os.environ["CLUSTERFARM_SECRET_FILE"] = str(work / "secret")
        write_secret(work / "secret", new_secret())
        self.nameserver = subprocess.Popen(
            [sys.executable, "-m", "clusterfarm", "nameserver", "--port", str(self.port)],
            cwd=work,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(1.0)
        self.hosts: list[subprocess.Popen[str]] = []
        self.size = 0

    def grow_to(self, workers: int) -> None:
        share = -(-(workers - self.size) // HOSTS)  # the new workers over HOSTS processes
        while self.size < workers:
            step = min(workers - self.size, share)
            process = subprocess.Popen(
                [sys.executable, __file__, "host", f"h{len(self.hosts)}", str(step),
                 str(self.port)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )  # fmt: skip
            assert process.stdout is not None and process.stdout.readline().strip() == "ready"
            self.hosts.append(process)
            self.size += step

    def close(self) -> None:
        for process in self.hosts:
            assert process.stdin is not None
            process.stdin.close()
        for process in [*self.hosts, self.nameserver]:
            if process is self.nameserver:
                process.terminate()
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                process.kill()


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def run_manager(
    work: Path, port: int, workers: int, per_worker: int, sleep: float = SLEEP_S
) -> dict[str, float]:
    """One ``clusterfarm run`` over ``workers`` × ``per_worker`` sleep cells."""
    settings = work / f"scale-{workers}.toml"
    settings.write_text(
        f'[nameserver]\nport = {port}\n[[hosts]]\nname = "bench"\naddress = "127.0.0.1"\n'
        f"[run]\nheartbeat = 2\nlost_after = 30\n[tasks.sleep]\nseconds = {sleep}\n"
    )
    run_dir = work / f"run-{workers}-{per_worker}"
    shutil.rmtree(run_dir, ignore_errors=True)
    command = [sys.executable, "-m", "clusterfarm", "--settings", str(settings), "run"]
    cells = workers * per_worker
    # a run has at most 1,000 members: more cells, more years (exactly ``cells`` of them)
    members = max(m for m in range(1, 961) if cells % m == 0)
    years = cells // members
    command += ["--json", "--run-dir", str(run_dir), "--task", "sleep"]
    command += ["--years", f"2000-{2000 + years - 1}", "--members", f"0-{members - 1}"]
    done = subprocess.run(command, capture_output=True, text=True, cwd=work, check=False)
    if done.returncode != 0:
        raise SystemExit(f"run failed ({done.returncode}): {done.stderr.strip()}")
    log = (run_dir / "logs" / "manager.log").read_text()
    found = re.search(
        r"(\d+) cells sent in (\d+) calls, \d+ completions; ([\d.]+) s, manager CPU ([\d.]+) s",
        log,
    )
    assert found, log[-2000:]
    cells, calls, seconds, cpu = (float(v) for v in found.groups())
    return {
        "cells": cells,
        "calls": calls,
        "cpu": cpu,
        "efficiency": per_worker * sleep / seconds,
        "start_up": start_up(run_dir),
        "calls_per_s": calls / seconds,
        "cpu_share": cpu / seconds,
    }


def start_up(run_dir: Path) -> float:
    """Seconds from the run's first cell sent to the last worker's first cell started."""
    db = sqlite3.connect(run_dir / "state.sqlite")
    first_sent, last_first = db.execute(
        "SELECT min(started), max(first) FROM cells, "
        "(SELECT min(task_started) AS first FROM cells GROUP BY worker)"
    ).fetchone()
    db.close()
    return float(last_first - first_sent)


def many_workers(sizes: list[int]) -> None:
    with tempfile.TemporaryDirectory(prefix="cf-scale-") as tmp:
        work = Path(tmp)
        pool = Pool(work)
        rows = []
        try:
            for size in sizes:
                began = time.perf_counter()
                pool.grow_to(size)
                print(f"{size} workers up in {time.perf_counter() - began:.0f} s", file=sys.stderr)
                rows.append((str(size), measure(work, pool.port, size, SLEEP_S, SHORT, LONG)))
                if size == SINGLE_WORKERS:  # a run uses every worker registered: now, not later
                    single = measure(
                        work, pool.port, size, SINGLE_SLEEP_S, SINGLE_SHORT, SINGLE_LONG
                    )
                    rows.append((f"{size}, 1 cell a call", single))
        finally:
            pool.close()
    print(f"many workers: sleep {SLEEP_S} s cells; runs of {SHORT} and {LONG} cells a worker; "
          f"medians of {ROUNDS}")  # fmt: skip
    header = ["workers", "start-up", f"efficiency ({SHORT})", f"efficiency ({LONG})",
              "cells/call", "CPU/call", "CPU/cell", "calls/s", "CPU use"]  # fmt: skip
    table = [header] + [
        [
            size,
            f"{r['start_up']:.2f} s",
            f"{r['efficiency_short']:.3f}",
            f"{r['efficiency']:.3f}",
            f"{r['cells_per_call']:.2f}",
            f"{r['cpu_per_call_us']:.0f} µs",
            f"{r['cpu_per_cell_us']:.0f} µs",
            f"{r['calls_per_s']:.0f}",
            f"{r['cpu_share'] * 100:.0f}% of a core",
        ]
        for size, r in rows
    ]
    print_table(table)
    print(f"last row: {SINGLE_SLEEP_S} s cells, runs of {SINGLE_SHORT} and {SINGLE_LONG} a "
          "worker, so that every call carries one cell.\n"
          "start-up: from the first cell sent to the last worker's first cell started (long "
          "runs). CPU/call and CPU/cell: the manager's process CPU that one more call (cell) "
          "costs, the long run's CPU less the short one's over the calls (cells) more; CPU "
          "use: its share of a core in the long runs.")  # fmt: skip


def measure(
    work: Path, port: int, size: int, sleep: float, short_run: int, long_run: int
) -> dict[str, float]:
    """Medians of ROUNDS short and long runs over ``size`` workers, and what one more call
    (and cell) costs the manager: the difference between the two, so its start and end,
    which every run pays once, do not count."""
    rows = []
    for _ in range(ROUNDS):
        short = run_manager(work, port, size, short_run, sleep)
        long = run_manager(work, port, size, long_run, sleep)
        more_calls, more_cells = long["calls"] - short["calls"], long["cells"] - short["cells"]
        rows.append(
            {
                **long,
                "efficiency_short": short["efficiency"],
                "cells_per_call": long["cells"] / long["calls"],
                "cpu_per_call_us": (long["cpu"] - short["cpu"]) / more_calls * 1e6,
                "cpu_per_cell_us": (long["cpu"] - short["cpu"]) / more_cells * 1e6,
            }
        )
    return {key: statistics.median(row[key] for row in rows) for key in rows[0]}


# -- status and rerun on a large state ----------------------------------------------------------


def large_state() -> None:
    with tempfile.TemporaryDirectory(prefix="cf-state-") as tmp:
        work = Path(tmp)
        args = ["--task", "noop", "--years", f"2000-{2000 + STATE_YEARS - 1}"]
        args += ["--members", f"0-{STATE_MEMBERS - 1}", "--run-dir", str(work / "run")]
        began = time.perf_counter()
        made = subprocess.run(
            [sys.executable, "-m", "clusterfarm", "run", "--local", "2", "--json", *args],
            capture_output=True,
            text=True,
            cwd=work,
            check=False,
        )
        assert made.returncode == 0, made.stderr
        cells = STATE_YEARS * STATE_MEMBERS
        print(
            f"made a {cells:,}-cell state in {time.perf_counter() - began:.1f} s", file=sys.stderr
        )
        figures = {name: [] for name in ("bare", "status", "rerun")}  # type: dict[str, list[float]]
        for _ in range(ROUNDS):
            figures["bare"].append(timed(lambda: bare_read(work / "run")))
            figures["status"].append(timed(lambda: status(work / "run")))
            figures["rerun"].append(timed(lambda: rerun(work, args)))
        cli = [sys.executable, "-m", "clusterfarm"]
        commands = {
            "status": [*cli, "status", "--run-dir", str(work / "run")],
            "rerun": [*cli, "run", "--local", "2", "--json", *args],
            "bare": [sys.executable, "-c", BARE_SCRIPT, str(work / "run" / "state.sqlite")],
        }
        whole = {name: median_time(command, work) for name, command in commands.items()}
    bare = statistics.median(figures["bare"])
    print(f"\na {cells:,}-cell state: medians of {ROUNDS}, in-process (and as whole commands)")
    table = [["", "seconds", "× bare read", "whole command"]]
    for name, label in (("bare", "bare sqlite3 read of the rows"), ("status", "status"),
                        ("rerun", "rerun, nothing to do")):  # fmt: skip
        seconds = statistics.median(figures[name])
        table.append([label, f"{seconds:.3f}", f"{seconds / bare:.2f}", f"{whole[name]:.2f} s"])
    print_table(table)


BARE_SCRIPT = (
    "import sqlite3, sys; db = sqlite3.connect(sys.argv[1]); "
    "db.execute('SELECT task, year, member, status FROM cells').fetchall()"
)


def bare_read(run_dir: Path) -> None:
    db = sqlite3.connect(run_dir / "state.sqlite")
    db.execute("SELECT task, year, member, status FROM cells").fetchall()
    db.close()


def status(run_dir: Path) -> Any:
    from clusterfarm.record.state import connect
    from clusterfarm.record.status import read_status

    db = connect(run_dir, create=False)
    try:
        return read_status(db)
    finally:
        db.close()


def rerun(work: Path, args: list[str]) -> None:
    from clusterfarm.config.settings import load_settings
    from clusterfarm.launchers.pools import pool_for
    from clusterfarm.manager import runner
    from clusterfarm.show.board import BoardDisplay
    from clusterfarm.show.console import QuietView

    years, members = args[args.index("--years") + 1], args[args.index("--members") + 1]
    settings = load_settings(None).with_run(
        task="noop", years=years, members=members, run_dir=args[args.index("--run-dir") + 1]
    )
    request = runner.RunRequest(settings)
    report, code = runner.execute(request, BoardDisplay(QuietView()), pool_for(settings, 2))
    assert code == 0 and report.ran == 0, (code, report.ran)


def median_time(command: list[str], cwd: Path) -> float:
    """Median wall time of ``command`` as a whole process."""

    def once() -> None:
        subprocess.run(command, cwd=cwd, check=True, capture_output=True)

    return statistics.median(timed(once) for _ in range(ROUNDS))


def timed(fn: Any) -> float:
    began = time.perf_counter()
    fn()
    return time.perf_counter() - began


def print_table(table: list[list[str]]) -> None:
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    for row in table:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "host":
        return host(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", default="16,64,256")
    parser.add_argument("--skip-state", action="store_true")
    parser.add_argument("--skip-workers", action="store_true")
    options = parser.parse_args()
    if not options.skip_workers:
        many_workers([int(n) for n in options.workers.split(",")])
    if not options.skip_state:
        large_state()


if __name__ == "__main__":
    main()
