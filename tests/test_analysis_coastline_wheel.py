"""The wheel carries the coastline file, and an installed clusterfarm draws with it."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_wheel_carries_the_coastlines_and_an_installed_copy_reads_them(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
         "--wheel-dir", str(tmp_path / "dist"), str(ROOT)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    (wheel,) = (tmp_path / "dist").glob("clusterfarm-*.whl")
    assert "clusterfarm/analysis/coastlines_110m.npz" in zipfile.ZipFile(wheel).namelist()
    target = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(target)
    done = subprocess.run(
        [sys.executable, "-c",
         "import clusterfarm.analysis.coastlines as c; print(c.COASTLINE_FILE);"
         "print(len(c.coastline_segments()))"],
        env={"PYTHONPATH": str(target)},
        cwd=tmp_path,  # not the source tree, which would be imported first
        capture_output=True,
        text=True,
        check=True,
    )  # fmt: skip
    path, count = done.stdout.split()
    assert path.startswith(str(target))
    assert int(count) > 100
