"""Track maps: a PNG from tracks or track files, matplotlib only when drawing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from clusterfarm.analysis import Track, plot_tracks, write_tracks

REPO = Path(__file__).resolve().parents[1]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def crossing_zero() -> Track:
    lon = np.mod(340.0 + 4.0 * np.arange(10), 360.0)
    return Track(6.0 * np.arange(10), np.linspace(45, 55, 10), lon, np.linspace(2e-5, 8e-5, 10))


def test_plot_from_tracks_and_files_writes_a_png(tmp_path: Path) -> None:
    southern = Track(np.arange(3.0), np.array([-40.0, -42, -44]), np.array([10.0, 14, 18]),
                     np.array([-3e-5, -5e-5, -4e-5]))  # fmt: skip
    path = tmp_path / "tracks.nc"
    write_tracks(path, [southern], time_units="hours since 2000-01-01")
    out = plot_tracks([crossing_zero(), path], tmp_path / "map" / "tracks.png", "two tracks")
    assert out == tmp_path / "map" / "tracks.png"
    assert out.read_bytes()[:8] == PNG_SIGNATURE
    assert out.stat().st_size > 10_000


def test_importing_the_analysis_does_not_import_matplotlib() -> None:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    code = "import sys, clusterfarm.analysis; print('matplotlib' in sys.modules)"
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "False"


def test_shipped_coastlines_hold_known_coasts_and_never_jump_across_the_map() -> None:
    from clusterfarm.analysis.coastlines import coastline_segments

    points = np.concatenate(coastline_segments())
    assert 4000 < len(points) < 20000  # Natural Earth 110 m: a few thousand points
    assert points[:, 0].min() >= 0.0 and points[:, 0].max() < 360.0

    def nearest_km(lat: float, lon: float) -> float:
        from clusterfarm.analysis import great_circle_km

        return float(great_circle_km(lat, lon, points[:, 1], points[:, 0]).min())

    assert nearest_km(-34.36, 18.47) < 100  # Cape of Good Hope
    assert nearest_km(36.0, 354.4) < 100  # Strait of Gibraltar
    assert nearest_km(-53.9, 291.7) < 150  # Cape Froward, Patagonia
    assert nearest_km(0.0, 200.0) > 1000  # the middle of the Pacific
    for piece in coastline_segments():
        assert np.abs(np.diff(piece[:, 0])).max() <= 180.0


def test_a_map_with_no_tracks_still_shows_the_coastlines(tmp_path: Path) -> None:
    import matplotlib.image

    out = plot_tracks([], tmp_path / "empty.png", "coasts only")
    pixels = matplotlib.image.imread(out)[..., :3].mean(axis=-1)
    height, width = pixels.shape
    inside = pixels[int(0.2 * height) : int(0.8 * height), int(0.2 * width) : int(0.7 * width)]
    # inside the frame, only the dotted grid (~0.4 % of pixels) is grey without coastlines
    assert (inside < 0.6).mean() > 0.012
