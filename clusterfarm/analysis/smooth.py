"""Gaussian smoothing of a gridded field on the sphere, to take grid-scale noise off maxima.

The kernel is a Gaussian of standard deviation ``radius_km`` measured on the sphere: along
each latitude circle it is applied in Fourier space (periodic on a global grid, mirrored
otherwise), with a width in grid steps that grows as the circle shrinks towards the poles;
along meridians it is applied the same way with the field mirrored at the first and last
row. Each time step is smoothed on its own, so a chunk of steps needs no overlap.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from clusterfarm.analysis.geo import EARTH_RADIUS_KM, FloatArray, is_global

# rows closer to a pole than this get the width of this latitude (cos φ would vanish)
_POLAR_CAP_DEG = 89.0


def gaussian_smooth(
    field: npt.ArrayLike, lats: npt.ArrayLike, lons: npt.ArrayLike, radius_km: float
) -> FloatArray:
    """Return ``field`` shaped (..., lat, lon) smoothed by a Gaussian of ``radius_km``."""
    data = np.asarray(field)
    if radius_km <= 0:
        return data
    if np.isnan(data).any():  # a missing point would spread over its whole row
        data = np.nan_to_num(data, nan=0.0)
    lat = np.asarray(lats, dtype=np.float64)
    lon = np.asarray(lons, dtype=np.float64)
    dlon = np.radians(abs(lon[-1] - lon[0]) / (lon.size - 1))
    dlat = np.radians(abs(lat[-1] - lat[0]) / (lat.size - 1))
    cos_phi = np.cos(np.radians(np.clip(lat, -_POLAR_CAP_DEG, _POLAR_CAP_DEG)))
    width_lon = radius_km / (EARTH_RADIUS_KM * cos_phi * dlon)  # grid steps, per row
    out = _along(data, -1, width_lon[:, None], periodic=is_global(lon))
    width_lat = np.full(1, radius_km / (EARTH_RADIUS_KM * dlat))
    return _along(out, -2, width_lat, periodic=False)


def _along(data: FloatArray, axis: int, width: FloatArray, periodic: bool) -> FloatArray:
    """Gaussian of ``width`` grid steps along ``axis`` by FFT; ``width`` broadcasts."""
    n = data.shape[axis]
    moved = np.moveaxis(data, axis, -1)
    if not periodic:  # mirror, so the ends see a continuation rather than the other end
        moved = np.concatenate([moved, moved[..., ::-1]], axis=-1)
    size = moved.shape[-1]
    wavenumber = 2.0 * np.pi * np.fft.rfftfreq(size)
    response = np.exp(-0.5 * (np.asarray(width) * wavenumber) ** 2)  # (lat, k) or (k,)
    spectrum = np.fft.rfft(moved, axis=-1)
    spectrum *= response.astype(spectrum.dtype)
    smoothed = np.fft.irfft(spectrum, n=size, axis=-1)[..., :n].astype(data.dtype, copy=False)
    return np.moveaxis(smoothed, -1, axis)
