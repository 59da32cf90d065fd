"""Link the maxima of consecutive time steps into tracks.

Nearest-neighbour linking: between two consecutive steps, the closest (great-circle) pair of a
track's last point and a new maximum is joined first, then the next closest, and so on; each
point joins at most one track and no link is longer than ``link_km``. A maximum left over
starts a new track; a track that finds no continuation ends. Tracks shorter than
``min_steps`` points are dropped.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from clusterfarm.analysis.extrema import Maxima
from clusterfarm.analysis.geo import FloatArray, great_circle_km


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
    link_km: float = 1800.0,
    min_steps: int = 6,
) -> list[Track]:
    """Return the tracks formed by the maxima; ``maxima.step`` indexes ``times``."""
    time = np.asarray(times, dtype=np.float64)
    if len(maxima) and (maxima.step.min() < 0 or maxima.step.max() >= time.size):
        raise ValueError(f"maxima steps exceed the {time.size} time values")
    order = np.argsort(maxima.step, kind="stable")
    points = maxima.select(order)
    bounds = np.searchsorted(points.step, np.arange(time.size + 1))

    finished: list[list[int]] = []
    running: list[list[int]] = []
    for step in range(time.size):
        new = np.arange(bounds[step], bounds[step + 1])
        last = np.array([track[-1] for track in running], dtype=np.int64)
        distance = great_circle_km(
            points.lat[last][:, None],
            points.lon[last][:, None],
            points.lat[new][None, :],
            points.lon[new][None, :],
        )
        links = dict(_closest_pairs(distance, link_km))
        taken = set(links.values())
        continued = []
        for row, track in enumerate(running):
            if row in links:
                track.append(int(new[links[row]]))
                continued.append(track)
            else:
                finished.append(track)
        running = continued + [[int(new[col])] for col in range(new.size) if col not in taken]
    finished.extend(running)

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


def _closest_pairs(distance: FloatArray, limit: float) -> list[tuple[int, int]]:
    """Greedy one-to-one pairing of rows and columns, closest first, none beyond ``limit``."""
    if distance.size == 0:
        return []
    d = np.where(distance <= limit, distance, np.inf)
    pairs = []
    for _ in range(min(d.shape)):
        flat = int(np.argmin(d))
        row, col = divmod(flat, d.shape[1])
        if not np.isfinite(d[row, col]):
            break
        pairs.append((row, col))
        d[row, :] = np.inf
        d[:, col] = np.inf
    return pairs
