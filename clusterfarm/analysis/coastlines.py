"""The world's coastlines for maps, from a small file shipped inside the package.

``coastlines_110m.npz`` holds the Natural Earth 110 m land outlines (public domain; made once
by ``tools/make_coastlines.py``) as int16 hundredths of a degree. No download at run time and
no cartopy: :func:`coastline_segments` returns plain lon/lat polylines in 0..360° E, cut
where they would jump across the map's edge.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import numpy as np

from clusterfarm.analysis.geo import FloatArray

COASTLINE_FILE = Path(__file__).with_name("coastlines_110m.npz")


@cache
def coastline_segments() -> tuple[FloatArray, ...]:
    """Return the coastlines as (n, 2) arrays of (lon in 0..360, lat), in degrees."""
    with np.load(COASTLINE_FILE) as data:
        lon = np.mod(data["lon"] / 100.0, 360.0)
        lat = data["lat"] / 100.0
        starts = data["starts"]
    pieces: list[FloatArray] = []
    for line_lon, line_lat in zip(
        np.split(lon, starts[1:]), np.split(lat, starts[1:]), strict=True
    ):
        # a line crossing 0° E would otherwise be drawn across the whole map
        cuts = np.flatnonzero(np.abs(np.diff(line_lon)) > 180.0) + 1
        for piece_lon, piece_lat in zip(
            np.split(line_lon, cuts), np.split(line_lat, cuts), strict=True
        ):
            if piece_lon.size > 1:
                pieces.append(np.column_stack([piece_lon, piece_lat]))
    return tuple(pieces)
