"""Relative vorticity on the sphere against analytic fields."""

from __future__ import annotations

import numpy as np
import pytest

from clusterfarm.analysis import cyclonic_vorticity, relative_vorticity
from clusterfarm.analysis.geo import EARTH_RADIUS_M

OMEGA = 7.292e-5
LATS_SOUTHWARD = np.arange(90.0, -90.1, -2.0)
LONS = np.arange(0.0, 360.0, 2.0)


def solid_body(lats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """u = Ω R cos φ, v = 0: the Earth's own rotation, whose vorticity is 2Ω sin φ."""
    u = (OMEGA * EARTH_RADIUS_M * np.cos(np.radians(lats)))[:, None] * np.ones(LONS.size)
    return u, np.zeros_like(u)


@pytest.mark.parametrize("lats", [LATS_SOUTHWARD, LATS_SOUTHWARD[::-1]], ids=["90to-90", "-90to90"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_solid_body_rotation_gives_two_omega_sin_lat(lats: np.ndarray, dtype: type) -> None:
    u, v = solid_body(lats)
    zeta = relative_vorticity(u.astype(dtype), v.astype(dtype), lats, LONS)
    expected = 2 * OMEGA * np.sin(np.radians(lats))[:, None]
    assert zeta.dtype == dtype
    assert np.isfinite(zeta).all()
    # centred differences of cos²φ over ±2° are off by a factor sin(2h)/2h ≈ 1 - 0.5 %
    np.testing.assert_allclose(zeta, np.broadcast_to(expected, zeta.shape), atol=0.01 * OMEGA)


def test_poles_get_the_polar_cap_value_not_inf_or_nan() -> None:
    u, v = solid_body(LATS_SOUTHWARD)
    zeta = relative_vorticity(u, v, LATS_SOUTHWARD, LONS)
    np.testing.assert_allclose(zeta[0], 2 * OMEGA, rtol=1e-3)
    np.testing.assert_allclose(zeta[-1], -2 * OMEGA, rtol=1e-3)


def test_longitude_wraps_round_the_globe() -> None:
    # v = A cos λ has ζ = -A sin λ / (R cos φ); centred differences scale it by sin Δλ / Δλ,
    # and only a periodic stencil gives that at the first and last longitude too
    amplitude = 10.0
    dlam = np.radians(2.0)
    v = amplitude * np.cos(np.radians(LONS))[None, :] * np.ones((LATS_SOUTHWARD.size, 1))
    zeta = relative_vorticity(np.zeros_like(v), v, LATS_SOUTHWARD, LONS)
    inner = slice(1, -1)  # the poles carry the cap value
    expected = (
        -amplitude
        * np.sin(np.radians(LONS))[None, :]
        * (np.sin(dlam) / dlam)
        / (EARTH_RADIUS_M * np.cos(np.radians(LATS_SOUTHWARD[inner]))[:, None])
    )
    np.testing.assert_allclose(zeta[inner], expected, rtol=1e-9, atol=1e-20)
    assert zeta[inner, 0] == pytest.approx(0.0, abs=1e-18)
    assert np.all(zeta[inner, LONS.size // 4] < 0)  # λ = 90°: sin λ = 1


def test_leading_dimensions_are_computed_independently() -> None:
    rng = np.random.default_rng(3)
    u = rng.normal(size=(2, 3, LATS_SOUTHWARD.size, LONS.size)).astype(np.float32)
    v = rng.normal(size=u.shape).astype(np.float32)
    zeta = relative_vorticity(u, v, LATS_SOUTHWARD, LONS)
    assert zeta.shape == u.shape
    single = relative_vorticity(u[1, 2], v[1, 2], LATS_SOUTHWARD, LONS)
    np.testing.assert_allclose(zeta[1, 2], single, rtol=1e-6)


def test_regional_grid_is_not_wrapped() -> None:
    lons = np.arange(0.0, 60.0, 2.0)
    lats = np.arange(20.0, 60.1, 2.0)
    u = (OMEGA * EARTH_RADIUS_M * np.cos(np.radians(lats)))[:, None] * np.ones(lons.size)
    zeta = relative_vorticity(u, np.zeros_like(u), lats, lons)
    expected = 2 * OMEGA * np.sin(np.radians(lats))[:, None]
    np.testing.assert_allclose(zeta[1:-1], np.broadcast_to(expected, zeta.shape)[1:-1], rtol=0.01)


def test_mismatched_shapes_are_refused() -> None:
    u, v = solid_body(LATS_SOUTHWARD)
    with pytest.raises(ValueError, match="differ in shape"):
        relative_vorticity(u, v[:-1], LATS_SOUTHWARD, LONS)
    with pytest.raises(ValueError, match="do not end in"):
        relative_vorticity(u, v, LATS_SOUTHWARD[:-1], LONS)


def test_cyclonic_vorticity_flips_the_southern_hemisphere() -> None:
    u, v = solid_body(LATS_SOUTHWARD)
    zeta = relative_vorticity(u, v, LATS_SOUTHWARD, LONS)
    cyclonic = cyclonic_vorticity(zeta, LATS_SOUTHWARD)
    assert np.all(cyclonic[LATS_SOUTHWARD != 0] > 0)
    assert np.all(cyclonic[LATS_SOUTHWARD == 0] == 0)


CELL_CENTRED_1DEG = np.arange(89.5, -90.0, -1.0)
LONS_1DEG = np.arange(0.5, 360.0, 1.0)
# Gaussian latitudes of a T63-like grid (96 rows), from numpy's Gauss-Legendre nodes
GAUSSIAN = np.degrees(np.arcsin(np.polynomial.legendre.leggauss(96)[0]))[::-1]
LONS_GAUSSIAN = np.arange(0.0, 360.0, 1.875)


def rossby_haurwitz(
    lats: np.ndarray, lons: np.ndarray, wave: int = 4
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """u, v and ζ of the Rossby-Haurwitz wave of Williamson et al. (1992), test case 6."""
    omega, k, a = 7.848e-6, 7.848e-6, EARTH_RADIUS_M
    phi, lam = np.meshgrid(np.radians(lats), np.radians(lons), indexing="ij")
    c, s = np.cos(phi), np.sin(phi)
    u = a * omega * c + a * k * c ** (wave - 1) * (wave * s**2 - c**2) * np.cos(wave * lam)
    v = -a * k * wave * c ** (wave - 1) * s * np.sin(wave * lam)
    zeta = 2 * omega * s - k * s * c**wave * (wave**2 + 3 * wave + 2) * np.cos(wave * lam)
    return u, v, zeta


def test_solid_body_rotation_on_a_cell_centred_grid_is_right_at_the_outermost_rows() -> None:
    u = (OMEGA * EARTH_RADIUS_M * np.cos(np.radians(CELL_CENTRED_1DEG)))[:, None]
    u = u * np.ones(LONS_1DEG.size)
    zeta = relative_vorticity(u, np.zeros_like(u), CELL_CENTRED_1DEG, LONS_1DEG)
    expected = 2 * OMEGA * np.sin(np.radians(CELL_CENTRED_1DEG))
    outermost = zeta[[0, -1]] / expected[[0, -1], None]
    assert np.abs(outermost - 1).max() < 0.02
    np.testing.assert_allclose(zeta, expected[:, None] * np.ones(LONS_1DEG.size), rtol=0.02)


@pytest.mark.parametrize(
    "lats, lons",
    [(CELL_CENTRED_1DEG, LONS_1DEG), (GAUSSIAN, LONS_GAUSSIAN)],
    ids=["cell-centred 1deg", "gaussian T63"],
)
def test_rossby_haurwitz_wave_outermost_rows_are_as_good_as_the_interior(
    lats: np.ndarray, lons: np.ndarray
) -> None:
    u, v, expected = rossby_haurwitz(lats, lons)
    zeta = relative_vorticity(u, v, lats, lons)
    interior = np.abs(zeta[1:-1] - expected[1:-1]).max()
    outermost = np.abs(zeta[[0, -1]] - expected[[0, -1]]).max()
    assert outermost <= max(interior, 1e-7)
    assert outermost < 1e-6  # the threshold for a cyclone is 1e-5 s-1


def test_outermost_row_error_shrinks_with_resolution() -> None:
    errors = []
    for step in (2.0, 1.0):
        lats = np.arange(90 - step / 2, -90.0, -step)
        lons = np.arange(step / 2, 360.0, step)
        u, v, expected = rossby_haurwitz(lats, lons)
        errors.append(np.abs(relative_vorticity(u, v, lats, lons)[0] - expected[0]).max())
    assert errors[1] < 0.35 * errors[0]  # second order: a quarter, give or take


@pytest.mark.parametrize(
    "lats, lons",
    [(LATS_SOUTHWARD, LONS), (CELL_CENTRED_1DEG, LONS_1DEG)],
    ids=["with pole rows", "cell-centred"],
)
def test_cyclonic_vorticity_in_one_go_equals_the_two_steps(
    lats: np.ndarray, lons: np.ndarray
) -> None:
    from clusterfarm.analysis.vorticity import cyclonic_relative_vorticity

    u, v, _ = rossby_haurwitz(lats, lons)
    u, v = u.astype(np.float32), v.astype(np.float32)
    two_steps = cyclonic_vorticity(relative_vorticity(u, v, lats, lons), lats)
    np.testing.assert_allclose(cyclonic_relative_vorticity(u, v, lats, lons), two_steps, rtol=1e-6)
