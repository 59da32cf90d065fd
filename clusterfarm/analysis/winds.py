"""Read one member-year of winds from reanalysis-like netCDF files, chunk by chunk.

Files are found by path templates under ``data_dir`` (``{year}`` and, for one file per
member, ``{member}``); only the requested member is read from disk. Layouts:

- ``(time, member, lat, lon)`` in any order (20CR); a file without the member dimension and
  without ``{member}`` in its template is a deterministic run, read as member 0;
- an extra level dimension: a level of size 1 (ERA5's ``pressure_level``, or any other size-1
  dimension) is taken as it is; from several levels ``level`` (its coordinate value) picks one;
- latitude either way, longitude -180..180 or 0..360, and a grid that repeats its first
  longitude at the end (0..360 inclusive) loses the repeat, so it is periodic;
- any CF calendar (standard, noleap, 360_day...).

Values are unpacked and masked as CF says (:mod:`.packing`). :class:`WindReader` yields time
chunks, so a year need not fit in memory, and counts the missing points: more than
``max_missing`` of either field is an :class:`~clusterfarm.errors.InputError` naming the file,
the variable and the fraction, because a tracker run on holes reports too few storms without
a word. Whatever else is wrong with a file is an ``InputError`` with one line, too.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import cftime
import netCDF4
import numpy as np

from clusterfarm.analysis.geo import FloatArray
from clusterfarm.analysis.packing import Unpacker
from clusterfarm.analysis.wind_files import WindSource, wind_paths
from clusterfarm.errors import InputError

#: default share of missing values above which a cell fails
MAX_MISSING = 0.05


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


def read_winds(
    data_dir: str | Path,
    year: int,
    member: int,
    source: WindSource | None = None,
    max_missing: float = MAX_MISSING,
) -> Winds:
    """Read member ``member`` of ``year`` at once: u and v on one grid, times as CF numbers."""
    with WindReader(data_dir, year, member, source, max_missing) as reader:
        chunks = list(reader.chunks(reader.n_steps))
        reader.check_missing()
    u = np.concatenate([c[1] for c in chunks]) if len(chunks) != 1 else chunks[0][1]
    v = np.concatenate([c[2] for c in chunks]) if len(chunks) != 1 else chunks[0][2]
    return Winds(u, v, reader.lats, reader.lons, reader.times, reader.time_units, reader.calendar)


class WindReader:
    """u and v of one member-year, open for reading time chunks (a context manager)."""

    def __init__(
        self,
        data_dir: str | Path,
        year: int,
        member: int,
        source: WindSource | None = None,
        max_missing: float = MAX_MISSING,
    ) -> None:
        src = source or WindSource()
        self.max_missing = max_missing
        u_path, v_path = wind_paths(data_dir, year, member, src)
        self._u = _Variable(u_path, src.u_var, member, src, "{member" in src.u_path)
        try:
            self._v = _Variable(v_path, src.v_var, member, src, "{member" in src.v_path)
        except InputError:
            self._u.close()
            raise
        mismatch = _mismatch(self._u, self._v)
        if mismatch:
            self.close()
            raise InputError(
                f"{v_path}: {src.v_var} does not match {src.u_var} in {u_path} ({mismatch}); "
                "u and v must share one grid and time axis"
            )
        self.lats, self.lons, self.times = self._u.lats, self._u.lons, self._u.times
        self.time_units, self.calendar = self._u.time_units, self._u.calendar
        self.n_steps = int(self.times.size)

    @property
    def step_hours(self) -> float:
        """Hours between the first two time steps (6 if there is only one step)."""
        if self.n_steps < 2:
            return 6.0
        first, second = cftime.num2date(self.times[:2], self.time_units, self.calendar)
        return float((second - first).total_seconds()) / 3600.0

    def chunk_steps(self, budget_mb: float, arrays: int) -> int:
        """Steps per chunk so that ``arrays`` float32 fields of a chunk fit in ``budget_mb``."""
        per_step = arrays * 4 * self.lats.size * self.lons.size
        return max(1, int(budget_mb * 2**20 // per_step))

    def __enter__(self) -> WindReader:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close both files."""
        self._u.close()
        self._v.close()

    def chunks(self, steps: int) -> Iterator[tuple[int, FloatArray, FloatArray]]:
        """Yield (first step, u, v) for consecutive chunks of ``steps`` time steps.

        The next chunk is read in a thread while the caller works on this one (netCDF4 and
        numpy release the GIL), so at most two chunks are in memory at once.
        """
        starts = list(range(0, self.n_steps, max(1, steps)))
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="read-ahead") as pool:
            ahead = pool.submit(self._read, starts[0], steps) if starts else None
            for k, start in enumerate(starts):
                assert ahead is not None
                chunk = ahead.result()
                ahead = (
                    pool.submit(self._read, starts[k + 1], steps) if k + 1 < len(starts) else None
                )
                yield (start, *chunk)

    def _read(self, start: int, steps: int) -> tuple[FloatArray, FloatArray]:
        stop = min(self.n_steps, start + max(1, steps))
        return self._u.read(start, stop), self._v.read(start, stop)

    def check_missing(self) -> None:
        """Raise :class:`InputError` if either field read so far is too much missing."""
        for field in (self._u, self._v):
            fraction = field.missing_fraction()
            if fraction > self.max_missing:
                raise InputError(
                    f"{field.path}: {field.var} of member {field.member} is "
                    f"{100 * fraction:.1f}% missing (max_missing is "
                    f"{100 * self.max_missing:g}%); check _FillValue/valid_range or the data"
                )


class _Variable:
    """One wind variable of one file: its layout, coordinates and a chunk reader."""

    def __init__(
        self, path: Path, var: str, member: int, src: WindSource, per_member: bool
    ) -> None:
        if not path.is_file():
            raise InputError(f"{path}: file not found; check data_dir and the path templates")
        try:
            self.dataset = netCDF4.Dataset(path)
        except OSError as exc:
            raise InputError(f"{path}: not a readable netCDF file ({exc})") from exc
        self.path, self.var, self.member = path, var, member
        self.missing, self.total = 0, 0
        try:
            self._open(src, per_member)
        except InputError:
            self.close()
            raise

    def _open(self, src: WindSource, per_member: bool) -> None:
        path, dataset = self.path, self.dataset
        if self.var not in dataset.variables:
            known = ", ".join(dataset.variables) or "none"
            raise InputError(f"{path}: no variable {self.var!r} (has: {known}); check u_var/v_var")
        self.variable = dataset.variables[self.var]
        self.variable.set_auto_maskandscale(False)  # CF unpacking is ours (see .packing)
        self.unpacker = Unpacker.of(self.variable)
        self.dims = tuple(self.variable.dimensions)
        self._check_dims(src)
        self.lats = _coordinate(path, dataset, src.lat_dim)
        lons = _coordinate(path, dataset, src.lon_dim)
        # 0..360 inclusive repeats a column: drop it so the grid is periodic
        self.n_lon = lons.size - 1 if _repeats_first_lon(lons) else lons.size
        self.lons = lons[: self.n_lon]
        self.times, self.time_units, self.calendar = _time_axis(path, dataset, src.time_dim)
        self.index = self._index(src, per_member)
        kept = [d for d, i in zip(self.dims, self.index, strict=True) if isinstance(i, slice)]
        self.order = [kept.index(d) for d in (src.time_dim, src.lat_dim, src.lon_dim)]
        self.time_axis = self.dims.index(src.time_dim)

    def _check_dims(self, src: WindSource) -> None:
        needed = (src.time_dim, src.lat_dim, src.lon_dim)
        if len(self.dims) != len(set(self.dims)) or not set(needed) <= set(self.dims):
            expected = (
                f"({src.time_dim}, [{src.member_dim},] [level,] {src.lat_dim}, {src.lon_dim})"
            )
            raise InputError(
                f"{self.path}: {self.var} has dimensions ({', '.join(self.dims)}), expected "
                f"{expected}; set time_dim/member_dim/lat_dim/lon_dim if the names differ"
            )

    def _index(self, src: WindSource, per_member: bool) -> list[int | slice]:
        """Index of one member and level, all times, lats and (de-duplicated) lons."""
        shape = dict(zip(self.dims, self.variable.shape, strict=True))
        needed = (src.time_dim, src.lat_dim, src.lon_dim)
        index: list[int | slice] = []
        for dim in self.dims:
            if dim in needed:
                index.append(slice(0, self.n_lon) if dim == src.lon_dim else slice(None))
            elif src.member_dim and dim == src.member_dim:
                index.append(self._member_position(shape[dim], per_member))
            else:
                index.append(self._level_position(dim, shape[dim], src))
        if src.member_dim not in self.dims and not per_member and self.member != 0:
            raise InputError(
                f"{self.path}: {self.var} has no {src.member_dim!r} dimension, so it holds one "
                "deterministic run: use members = 0, or put {member} in the path template "
                "for one file per member"
            )
        return index

    def _member_position(self, size: int, per_member: bool) -> int:
        # a per-member file may still carry a member dimension of length one
        position = 0 if per_member and size == 1 else self.member
        if not 0 <= position < size:
            raise InputError(
                f"{self.path}: member {self.member} is not in the file ({size} members)"
            )
        return position

    def _level_position(self, dim: str, size: int, src: WindSource) -> int:
        """Which entry of an extra (level) dimension to read."""
        if src.level is None:
            if size == 1:
                return 0
            raise InputError(
                f"{self.path}: {self.var} has {size} values along {dim!r}; set level "
                f"(and level_dim = {dim!r}) to pick one"
            )
        if dim != src.level_dim:
            if size == 1:
                return 0
            raise InputError(
                f"{self.path}: {self.var} has an unexpected dimension {dim!r} of size {size}; "
                f"set level_dim = {dim!r} if it is the level"
            )
        values = (
            _coordinate(self.path, self.dataset, dim, allow_single=True)
            if dim in self.dataset.variables
            else np.arange(size, dtype=np.float64)
        )
        hits = np.flatnonzero(np.isclose(values, src.level))
        if hits.size == 0:
            raise InputError(
                f"{self.path}: level {src.level:g} is not in {dim!r} "
                f"(has {', '.join(f'{x:g}' for x in values)})"
            )
        return int(hits[0])

    def read(self, start: int, stop: int) -> FloatArray:
        """Return steps ``start:stop`` shaped (time, lat, lon) in m/s, NaN where missing."""
        index = list(self.index)
        index[self.time_axis] = slice(start, stop)
        try:
            raw = self.variable[tuple(index)]
        except (OSError, RuntimeError, ValueError, IndexError) as exc:
            raise InputError(f"{self.path}: cannot read {self.var} ({exc})") from exc
        data = self.unpacker.unpack(raw)
        if self.order != [0, 1, 2]:
            data = np.ascontiguousarray(np.transpose(data, self.order))
        self.missing += int(np.count_nonzero(np.isnan(data)))
        self.total += data.size
        return data

    def missing_fraction(self) -> float:
        """Share of the values read so far that are missing."""
        return self.missing / self.total if self.total else 0.0

    def close(self) -> None:
        if self.dataset.isopen():
            self.dataset.close()


def _repeats_first_lon(lons: FloatArray) -> bool:
    """Whether the last longitude is the first one again, 360° on."""
    return bool(lons.size > 2 and np.isclose(abs(lons[-1] - lons[0]), 360.0, atol=1e-6))


def _coordinate(
    path: Path, dataset: netCDF4.Dataset, name: str, allow_single: bool = False
) -> FloatArray:
    if name not in dataset.variables:
        raise InputError(f"{path}: no coordinate variable {name!r}")
    values = np.ma.filled(np.ma.asarray(dataset.variables[name][:]).astype(np.float64), np.nan)
    smallest = 1 if allow_single else 2
    if values.ndim != 1 or values.size < smallest or not np.isfinite(values).all():
        raise InputError(f"{path}: coordinate {name!r} must be 1-d, finite, with 2+ values")
    if values.size > 1 and not (np.all(np.diff(values) > 0) or np.all(np.diff(values) < 0)):
        raise InputError(f"{path}: coordinate {name!r} is not monotonic")
    return values


def _time_axis(path: Path, dataset: netCDF4.Dataset, name: str) -> tuple[FloatArray, str, str]:
    times = _coordinate(path, dataset, name, allow_single=True)
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


def _mismatch(u: _Variable, v: _Variable) -> str:
    """Name what differs between two fields' grids, or return '' if they match."""
    for what in ("lats", "lons", "times"):
        a, b = getattr(u, what), getattr(v, what)
        if a.shape != b.shape:
            return f"{what.rstrip('s')} axis of {b.size} vs {a.size} values"
        if not np.allclose(a, b):
            return what.rstrip("s") + " axis"
    if (u.time_units, u.calendar) != (v.time_units, v.calendar):
        return "time units"
    return ""
