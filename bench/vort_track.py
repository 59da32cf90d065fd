"""Time the vort_track stages on one full-size member-year (1460 × 91 × 180).

Generates a full-size sample year once (float32 and packed int16/zlib variants; reused when
``--data-dir`` already holds them), then times, for one member: reading u and v, vorticity,
maxima, linking and writing the track file, best of ``--repeat`` runs, and prints a table
with the total against reading alone. Run from the repository root:

    .venv/bin/python bench/vort_track.py [--data-dir DIR] [--members N] [--repeat N]
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

# run from a source checkout without installing: the package sits next to bench/
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from clusterfarm import analysis  # noqa: E402
from clusterfarm.analysis.vorticity import cyclonic_vorticity  # noqa: E402

YEAR = 2000
VARIANTS = {"float32": False, "packed/zlib": True}
STAGES = ("read u, v", "vorticity", "maxima", "link", "write")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, help="where to put (or find) the sample year")
    parser.add_argument("--members", type=int, default=2, help="members in the sample files")
    parser.add_argument("--repeat", type=int, default=3, help="runs per stage; best is shown")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="cf-bench-") as scratch:
        root = args.data_dir or Path(scratch)
        columns = {}
        for label, packed in VARIANTS.items():
            data_dir = root / label.replace("/", "-")
            prepare(data_dir, args.members, packed)
            columns[label] = time_stages(data_dir, Path(scratch), args.repeat)
        print_table(columns, args.repeat)


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
            cyclonic = cyclonic_vorticity(zeta, winds.lats)
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


def print_table(columns: dict[str, dict[str, Any]], repeat: int) -> None:
    shape = next(iter(columns.values()))["shape"]
    print(f"\nvort_track, one member-year ({shape}, time x lat x lon), best of {repeat}")
    labels = list(columns)
    print(f"{'stage':<16}" + "".join(f"{label:>14}" for label in labels))
    for stage in STAGES:
        print(f"{stage:<16}" + "".join(f"{columns[c][stage]:>12.3f} s" for c in labels))
    totals = {c: sum(columns[c][s] for s in STAGES) for c in labels}
    print(f"{'total':<16}" + "".join(f"{totals[c]:>12.3f} s" for c in labels))
    ratios = "".join(f"{totals[c] / columns[c]['read u, v']:>12.1f} x" for c in labels)
    print(f"{'total / read':<16}" + ratios)
    print(f"{'tracks found':<16}" + "".join(f"{columns[c]['tracks']:>14d}" for c in labels))


if __name__ == "__main__":
    main()
