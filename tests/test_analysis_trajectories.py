"""Track files follow CF-1.8 contiguous ragged trajectories and read back unchanged."""

from __future__ import annotations

from pathlib import Path

import netCDF4
import numpy as np
import pytest

from clusterfarm.analysis import Track, find_results, read_tracks, result_path, write_tracks
from clusterfarm.errors import InputError

UNITS = "hours since 1800-01-01 00:00:00"


def sample_tracks() -> list[Track]:
    return [
        Track(np.array([0.0, 6.0, 12.0]), np.array([50.0, 51.0, 52.0]),
              np.array([356.0, 359.5, 3.0]), np.array([2e-5, 3e-5, 2.5e-5])),
        Track(np.array([6.0, 12.0]), np.array([-40.0, -41.0]), np.array([100.0, 103.0]),
              np.array([-4e-5, -5e-5])),
    ]  # fmt: skip


def test_track_file_is_a_cf_contiguous_ragged_trajectory_file(tmp_path: Path) -> None:
    path = tmp_path / "tracks.nc"
    attrs = {"year": 2000, "member": 3, "param_box": [-80.0, 80.0, 0.0, 360.0],
             "param_flag": True, "param_names": ["a", "b"]}  # fmt: skip
    write_tracks(path, sample_tracks(), time_units=UNITS, calendar="standard", attrs=attrs)
    with netCDF4.Dataset(path) as ds:
        assert ds.Conventions == "CF-1.8"
        assert ds.featureType == "trajectory"
        assert (len(ds.dimensions["track"]), len(ds.dimensions["obs"])) == (2, 5)
        assert ds["row_size"].dimensions == ("track",)
        assert ds["row_size"].sample_dimension == "obs"
        assert ds["row_size"].long_name
        assert ds["row_size"][:].tolist() == [3, 2]
        assert ds["track_id"].cf_role == "trajectory_id"
        assert ds["track_id"][:].tolist() == [1, 2]
        for name in ("time", "lat", "lon", "vorticity"):
            assert ds[name].dimensions == ("obs",)
        assert (ds["time"].units, ds["time"].calendar) == (UNITS, "standard")
        assert (ds["lat"].standard_name, ds["lat"].units) == ("latitude", "degrees_north")
        assert (ds["lon"].standard_name, ds["lon"].units) == ("longitude", "degrees_east")
        assert ds["vorticity"].units == "s-1"
        assert (ds.year, ds.member) == (2000, 3)
        assert ds.param_box.tolist() == [-80.0, 80.0, 0.0, 360.0]
        assert ds.param_flag == 1
        assert ds.param_names == "['a', 'b']"
        assert np.all((ds["lon"][:] >= 0) & (ds["lon"][:] < 360))


def test_tracks_read_back_unchanged(tmp_path: Path) -> None:
    path = tmp_path / "tracks.nc"
    tracks = sample_tracks()
    write_tracks(path, tracks, time_units=UNITS, calendar="noleap")
    back = read_tracks(path)
    assert (back.time_units, back.calendar) == (UNITS, "noleap")
    assert len(back.tracks) == 2
    for got, want in zip(back.tracks, tracks, strict=True):
        for name in ("time", "lat", "lon", "vorticity"):
            np.testing.assert_allclose(getattr(got, name), getattr(want, name), rtol=1e-6)


def test_zero_tracks_still_give_a_valid_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.nc"
    write_tracks(path, [], time_units=UNITS, attrs={"year": 2001})
    with netCDF4.Dataset(path) as ds:
        assert ds.featureType == "trajectory"
        assert len(ds.dimensions["track"]) == 0
        assert len(ds.dimensions["obs"]) == 0
        assert ds["row_size"].sample_dimension == "obs"
    assert read_tracks(path).tracks == []


def test_reading_a_file_that_is_not_a_track_file_is_an_input_error(tmp_path: Path) -> None:
    path = tmp_path / "other.nc"
    with netCDF4.Dataset(path, "w") as ds:
        ds.createDimension("x", 1)
    with pytest.raises(InputError, match=r"other\.nc: not a track file"):
        read_tracks(path)


def test_find_results_lists_vort_track_files_by_year_and_member(tmp_path: Path) -> None:
    for year, member in ((2000, 0), (2000, 12), (2001, 3)):
        path = result_path(tmp_path, year, member)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_tracks(path, [], time_units=UNITS)
    (result_path(tmp_path, 2000, 1).parent / ".vort_track_2000_m001.nc.123.tmp").touch()
    assert result_path(tmp_path, 2000, 12).name == "vort_track_2000_m012.nc"
    assert sorted(find_results(tmp_path)) == [(2000, 0), (2000, 12), (2001, 3)]
    assert sorted(find_results(tmp_path, year=2000)) == [(2000, 0), (2000, 12)]
    assert sorted(find_results(tmp_path, year=2000, member=12)) == [(2000, 12)]
