"""Read one member-year of 850 hPa winds from 20CR-like netCDF files (SPEC §9).

Files are found by path templates under ``data_dir`` (``{year}`` and, for one file per
member, ``{member}``); only the requested member is read from disk. Packed shorts
(``scale_factor``/``add_offset``) are unpacked and ``_FillValue`` points become NaN. Whatever
is wrong with a file raises :class:`~clusterfarm.errors.InputError` with one line naming the
file and the problem, because bad input is not worth retrying.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cftime
import netCDF4
import numpy as np

from clusterfarm.analysis.geo import FloatArray
from clusterfarm.errors import InputError, SettingsError


@dataclass(frozen=True)
class WindSource:
    """Where the winds are: path templates, variable names and dimension names."""

    u_path: str = "{year}/u850_{year}.nc"
    v_path: str = "{year}/v850_{year}.nc"
    u_var: str = "u850"
    v_var: str = "v850"
    time_dim: str = "time"
    member_dim: str = "member"
    lat_dim: str = "lat"
    lon_dim: str = "lon"


@dataclass(frozen=True)
class Winds:
    """One member-year of winds (m/s) shaped (time, lat, lon), with its coordinates."""

    u: FloatArray
    v: FloatArray
    lats: FloatArray
    lons: FloatArray
    times: FloatArray
    time_units: str
    calendar: str


@dataclass(frozen=True)
class _Field:
    data: FloatArray
    lats: FloatArray
    lons: FloatArray
    times: FloatArray
    time_units: str
    calendar: str


def read_winds(
    data_dir: str | Path, year: int, member: int, source: WindSource | None = None
) -> Winds:
    """Read member ``member`` of ``year``: u and v on one grid, times as CF numbers."""
    src = source or WindSource()
    u_path, v_path = wind_paths(data_dir, year, member, src)
    u = _read_field(u_path, src.u_var, member, src, per_member="{member" in src.u_path)
    v = _read_field(v_path, src.v_var, member, src, per_member="{member" in src.v_path)
    mismatch = _mismatch(u, v)
    if mismatch:
        raise InputError(
            f"{v_path}: {src.v_var} does not match {src.u_var} in {u_path} ({mismatch}); "
            "u and v must share one grid and time axis"
        )
    return Winds(u.data, v.data, u.lats, u.lons, u.times, u.time_units, u.calendar)


def wind_paths(
    data_dir: str | Path, year: int, member: int, source: WindSource
) -> tuple[Path, Path]:
    """The u and v files that one year and member are read from."""
    return (
        _resolve(data_dir, source.u_path, year, member),
        _resolve(data_dir, source.v_path, year, member),
    )


def _resolve(data_dir: str | Path, template: str, year: int, member: int) -> Path:
    try:
        return Path(data_dir) / template.format(year=year, member=member)
    except (KeyError, ValueError, IndexError) as exc:
        raise SettingsError(
            f"path template {template!r} is invalid ({exc!r}); use only {{year}} and {{member}}"
        ) from exc


def _read_field(path: Path, var: str, member: int, src: WindSource, per_member: bool) -> _Field:
    if not path.is_file():
        raise InputError(f"{path}: file not found; check data_dir and the path templates")
    try:
        dataset = netCDF4.Dataset(path)
    except OSError as exc:
        raise InputError(f"{path}: not a readable netCDF file ({exc})") from exc
    with dataset:
        if var not in dataset.variables:
            known = ", ".join(dataset.variables) or "none"
            raise InputError(f"{path}: no variable {var!r} (has: {known}); check u_var/v_var")
        variable = dataset.variables[var]
        dims = tuple(variable.dimensions)
        index = _member_index(path, variable.name, dims, variable.shape, member, src, per_member)
        lats = _coordinate(path, dataset, src.lat_dim)
        lons = _coordinate(path, dataset, src.lon_dim)
        times, units, calendar = _time_axis(path, dataset, src.time_dim)
        # unpacking and masking by netCDF4; a plain array when nothing is missing saves a copy
        variable.set_auto_maskandscale(True)
        variable.set_always_mask(False)
        try:
            raw = variable[index if index is not None else ...]
        except (OSError, RuntimeError, ValueError) as exc:
            raise InputError(f"{path}: cannot read {var} ({exc})") from exc
    order = [d for d in dims if d != src.member_dim or index is None]
    if isinstance(raw, np.ma.MaskedArray):
        data = np.ma.filled(raw.astype(np.float32), np.nan)
    else:
        data = np.asarray(raw, dtype=np.float32)
    data = np.ascontiguousarray(
        np.transpose(data, [order.index(d) for d in (src.time_dim, src.lat_dim, src.lon_dim)])
    )
    if not np.isfinite(data).any():
        raise InputError(f"{path}: {var} of member {member} holds only missing values")
    return _Field(data, lats, lons, times, units, calendar)


def _member_index(
    path: Path,
    var: str,
    dims: tuple[str, ...],
    shape: tuple[int, ...],
    member: int,
    src: WindSource,
    per_member: bool,
) -> tuple[int | slice, ...] | None:
    """Index that reads one member; None (read all) when the file has no member dimension."""
    wanted = {src.time_dim, src.lat_dim, src.lon_dim}
    if set(dims) - {src.member_dim} != wanted or len(dims) != len(set(dims)):
        expected = f"({src.time_dim}, {src.member_dim}, {src.lat_dim}, {src.lon_dim})"
        raise InputError(
            f"{path}: {var} has dimensions ({', '.join(dims)}), expected {expected}; "
            "set time_dim/member_dim/lat_dim/lon_dim if the names differ"
        )
    if src.member_dim not in dims:
        if not per_member:
            raise InputError(
                f"{path}: {var} has no {src.member_dim!r} dimension, so it holds one "
                "member; put {member} in the path template for one file per member"
            )
        return None
    size = shape[dims.index(src.member_dim)]
    # a per-member file may still carry a member dimension of length one
    position = 0 if per_member and size == 1 else member
    if not 0 <= position < size:
        raise InputError(f"{path}: member {member} is not in the file ({size} members)")
    return tuple(position if d == src.member_dim else slice(None) for d in dims)


def _coordinate(path: Path, dataset: netCDF4.Dataset, name: str) -> FloatArray:
    if name not in dataset.variables:
        raise InputError(f"{path}: no coordinate variable {name!r}")
    values = np.ma.filled(np.ma.asarray(dataset.variables[name][:]).astype(np.float64), np.nan)
    if values.ndim != 1 or values.size < 2 or not np.isfinite(values).all():
        raise InputError(f"{path}: coordinate {name!r} must be 1-d, finite, with 2+ values")
    if not (np.all(np.diff(values) > 0) or np.all(np.diff(values) < 0)):
        raise InputError(f"{path}: coordinate {name!r} is not monotonic")
    return values


def _time_axis(path: Path, dataset: netCDF4.Dataset, name: str) -> tuple[FloatArray, str, str]:
    times = _coordinate(path, dataset, name)
    variable = dataset.variables[name]
    units = str(getattr(variable, "units", ""))
    calendar = str(getattr(variable, "calendar", "standard"))
    try:
        cftime.num2date(times[:1], units, calendar)
    except (ValueError, TypeError) as exc:
        raise InputError(
            f"{path}: time units {units!r} / calendar {calendar!r} are not CF ({exc})"
        ) from exc
    return times, units, calendar


def _mismatch(u: _Field, v: _Field) -> str:
    """Name what differs between two fields' grids, or return '' if they match."""
    if u.data.shape != v.data.shape:
        return f"shape {v.data.shape} vs {u.data.shape}"
    for what in ("lats", "lons", "times"):
        if not np.allclose(getattr(u, what), getattr(v, what)):
            return what.rstrip("s") + " axis"
    if (u.time_units, u.calendar) != (v.time_units, v.calendar):
        return "time units"
    return ""
