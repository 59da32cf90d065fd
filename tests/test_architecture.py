"""The module map of docs/architecture.rst is the one bin/test enforces (lint-imports)."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "clusterfarm"


def layered_modules() -> set[str]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    [layers] = [c for c in config["contracts"] if c["type"] == "layers" and "containers" not in c]
    return {name.strip() for layer in layers["layers"] for name in layer.split("|")}


def top_level_modules() -> set[str]:
    found = {f"clusterfarm.{path.stem}" for path in PACKAGE.glob("*.py")}
    found |= {f"clusterfarm.{path.parent.name}" for path in PACKAGE.glob("*/__init__.py")}
    return found - {"clusterfarm.__init__", "clusterfarm.__main__"}


def test_every_module_has_its_place_in_the_layers_contract():
    assert top_level_modules() == layered_modules()


def test_the_architecture_document_names_every_module():
    text = (ROOT / "docs" / "architecture.rst").read_text()
    missing = [m for m in sorted(top_level_modules()) if f"``{m.split('.')[1]}" not in text]
    assert not missing
    for launcher in ("base", "local", "ssh", "slurm", "preflight", "logs"):
        assert f"``launchers.{launcher}" in text or f"``{launcher}" in text
