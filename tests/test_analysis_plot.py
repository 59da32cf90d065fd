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
