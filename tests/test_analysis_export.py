"""Exported tracks read back with huracanpy (a reader we did not write) match our netCDF."""

from __future__ import annotations

from pathlib import Path

import cftime
import numpy as np
import pytest

from clusterfarm.analysis import Track, read_tracks, result_path, write_tracks
from clusterfarm.analysis.export import export_tracks
from tests.harness.cli import run_cli

huracanpy = pytest.importorskip("huracanpy")

UNITS = "hours since 2000-01-01 00:00:00"


def tracks_of(member: int) -> list[Track]:
    """A track across 0° E, a southern one, and a third that starts later."""
    k = np.arange(8.0)
    return [
        Track(6 * k, 50 + 0.5 * k, np.mod(350 + 3 * k, 360), (4 + k) * 1e-5),
        Track(6 * (k + 2), -40 - 0.3 * k, 100 + 2.5 * k + member, -(5 + 0.5 * k) * 1e-5),
        Track(6 * (k + 20), 30 + 0.2 * k, 200 + 1.5 * k, np.full(8, 6e-5)),
    ]


@pytest.fixture
def results(tmp_path: Path) -> dict[tuple[int, int], Path]:
    files = {}
    for member in (0, 1):
        path = result_path(tmp_path / "results", 2000, member)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_tracks(path, tracks_of(member), time_units=UNITS, attrs={"member": member})
        files[(2000, member)] = path
    return files


def expected_points(files: dict[tuple[int, int], Path]) -> tuple[np.ndarray, np.ndarray]:
    """(lat, lon, vorticity) rows and their times as numpy datetimes, in file order."""
    rows, times = [], []
    for path in files.values():
        content = read_tracks(path)
        for track in content.tracks:
            rows += list(zip(track.lat, track.lon, track.vorticity, strict=True))
            dates = cftime.num2date(track.time, content.time_units, content.calendar)
            times += [np.datetime64(d.isoformat()) for d in dates]
    return np.array(rows), np.array(times, dtype="datetime64[s]")


def loaded_points(tracks, vorticity: str, scale: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    order = np.lexsort((tracks.time.values, tracks.track_id.values))
    lat, lon = tracks.lat.values[order], np.mod(tracks.lon.values[order], 360.0)
    value = tracks[vorticity].values[order] / scale
    return np.column_stack([lat, lon, value]), tracks.time.values[order].astype("datetime64[s]")


@pytest.mark.parametrize(
    ("fmt", "source", "vorticity", "scale"),
    [
        ("te-csv", "csv", "vorticity", 1.0),
        ("gfdl", "te", "feature_0", 1.0),
        ("track", "track", "vorticity", 1e5),
        ("csv", "csv", "vorticity", 1.0),
    ],
)
def test_huracanpy_reads_each_format_to_our_positions_times_and_vorticity(
    results: dict[tuple[int, int], Path],
    tmp_path: Path,
    fmt: str,
    source: str,
    vorticity: str,
    scale: float,
) -> None:
    out = tmp_path / f"tracks.{fmt}"
    assert export_tracks(results, fmt, out) == 6
    loaded = huracanpy.load(str(out), source=source)
    assert len(np.unique(loaded.track_id.values)) == 6
    expected, times = expected_points(results)
    found, found_times = loaded_points(loaded, vorticity, scale)
    np.testing.assert_allclose(found, expected, rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(found_times, times)


def test_huracanpy_reads_our_netcdf_and_our_te_csv_to_the_same_tracks(
    results: dict[tuple[int, int], Path], tmp_path: Path
) -> None:
    path = results[(2000, 0)]
    from_netcdf = huracanpy.load(str(path))
    export_tracks({(2000, 0): path}, "te-csv", tmp_path / "tracks.csv")
    from_csv = huracanpy.load(str(tmp_path / "tracks.csv"))
    a, a_times = loaded_points(from_netcdf, "vorticity")
    b, b_times = loaded_points(from_csv, "vorticity")
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(a_times, b_times)
    assert len(np.unique(from_netcdf.track_id)) == len(np.unique(from_csv.track_id)) == 3


def test_imilast_lines_follow_the_documented_columns(
    results: dict[tuple[int, int], Path], tmp_path: Path
) -> None:
    out = tmp_path / "tracks.imilast"
    export_tracks(results, "imilast", out)
    lines = out.read_text().splitlines()
    headers = [line.split() for line in lines if line.startswith("90 ")]
    points = np.array([line.split()[1:] for line in lines if line.startswith("00 ")], dtype=float)
    assert [int(h[2]) for h in headers] == [8] * 6
    expected, times = expected_points(results)
    np.testing.assert_allclose(points[:, [8, 7]], expected[:, :2], atol=1e-4)
    np.testing.assert_allclose(points[:, 9] / 1e5, expected[:, 2], atol=1e-9)
    stamps = [str(t.astype("datetime64[h]")).replace("-", "").replace("T", "") for t in times]
    assert [f"{int(p):010d}" for p in points[:, 2]] == stamps


def test_export_command_selects_years_and_members(
    results: dict[tuple[int, int], Path], tmp_path: Path
) -> None:
    out = tmp_path / "member1.csv"
    done = run_cli(
        "export", "--run-dir", str(tmp_path), "--members", "1", "--format", "csv", "--out",
        str(out), cwd=tmp_path,
    )  # fmt: skip
    assert done.code == 0, done.err
    assert "wrote 3 tracks of 1 member-year(s)" in done.out
    loaded = huracanpy.load(str(out))
    assert set(loaded.member.values.tolist()) == {1}
    missing = run_cli(
        "export", "--run-dir", str(tmp_path), "--years", "1999", "--format", "gfdl", "--out",
        str(out), cwd=tmp_path,
    )  # fmt: skip
    assert missing.code == 2
    assert missing.err.startswith("Error: ") and "no vort_track results" in missing.err
