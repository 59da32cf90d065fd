"""Sample data end to end: generate, track with the vort_track task, score against the truth.

The detection targets here are the tracker's quality bar: recall and precision of at least
0.95 and a mean position error of at most 100 km, and each designed special case found as a
single track.
"""

from __future__ import annotations

import logging
from pathlib import Path

import netCDF4
import numpy as np
import pytest

import clusterfarm.tasks.vort_track  # noqa: F401  (registers the task)
from clusterfarm.analysis import (
    Track,
    find_results,
    great_circle_km,
    plot_tracks,
    read_tracks,
    score_results,
    truth_path,
    write_sample_data,
)
from clusterfarm.analysis.sample import (
    BLOCK_STEPS,
    SPECIAL_CASES,
    STEPS,
    sample_vortices,
    sample_winds,
)
from clusterfarm.tasks.registry import TaskContext, get_task

YEARS = (2000, 2001)
MEMBERS = 3
MATCH_KM = 300.0


def run_vort_track(data_dir: Path, results_dir: Path, years: tuple[int, ...], members: int) -> None:
    spec = get_task("vort_track")
    for year in years:
        for member in range(members):
            ctx = TaskContext(
                task="vort_track",
                params=spec.resolve_params({}),
                data_dir=data_dir,
                results_dir=results_dir,
                output_path=spec.output_path(results_dir, year, member),
                log=logging.getLogger("test"),
            )
            spec.fn(year, member, ctx)


@pytest.fixture(scope="module")
def sample_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("sample")
    write_sample_data(root / "data", YEARS, MEMBERS, size="small", seed=0)
    run_vort_track(root / "data", root / "results", YEARS, MEMBERS)
    return root / "data", root / "results"


def cells() -> list[tuple[int, int]]:
    return [(year, member) for year in YEARS for member in range(MEMBERS)]


def same_time_km(a: Track, b: Track) -> np.ndarray:
    _, ia, ib = np.intersect1d(a.time, b.time, return_indices=True)
    return great_circle_km(a.lat[ia], a.lon[ia], b.lat[ib], b.lon[ib])


def the_one_track(truth: Track, found: list[Track]) -> Track:
    """The single found track of a truth track; fails if it is missed or split."""
    touching = [t for t in found if (same_time_km(truth, t) <= MATCH_KM).any()]
    assert len(touching) == 1, f"{truth.name}: found as {len(touching)} tracks"
    track = touching[0]
    distance = same_time_km(truth, track)
    # at most the faint first step of genesis may be missed, and no point may stray
    assert (distance <= MATCH_KM).sum() >= len(truth) - 1, f"{truth.name}: points missed"
    assert (distance <= MATCH_KM).all(), f"{truth.name}: the track jumps to another cyclone"
    return track


def cell_tracks(data: Path, results: Path, year: int, member: int) -> tuple[dict, list[Track]]:
    truth = {t.name: t for t in read_tracks(truth_path(data / "truth", year, member)).tracks}
    found = read_tracks(find_results(results, year, member)[(year, member)]).tracks
    return truth, found


def test_tracker_meets_the_quality_targets_on_sample_data(sample_run: tuple[Path, Path]) -> None:
    data, results = sample_run
    score = score_results(results, data)
    expected = sum(len(sample_vortices(year, member, STEPS["small"])) for year, member in cells())
    assert score["truth_tracks"] == expected
    assert score["recall"] >= 0.95
    assert score["precision"] >= 0.95
    assert score["error_km"]["mean"] <= 100.0


@pytest.mark.parametrize("year_member", cells())
def test_the_crossing_of_zero_longitude_is_one_track(
    sample_run: tuple[Path, Path], year_member: tuple[int, int]
) -> None:
    truth, found = cell_tracks(*sample_run, *year_member)
    true = truth["zero_crossing"]
    assert true.lon.max() > 300 and true.lon.min() < 60  # the truth really crosses 0°
    track = the_one_track(true, found)
    assert track.lon.max() > 300 and track.lon.min() < 60


@pytest.mark.parametrize("year_member", cells())
def test_the_high_latitude_cyclone_is_one_track(
    sample_run: tuple[Path, Path], year_member: tuple[int, int]
) -> None:
    truth, found = cell_tracks(*sample_run, *year_member)
    track = the_one_track(truth["high_latitude"], found)
    assert track.lat.max() >= 65.0


@pytest.mark.parametrize("year_member", cells())
def test_the_close_pair_is_two_distinct_tracks(
    sample_run: tuple[Path, Path], year_member: tuple[int, int]
) -> None:
    truth, found = cell_tracks(*sample_run, *year_member)
    west, east = (truth[name] for name in SPECIAL_CASES["close_pair"])
    apart = same_time_km(west, east)
    assert apart.size == len(west) and (apart > 1100).all() and (apart < 2000).all()
    assert the_one_track(west, found) is not the_one_track(east, found)


@pytest.mark.parametrize("year_member", cells())
def test_the_crossing_pair_is_two_distinct_tracks(
    sample_run: tuple[Path, Path], year_member: tuple[int, int]
) -> None:
    truth, found = cell_tracks(*sample_run, *year_member)
    zonal, meridional = (truth[name] for name in SPECIAL_CASES["crossing_pair"])
    # the paths cross (the second passes where the first was earlier), never at the same time
    paths_km = great_circle_km(
        zonal.lat[:, None], zonal.lon[:, None], meridional.lat, meridional.lon
    )
    assert paths_km.min() < 200
    assert same_time_km(zonal, meridional).min() > 1100
    assert the_one_track(zonal, found) is not the_one_track(meridional, found)


@pytest.mark.parametrize("year_member", cells())
def test_southern_hemisphere_cyclones_are_one_track_each(
    sample_run: tuple[Path, Path], year_member: tuple[int, int]
) -> None:
    truth, found = cell_tracks(*sample_run, *year_member)
    for name in SPECIAL_CASES["southern_hemisphere"]:
        track = the_one_track(truth[name], found)
        assert (track.lat < 0).all()
        assert (track.vorticity < 0).all()  # clockwise: the file keeps the sign of ζ


def test_found_intensity_follows_the_truth(sample_run: tuple[Path, Path]) -> None:
    truth, found = cell_tracks(*sample_run, 2000, 0)
    for true in truth.values():
        track = the_one_track(true, found)
        _, it, ifound = np.intersect1d(true.time, track.time, return_indices=True)
        ratio = track.vorticity[ifound] / true.vorticity[it]
        # centred differences over 2 x 2° flatten a 500 km vortex's peak by up to ~20 %
        assert 0.75 <= np.median(ratio) <= 1.05, true.name


def test_packed_sample_data_scores_as_well(tmp_path: Path) -> None:
    write_sample_data(tmp_path / "data", 2002, 2, packed=True, seed=7)
    run_vort_track(tmp_path / "data", tmp_path / "results", (2002,), 2)
    score = score_results(tmp_path / "results", tmp_path / "data")
    assert score["recall"] >= 0.95 and score["precision"] >= 0.95
    assert score["error_km"]["mean"] <= 100.0


def test_sample_data_has_the_20cr_layout(sample_run: tuple[Path, Path]) -> None:
    data, _ = sample_run
    with netCDF4.Dataset(data / "2000" / "u850_2000.nc") as ds:
        assert ds["u850"].dimensions == ("time", "member", "lat", "lon")
        assert ds["u850"].shape == (STEPS["small"], MEMBERS, 91, 180)
        assert ds["lat"][0] == 90 and ds["lat"][-1] == -90
        assert ds["lon"][0] == 0 and ds["lon"][-1] == 358
        assert ds["time"].units.startswith("hours since")
        assert ds["time"][1] - ds["time"][0] == 6


def test_sample_data_is_deterministic_by_seed() -> None:
    u1, v1, truth1 = sample_winds(2000, 1, 12, seed=3)
    u2, v2, truth2 = sample_winds(2000, 1, 12, seed=3)
    u3, _, _ = sample_winds(2000, 1, 12, seed=4)
    np.testing.assert_array_equal(u1, u2)
    np.testing.assert_array_equal(v1, v2)
    assert [t.lat.tolist() for t in truth1] == [t.lat.tolist() for t in truth2]
    assert not np.array_equal(u1, u3)


def test_intensity_varies_by_year_and_member() -> None:
    def peaks(year: int, member: int) -> list[float]:
        return [v.zeta0 for v in sample_vortices(year, member, BLOCK_STEPS)]

    assert peaks(2000, 0) != peaks(2000, 1)
    assert peaks(2000, 0) != peaks(2001, 0)


def test_full_size_fills_the_year_with_the_scenario() -> None:
    vortices = sample_vortices(2000, 0, STEPS["full"])
    assert STEPS["full"] == 1460
    assert len(vortices) >= (STEPS["full"] // BLOCK_STEPS) * sum(map(len, SPECIAL_CASES.values()))
    assert max(v.start + v.steps for v in vortices) <= STEPS["full"]


def test_simultaneous_truth_cyclones_are_farther_apart_than_suppress_km() -> None:
    _, _, truth = sample_winds(2000, 0, BLOCK_STEPS)
    for k, a in enumerate(truth):
        for b in truth[k + 1 :]:
            distance = same_time_km(a, b)
            assert distance.size == 0 or distance.min() > 1100, (a.name, b.name)


def test_plot_draws_a_png_of_a_years_tracks(sample_run: tuple[Path, Path], tmp_path: Path) -> None:
    _, results = sample_run
    files = list(find_results(results, year=2000).values())
    out = plot_tracks(files, tmp_path / "maps" / "tracks_2000.png", "vort_track 2000")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert out.stat().st_size > 20_000
    empty = plot_tracks([], tmp_path / "empty.png")
    assert empty.read_bytes()[:4] == b"\x89PNG"


def test_hard_sample_data_has_close_pairs_fades_and_intensity_in_the_truth() -> None:
    _, _, truth = sample_winds(2000, 0, 2 * BLOCK_STEPS, difficulty="hard")
    closest = min(
        float(same_time_km(a, b).min())
        for k, a in enumerate(truth)
        for b in truth[k + 1 :]
        if same_time_km(a, b).size
    )
    assert closest < 1100.0  # closer than the default suppress_km
    faded = [t for t in truth if (np.abs(t.vorticity) < 0.5 * np.abs(t.vorticity).max()).any()]
    assert faded and all(np.abs(t.vorticity).max() >= 3e-5 for t in truth)


def test_tracker_meets_the_targets_on_a_stretch_of_hard_sample_data() -> None:
    from clusterfarm.analysis import score_tracks, track_cyclones
    from clusterfarm.analysis.sample import LATS, LONS, sample_times

    steps = 4 * BLOCK_STEPS
    u, v, truth = sample_winds(2001, 1, steps, seed=5, difficulty="hard")
    found = track_cyclones(u, v, LATS, LONS, sample_times(2001, steps))
    score = score_tracks(found, truth)
    assert score["recall"] >= 0.8
    assert score["precision"] >= 0.75
    assert score["error_km"]["mean"] <= 50.0
    assert score["intensity_error"]["relative"] <= 0.3
