"""The cyclone tracker end to end: winds → vorticity → (smoothing) → maxima → tracks.

Cyclones are maxima of sign(lat)·ζ, so Southern Hemisphere (clockwise) cyclones are found
like northern ones; the tracks carry the signed relative vorticity, negative in the south.
With ``smooth_km`` the maxima are found on the field smoothed by a Gaussian of that radius
(:mod:`.smooth`), which takes off small-scale noise, and their vorticity is read off the
unsmoothed field. :func:`track_chunks` runs on time chunks of a member-year: only the
maxima of a chunk are kept, and the linking runs over all of them at the end, so the memory
needed is that of one chunk, whatever the length of the year.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import numpy.typing as npt

from clusterfarm.analysis.extrema import MIN_DIP, Maxima, find_maxima, values_at
from clusterfarm.analysis.geo import GLOBAL_BOX, FloatArray
from clusterfarm.analysis.smooth import gaussian_smooth
from clusterfarm.analysis.tracking import Track, link_tracks
from clusterfarm.analysis.vorticity import cyclonic_relative_vorticity


@dataclass(frozen=True)
class Detection:
    """How cyclone centres are found at each step (see :func:`find_cyclones`)."""

    threshold: float = 1e-5
    box: Sequence[float] = field(default=GLOBAL_BOX)
    suppress_km: float = 1100.0
    min_dip: float = MIN_DIP
    smooth_km: float = 0.0


@dataclass(frozen=True)
class Linking:
    """How centres are linked into tracks, per time step (see :func:`link_tracks`)."""

    link_km: float = 750.0
    predict_km: float = 250.0
    max_gap: int = 1
    intensity_weight: float = 1.0
    min_steps: int = 6


def find_cyclones(
    u: npt.ArrayLike,
    v: npt.ArrayLike,
    lats: npt.ArrayLike,
    lons: npt.ArrayLike,
    detection: Detection | None = None,
    first_step: int = 0,
) -> Maxima:
    """Return the cyclone centres of each step; ``value`` is their signed vorticity."""
    how = detection or Detection()
    cyclonic = cyclonic_relative_vorticity(u, v, lats, lons)
    searched = gaussian_smooth(cyclonic, lats, lons, how.smooth_km)
    centres = find_maxima(
        searched,
        lats,
        lons,
        threshold=how.threshold,
        box=how.box,
        suppress_km=how.suppress_km,
        min_dip=how.min_dip,
    )
    if how.smooth_km > 0 and len(centres):
        centres = replace(centres, value=values_at(cyclonic, lats, lons, centres))
    return replace(
        centres, step=centres.step + first_step, value=centres.value * np.sign(centres.lat)
    )


def track_chunks(
    chunks: Iterable[tuple[int, FloatArray, FloatArray]],
    lats: npt.ArrayLike,
    lons: npt.ArrayLike,
    times: npt.ArrayLike,
    detection: Detection | None = None,
    linking: Linking | None = None,
) -> list[Track]:
    """Return the tracks in winds given as (first step, u, v) chunks shaped (time, lat, lon)."""
    centres = Maxima.join(
        [find_cyclones(u, v, lats, lons, detection, start) for start, u, v in chunks]
    )
    how = linking or Linking()
    return link_tracks(
        centres,
        times,
        link_km=how.link_km,
        predict_km=how.predict_km,
        max_gap=how.max_gap,
        intensity_weight=how.intensity_weight,
        min_steps=how.min_steps,
    )


def track_cyclones(
    u: npt.ArrayLike,
    v: npt.ArrayLike,
    lats: npt.ArrayLike,
    lons: npt.ArrayLike,
    times: npt.ArrayLike,
    detection: Detection | None = None,
    linking: Linking | None = None,
) -> list[Track]:
    """Return the cyclone tracks in winds shaped (time, lat, lon), held in memory at once."""
    chunk = (0, np.asarray(u), np.asarray(v))
    return track_chunks([chunk], lats, lons, times, detection, linking)
