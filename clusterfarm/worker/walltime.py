"""When the batch job a worker runs in ends, and whether a cell still fits before then.

A worker started by a batch system (SLURM) is killed at its job's time limit. It learns that
end (``SLURM_JOB_END_TIME`` when the cluster sets it, else ``scontrol show job``), measures how
long each task's cells take, refuses a cell that would not finish ``EXIT_MARGIN`` seconds
before the end (the manager hands it to another worker, not counted as an attempt), and
leaves on its own at the margin, handing back what it still runs. Outside a batch job there
is no end and nothing here is used.
"""

from __future__ import annotations

import logging
import os
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from datetime import datetime

LOG = logging.getLogger("clusterfarm.walltime")
EXIT_MARGIN = 15.0  # seconds before the job's end by which the worker has handed back and left
SCONTROL_TIMEOUT = 10.0


def slurm_job_end(env: Mapping[str, str] = os.environ) -> float | None:
    """The epoch second at which this process's SLURM job ends; None: not in a job, no limit."""
    if env.get("SLURM_JOB_END_TIME", "").isdigit():
        return float(env["SLURM_JOB_END_TIME"])
    job = env.get("SLURM_JOB_ID")
    if not job:
        return None
    for attempt in range(3):  # slurmctld may be busy for a moment: ask again before giving up
        try:
            done = subprocess.run(
                ["scontrol", "show", "job", "-o", job],
                capture_output=True,
                text=True,
                timeout=SCONTROL_TIMEOUT,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            LOG.warning("scontrol show job %s failed (%s)", job, exc)
        else:
            if done.returncode == 0:
                return end_time_of(done.stdout)
            LOG.warning("scontrol show job %s: %s", job, done.stderr.strip())
        time.sleep(1.0 + attempt)
    LOG.warning("job %s: end time unknown; this worker will not drain before its limit", job)
    return None


def end_time_of(scontrol_line: str) -> float | None:
    """``EndTime`` of one ``scontrol show job -o`` line, as an epoch second (None: Unknown)."""
    for field in scontrol_line.split():
        key, _, value = field.partition("=")
        if key == "EndTime":
            try:
                return datetime.fromisoformat(value).timestamp()  # the controller's local time
            except ValueError:
                return None
    return None


class Walltime:
    """A worker's deadline: which cells still fit, and the moment to leave."""

    def __init__(self, end: float, margin: float = EXIT_MARGIN) -> None:
        self.end = end
        self.margin = margin
        self.leaving = threading.Event()  # set when the worker should go now
        self._means: dict[str, float] = {}

    @classmethod
    def of_this_job(cls) -> Walltime | None:
        """The walltime of the batch job this process runs in, or None outside one."""
        end = slurm_job_end()
        return None if end is None else cls(end)

    def left(self) -> float:
        """Seconds until the worker must have left."""
        return self.end - self.margin - time.time()

    def record(self, task: str, durations: list[float]) -> None:
        """Learn how long ``task``'s cells take from the durations of a call's complete ones."""
        for elapsed in durations:
            mean = self._means.get(task, elapsed)
            self._means[task] = max(elapsed, 0.5 * mean + 0.5 * elapsed)

    def refusal(self, task: str, cells: int) -> str | None:
        """Why ``cells`` cells of ``task`` should not start now (and the worker leave), or None.

        A task not measured yet is tried: if it overruns, the worker hands it back at the margin.
        """
        needed = self._means.get(task, 0.0) * cells
        left = self.left()
        if needed < left:
            return None
        self.leaving.set()
        return (
            f"its batch job ends in {self.end - time.time():.0f} s, too soon for "
            f"{cells} cell(s) of {task} (about {needed:.0f} s)"
        )

    def watch(self, stop: Callable[[], None]) -> None:
        """Thread body: call ``stop`` at the margin, or at once when a refusal set ``leaving``."""
        self.leaving.wait(max(0.0, self.left()))
        LOG.warning("leaving %.0f s before the batch job's end", self.end - time.time())
        stop()
