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
    tracks = link_tracks(maxima(points), TIMES, link_km=1800.0)
    assert [len(t) for t in tracks] == [6, 6]
    merged = link_tracks(maxima(points), TIMES, link_km=4000.0)
    assert [len(t) for t in merged] == [12]


def test_closest_pair_links_first_and_each_point_is_used_once() -> None:
    # track A ends at 0°, B at 10°E; the new point at 9°E is nearer to B than to A, so A must
    # take the point at 4°E even though 9°E would have been A's own nearest-but-one
    points = [(k, 0.0, 0.0) for k in range(6)] + [(k, 0.0, 10.0) for k in range(6)]
    points += [(6, 0.0, 9.0), (6, 0.0, 4.0)]
    tracks = link_tracks(maxima(points), TIMES[:7], link_km=1800.0, min_steps=1)
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
