"""Linking maxima of consecutive steps into tracks."""

from __future__ import annotations

import numpy as np

from clusterfarm.analysis import link_tracks
from clusterfarm.analysis.extrema import Maxima

TIMES = 6.0 * np.arange(12)


def maxima(points: list[tuple[int, float, float]]) -> Maxima:
    """Maxima from (step, lat, lon) triples, with values counting up so each is traceable."""
    step, lat, lon = (np.array(x) for x in zip(*points, strict=True))
    return Maxima(step.astype(np.int64), lat.astype(float), lon.astype(float), np.arange(len(step)))


def test_two_parallel_cyclones_make_two_tracks() -> None:
    points = [(k, 40.0, 100.0 + 3 * k) for k in range(8)]
    points += [(k, 40.0, 125.0 + 3 * k) for k in range(8)]  # 25° east: ~2100 km away
    tracks = link_tracks(maxima(points), TIMES)
    assert len(tracks) == 2
    for track, start in zip(tracks, (100.0, 125.0), strict=True):
        np.testing.assert_allclose(track.lon, start + 3 * np.arange(8))
        np.testing.assert_allclose(track.time, TIMES[:8])


def test_tracks_shorter_than_min_steps_are_dropped() -> None:
    points = [(k, 30.0, 10.0 + 2 * k) for k in range(5)]
    points += [(k, -30.0, 10.0 + 2 * k) for k in range(6)]
    tracks = link_tracks(maxima(points), TIMES, min_steps=6)
    assert [len(t) for t in tracks] == [6]
    assert tracks[0].lat[0] == -30.0


def test_a_jump_longer_than_link_km_splits_the_track() -> None:
    points = [(k, 0.0, 2.0 * k) for k in range(6)]
    points += [(k, 0.0, 28.0 + 2.0 * k) for k in range(6, 12)]  # 10°E to 40°E: 3336 km
    tracks = link_tracks(maxima(points), TIMES, link_km=1800.0, predict_km=4000.0)
    assert [len(t) for t in tracks] == [6, 6]
    merged = link_tracks(maxima(points), TIMES, link_km=4000.0, predict_km=4000.0)
    assert [len(t) for t in merged] == [12]


def test_cheapest_link_first_and_each_point_is_used_once() -> None:
    # track A ends at 0°, B at 10°E; the new point at 9°E is nearer to B than to A, so A must
    # take the point at 4°E even though 9°E would have been A's own nearest-but-one
    points = [(k, 0.0, 0.0) for k in range(6)] + [(k, 0.0, 10.0) for k in range(6)]
    points += [(6, 0.0, 9.0), (6, 0.0, 4.0)]
    tracks = link_tracks(maxima(points), TIMES[:7], predict_km=1000.0, min_steps=1)
    ends = sorted(float(t.lon[-1]) for t in tracks)
    assert ends == [4.0, 9.0]
    by_start = {float(t.lon[0]): float(t.lon[-1]) for t in tracks}
    assert by_start == {0.0: 4.0, 10.0: 9.0}


def test_links_cross_zero_longitude() -> None:
    points = [(k, 50.0, (350.0 + 4 * k) % 360) for k in range(8)]
    tracks = link_tracks(maxima(points), TIMES)
    assert len(tracks) == 1
    assert len(tracks[0]) == 8


def test_no_maxima_gives_no_tracks() -> None:
    empty = Maxima(np.zeros(0, np.int64), np.zeros(0), np.zeros(0), np.zeros(0))
    assert link_tracks(empty, TIMES) == []


def test_a_storm_missing_for_one_step_keeps_one_track_but_not_for_two() -> None:
    points = [(k, 45.0, 100.0 + 3 * k) for k in range(12) if k != 5]
    assert [len(t) for t in link_tracks(maxima(points), TIMES, max_gap=1)] == [11]
    assert [len(t) for t in link_tracks(maxima(points), TIMES, max_gap=0, min_steps=1)] == [5, 6]
    two_missing = [p for p in points if p[0] != 6]
    assert len(link_tracks(maxima(two_missing), TIMES, max_gap=1, min_steps=1)) == 2


def test_motion_prediction_keeps_crossing_tracks_apart() -> None:
    # one storm runs east, one north-east, crossing at step 5; nearest-neighbour linking
    # swaps them where they meet, the predicted positions do not
    east = [(k, 40.0, 100.0 + 4.0 * k) for k in range(12)]
    north_east = [(k, 30.0 + 2.0 * k, 110.0 + 2.0 * k) for k in range(12)]
    tracks = link_tracks(maxima(east + north_east), TIMES)
    assert len(tracks) == 2
    for track in tracks:
        assert np.ptp(np.diff(track.lon)) < 1e-9  # each keeps its own steady motion


def test_a_fast_jump_to_another_storm_is_not_a_link() -> None:
    # a storm stops being found; 700 km ahead of its predicted place another one appears
    slow = [(k, 50.0, 20.0 + 1.0 * k) for k in range(6)]
    other = [(k, 50.0, 36.0 + 1.0 * (k - 6)) for k in range(6, 12)]
    assert [len(t) for t in link_tracks(maxima(slow + other), TIMES)] == [6, 6]


def test_intensity_change_breaks_a_tie_in_distance() -> None:
    points = [(k, 0.0, 2.0 * k) for k in range(6)]
    values = [5e-5] * 6
    # two candidates the same distance from the prediction, one of similar strength
    points += [(6, 2.0, 12.0), (6, -2.0, 12.0)]
    values += [1.5e-5, 5.2e-5]
    found = Maxima(
        np.array([p[0] for p in points]),
        np.array([p[1] for p in points], float),
        np.array([p[2] for p in points], float),
        np.array(values),
    )
    (track,) = link_tracks(found, TIMES[:7], min_steps=7)
    assert track.lat[-1] == -2.0
