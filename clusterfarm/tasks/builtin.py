"""Built-in tasks for trying and measuring the farm: ``noop``, ``sleep`` and ``burn``."""

from __future__ import annotations

import time
from typing import Any

from clusterfarm.tasks.registry import TaskContext, task


@task("noop", version="1", writes_output=False)
def noop(year: int, member: int, ctx: TaskContext) -> None:
    """Return at once (measures the farm's own overhead)."""


@task("sleep", version="1", params={"seconds": 0.05}, writes_output=False)
def sleep(year: int, member: int, ctx: TaskContext) -> dict[str, Any]:
    """Sleep ``params.seconds`` (a stand-in for I/O-bound work)."""
    time.sleep(ctx.params["seconds"])
    return {"slept": ctx.params["seconds"]}


@task("burn", version="1", params={"seconds": 0.05}, writes_output=False)
def burn(year: int, member: int, ctx: TaskContext) -> dict[str, Any]:
    """Keep one CPU busy for ``params.seconds`` of process time (a stand-in for compute)."""
    return {"loops": burn_cpu(ctx.params["seconds"])}


def burn_cpu(seconds: float) -> int:
    """Spin for ``seconds`` of this process's CPU time; return the loops done."""
    deadline = time.process_time() + seconds
    loops = 0
    while time.process_time() < deadline:
        for _ in range(1000):
            loops += 1
    return loops
