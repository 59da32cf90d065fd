"""Relative vorticity of a wind field on the sphere.

ζ = (∂v/∂λ − ∂(u cos φ)/∂φ) / (R cos φ) with centred differences, periodic in longitude on a
global grid, for either latitude order and any leading dimensions (time, member...). At a
pole, where cos φ = 0, the value comes from the circulation round the nearest latitude circle
(Stokes' theorem on the polar cap), which is finite and exact for solid-body rotation. On a
global grid without a pole row (Gaussian, or cell-centred at ±89.5°) the outermost row's
∂/∂φ uses the row across the pole, 180° of longitude away, as its outer neighbour (u cos φ
is continuous there), so that row is second-order accurate like the others instead of
one-sided.
:func:`cyclonic_vorticity` flips the sign in the Southern Hemisphere, so that cyclones are
maxima in both hemispheres.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from clusterfarm.analysis.geo import (
    EARTH_RADIUS_M,
    BoolArray,
    FloatArray,
    is_global,
    lon_spacing,
)

# latitudes this close to ±90° are treated as the pole, where cos φ is zero up to rounding
_POLE_TOLERANCE_DEG = 1e-6


def relative_vorticity(
    u: npt.ArrayLike, v: npt.ArrayLike, lats: npt.ArrayLike, lons: npt.ArrayLike
) -> FloatArray:
    """Return the relative vorticity (s-1) of winds ``u``, ``v`` (m/s) shaped (..., lat, lon)."""
    return _vorticity(u, v, lats, lons, cyclonic=False)


def cyclonic_relative_vorticity(
    u: npt.ArrayLike, v: npt.ArrayLike, lats: npt.ArrayLike, lons: npt.ArrayLike
) -> FloatArray:
    """Return sign(lat)·ζ of winds ``u``, ``v`` in one pass less than ζ and then the sign."""
    return _vorticity(u, v, lats, lons, cyclonic=True)


def _vorticity(
    u: npt.ArrayLike,
    v: npt.ArrayLike,
    lats: npt.ArrayLike,
    lons: npt.ArrayLike,
    cyclonic: bool,
) -> FloatArray:
    u_arr, v_arr = np.asarray(u), np.asarray(v)
    lat = np.asarray(lats, dtype=np.float64)
    lon = np.asarray(lons, dtype=np.float64)
    if u_arr.shape != v_arr.shape:
        raise ValueError(f"u and v differ in shape: {u_arr.shape} vs {v_arr.shape}")
    if u_arr.ndim < 2 or u_arr.shape[-2:] != (lat.size, lon.size):
        raise ValueError(
            f"winds shaped {u_arr.shape} do not end in (lat, lon) = ({lat.size}, {lon.size})"
        )
    if lat.size < 2 or lon.size < 2:
        raise ValueError("vorticity needs at least two latitudes and two longitudes")
    # float32 input stays float32: a year of data is large and the extra digits are noise
    dtype = np.result_type(u_arr.dtype, v_arr.dtype, np.float32)
    u_arr, v_arr = u_arr.astype(dtype, copy=False), v_arr.astype(dtype, copy=False)

    phi = np.radians(lat)
    polar = np.abs(lat) >= 90.0 - _POLE_TOLERANCE_DEG
    cos_phi = np.where(polar, 0.0, np.cos(phi))
    periodic = is_global(lon)

    # zeta holds ∂v/∂λ / factor, so ∂(u cos φ)/∂φ is scaled to match; one multiplication
    # at the end applies the factor, the metric and the sign together
    zeta, factor = _d_dlon(v_arr, lon, periodic)
    u_cos = u_arr * cos_phi[:, None].astype(dtype)
    zeta -= _d_dlat(u_cos, phi, across_pole=periodic, scale=1.0 / factor)
    with np.errstate(divide="ignore"):
        metric = np.where(polar, 0.0, 1.0 / (EARTH_RADIUS_M * cos_phi))
    sign = np.sign(lat) if cyclonic else np.ones(lat.size)
    zeta *= (metric * sign * factor)[:, None].astype(dtype)
    if periodic:
        _fill_poles(zeta, u_arr, lat, polar)
        zeta[..., polar, :] *= sign[polar][:, None].astype(dtype)
    return zeta


def cyclonic_vorticity(
    zeta: npt.ArrayLike, lats: npt.ArrayLike, in_place: bool = False
) -> FloatArray:
    """Return sign(lat)·ζ: positive for cyclones in both hemispheres, zero on the equator.

    ``in_place`` overwrites ``zeta`` (a numpy array) instead of making a copy.
    """
    z = np.asarray(zeta)
    sign = np.sign(np.asarray(lats, dtype=np.float64)).astype(z.dtype)[:, None]
    if in_place:
        z *= sign
        return z
    return np.asarray(z * sign)


def _d_dlon(f: FloatArray, lon: FloatArray, periodic: bool) -> tuple[FloatArray, float]:
    """∂f/∂λ along the last axis as (d, factor) with ∂f/∂λ = d · factor.

    Centred differences; on a global grid they wrap round and are left unscaled (the caller
    folds the factor into a multiplication it makes anyway).
    """
    if not periodic:
        return np.gradient(f, np.radians(lon), axis=-1).astype(f.dtype, copy=False), 1.0
    out = np.empty_like(f)
    # slicing instead of np.roll: the same periodic stencil without two full-size copies
    np.subtract(f[..., 2:], f[..., :-2], out=out[..., 1:-1])
    np.subtract(f[..., 1], f[..., -1], out=out[..., 0])
    np.subtract(f[..., 0], f[..., -2], out=out[..., -1])
    return out, 1.0 / (2.0 * np.radians(lon_spacing(lon)))


def _d_dlat(
    f: FloatArray, phi: FloatArray, across_pole: bool = False, scale: float = 1.0
) -> FloatArray:
    """``scale`` · ∂f/∂φ along the second-last axis: centred inside, one-sided at the ends.

    With ``across_pole`` (a global grid with an even number of longitudes) an outermost row
    that is not a pole takes its outer neighbour from across the pole: the point at
    ±180° − φ, λ + 180° is the same row's point λ + 180°, where f = u cos φ is unchanged
    (u and cos φ both change sign).
    """
    out = np.empty_like(f)
    inner = (scale / (phi[2:] - phi[:-2]))[:, None].astype(f.dtype)
    np.subtract(f[..., 2:, :], f[..., :-2, :], out=out[..., 1:-1, :])
    out[..., 1:-1, :] *= inner
    out[..., 0, :] = (f[..., 1, :] - f[..., 0, :]) * (scale / (phi[1] - phi[0]))
    out[..., -1, :] = (f[..., -1, :] - f[..., -2, :]) * (scale / (phi[-1] - phi[-2]))
    half = f.shape[-1] // 2
    if not across_pole or f.shape[-1] % 2:
        return out
    for row, inward in ((0, 1), (-1, -2)):
        pole = np.copysign(np.pi / 2, phi[row])
        if abs(phi[row]) >= pole * np.sign(pole) - np.radians(_POLE_TOLERANCE_DEG):
            continue
        ghost = np.roll(f[..., row, :], half, axis=-1)
        outer = 2 * pole - phi[row]
        edge = _three_point(ghost, f[..., row, :], f[..., inward, :], outer, phi[row], phi[inward])
        out[..., row, :] = edge * scale
    return out


def _three_point(
    f0: FloatArray, f1: FloatArray, f2: FloatArray, x0: float, x1: float, x2: float
) -> FloatArray:
    """Second-order f'(x1) from three points at uneven spacing (x0, x1, x2 in either order)."""
    h0, h1 = x1 - x0, x2 - x1
    return np.asarray(
        (-h1 / (h0 * (h0 + h1))) * f0 + ((h1 - h0) / (h0 * h1)) * f1 + (h0 / (h1 * (h0 + h1))) * f2
    )


def _fill_poles(zeta: FloatArray, u: FloatArray, lat: FloatArray, polar: BoolArray) -> None:
    """Set each pole row to the mean vorticity of the cap bounded by the neighbouring row.

    Circulation round latitude φ is 2πR cos φ · mean(u) (eastward is anticlockwise seen from
    above the North Pole, clockwise above the South Pole) and the cap's area 2πR²(1 − |sin φ|).
    """
    for row in np.flatnonzero(polar):
        ring = row + 1 if row + 1 < lat.size and not polar[row + 1] else row - 1
        if ring < 0 or polar[ring]:
            zeta[..., row, :] = 0.0
            continue
        hemisphere = np.sign(lat[row])
        phi = np.radians(lat[ring])
        factor = hemisphere * np.cos(phi) / (EARTH_RADIUS_M * (1.0 - hemisphere * np.sin(phi)))
        zeta[..., row, :] = (u[..., ring, :].mean(axis=-1) * factor)[..., None]
