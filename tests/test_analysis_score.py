"""Scoring found tracks against truth tracks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from clusterfarm.analysis import Track, score_results, score_tracks, write_tracks
from clusterfarm.errors import InputError

KM_PER_DEG = 111.195  # along a meridian, with R = 6371 km


def track(n: int = 10, lat0: float = 0.0, lon0: float = 0.0, first: int = 0) -> Track:
    k = np.arange(first, first + n, dtype=float)
    return Track(6.0 * k, lat0 + 0.0 * k, lon0 + 2.0 * k, np.full(n, 5e-5))


def test_perfect_tracks_score_one_with_no_error() -> None:
    truth = [track(), track(lat0=40.0)]
    score = score_tracks(truth, truth)
    assert (score["recall"], score["precision"], score["f1"]) == (1.0, 1.0, 1.0)
    assert score["error_km"]["mean"] == pytest.approx(0.0, abs=1e-6)


def test_position_error_is_measured_at_matching_times() -> None:
    found = [track(lat0=100.0 / KM_PER_DEG)]
    score = score_tracks(found, [track()])
    assert score["recall"] == 1.0
    assert score["error_km"]["mean"] == pytest.approx(100.0, rel=1e-3)
    assert score["error_km"]["p95"] == pytest.approx(100.0, rel=1e-3)


def test_a_track_too_far_away_is_not_a_match() -> None:
    score = score_tracks([track(lat0=500.0 / KM_PER_DEG)], [track()])
    assert (score["recall"], score["precision"], score["f1"]) == (0.0, 0.0, 0.0)
    assert score["error_km"]["mean"] is None


def test_a_match_needs_more_than_half_of_the_truth_points() -> None:
    halves = [track(n=5), track(n=5, first=5, lon0=10.0)]
    assert score_tracks(halves, [track()])["recall"] == 0.0
    uneven = [track(n=6), track(n=4, first=6, lon0=12.0)]
    score = score_tracks(uneven, [track()])
    assert (score["recall"], score["precision"]) == (1.0, 0.5)


def test_matching_is_one_to_one() -> None:
    found = [track(), track(lat0=0.5)]
    score = score_tracks(found, [track()])
    assert (score["recall"], score["precision"]) == (1.0, 0.5)
    assert score["error_km"]["mean"] == pytest.approx(0.0, abs=1e-6)  # the better one won


def test_nothing_to_find_and_nothing_found_is_perfect() -> None:
    score = score_tracks([], [])
    assert (score["recall"], score["precision"], score["truth_tracks"]) == (1.0, 1.0, 0)


def test_scoring_a_results_dir_without_results_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no vort_track results"):
        score_results(tmp_path / "results", tmp_path / "data")


def test_scoring_a_result_without_truth_names_the_missing_file(tmp_path: Path) -> None:
    result = tmp_path / "results" / "vort_track" / "2000" / "vort_track_2000_m003.nc"
    result.parent.mkdir(parents=True)
    write_tracks(result, [track()], time_units="hours since 2000-01-01")
    with pytest.raises(InputError, match="truth_2000_m003.nc"):
        score_results(tmp_path / "results", tmp_path / "data")
