"""Tell an out-of-memory kill from any other crash of a task process.

Batch systems enforce a job's memory (``sbatch --mem``) with the cgroup memory controller: the
kernel kills the biggest process of the job, which is the task's child process, not the worker.
The worker sees only "task process died (exit code -9)"; the cgroup's OOM-kill counter says
why. :func:`oom_kills` reads it (cgroup v1 ``memory.oom_control`` or v2 ``memory.events``) and
:class:`OomCounter` rewrites the crash answers of a call during which it went up.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

CGROUP_ROOT = Path("/sys/fs/cgroup")


def _memory_cgroup() -> Path | None:
    """This process's memory cgroup folder, v1 or v2; None when there is none."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):
            return CGROUP_ROOT / "memory" / path.lstrip("/")
    for line in lines:
        if line.startswith("0::"):
            return CGROUP_ROOT / line[3:].lstrip("/")
    return None


def oom_kills() -> int | None:
    """How many processes the kernel has killed for memory in this process's cgroup."""
    folder = _memory_cgroup()
    if folder is None:
        return None
    for name in ("memory.oom_control", "memory.events"):
        try:
            text = (folder / name).read_text()
        except OSError:
            continue
        for line in text.splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill" and value.strip().isdigit():
                return int(value)
    return None


def memory_limit() -> str:
    """This cgroup's memory limit, as a few words ("" when unlimited or unknown)."""
    folder = _memory_cgroup()
    for name in ("memory.limit_in_bytes", "memory.max"):
        try:
            text = (folder / name).read_text().strip() if folder else ""
        except OSError:
            continue
        if text.isdigit() and int(text) < 1 << 50:
            return f" (limit {int(text) / 2**20:.0f} MiB)"
    return ""


class OomCounter:
    """The cgroup's OOM kills as last seen: read again only after a task process crashed."""

    def __init__(self) -> None:
        self._seen = oom_kills()

    def explain(self, answers: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        """Say "out of memory" in the crash answers of a call if the OOM killer struck."""
        if self._seen is None or not any(len(a) > 3 and a[3] == "crash" for a in answers):
            return answers
        now = oom_kills()
        struck = now is not None and now > self._seen
        self._seen = now
        if not struck:
            return answers
        why = (
            f"out of memory: the kernel killed the task process{memory_limit()}; "
            "give the workers more memory ([slurm] mem)"
        )
        return [(*a[:4], why) if len(a) > 3 and a[3] == "crash" else a for a in answers]
