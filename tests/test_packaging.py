"""An installed (not editable) clusterfarm finds its embedded default settings."""

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_wheel_carries_the_default_settings_and_finds_them(tmp_path):
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--wheel-dir",
            str(tmp_path / "dist"),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = (tmp_path / "dist").glob("clusterfarm-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "clusterfarm/config/default.toml" in names
    target = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(target)
    found = subprocess.run(
        [
            sys.executable,
            "-I",
            "-c",
            "import sys; sys.path.insert(0, sys.argv[1]);"
            "from clusterfarm.config.settings import load_settings, default_settings_path;"
            "print(default_settings_path()); print(load_settings().run.timeout)",
            str(target),
        ],
        check=True,
        capture_output=True,
        text=True,
        cwd=tmp_path,
    ).stdout.split()
    assert found[0] == str(target / "clusterfarm/config/default.toml")
    assert found[1] == "900.0"
