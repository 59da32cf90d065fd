"""Gaussian smoothing on the sphere against the analytic convolution of two Gaussians."""

from __future__ import annotations

import numpy as np
import pytest

from clusterfarm.analysis import great_circle_km
from clusterfarm.analysis.smooth import gaussian_smooth

LATS = np.arange(60.0, -60.1, -0.5)
LONS = np.arange(0.0, 360.0, 0.5)


def gaussian(lat: float, lon: float, sigma_km: float) -> np.ndarray:
    r = great_circle_km(LATS[:, None], LONS[None, :], lat, lon)
    return np.exp(-0.5 * (r / sigma_km) ** 2)


@pytest.mark.parametrize("lon", [0.0, 200.0], ids=["on 0°", "elsewhere"])
def test_smoothing_a_gaussian_gives_the_analytic_peak_and_width(lon: float) -> None:
    # a 2-d Gaussian of σ0 smoothed by one of σ has peak σ0²/(σ0²+σ²) and σ² + σ0²
    sigma0, sigma = 300.0, 200.0
    smoothed = gaussian_smooth(gaussian(0.0, lon, sigma0)[None], LATS, LONS, sigma)[0]
    expected = sigma0**2 / (sigma0**2 + sigma**2) * gaussian(0.0, lon, np.hypot(sigma0, sigma))
    assert smoothed.max() == pytest.approx(expected.max(), rel=0.02)
    np.testing.assert_allclose(smoothed, expected, atol=0.01)


def test_a_uniform_field_is_unchanged_and_noise_is_damped() -> None:
    rng = np.random.default_rng(0)
    noise = rng.standard_normal((2, LATS.size, LONS.size)).astype(np.float32)
    smoothed = gaussian_smooth(noise + 3.0, LATS, LONS, 250.0)
    assert smoothed.dtype == np.float32
    assert abs(smoothed.mean() - 3.0) < 0.01
    # white noise over σ/Δx ≈ 4.5 cells keeps ~1/(2√π·4.5) ≈ 6 % of its spread
    assert smoothed.std() < 0.08 * noise.std()


def test_zero_radius_returns_the_field_and_missing_values_do_not_spread() -> None:
    field = gaussian(20.0, 100.0, 300.0)[None]
    assert gaussian_smooth(field, LATS, LONS, 0.0) is field
    holed = field.copy()
    holed[0, 0, 0] = np.nan
    assert np.isfinite(gaussian_smooth(holed, LATS, LONS, 200.0)).all()
