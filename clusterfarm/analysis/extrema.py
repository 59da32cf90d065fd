"""Local maxima of a gridded field, one time step after another.

A grid point is a maximum when it is above ``threshold``, inside ``box`` and not below any of
its eight neighbours (longitude wraps on a global grid). A plateau of equal values yields
exactly one maximum, at its centre, and only if no point of it has a higher neighbour. A
strict maximum is placed between grid points, with its value, by fitting a parabola through
it and its neighbours in each direction: positions become much better than the grid spacing;
a position that the fit would move out of ``box`` stays on its grid point, inside.

Close pairs: of two maxima of one step closer than ``suppress_km``, the weaker is dropped
as part of the stronger's system unless the field along the great circle between them falls
below ``(1 - min_dip)`` times the weaker one's value, which makes them two separate vortices
(both kept). ``min_dip = 1`` drops every weaker maximum within ``suppress_km`` (the plain
distance rule); ``min_dip = 0`` keeps every maximum.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import numpy.typing as npt

from clusterfarm.analysis.geo import (
    GLOBAL_BOX,
    BoolArray,
    FloatArray,
    box_mask,
    great_circle_km,
    is_global,
    points_in_box,
    unit_vectors,
)

IntArray = npt.NDArray[np.int64]

#: default share by which the field must dip between two close maxima to keep both
MIN_DIP = 0.2
# distances computed at once when looking for close pairs (bounds the memory used)
_PAIR_CELLS = 1_000_000
# samples along the great circle between two close maxima, per grid step of distance
_SAMPLES_PER_STEP = 2

_NEIGHBOURS = [(dj, di) for dj in (-1, 0, 1) for di in (-1, 0, 1) if (dj, di) != (0, 0)]


@dataclass(frozen=True)
class Maxima:
    """Maxima of a (time, lat, lon) field: parallel arrays sorted by step, strongest first."""

    step: IntArray
    lat: FloatArray
    lon: FloatArray
    value: FloatArray

    def __len__(self) -> int:
        return int(self.step.size)

    @staticmethod
    def join(parts: Sequence[Maxima]) -> Maxima:
        """Return the maxima of all ``parts``, one after another."""
        arrays = [(m.step, m.lat, m.lon, m.value) for m in parts]
        if not arrays:
            return Maxima(np.zeros(0, np.int64), np.zeros(0), np.zeros(0), np.zeros(0))
        step, lat, lon, value = (np.concatenate(column) for column in zip(*arrays, strict=True))
        return Maxima(step, lat, lon, value)

    def select(self, keep: npt.NDArray[Any]) -> Maxima:
        """Return the maxima picked by a boolean mask or index array."""
        return Maxima(self.step[keep], self.lat[keep], self.lon[keep], self.value[keep])


def find_maxima(
    field: npt.ArrayLike,
    lats: npt.ArrayLike,
    lons: npt.ArrayLike,
    *,
    threshold: float = 1e-5,
    box: Sequence[float] = GLOBAL_BOX,
    suppress_km: float = 1100.0,
    min_dip: float = MIN_DIP,
    first_step: int = 0,
) -> Maxima:
    """Return the local maxima of ``field`` shaped (time, lat, lon) or (lat, lon).

    ``first_step`` is added to the steps, for a field that is one chunk of a longer one.
    """
    data = np.asarray(field)
    if data.ndim == 2:
        data = data[None]
    lat = np.asarray(lats, dtype=np.float64)
    lon = np.asarray(lons, dtype=np.float64)
    if data.ndim != 3 or data.shape[1:] != (lat.size, lon.size):
        raise ValueError(f"field shaped {data.shape} does not end in ({lat.size}, {lon.size})")
    grid = _Grid(data, lat, lon)

    candidates = data > threshold
    candidates &= box_mask(lat, lon, box)[None]
    # flat indices: far quicker than np.nonzero's three index arrays on a year of data
    t, j, i = (a.astype(np.int64) for a in np.unravel_index(np.flatnonzero(candidates), data.shape))
    centre = data[t, j, i]
    not_below = np.ones(t.size, dtype=bool)
    has_equal = np.zeros(t.size, dtype=bool)
    for dj, di in _NEIGHBOURS:
        neighbour = grid.neighbour_values(t, j + dj, i + di)
        not_below &= centre >= neighbour
        has_equal |= centre == neighbour
    strict = not_below & ~has_equal
    plateau = not_below & has_equal

    st = t[strict]
    strict_lat, strict_lon, strict_value = grid.refine(st, j[strict], i[strict])
    # the fit moves a peak by up to half a step: never out of the box
    outside = ~points_in_box(strict_lat, strict_lon, box)
    strict_lat[outside] = lat[j[strict][outside]]
    strict_lon[outside] = np.mod(lon[i[strict][outside]], 360.0)
    pt, plat, plon, pval = grid.plateau_centres(t[plateau], j[plateau], i[plateau])
    found = Maxima(
        step=np.concatenate([st, pt]),
        lat=np.concatenate([strict_lat, plat]),
        lon=np.concatenate([strict_lon, plon]),
        value=np.concatenate([strict_value, pval]),
    )
    kept = suppress_weaker(found, suppress_km, grid.separated(min_dip) if min_dip < 1 else None)
    return replace(kept, step=kept.step + first_step)


def values_at(
    field: npt.ArrayLike, lats: npt.ArrayLike, lons: npt.ArrayLike, maxima: Maxima
) -> FloatArray:
    """Peak values of ``field`` (time, lat, lon) at the maxima's positions.

    The parabola fit of :func:`find_maxima` at the nearest grid point: for reading a
    maximum's strength off the unsmoothed field when it was found on a smoothed one.
    ``maxima.step`` indexes the field's first axis.
    """
    grid = _Grid(np.asarray(field), np.asarray(lats, np.float64), np.asarray(lons, np.float64))
    rows, cols = grid.nearest(maxima.lat, maxima.lon)
    return grid.refine(maxima.step, rows, cols)[2]


def suppress_weaker(
    maxima: Maxima, suppress_km: float, separated: Separated | None = None
) -> Maxima:
    """Drop maxima closer than ``suppress_km`` to a stronger kept maximum of the same step.

    ``separated(maxima, stronger, weaker)`` (index arrays of pairs) may say which pairs are
    two vortices after all; both of those are kept.
    """
    ranked = maxima.select(np.lexsort((-maxima.value, maxima.step)))
    if suppress_km <= 0 or len(ranked) < 2:
        return ranked
    stronger, weaker = _close_pairs(ranked, suppress_km)
    if separated is not None and stronger.size:
        same = ~separated(ranked, stronger, weaker)
        stronger, weaker = stronger[same], weaker[same]
    keep = np.ones(len(ranked), dtype=bool)
    # greedy, strongest first: a maximum that was itself suppressed suppresses nothing; pairs
    # come by stronger index, so a maximum's own fate is settled before its pairs come up
    for a, b in zip(stronger.tolist(), weaker.tolist(), strict=True):
        if keep[a]:
            keep[b] = False
    return ranked.select(keep)


def _close_pairs(ranked: Maxima, km: float) -> tuple[IntArray, IntArray]:
    """Index pairs (stronger, weaker) of maxima of one step closer than ``km``, by stronger.

    Many steps at once: each step's maxima go into one row of a padded (step, rank) table,
    so one vectorised distance computation covers a block of steps.
    """
    steps, first, counts = np.unique(ranked.step, return_index=True, return_counts=True)
    width = int(counts.max())
    block = max(1, _PAIR_CELLS // (width * width))
    firsts: list[IntArray] = []
    seconds: list[IntArray] = []
    for start in range(0, steps.size, block):
        f, c = first[start : start + block], counts[start : start + block]
        row = np.repeat(np.arange(f.size), c)
        members = np.arange(f[0], f[-1] + c[-1])
        rank = members - np.repeat(f, c)
        lat = np.full((f.size, width), np.nan)
        lon = np.full((f.size, width), np.nan)
        lat[row, rank], lon[row, rank] = ranked.lat[members], ranked.lon[members]
        distance = great_circle_km(
            lat[:, :, None], lon[:, :, None], lat[:, None, :], lon[:, None, :]
        )
        upper = np.triu(np.ones((width, width), dtype=bool), k=1)
        s, a, b = np.nonzero((distance < km) & upper[None])  # NaN padding is never close
        firsts.append(f[s] + a)
        seconds.append(f[s] + b)
    stronger, weaker = np.concatenate(firsts), np.concatenate(seconds)
    order = np.argsort(stronger, kind="stable")
    return stronger[order].astype(np.int64), weaker[order].astype(np.int64)


Separated = Callable[[Maxima, IntArray, IntArray], BoolArray]


class _Grid:
    """Neighbour look-ups on a (time, lat, lon) field, wrapping longitude if it is global."""

    def __init__(self, data: FloatArray, lat: FloatArray, lon: FloatArray) -> None:
        self.data, self.lat, self.lon = data, lat, lon
        self.nlat, self.nlon = lat.size, lon.size
        self.periodic = is_global(lon)

    def separated(self, min_dip: float) -> Separated:
        """A test of which pairs of maxima are separate vortices: a dip of ``min_dip`` between."""

        def test(maxima: Maxima, stronger: IntArray, weaker: IntArray) -> BoolArray:
            lowest = self.lowest_between(
                maxima.step[weaker],
                (maxima.lat[stronger], maxima.lon[stronger]),
                (maxima.lat[weaker], maxima.lon[weaker]),
            )
            return np.asarray(lowest < (1.0 - min_dip) * maxima.value[weaker])

        return test

    def lowest_between(
        self,
        t: IntArray,
        start: tuple[FloatArray, FloatArray],
        end: tuple[FloatArray, FloatArray],
    ) -> FloatArray:
        """Lowest value at the grid points nearest the great circles between pairs of points."""
        km = great_circle_km(*start, *end)
        step_km = 111.2 * float(np.abs(np.diff(self.lat)).min())
        n = max(3, int(np.ceil(_SAMPLES_PER_STEP * float(km.max()) / step_km)) + 1)
        a, b = unit_vectors(*start), unit_vectors(*end)
        fraction = np.linspace(0.0, 1.0, n)[None, :, None]
        path = a[:, None, :] + fraction * (b - a)[:, None, :]  # (pair, sample, xyz)
        lat = np.degrees(np.arcsin(path[..., 2] / np.linalg.norm(path, axis=-1)))
        lon = np.degrees(np.arctan2(path[..., 1], path[..., 0]))
        rows, cols = self.nearest(lat, lon)
        return np.asarray(np.nanmin(self.data[t[:, None], rows, cols], axis=1))

    def nearest(self, lat: FloatArray, lon: FloatArray) -> tuple[IntArray, IntArray]:
        """Row and column of the grid point nearest to each position."""
        rows = np.clip(np.round(np.interp(lat, *_ascending(self.lat))), 0, self.nlat - 1)
        step = (self.lon[-1] - self.lon[0]) / (self.nlon - 1)
        cols = np.round(np.mod(lon - self.lon[0], 360.0) / step)
        cols = np.mod(cols, self.nlon) if self.periodic else np.clip(cols, 0, self.nlon - 1)
        return rows.astype(np.int64), cols.astype(np.int64)

    def inside(self, j: IntArray, i: IntArray) -> BoolArray:
        ok = (j >= 0) & (j < self.nlat)
        if not self.periodic:
            ok &= (i >= 0) & (i < self.nlon)
        return ok

    def neighbour_values(self, t: IntArray, j: IntArray, i: IntArray) -> FloatArray:
        """Field values at (t, j, i); -inf off the grid so edges never block a maximum."""
        ok = self.inside(j, i)
        values = self.data[t, np.clip(j, 0, self.nlat - 1), i % self.nlon]
        return np.where(ok, values, -np.inf)

    def refine(
        self, t: IntArray, j: IntArray, i: IntArray
    ) -> tuple[FloatArray, FloatArray, FloatArray]:
        """Position and value of the peaks of parabolas through each maximum's neighbours.

        The grid value underestimates a peak that lies between grid points; the parabolas'
        peak does not, which keeps intensities from depending on where the grid happens to be.
        """
        lat_offset, lat_rise = self._parabola_peak(t, j, i, 1, 0)
        lon_offset, lon_rise = self._parabola_peak(t, j, i, 0, 1)
        lat = self.lat[j] + lat_offset * self._local_step(self.lat, j)
        lon = np.mod(self.lon[i] + lon_offset * self._local_step(self.lon, i), 360.0)
        value = self.data[t, j, i].astype(np.float64) + lat_rise + lon_rise
        return lat, lon, value

    def _parabola_peak(
        self, t: IntArray, j: IntArray, i: IntArray, dj: int, di: int
    ) -> tuple[FloatArray, FloatArray]:
        """Offset (grid steps) and rise above the centre of a parabola's peak along one axis.

        Both are 0 where a neighbour is off the grid or missing.
        """
        before = self.neighbour_values(t, j - dj, i - di).astype(np.float64)
        after = self.neighbour_values(t, j + dj, i + di).astype(np.float64)
        centre = self.data[t, j, i].astype(np.float64)
        curvature = before - 2.0 * centre + after
        ok = np.isfinite(before) & np.isfinite(after) & (curvature < 0)
        with np.errstate(divide="ignore", invalid="ignore"):
            offset = np.where(ok, 0.5 * (before - after) / curvature, 0.0)
            # a strict maximum's peak lies within half a step; clipping guards rounding only
            offset = np.clip(offset, -0.5, 0.5)
            rise = np.where(ok, 0.5 * (after - before) * offset + 0.5 * curvature * offset**2, 0.0)
        return offset, rise

    @staticmethod
    def _local_step(axis: FloatArray, index: IntArray) -> FloatArray:
        """Grid step around each index (centred inside, one-sided at the ends)."""
        if axis.size < 2:
            return np.zeros(index.shape)
        steps = np.gradient(axis)
        return np.asarray(steps[index])

    def plateau_centres(
        self, t: IntArray, j: IntArray, i: IntArray
    ) -> tuple[IntArray, FloatArray, FloatArray, FloatArray]:
        """Collapse each plateau of tied maxima into one point at its centre.

        Ties are rare in real data, so a plain flood fill over the few tied points is fine;
        a plateau that touches a higher value anywhere is a shoulder, not a maximum.
        """
        seen: set[tuple[int, int, int]] = set()
        steps: list[int] = []
        lats: list[float] = []
        lons: list[float] = []
        values: list[float] = []
        for start in zip(t.tolist(), j.tolist(), i.tolist(), strict=True):
            if start in seen:
                continue
            cells, is_maximum = self._flood(start)
            seen.update(cells)
            if not is_maximum:
                continue
            rows = np.array([c[1] for c in cells])
            cols = np.array([c[2] for c in cells])
            steps.append(start[0])
            lats.append(float(self.lat[rows].mean()))
            lons.append(_mean_lon(self.lon[cols]))
            values.append(float(self.data[start]))
        return (
            np.array(steps, dtype=np.int64),
            np.array(lats, dtype=np.float64),
            np.array(lons, dtype=np.float64),
            np.array(values, dtype=np.float64),
        )

    def _flood(self, start: tuple[int, int, int]) -> tuple[list[tuple[int, int, int]], bool]:
        """Return the cells of the plateau holding ``start`` and whether it is a maximum."""
        t = start[0]
        level = self.data[start]
        cells = [start]
        members = {start}
        is_maximum = True
        for _, j, i in cells:  # the list grows while we walk it: a breadth-first search
            for dj, di in _NEIGHBOURS:
                nj, ni = j + dj, i + di
                if not (0 <= nj < self.nlat) or (not self.periodic and not 0 <= ni < self.nlon):
                    continue
                cell = (t, nj, ni % self.nlon)
                value = self.data[cell]
                if value > level:
                    is_maximum = False
                elif value == level and cell not in members:
                    members.add(cell)
                    cells.append(cell)
        return cells, is_maximum


def _ascending(lat: FloatArray) -> tuple[FloatArray, FloatArray]:
    """(latitudes, row indices) in increasing latitude, for np.interp."""
    index = np.arange(lat.size, dtype=np.float64)
    return (lat, index) if lat[0] < lat[-1] else (lat[::-1], index[::-1])


def _mean_lon(lons: FloatArray) -> float:
    """Circular mean of longitudes in degrees, in [0, 360): a plateau may straddle 0°."""
    angle = np.radians(lons)
    mean = np.degrees(np.arctan2(np.sin(angle).mean(), np.cos(angle).mean()))
    return float(np.mod(mean, 360.0))
