"""Track files: CF-1.8 discrete sampling geometry, contiguous ragged array of trajectories.

:func:`write_tracks` stores tracks as dimensions ``track`` and ``obs``, ``row_size(track)``
(the number of points of each track, ``sample_dimension = "obs"``), ``track_id(track)``
(``cf_role = "trajectory_id"``) and ``time``, ``lat``, ``lon``, ``vorticity`` along ``obs``;
a file with no tracks is still valid. Optional track names become
``name(track)``. :func:`read_tracks` reads such a file back, and :func:`find_results` lists
the vort_track result files of a results directory.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import netCDF4
import numpy as np

from clusterfarm.analysis.tracking import Track
from clusterfarm.errors import InputError

TASK = "vort_track"
_RESULT_NAME = re.compile(rf"{TASK}_(\d+)_m(\d+)\.nc")

# netCDF type and attributes of each variable of a track file
_VARIABLES: dict[str, tuple[str, dict[str, str]]] = {
    "track_id": ("i4", {"long_name": "track identifier", "cf_role": "trajectory_id"}),
    "row_size": (
        "i4",
        {"long_name": "number of observations for this track", "sample_dimension": "obs"},
    ),
    "time": ("f8", {"standard_name": "time", "long_name": "time"}),
    "lat": ("f4", {"standard_name": "latitude", "long_name": "latitude", "units": "degrees_north"}),
    "lon": (
        "f4",
        {"standard_name": "longitude", "long_name": "longitude", "units": "degrees_east"},
    ),
    "vorticity": (
        "f4",
        {
            "standard_name": "atmosphere_relative_vorticity",
            "long_name": "relative vorticity at the track point",
            "units": "s-1",
            "coordinates": "time lat lon",
        },
    ),
}


@dataclass(frozen=True)
class TrackFile:
    """The tracks of one file with their time units and global attributes."""

    tracks: list[Track]
    time_units: str
    calendar: str
    attrs: dict[str, Any] = field(default_factory=dict)


def write_tracks(
    path: str | Path,
    tracks: Sequence[Track],
    *,
    time_units: str,
    calendar: str = "standard",
    attrs: Mapping[str, Any] | None = None,
) -> None:
    """Write ``tracks`` to ``path`` as a CF trajectory file with global ``attrs``."""
    row_size = np.array([len(tr) for tr in tracks], dtype=np.int32)
    per_track = {
        "track_id": np.arange(1, len(tracks) + 1, dtype=np.int32),
        "row_size": row_size,
    }
    per_obs = {
        name: np.concatenate([np.asarray(getattr(tr, name), np.float64) for tr in tracks])
        if tracks
        else np.zeros(0)
        for name in ("time", "lat", "lon", "vorticity")
    }
    per_obs["lon"] = np.mod(per_obs["lon"], 360.0)
    time_attrs = {"units": time_units, "calendar": calendar}

    with netCDF4.Dataset(path, "w", format="NETCDF4") as ds:
        ds.setncatts(
            {
                "Conventions": "CF-1.8",
                "featureType": "trajectory",
                "title": "cyclone tracks (850 hPa relative vorticity maxima)",
                **{key: netcdf_attr(value) for key, value in (attrs or {}).items()},
            }
        )
        # netCDF4 turns a zero length into an unlimited dimension, which is still valid CF
        ds.createDimension("track", len(tracks))
        ds.createDimension("obs", int(row_size.sum()))
        for dim, values in (("track", per_track), ("obs", per_obs)):
            for name, data in values.items():
                dtype, var_attrs = _VARIABLES[name]
                var = ds.createVariable(name, dtype, (dim,))
                var.setncatts({**var_attrs, **(time_attrs if name == "time" else {})})
                var[:] = data
        if any(tr.name for tr in tracks):
            names = ds.createVariable("name", str, ("track",))
            names.long_name = "track name"
            for k, tr in enumerate(tracks):
                names[k] = tr.name


def read_tracks(path: str | Path) -> TrackFile:
    """Read the tracks of a CF trajectory file written by :func:`write_tracks`."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: track file not found")
    try:
        dataset = netCDF4.Dataset(path)
    except OSError as exc:
        raise InputError(f"{path}: not a readable netCDF file ({exc})") from exc
    with dataset:
        missing = {"row_size", "time", "lat", "lon", "vorticity"} - set(dataset.variables)
        if missing:
            raise InputError(f"{path}: not a track file (missing {', '.join(sorted(missing))})")
        dataset.set_auto_mask(False)
        columns = {
            name: np.asarray(dataset.variables[name][:], dtype=np.float64)
            for name in ("time", "lat", "lon", "vorticity")
        }
        row_size = np.asarray(dataset.variables["row_size"][:], dtype=np.int64)
        names = list(dataset.variables["name"][:]) if "name" in dataset.variables else []
        time_var = dataset.variables["time"]
        units = str(getattr(time_var, "units", ""))
        calendar = str(getattr(time_var, "calendar", "standard"))
        attrs = {key: dataset.getncattr(key) for key in dataset.ncattrs()}
    if row_size.sum() != columns["time"].size:
        raise InputError(f"{path}: row_size adds up to {row_size.sum()}, not the obs count")
    starts = np.r_[0, np.cumsum(row_size)]
    tracks = [
        Track(
            **{name: values[starts[k] : starts[k + 1]] for name, values in columns.items()},
            name=str(names[k]) if names else "",
        )
        for k in range(row_size.size)
    ]
    return TrackFile(tracks, units, calendar, attrs)


def result_path(results_dir: str | Path, year: int, member: int) -> Path:
    """Return where vort_track writes the tracks of one year and member."""
    return Path(results_dir) / TASK / str(year) / f"{TASK}_{year}_m{member:03d}.nc"


def find_results(
    results_dir: str | Path, year: int | None = None, member: int | None = None
) -> dict[tuple[int, int], Path]:
    """Return the vort_track result files under ``results_dir`` keyed by (year, member)."""
    found: dict[tuple[int, int], Path] = {}
    pattern = f"{year if year is not None else '*'}/{TASK}_*.nc"
    for path in sorted((Path(results_dir) / TASK).glob(pattern)):
        match = _RESULT_NAME.fullmatch(path.name)
        if match is None:
            continue
        key = (int(match[1]), int(match[2]))
        if (year is None or key[0] == year) and (member is None or key[1] == member):
            found[key] = path
    return found


def netcdf_attr(value: Any) -> Any:
    """Turn a value into something netCDF stores as an attribute.

    Booleans become 0/1 (netCDF has no boolean), None an empty string, lists of numbers an
    array, and other lists their JSON-like text.
    """
    if isinstance(value, bool):
        return np.int8(value)
    if value is None:
        return ""
    if isinstance(value, list | tuple):
        if value and all(isinstance(v, int | float) and not isinstance(v, bool) for v in value):
            return np.asarray(value)
        return "[" + ", ".join(repr(v) for v in value) + "]"
    if isinstance(value, Path):
        return str(value)
    return value
