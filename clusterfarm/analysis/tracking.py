"""Link the maxima of successive time steps into tracks, predicting each track's motion.

At each step every running track predicts where its centre is now: its last position moved
on by its recent velocity (the displacement over up to its last three points; a track of one
point predicts no motion). A track and a new maximum may link when the maximum lies within
``predict_km`` per step of that prediction and within ``link_km`` per step of the track's last
point (``link_km`` only, for a one-point track). The cost of a link is the distance from the
prediction over the allowed radius, plus ``intensity_weight`` times the relative change of
vorticity, plus ``GAP_COST`` per step skipped; links are made cheapest first, each track and
each maximum used once. A track that finds no maximum waits up to ``max_gap`` steps (a storm
that fades below the threshold for a step, or hides behind a stronger neighbour, keeps its
track), then ends. A maximum left over starts a new track. Tracks of fewer than ``min_steps``
points are dropped. Tracks hold only the points found: a bridged gap leaves a step without
a point.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from clusterfarm.analysis.extrema import Maxima
from clusterfarm.analysis.geo import FloatArray, chord_to_km, unit_vectors

#: extra cost of a link for each step it skips: a continuous link wins a tie
GAP_COST = 0.25
# points whose displacement gives a track's velocity
_VELOCITY_POINTS = 3


@dataclass(frozen=True)
class Track:
    """One track: time (in the input's CF units), position (degrees) and vorticity (s-1)."""

    time: FloatArray
    lat: FloatArray
    lon: FloatArray
    vorticity: FloatArray
    name: str = ""

    def __len__(self) -> int:
        return int(self.time.size)


def link_tracks(
    maxima: Maxima,
    times: npt.ArrayLike,
    *,
    link_km: float = 750.0,
    predict_km: float = 250.0,
    max_gap: int = 1,
    intensity_weight: float = 1.0,
    min_steps: int = 6,
) -> list[Track]:
    """Return the tracks formed by the maxima; ``maxima.step`` indexes ``times``."""
    time = np.asarray(times, dtype=np.float64)
    if len(maxima) and (maxima.step.min() < 0 or maxima.step.max() >= time.size):
        raise ValueError(f"maxima steps exceed the {time.size} time values")
    points = maxima.select(np.argsort(maxima.step, kind="stable"))
    bounds = np.searchsorted(points.step, np.arange(time.size + 1))
    linker = _Linker(points, link_km, predict_km, intensity_weight)

    finished: list[list[int]] = []
    running: list[list[int]] = []
    step_of = points.step.tolist()  # plain ints: looked up for every running track each step
    for step in range(time.size):
        new = np.arange(bounds[step], bounds[step + 1])
        if not running and not new.size:
            continue
        alive = [t for t in running if step - step_of[t[-1]] <= max_gap + 1]
        finished += [t for t in running if step - step_of[t[-1]] > max_gap + 1]
        links = linker.links(alive, new, step)
        for row, col in links:
            alive[row].append(int(new[col]))
        taken = {col for _, col in links}
        running = alive + [[int(new[col])] for col in range(new.size) if col not in taken]
    finished += running

    tracks = [
        Track(
            time=time[points.step[idx]],
            lat=points.lat[idx],
            lon=points.lon[idx],
            vorticity=points.value[idx],
        )
        for idx in (np.array(track) for track in finished if len(track) >= min_steps)
    ]
    tracks.sort(key=lambda tr: (tr.time[0], tr.lon[0]))
    return tracks


class _Linker:
    """Costs of linking running tracks to the maxima of one step."""

    def __init__(
        self, points: Maxima, link_km: float, predict_km: float, intensity_weight: float
    ) -> None:
        self.step = points.step
        self.strength = np.abs(points.value)
        self.xyz = unit_vectors(points.lat, points.lon)
        self.link_km, self.predict_km = link_km, predict_km
        self.intensity_weight = intensity_weight

    def links(
        self, tracks: list[list[int]], new: npt.NDArray[np.int64], step: int
    ) -> list[tuple[int, int]]:
        """Pairs (track row, new column), cheapest first, one-to-one, within the gates."""
        if not tracks or new.size == 0:
            return []
        last = np.fromiter((t[-1] for t in tracks), np.int64, len(tracks))
        first = np.fromiter(
            (t[-min(len(t), _VELOCITY_POINTS)] for t in tracks), np.int64, len(tracks)
        )
        gap = (step - self.step[last]).astype(np.float64)[:, None]
        candidates = self.xyz[new][None, :, :]
        from_last = chord_to_km(self.xyz[last][:, None, :], candidates)
        from_guess = chord_to_km(self._predict(first, last, step)[:, None, :], candidates)
        radius = np.where((first != last)[:, None], self.predict_km, self.link_km) * gap
        allowed = (from_last <= self.link_km * gap) & (from_guess <= radius)
        a, b = self.strength[last][:, None], self.strength[new][None, :]
        change = np.abs(a - b) / np.maximum(np.maximum(a, b), 1e-30)
        cost = from_guess / radius + self.intensity_weight * change + GAP_COST * (gap - 1)
        return _cheapest_pairs(np.where(allowed, cost, np.inf))

    def _predict(
        self, first: npt.NDArray[np.int64], last: npt.NDArray[np.int64], step: int
    ) -> FloatArray:
        """Each track's expected position at ``step`` (unit vectors), from its recent motion.

        The displacement from ``first`` to ``last`` per step, carried on along the sphere
        (in 3-d, then back onto the sphere): no trouble at the poles or across 0°.
        """
        span = np.maximum(self.step[last] - self.step[first], 1).astype(np.float64)
        ahead = (step - self.step[last]).astype(np.float64)
        velocity = (self.xyz[last] - self.xyz[first]) / span[:, None]
        guess = self.xyz[last] + velocity * ahead[:, None]
        return np.asarray(guess / np.linalg.norm(guess, axis=-1, keepdims=True))


def _cheapest_pairs(cost: FloatArray) -> list[tuple[int, int]]:
    """Greedy one-to-one pairing of rows and columns, cheapest first, none of infinite cost."""
    pairs: list[tuple[int, int]] = []
    rows, cols = np.nonzero(np.isfinite(cost))
    order = np.argsort(cost[rows, cols], kind="stable")
    used_rows: set[int] = set()
    used_cols: set[int] = set()
    for k in order.tolist():
        row, col = int(rows[k]), int(cols[k])
        if row not in used_rows and col not in used_cols:
            pairs.append((row, col))
            used_rows.add(row)
            used_cols.add(col)
    return pairs
