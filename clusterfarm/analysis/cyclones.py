"""The cyclone tracker end to end: winds → vorticity → maxima → tracks.

Cyclones are maxima of sign(lat)·ζ, so Southern Hemisphere (clockwise) cyclones are found
like northern ones; the tracks carry the signed relative vorticity, negative in the south.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import numpy.typing as npt

from clusterfarm.analysis.extrema import Maxima, find_maxima
from clusterfarm.analysis.geo import GLOBAL_BOX
from clusterfarm.analysis.tracking import Track, link_tracks
from clusterfarm.analysis.vorticity import cyclonic_vorticity, relative_vorticity


def find_cyclones(
    u: npt.ArrayLike,
    v: npt.ArrayLike,
    lats: npt.ArrayLike,
    lons: npt.ArrayLike,
    *,
    threshold: float = 1e-5,
    box: Sequence[float] = GLOBAL_BOX,
    suppress_km: float = 1100.0,
) -> Maxima:
    """Return the cyclone centres of each step; ``value`` is their signed vorticity."""
    zeta = relative_vorticity(u, v, lats, lons)
    centres = find_maxima(
        cyclonic_vorticity(zeta, lats),
        lats,
        lons,
        threshold=threshold,
        box=box,
        suppress_km=suppress_km,
    )
    return replace(centres, value=centres.value * np.sign(centres.lat))


def track_cyclones(
    u: npt.ArrayLike,
    v: npt.ArrayLike,
    lats: npt.ArrayLike,
    lons: npt.ArrayLike,
    times: npt.ArrayLike,
    *,
    threshold: float = 1e-5,
    box: Sequence[float] = GLOBAL_BOX,
    suppress_km: float = 1100.0,
    link_km: float = 1800.0,
    min_steps: int = 6,
) -> list[Track]:
    """Return the cyclone tracks in winds shaped (time, lat, lon)."""
    centres = find_cyclones(u, v, lats, lons, threshold=threshold, box=box, suppress_km=suppress_km)
    return link_tracks(centres, times, link_km=link_km, min_steps=min_steps)
