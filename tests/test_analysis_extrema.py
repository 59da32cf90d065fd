"""Local maxima: neighbourhood with longitude wrap, plateaus, box, threshold, suppression."""

from __future__ import annotations

import numpy as np
import pytest

from clusterfarm.analysis import find_maxima, great_circle_km
from clusterfarm.analysis.extrema import Maxima, suppress_weaker

LATS = np.arange(90.0, -90.1, -2.0)
LONS = np.arange(0.0, 360.0, 2.0)
PEAK = 5e-5


def blob(lat: float, lon: float, amplitude: float = PEAK, radius_km: float = 400.0) -> np.ndarray:
    """A Gaussian bump on the 2° grid, centred anywhere (also between grid points)."""
    r = great_circle_km(LATS[:, None], LONS[None, :], lat, lon)
    return amplitude * np.exp(-((r / radius_km) ** 2))


def row(lat: float) -> int:
    return int(np.flatnonzero(LATS == lat)[0])


def col(lon: float) -> int:
    return int(np.flatnonzero(LONS == lon)[0])


def test_a_peak_between_grid_points_is_placed_to_within_a_few_km() -> None:
    found = find_maxima(blob(45.7, 100.6), LATS, LONS)
    assert len(found) == 1
    assert great_circle_km(found.lat[0], found.lon[0], 45.7, 100.6) < 15.0
    assert found.value[0] == pytest.approx(PEAK, rel=0.05)


def test_plateau_gives_exactly_one_maximum_at_its_centre() -> None:
    field = np.zeros((LATS.size, LONS.size))
    field[row(40) : row(36) + 1, col(100) : col(102) + 1] = PEAK  # 3 x 2 cells
    found = find_maxima(field, LATS, LONS)
    assert len(found) == 1
    assert (found.lat[0], found.lon[0]) == pytest.approx((38.0, 101.0))


def test_v_shaped_plateau_gives_one_maximum() -> None:
    # the two arms do not touch each other, only the cell below them: a rule that breaks
    # ties by grid order alone would report two maxima here
    field = np.zeros((LATS.size, LONS.size))
    for lat, lon in ((40, 100), (40, 104), (38, 102)):
        field[row(lat), col(lon)] = PEAK
    assert len(find_maxima(field, LATS, LONS)) == 1


def test_plateau_across_zero_longitude_gives_one_maximum_near_zero() -> None:
    field = np.zeros((LATS.size, LONS.size))
    field[row(50), [col(358), col(0), col(2)]] = PEAK
    found = find_maxima(field, LATS, LONS)
    assert len(found) == 1
    assert min(found.lon[0], 360.0 - found.lon[0]) < 0.5


def test_shoulder_plateau_next_to_a_higher_point_is_not_a_maximum() -> None:
    field = np.zeros((LATS.size, LONS.size))
    field[row(30), col(200) : col(206) + 1] = PEAK
    field[row(30), col(208)] = 2 * PEAK
    found = find_maxima(field, LATS, LONS, suppress_km=0.0)
    assert len(found) == 1
    assert found.lon[0] == pytest.approx(208.0, abs=1.0)


def test_neighbourhood_wraps_in_longitude() -> None:
    # the point at 0° is higher than everything east of it but lower than its neighbour at 358°
    field = np.zeros((LATS.size, LONS.size))
    field[row(20), col(0)] = PEAK
    field[row(20), col(358)] = 2 * PEAK
    field[row(20), col(2)] = 0.5 * PEAK
    found = find_maxima(field, LATS, LONS, suppress_km=0.0)
    assert len(found) == 1
    assert found.lon[0] == pytest.approx(358.0, abs=1.0)


def test_box_across_zero_longitude_holds_both_sides_only() -> None:
    field = blob(40, 10) + blob(40, 350) + blob(40, 180) + blob(-40, 10)
    found = find_maxima(field, LATS, LONS, box=[0.0, 80.0, 340.0, 20.0])
    assert sorted(np.round(found.lon).tolist()) == [10.0, 350.0]
    everywhere = find_maxima(field, LATS, LONS)
    assert len(everywhere) == 4


def test_default_box_stops_at_80_degrees() -> None:
    found = find_maxima(blob(84, 40) + blob(76, 200), LATS, LONS)
    assert np.round(found.lat).tolist() == [76.0]


def test_maxima_below_threshold_are_ignored() -> None:
    field = blob(10, 60, amplitude=0.8e-5) + blob(-30, 250, amplitude=2e-5)
    found = find_maxima(field, LATS, LONS, threshold=1e-5)
    assert np.round(found.lat).tolist() == [-30.0]


@pytest.mark.parametrize(("apart_deg", "expected"), [(6.0, 1), (14.0, 2)])
def test_weaker_maximum_within_suppress_km_is_dropped(apart_deg: float, expected: int) -> None:
    # 6° and 14° of latitude are 667 km and 1557 km, either side of the 1100 km default
    field = blob(30, 120) + blob(30 + apart_deg, 120, amplitude=0.6 * PEAK)
    found = find_maxima(field, LATS, LONS)
    assert len(found) == expected
    assert found.value[0] == pytest.approx(PEAK, rel=0.05)


def test_suppression_is_greedy_so_a_suppressed_maximum_suppresses_nothing() -> None:
    # A > B > C on a line, A-B and B-C closer than 1100 km, A-C farther: A and C survive
    lats = np.array([0.0, 8.0, 16.0])
    maxima = Maxima(np.zeros(3, np.int64), lats, np.full(3, 30.0), np.array([3.0, 2.0, 1.0]))
    kept = suppress_weaker(maxima, 1100.0)
    assert kept.lat.tolist() == [0.0, 16.0]


def test_maxima_carry_their_time_step() -> None:
    field = np.stack([blob(40, 100), blob(42, 104) + blob(-50, 20)])
    found = find_maxima(field, LATS, LONS)
    assert found.step.tolist() == [0, 1, 1]
    assert np.round(found.lat).tolist()[0] == 40.0


def test_field_must_match_the_grid() -> None:
    with pytest.raises(ValueError, match="does not end in"):
        find_maxima(np.zeros((3, 10, 10)), LATS, LONS)


def test_two_separate_vortices_closer_than_suppress_km_are_both_kept() -> None:
    # 7° apart (778 km) with 250 km radii: the field between them falls almost to zero
    field = blob(30, 120, radius_km=250.0) + blob(37, 120, amplitude=0.6 * PEAK, radius_km=250.0)
    assert len(find_maxima(field, LATS, LONS)) == 2
    # the plain distance rule drops the weaker one
    assert len(find_maxima(field, LATS, LONS, min_dip=1.0)) == 1


def test_refined_positions_never_leave_the_box() -> None:
    # the grid maximum is 40°N, 100°E, on the box's corner; the fit would move it to 40.9°N
    field = blob(40.9, 99.9, radius_km=300.0)
    found = find_maxima(field, LATS, LONS, box=[0.0, 40.0, 90.0, 100.0])
    assert len(found) == 1
    assert 0.0 <= found.lat[0] <= 40.0
    assert 90.0 <= found.lon[0] <= 100.0
    unboxed = find_maxima(field, LATS, LONS)
    assert abs(unboxed.lat[0] - 40.9) < 0.2


def test_first_step_offsets_the_steps_of_a_chunk() -> None:
    found = find_maxima(np.stack([blob(40, 100), blob(42, 104)]), LATS, LONS, first_step=10)
    assert found.step.tolist() == [10, 11]
