"""Small filesystems for the disk tests: a full tmpfs, a read-only folder.

A full disk needs root (``mount -t tmpfs``); a read-only folder is a read-only bind mount
as root (root writes through permission bits) and ``chmod 555`` otherwise.
:meth:`Mounts.close` undoes everything, so no mount outlives its test.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path


def tmpfs_missing() -> str | None:
    """Why a small tmpfs cannot be mounted here, or None if it can."""
    if os.geteuid() != 0:
        return "needs root to mount a small tmpfs as a full disk"
    if not shutil.which("mount"):
        return "needs mount(8) for a small tmpfs"
    return None


class Mounts:
    """The mounts and permission changes of one test, undone by :meth:`close`."""

    def __init__(self) -> None:
        self._mounted: list[Path] = []
        self._chmodded: list[Path] = []

    def full_disk(self, path: Path, size: str = "1M") -> Path:
        """Mount a tmpfs of ``size`` at ``path`` and fill it up; return ``path``."""
        path.mkdir(parents=True, exist_ok=True)
        self._mount(["-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)])
        with open(path / "filler", "wb", buffering=0) as filler:
            try:
                while True:
                    filler.write(b"\0" * 4096)
            except OSError:  # ENOSPC: full, as wanted
                pass
        return path

    def read_only(self, path: Path) -> Path:
        """Make ``path`` (a folder) read-only for this process; return it."""
        path.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            self._mount(["--bind", str(path), str(path)])
            self._run(["mount", "-o", "remount,ro,bind", str(path)])
        else:
            path.chmod(0o555)
            self._chmodded.append(path)
        return path

    def close(self) -> None:
        for path in reversed(self._mounted):
            subprocess.run(["umount", str(path)], capture_output=True)
        for path in self._chmodded:
            path.chmod(0o755)
        self._mounted.clear()
        self._chmodded.clear()

    def _mount(self, args: list[str]) -> None:
        self._run(["mount", *args])
        self._mounted.append(Path(args[-1]))

    @staticmethod
    def _run(command: list[str]) -> None:
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(command)}: {done.stderr.strip()}")
