"""Geometry on the sphere shared by the analysis modules.

The Earth's radius, great-circle (haversine) distances, and longitude arithmetic that copes
with 0°/360°: whether a grid is global (so its longitude is periodic) and which grid points
lie inside a ``[lat_min, lat_max, lon_min, lon_max]`` box, where ``lon_min > lon_max`` means
the box crosses 0°.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.floating[Any]]
BoolArray = npt.NDArray[np.bool_]

EARTH_RADIUS_M = 6.371e6
EARTH_RADIUS_KM = EARTH_RADIUS_M / 1000.0

#: The whole globe within ±80°, the default search area.
GLOBAL_BOX: tuple[float, float, float, float] = (-80.0, 80.0, 0.0, 360.0)


def great_circle_km(
    lat1: npt.ArrayLike, lon1: npt.ArrayLike, lat2: npt.ArrayLike, lon2: npt.ArrayLike
) -> FloatArray:
    """Return the haversine distance in km between points in degrees (numpy broadcasting)."""
    phi1 = np.radians(np.asarray(lat1, dtype=np.float64))
    phi2 = np.radians(np.asarray(lat2, dtype=np.float64))
    dlam = np.radians(np.asarray(lon2, dtype=np.float64) - np.asarray(lon1, dtype=np.float64))
    h = np.sin((phi2 - phi1) / 2) ** 2 + np.cos(phi1) * np.cos(phi2) * np.sin(dlam / 2) ** 2
    # rounding can push h a hair outside [0, 1] for antipodal or identical points
    return np.asarray(2.0 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(np.clip(h, 0.0, 1.0))))


def lon_spacing(lons: npt.ArrayLike) -> float:
    """Return the mean longitude step of a grid in degrees (negative if it runs westward)."""
    lon = np.asarray(lons, dtype=np.float64)
    if lon.size < 2:
        raise ValueError("a longitude axis needs at least two points")
    return float(lon[-1] - lon[0]) / (lon.size - 1)


def is_global(lons: npt.ArrayLike) -> bool:
    """Return whether a regular longitude axis goes once round the globe (so it wraps)."""
    lon = np.asarray(lons, dtype=np.float64)
    if lon.size < 3:
        return False
    step = abs(lon_spacing(lon))
    return bool(abs(lon.size * step - 360.0) < 0.01 * step)


def check_box(box: Sequence[float]) -> tuple[float, float, float, float]:
    """Return ``box`` as four floats, or raise ValueError saying what is wrong with it."""
    if len(box) != 4:
        raise ValueError(f"box must be [lat_min, lat_max, lon_min, lon_max], got {list(box)}")
    lat_min, lat_max, lon_min, lon_max = (float(x) for x in box)
    if not -90.0 <= lat_min <= lat_max <= 90.0:
        raise ValueError(f"box latitudes must satisfy -90 <= lat_min <= lat_max <= 90, got {box}")
    if not all(np.isfinite([lon_min, lon_max])):
        raise ValueError(f"box longitudes must be finite, got {box}")
    return lat_min, lat_max, lon_min, lon_max


def lon_in_range(lons: npt.ArrayLike, lon_min: float, lon_max: float) -> BoolArray:
    """Return which longitudes lie in [lon_min, lon_max], going east from lon_min.

    ``lon_min > lon_max`` is a range across 0° (``350, 10`` holds 355 and 5); a range of 360°
    or more holds everything. Longitudes may be given in any convention (−180..180, 0..360).
    """
    lon = np.asarray(lons, dtype=np.float64)
    span = lon_max - lon_min if lon_min <= lon_max else lon_max - lon_min + 360.0
    if span >= 360.0:
        return np.ones(lon.shape, dtype=bool)
    return np.asarray(np.mod(lon - lon_min, 360.0) <= span + 1e-9)


def box_mask(lats: npt.ArrayLike, lons: npt.ArrayLike, box: Sequence[float]) -> BoolArray:
    """Return a (lat, lon) mask of the grid points inside ``box``."""
    lat_min, lat_max, lon_min, lon_max = check_box(box)
    lat = np.asarray(lats, dtype=np.float64)
    in_lat = (lat >= lat_min) & (lat <= lat_max)
    return np.asarray(in_lat[:, None] & lon_in_range(lons, lon_min, lon_max)[None, :])


def points_in_box(lats: npt.ArrayLike, lons: npt.ArrayLike, box: Sequence[float]) -> BoolArray:
    """Return which points (parallel lat and lon arrays) lie inside ``box``."""
    lat_min, lat_max, lon_min, lon_max = check_box(box)
    lat = np.asarray(lats, dtype=np.float64)
    return np.asarray((lat >= lat_min) & (lat <= lat_max) & lon_in_range(lons, lon_min, lon_max))


def unit_vectors(lats: npt.ArrayLike, lons: npt.ArrayLike) -> FloatArray:
    """Return points (degrees) as unit vectors, shaped (..., 3)."""
    phi = np.radians(np.asarray(lats, dtype=np.float64))
    lam = np.radians(np.asarray(lons, dtype=np.float64))
    cos_phi = np.cos(phi)
    return np.stack([cos_phi * np.cos(lam), cos_phi * np.sin(lam), np.sin(phi)], axis=-1)


def chord_to_km(a: FloatArray, b: FloatArray) -> FloatArray:
    """Great-circle distance (km) between unit vectors ``a`` and ``b`` (broadcasting (..., 3))."""
    chord = np.sqrt(np.sum((a - b) ** 2, axis=-1))
    return np.asarray(2.0 * EARTH_RADIUS_KM * np.arcsin(np.minimum(chord / 2.0, 1.0)))
