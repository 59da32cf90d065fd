"""The module map of docs/architecture.rst is the one bin/test enforces (lint-imports)."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "clusterfarm"


def layers() -> list[str]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    [contract] = [c for c in config["contracts"] if c["type"] == "layers" and "containers" not in c]
    return [name.strip() for layer in contract["layers"] for name in layer.split("|")]


def modules() -> set[str]:
    found = set()
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if parts[-1] not in ("__init__", "__main__"):
            found.add(".".join(parts))
    return found


def test_every_module_has_its_place_in_the_layers_contract():
    placed = layers()
    unplaced = [
        m for m in sorted(modules()) if not any(m == p or m.startswith(p + ".") for p in placed)
    ]
    assert not unplaced


def test_the_architecture_document_names_every_package():
    text = (ROOT / "docs" / "architecture.rst").read_text()
    tops = {m.split(".")[1] for m in modules()}
    missing = [name for name in sorted(tops) if f"``{name}" not in text]
    assert not missing
