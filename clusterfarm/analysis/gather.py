"""Gather the tracks of many vort_track result files into one table or one xarray.Dataset.

:func:`gather_tracks` reads each file (:func:`~clusterfarm.analysis.trajectories.read_tracks`)
and gives one numpy structured array per track, with its year, member and track id, times
decoded to ``datetime64`` (``cftime`` objects for calendars numpy cannot hold).
:func:`tracks_dataset` puts them into the CF contiguous ragged array layout of the files
themselves (dimensions ``track`` and ``obs``), as an ``xarray.Dataset``.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import cftime
import numpy as np

from clusterfarm.analysis.trajectories import read_tracks

_OBS = ("time", "lat", "lon", "vorticity")


def gather_tracks(files: Iterable[tuple[int, int, str | Path]]) -> list[np.ndarray]:
    """One structured array per track of the ``(year, member, path)`` files, in that order."""
    gathered = []
    for year, member, path in files:
        found = read_tracks(path)
        for k, track in enumerate(found.tracks):
            times = _decode(track.time, found.time_units, found.calendar)
            array = np.empty(
                len(track),
                dtype=[
                    ("year", "i4"),
                    ("member", "i4"),
                    ("track_id", "i4"),
                    ("time", times.dtype),
                    ("lat", "f8"),
                    ("lon", "f8"),
                    ("vorticity", "f8"),
                ],
            )
            array["year"], array["member"], array["track_id"] = year, member, k + 1
            array["time"] = times
            array["lat"], array["lon"], array["vorticity"] = track.lat, track.lon, track.vorticity
            gathered.append(array)
    return gathered


def _decode(values: np.ndarray, units: str, calendar: str) -> np.ndarray:
    try:
        dates = cftime.num2date(
            values, units, calendar, only_use_cftime_datetimes=False, only_use_python_datetimes=True
        )
        return np.asarray(dates, dtype="datetime64[ns]")
    except ValueError:  # a calendar a datetime cannot hold (360_day, noleap...)
        return np.asarray(cftime.num2date(values, units, calendar), dtype=object)


def tracks_dataset(tracks: list[np.ndarray], attrs: dict[str, Any] | None = None) -> Any:
    """The tracks as an ``xarray.Dataset`` in the CF ragged array layout (needs xarray)."""
    import xarray

    def obs(name: str, dtype: Any) -> np.ndarray:
        if not tracks:
            return np.zeros(0, dtype=dtype)
        return np.concatenate([t[name] for t in tracks])

    per_track = {
        name: ("track", np.array([int(t[name][0]) for t in tracks], dtype=np.int32))
        for name in ("year", "member", "track_id")
    }
    row_size = np.array([len(t) for t in tracks], dtype=np.int32)
    units = {"lat": "degrees_north", "lon": "degrees_east", "vorticity": "s-1"}
    return xarray.Dataset(
        {
            **per_track,
            "row_size": ("track", row_size, {"sample_dimension": "obs"}),
            **{
                name: ("obs", obs(name, "f8"), {"units": units[name]})
                for name in ("lat", "lon", "vorticity")
            },
        },
        coords={"time": ("obs", obs("time", "datetime64[ns]"))},
        attrs={"featureType": "trajectory", **(attrs or {})},
    )
