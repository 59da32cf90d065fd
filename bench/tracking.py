"""Tracking benchmark: clusterfarm's vort_track beside tobac on the same hard sample data.

Writes (once; reused with ``--data-dir``) hard sample data, ``--members`` members x a full
year (1460 6-hourly steps, 2° grid, 1.5 m/s correlated noise, close pairs, storms fading for
a step), then for each member:

- clusterfarm: the ``vort_track`` task with its default parameters, timed whole (reading,
  vorticity, maxima, linking, writing);
- tobac 1.6: multi-threshold feature detection on the same cyclonic vorticity field
  (sign(lat)·ζ from clusterfarm, written to a scratch file), trackpy's predictive linking with
  the same speed limit (35 m/s), gap (memory 1) and minimum length (6 steps), periodic in
  longitude, maxima within ±80°; timed inside tobac only (no reading, no vorticity).

Both are scored against the truth with :mod:`clusterfarm.analysis.score` (a truth track is
found when more than half its points have a found point within 300 km at the same time).
tobac is installed into bench/.venv-tobac on first use, never into the project's environment.

    .venv/bin/python bench/tracking.py [--data-dir DIR] [--members 2] [--no-tobac]
"""

from __future__ import annotations

import argparse
import logging
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import netCDF4
import numpy as np

# the project's environment (bin/_venv.sh) has this checkout installed editable
from clusterfarm import analysis
from clusterfarm.analysis.score import Tally
from clusterfarm.tasks.registry import TaskContext, get_task, load_task_modules

BENCH = Path(__file__).resolve().parent
TOBAC_ENV = BENCH / ".venv-tobac"
TOBAC = "tobac==1.6.4"
YEAR = 2000
MATCH_KM = 300.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, help="where to put (or find) the sample data")
    parser.add_argument("--members", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-tobac", action="store_true", help="clusterfarm only")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cf-tracking-") as scratch:
        data = args.data_dir or Path(scratch) / "data"
        prepare(data, args.members, args.seed)
        truths = [
            analysis.read_tracks(analysis.truth_path(data / "truth", YEAR, m)).tracks
            for m in range(args.members)
        ]
        rows = {"clusterfarm vort_track": run_clusterfarm(data, Path(scratch), truths)}
        if not args.no_tobac:
            rows[f"tobac {TOBAC.split('==')[1]}"] = run_tobac(data, Path(scratch), truths)
        print_table(rows, args.members)


def prepare(data: Path, members: int, seed: int) -> None:
    """Write the hard sample year unless it is already there."""
    if (data / "truth" / str(YEAR) / f"truth_{YEAR}_m{members - 1:03d}.nc").is_file():
        print(f"reusing {data}")
        return
    began = time.perf_counter()
    analysis.write_sample_data(data, YEAR, members, "full", seed, difficulty="hard")
    print(f"generated {data} in {time.perf_counter() - began:.1f} s")


def run_clusterfarm(data: Path, scratch: Path, truths: list[list[Any]]) -> dict[str, Any]:
    """Run the vort_track task on each member; score and time it."""
    load_task_modules()
    spec = get_task("vort_track")
    results = scratch / "results"
    tally, seconds = Tally(), 0.0
    for member, truth in enumerate(truths):
        ctx = TaskContext(
            task="vort_track",
            params=spec.resolve_params({}),
            data_dir=data,
            results_dir=results,
            output_path=spec.output_path(results, YEAR, member),
            log=logging.getLogger("bench"),
        )
        began = time.perf_counter()
        spec.fn(YEAR, member, ctx)
        seconds += time.perf_counter() - began
        tally.add(analysis.read_tracks(ctx.output_path).tracks, truth, MATCH_KM)
    return {**tally.summary(), "seconds": seconds, "timed": "whole task"}


def run_tobac(data: Path, scratch: Path, truths: list[list[Any]]) -> dict[str, Any]:
    """Run tobac on each member's cyclonic vorticity; score and time it."""
    python = tobac_python()
    tally, seconds = Tally(), 0.0
    for member, truth in enumerate(truths):
        winds = analysis.read_winds(data, YEAR, member)
        field, out = scratch / f"cyclonic_{member}.nc", scratch / f"tobac_{member}.csv"
        write_field(field, winds)
        subprocess.run(
            [python, str(BENCH / "tobac_tracker.py"), str(field), str(out)],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        tracks, tobac_seconds = read_tobac(out, winds.times)
        seconds += tobac_seconds
        tally.add(tracks, truth, MATCH_KM)
    return {**tally.summary(), "seconds": seconds, "timed": "detection + linking"}


def tobac_python() -> str:
    """The benchmark's own environment with tobac (made on first use)."""
    python = TOBAC_ENV / "bin" / "python"
    if not python.exists():
        print(f"installing {TOBAC} into bench/.venv-tobac ...", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(TOBAC_ENV)], check=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", TOBAC, "netCDF4"], check=True
        )
    return str(python)


def write_field(path: Path, winds: analysis.Winds) -> None:
    """Write sign(lat)·ζ of one member-year, the field both trackers search."""
    zeta = analysis.relative_vorticity(winds.u, winds.v, winds.lats, winds.lons)
    with netCDF4.Dataset(path, "w") as ds:
        for dim, values in (("time", winds.times), ("lat", winds.lats), ("lon", winds.lons)):
            ds.createDimension(dim, values.size)
            ds.createVariable(dim, "f8", (dim,))[:] = values
        ds["time"].setncatts({"units": winds.time_units, "calendar": winds.calendar})
        cyclonic = analysis.cyclonic_vorticity(zeta, winds.lats)
        ds.createVariable("cyclonic", "f4", ("time", "lat", "lon"))[:] = cyclonic


def read_tobac(path: Path, times: np.ndarray) -> tuple[list[analysis.Track], float]:
    """tobac's tracks as clusterfarm Tracks (signed vorticity), and tobac's own seconds."""
    with path.open() as lines:
        seconds = float(lines.readline().split()[-1])
    table = np.atleast_2d(np.loadtxt(path, delimiter=",", skiprows=2))
    tracks = []
    for cell in np.unique(table[:, 0]) if table.size else []:
        rows = table[table[:, 0] == cell]
        rows = rows[np.argsort(rows[:, 1])]
        step = rows[:, 1].astype(int)
        lat = rows[:, 2]
        tracks.append(analysis.Track(times[step], lat, rows[:, 3], rows[:, 4] * np.sign(lat)))
    return tracks, seconds


def print_table(rows: dict[str, dict[str, Any]], members: int) -> None:
    print(
        f"\nhard sample data: {members} members x 1460 steps, 2° grid; match within {MATCH_KM:g} km"
    )
    header = (
        f"{'tracker':<24}{'recall':>8}{'precision':>10}{'F1':>7}{'tracks':>8}{'truth':>7}"
        f"{'pos err km':>12}{'int err':>9}{'int bias':>10}{'time s':>9}  timed"
    )
    print(header)
    for name, f in rows.items():
        error, intensity = f["error_km"]["mean"], f["intensity_error"]
        print(
            f"{name:<24}{f['recall']:>8.3f}{f['precision']:>10.3f}{f['f1']:>7.3f}"
            f"{f['found_tracks']:>8d}{f['truth_tracks']:>7d}{error or float('nan'):>12.1f}"
            f"{100 * (intensity['relative'] or float('nan')):>8.0f}%"
            f"{intensity['bias'] or float('nan'):>10.1e}{f['seconds']:>9.1f}  {f['timed']}"
        )
    print("int err: mean |found - true| / true of |vorticity| at matched points; bias in s-1")


if __name__ == "__main__":
    main()
