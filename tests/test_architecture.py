"""The map of docs/architecture.rst is the one bin/test enforces (lint-imports), and the house
stays as the map says: few modules at the top, few layers, the two sides of the wire apart,
tests that share through the harness only."""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "clusterfarm"
TESTS = ROOT / "tests"


def contracts() -> list[dict]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]


def the_layers() -> list[list[str]]:
    [contract] = [c for c in contracts() if c["type"] == "layers" and "containers" not in c]
    return [[name.strip() for name in layer.split("|")] for layer in contract["layers"]]


def modules() -> set[str]:
    found = set()
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if parts[-1] not in ("__init__", "__main__"):
            found.add(".".join(parts))
    return found


def test_every_module_has_its_place_in_the_layers_contract():
    placed = [name for layer in the_layers() for name in layer]
    unplaced = [
        m for m in sorted(modules()) if not any(m == p or m.startswith(p + ".") for p in placed)
    ]
    assert not unplaced


def test_the_top_holds_at_most_ten_modules_and_the_map_at_most_ten_layers():
    top = [path.name for path in PACKAGE.glob("*.py")]
    assert len(top) <= 10, top
    assert len(the_layers()) <= 10


def test_the_manager_and_the_worker_are_kept_apart_by_an_independence_contract():
    independent = [set(c["modules"]) for c in contracts() if c["type"] == "independence"]
    assert {"clusterfarm.manager", "clusterfarm.worker"} in independent


def test_the_architecture_document_names_every_package():
    text = (ROOT / "docs" / "architecture.rst").read_text()
    tops = {m.split(".")[1] for m in modules()}
    missing = [name for name in sorted(tops) if f"``{name}" not in text]
    assert not missing


def test_no_test_module_imports_another_or_conftest():
    offenders = []
    for path in TESTS.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            for name in names:
                last = name.split(".")[-1]
                if last == "conftest" or last.startswith("test_"):
                    offenders.append(f"{path.relative_to(ROOT)}: {name}")
    assert not offenders


def test_no_benchmark_edits_sys_path_to_reach_the_harness():
    edits = [p.name for p in (ROOT / "bench").glob("*.py") if "sys.path.insert" in p.read_text()]
    assert not edits


def test_nothing_cites_a_document_the_project_does_not_contain():
    cited = re.compile(r"SPEC\s*§")
    places = [*PACKAGE.rglob("*.py"), *PACKAGE.rglob("*.toml"), *TESTS.rglob("*.py")]
    places += [*(ROOT / "docs").glob("*.rst"), ROOT / "README.rst", *(ROOT / "bench").glob("*.py")]
    offenders = [str(p.relative_to(ROOT)) for p in places if cited.search(p.read_text())]
    assert not offenders


@pytest.mark.skipif(
    shutil.which("git") is None or not (ROOT / ".git").exists(), reason="not a git checkout"
)
def test_no_build_artefact_is_tracked():
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    artefacts = re.compile(r"(\.whl|\.tar\.gz|\.pyc|\.egg-info/.*|^dist/.*|^build/.*)$")
    assert not [name for name in tracked if artefacts.search(name)]


def test_no_module_imports_one_that_imports_it_back():
    """No import circle anywhere in the package, between parts or inside one."""
    grimp = pytest.importorskip("grimp")  # import-linter's own graph (the test extra)
    graph = grimp.build_graph("clusterfarm", exclude_type_checking_imports=True)
    circles = []
    for module in sorted(graph.modules):
        for imported in graph.find_modules_directly_imported_by(module):
            if module < imported and graph.chain_exists(imported, module):
                circles.append(f"{module} <-> {imported}")
    assert not circles
