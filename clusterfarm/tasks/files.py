"""A cell's files on disk: the identity of its inputs, its output's checksum, and whether an
earlier result still holds.

Runs where the data is: in the task process after each cell (what it read and wrote is
recorded), on a worker asked whether earlier results still hold, and in the manager only in
local mode, where the data is on its own machine. Standard library only, so the manager
and the worker daemon can check files without loading a task's science.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any


def check_result(
    input_files: list[Path], inputs: str | None, output: str | None, output_sum: str | None
) -> str | None:
    """Why a recorded result no longer holds where these files are, or None if it does."""
    if inputs is not None and input_identity(input_files) != inputs:
        return "input files changed"
    if output:
        return output_problem(output, output_sum)
    return None


def output_problem(path: str, checksum: str | None) -> str | None:
    """Why a recorded output can no longer be trusted, or None if it is intact."""
    file = Path(path)
    if not file.is_file():
        return f"output {path} is missing"
    if checksum is not None and file_checksum(file) != checksum:
        return f"output {path} changed since it was written"
    return None


def file_checksum(path: Path) -> str:
    """SHA-256 of a file's content (first 16 hex digits)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def input_identity(paths: Iterable[Path]) -> str | None:
    """A short identity of input files: their paths, sizes and modification times.

    None when a task declares no inputs. A missing file is part of the identity, so a file
    that appears or disappears changes it.
    """
    parts: list[Any] = []
    for path in paths:
        try:
            stat = Path(path).stat()
            parts.append([str(path), stat.st_size, stat.st_mtime_ns])
        except OSError:
            parts.append([str(path), None, None])
    if not parts:
        return None
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:16]
