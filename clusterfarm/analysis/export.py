"""Write vort_track tracks in the exchange formats of the storm-tracking community.

One file holds the tracks of any number of member-years, in the order given:

- ``te-csv``: TempestExtremes StitchNodes CSV (``--out_file_format csv``): a header line, then
  ``track_id, year, month, day, hour, i, j, lon, lat, vorticity`` per point;
- ``gfdl``: TempestExtremes StitchNodes text (``--out_file_format gfdl``): per track a line
  ``start  N  yyyy mm dd hh``, then per point ``i j lon lat vorticity yyyy mm dd hh``;
- ``track``: TRACK ``tr_trs`` ASCII: ``TRACK_NUM`` header, per track ``TRACK_ID n START_TIME
  yyyymmddhh`` and ``POINT_NUM n``, per point ``yyyymmddhh lon lat vorticity``, vorticity in
  1e-5 s-1 as TRACK writes it;
- ``imilast``: the IMILAST common format (Neu et al. 2013): per track a line ``90 id n``, per
  point ``00 id k yyyymmddhh yyyy mm dd hh lon lat vorticity`` (1e-5 s-1);
- ``csv``: plain CSV with ``track_id, year, member, time`` (ISO 8601, the data's calendar),
  ``lat, lon, vorticity`` (s-1).

Vorticity is signed (negative for southern cyclones). i and j are -1: result files do not
keep the input grid. Track ids run from 1 over the whole file; ``csv`` also names the year and
member of each track.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import cftime
import numpy as np

from clusterfarm.analysis.tracking import Track
from clusterfarm.analysis.trajectories import read_tracks

FORMATS = ("te-csv", "gfdl", "track", "imilast", "csv")
_PER_1E5 = 1e5


@dataclass(frozen=True)
class _Exported:
    """One track ready to write: its id, origin and its points' dates."""

    track_id: int
    year: int
    member: int
    track: Track
    dates: list[Any]


def export_tracks(files: Mapping[tuple[int, int], Path], fmt: str, out: str | Path) -> int:
    """Write the tracks of the result ``files`` (keyed by (year, member)) to ``out`` as ``fmt``.

    Returns the number of tracks written.
    """
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    tracks = list(_exported(files))
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as stream:
        _WRITERS[fmt](stream, tracks)
    return len(tracks)


def _exported(files: Mapping[tuple[int, int], Path]) -> Iterator[_Exported]:
    track_id = 0
    for (year, member), path in files.items():
        content = read_tracks(path)
        for track in content.tracks:
            track_id += 1
            dates = list(cftime.num2date(track.time, content.time_units, content.calendar))
            yield _Exported(track_id, year, member, track, dates)


def _stamp(date: Any) -> str:
    return f"{date.year:04d}{date.month:02d}{date.day:02d}{date.hour:02d}"


def _points(item: _Exported) -> Iterator[tuple[Any, float, float, float]]:
    track = item.track
    lon = np.mod(track.lon, 360.0)
    yield from zip(
        item.dates, track.lat.tolist(), lon.tolist(), track.vorticity.tolist(), strict=True
    )


def _te_csv(stream: IO[str], tracks: Iterable[_Exported]) -> None:
    writer = csv.writer(stream)
    writer.writerow(
        ["track_id", "year", "month", "day", "hour", "i", "j", "lon", "lat", "vorticity"]
    )
    for item in tracks:
        for date, lat, lon, value in _points(item):
            writer.writerow(
                [
                    item.track_id,
                    date.year,
                    date.month,
                    date.day,
                    date.hour,
                    -1,
                    -1,
                    f"{lon:.4f}",
                    f"{lat:.4f}",
                    f"{value:.6e}",
                ]  # fmt: skip
            )


def _gfdl(stream: IO[str], tracks: Iterable[_Exported]) -> None:
    for item in tracks:
        first = item.dates[0]
        stream.write(
            f"start\t{len(item.track)}\t{first.year}\t{first.month}\t{first.day}\t{first.hour}\n"
        )
        for date, lat, lon, value in _points(item):
            stream.write(
                f"\t-1\t-1\t{lon:.6f}\t{lat:.6f}\t{value:.6e}\t"
                f"{date.year}\t{date.month}\t{date.day}\t{date.hour}\n"
            )


def _track(stream: IO[str], tracks: Iterable[_Exported]) -> None:
    items = list(tracks)
    stream.write(f"0\n0 0\nTRACK_NUM {len(items):8d} ADD_FLD    0   0 &\n")
    for item in items:
        stream.write(f"TRACK_ID {item.track_id:6d} START_TIME {_stamp(item.dates[0])}\n")
        stream.write(f"POINT_NUM {len(item.track):6d}\n")
        for date, lat, lon, value in _points(item):
            stream.write(f"{_stamp(date)} {lon:.6f} {lat:.6f} {value * _PER_1E5:.6e} \n")


def _imilast(stream: IO[str], tracks: Iterable[_Exported]) -> None:
    for item in tracks:
        stream.write(f"90 {item.track_id:06d} {len(item.track):03d}\n")
        for k, (date, lat, lon, value) in enumerate(_points(item), start=1):
            stream.write(
                f"00 {item.track_id:06d} {k:03d} {_stamp(date)} {date.year:4d} {date.month:4d} "
                f"{date.day:4d} {date.hour:3d} {lon:9.4f} {lat:8.4f} {value * _PER_1E5:10.4f}\n"
            )


def _csv(stream: IO[str], tracks: Iterable[_Exported]) -> None:
    writer = csv.writer(stream)
    writer.writerow(["track_id", "year", "member", "time", "lat", "lon", "vorticity"])
    for item in tracks:
        for date, lat, lon, value in _points(item):
            writer.writerow(
                [
                    item.track_id,
                    item.year,
                    item.member,
                    date.isoformat(),
                    f"{lat:.4f}",
                    f"{lon:.4f}",
                    f"{value:.6e}",
                ]  # fmt: skip
            )


_WRITERS: dict[str, Callable[[IO[str], list[_Exported]], None]] = {
    "te-csv": _te_csv,
    "gfdl": _gfdl,
    "track": _track,
    "imilast": _imilast,
    "csv": _csv,
}
