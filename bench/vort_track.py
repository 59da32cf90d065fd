"""Time and memory of vort_track on one member-year: stages, whole process, 2° and 0.25°.

1. Stages at 2° (1460 × 91 × 180; float32 and packed int16/zlib files): reading u and v,
   vorticity, maxima, linking and writing, best of ``--repeat``.
2. Whole process at 2°: ``clusterfarm run-task --task vort_track`` against a process that only
   imports numpy and netCDF4 and reads u and v (best of ``--repeat`` each); goal ≤ 2.5×.
3. Peak RSS and time of ``run-task`` on a 2° and a 0.25° member-year (1460 × 721 × 1440, packed
   int16 like ERA5, ~6 GB; made once by interpolating the 2° sample, goal ≤ 2 GB).

The data go to ``--data-dir`` (default bench/.data, not committed) and are reused. Run from the
repository root:

    .venv/bin/python bench/vort_track.py [--data-dir DIR] [--repeat N] [--no-quarter]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import netCDF4
import numpy as np

# the project's environment (bin/_venv.sh) has this checkout installed editable
from clusterfarm import analysis
from clusterfarm.analysis import sample
from clusterfarm.analysis.vorticity import cyclonic_vorticity

YEAR = 2000
ROOT = Path(__file__).resolve().parents[1]
VARIANTS = {"float32": False, "packed/zlib": True}
STAGES = ("read u, v", "vorticity", "maxima", "link", "write")
QUARTER_LATS = np.linspace(90.0, -90.0, 721)
QUARTER_LONS = np.arange(1440) * 0.25
BASELINE = """
import sys
import netCDF4
import numpy as np
for name in ("u850", "v850"):
    with netCDF4.Dataset(f"{sys.argv[1]}/2000/{name}_2000.nc") as ds:
        np.asarray(ds[name][:, 0])
"""
# runs a command and prints its peak RSS (the largest child's, in KB) and wall time
MEASURE = """
import resource, subprocess, sys, time
began = time.perf_counter()
subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, time.perf_counter() - began)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=ROOT / "bench" / ".data")
    parser.add_argument("--members", type=int, default=2, help="members in the 2° files")
    parser.add_argument("--repeat", type=int, default=3, help="runs per measure; best is shown")
    parser.add_argument("--no-quarter", action="store_true", help="skip the 0.25° year")
    args = parser.parse_args()

    columns = {}
    with tempfile.TemporaryDirectory(prefix="cf-bench-") as scratch:
        for label, packed in VARIANTS.items():
            data_dir = args.data_dir / label.replace("/", "-")
            prepare(data_dir, args.members, packed)
            columns[label] = time_stages(data_dir, Path(scratch), args.repeat)
        print_stages(columns, args.repeat)

        two_degree = args.data_dir / "float32"
        whole = whole_process(two_degree, Path(scratch), args.repeat)
        print_whole(whole)

        memory = {"2°": measure(run_task_command(two_degree, Path(scratch) / "rss2"))}
        if not args.no_quarter:
            quarter = args.data_dir / "quarter"
            prepare_quarter(quarter)
            memory["0.25°"] = measure(run_task_command(quarter, Path(scratch) / "rss025"))
        print_memory(memory)


def prepare(data_dir: Path, members: int, packed: bool) -> None:
    """Write the full-size sample year unless it is already there."""
    if (data_dir / str(YEAR) / f"v850_{YEAR}.nc").is_file():
        print(f"reusing {data_dir}")
        return
    start = time.perf_counter()
    analysis.write_sample_data(data_dir, YEAR, members, size="full", packed=packed)
    print(f"generated {data_dir} in {time.perf_counter() - start:.1f} s")


def time_stages(data_dir: Path, scratch: Path, repeat: int) -> dict[str, Any]:
    """Best time of each stage for member 0, and the number of tracks found."""
    best = dict.fromkeys(STAGES, float("inf"))

    @contextlib.contextmanager
    def timed(stage: str) -> Iterator[None]:
        start = time.perf_counter()
        yield
        best[stage] = min(best[stage], time.perf_counter() - start)

    for _ in range(repeat):
        with timed("read u, v"):
            winds = analysis.read_winds(data_dir, YEAR, 0)
        with timed("vorticity"):
            zeta = analysis.relative_vorticity(winds.u, winds.v, winds.lats, winds.lons)
            cyclonic = cyclonic_vorticity(zeta, winds.lats, in_place=True)
        with timed("maxima"):
            centres = analysis.find_maxima(cyclonic, winds.lats, winds.lons)
        with timed("link"):
            tracks = analysis.link_tracks(centres, winds.times)
        with timed("write"):
            analysis.write_tracks(
                scratch / "tracks.nc", tracks, time_units=winds.time_units, calendar=winds.calendar
            )
    shape = "x".join(str(n) for n in winds.u.shape)
    return {**best, "tracks": len(tracks), "shape": shape}


def run_task_command(data_dir: Path, run_dir: Path) -> list[str]:
    """``clusterfarm run-task`` for member 0 with settings naming ``data_dir``."""
    run_dir.mkdir(parents=True, exist_ok=True)
    settings = run_dir / "clusterfarm.toml"
    settings.write_text(f'[run]\ndata_dir = "{data_dir}"\nrun_dir = "{run_dir}"\n')
    clusterfarm = Path(sys.executable).with_name("clusterfarm")
    return [str(clusterfarm), "--settings", str(settings), "run-task", "--task", "vort_track",
            "--year", str(YEAR), "--member", "0"]  # fmt: skip


def whole_process(data_dir: Path, scratch: Path, repeat: int) -> dict[str, float]:
    """Best wall time of the reading-only process and of run-task, as whole processes.

    Python may cache bytecode as an installed package does (PYTHONDONTWRITEBYTECODE, set in
    some shells, would make each run compile clusterfarm's modules again, ~0.1 s); a first,
    untimed round warms the caches.
    """
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    commands = {
        "numpy + netCDF4, read u, v": [sys.executable, "-c", BASELINE, str(data_dir)],
        "clusterfarm run-task": run_task_command(data_dir, scratch / "whole"),
    }
    best = dict.fromkeys(commands, float("inf"))
    for round_ in range(repeat + 1):
        for label, command in commands.items():
            began = time.perf_counter()
            subprocess.run(command, check=True, stdout=subprocess.DEVNULL, env=env)
            if round_:
                best[label] = min(best[label], time.perf_counter() - began)
    return best


def measure(command: list[str]) -> dict[str, float]:
    """Peak RSS (MB) and wall time (s) of one run of ``command`` in a fresh process."""
    done = subprocess.run(
        [sys.executable, "-c", MEASURE, *command], check=True, capture_output=True, text=True
    )
    rss_kb, seconds = done.stdout.split()
    return {"rss_mb": int(rss_kb) / 1024, "seconds": float(seconds)}


def prepare_quarter(data_dir: Path) -> None:
    """Write a 0.25° member-year (packed int16, ERA5-like sizes) unless it is there."""
    paths = [data_dir / str(YEAR) / f"{name}_{YEAR}.nc" for name in ("u850", "v850")]
    if all(p.is_file() for p in paths):
        print(f"reusing {data_dir}")
        return
    began = time.perf_counter()
    u, v, _ = sample.sample_winds(YEAR, 0, sample.STEPS["full"])
    to_lat = _interpolation(sample.LATS, QUARTER_LATS)
    to_lon = _interpolation(sample.LONS, QUARTER_LONS, period=360.0)
    times = sample.sample_times(YEAR, sample.STEPS["full"])
    paths[0].parent.mkdir(parents=True, exist_ok=True)
    for path, name, wind in zip(paths, ("u850", "v850"), (u, v), strict=True):
        with netCDF4.Dataset(path, "w") as ds:
            for dim, values in (("time", times), ("member", np.zeros(1)),
                                ("lat", QUARTER_LATS), ("lon", QUARTER_LONS)):  # fmt: skip
                ds.createDimension(dim, values.size)
                ds.createVariable(dim, "f8", (dim,))[:] = values
            ds["time"].setncatts({"units": sample.TIME_UNITS, "calendar": sample.CALENDAR})
            var = ds.createVariable(name, "i2", ("time", "member", "lat", "lon"))
            var.setncatts({"scale_factor": np.float32(0.003), "add_offset": np.float32(0.0)})
            for start in range(0, times.size, 40):
                block = to_lat @ wind[start : start + 40] @ to_lon.T
                var[start : start + 40, 0] = np.clip(block, -98.0, 98.0)
    print(f"generated {data_dir} (0.25°) in {time.perf_counter() - began:.1f} s")


def _interpolation(src: np.ndarray, dst: np.ndarray, period: float = 0.0) -> np.ndarray:
    """Matrix of linear interpolation from ``src`` to ``dst`` points (periodic if asked)."""
    axis = np.r_[src, src[0] + period] if period else src
    order = np.argsort(axis)
    position = np.interp(dst, axis[order], order.astype(float))
    matrix = np.zeros((dst.size, axis.size), dtype=np.float32)
    low = np.floor(position).astype(int)
    high = np.minimum(low + 1, axis.size - 1)
    weight = (position - low).astype(np.float32)
    np.add.at(matrix, (np.arange(dst.size), low), 1.0 - weight)
    np.add.at(matrix, (np.arange(dst.size), high), weight)
    if period:
        matrix[:, 0] += matrix[:, -1]
        matrix = matrix[:, :-1]
    return matrix


def print_stages(columns: dict[str, dict[str, Any]], repeat: int) -> None:
    shape = next(iter(columns.values()))["shape"]
    print(f"\nvort_track stages, one member-year ({shape}, time x lat x lon), best of {repeat}")
    labels = list(columns)
    print(f"{'stage':<16}" + "".join(f"{label:>14}" for label in labels))
    for stage in STAGES:
        print(f"{stage:<16}" + "".join(f"{columns[c][stage]:>12.3f} s" for c in labels))
    totals = {c: sum(columns[c][s] for s in STAGES) for c in labels}
    print(f"{'total':<16}" + "".join(f"{totals[c]:>12.3f} s" for c in labels))
    ratios = "".join(f"{totals[c] / columns[c]['read u, v']:>12.1f} x" for c in labels)
    print(f"{'total / read':<16}" + ratios)
    print(f"{'tracks found':<16}" + "".join(f"{columns[c]['tracks']:>14d}" for c in labels))


def print_whole(best: dict[str, float]) -> None:
    print("\nwhole process, 2° member-year (float32), best wall time")
    for label, seconds in best.items():
        print(f"{label:<30}{seconds:>8.3f} s")
    baseline, task = best.values()
    print(f"{'ratio (goal <= 2.5)':<30}{task / baseline:>8.2f} x")


def print_memory(memory: dict[str, dict[str, float]]) -> None:
    print("\nclusterfarm run-task --task vort_track, one member-year, one run")
    print(f"{'grid':<8}{'peak RSS':>12}{'time':>10}")
    for grid, figures in memory.items():
        print(f"{grid:<8}{figures['rss_mb']:>9.0f} MB{figures['seconds']:>8.1f} s")
    print(json.dumps(memory))


if __name__ == "__main__":
    main()
