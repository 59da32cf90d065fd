"""The SLURM commands the launcher uses, each with a time limit and a one-line error.

A command that fails or hangs (slurmctld busy or restarting) raises :class:`SlurmUnavailable`
after a few tries: the caller must treat the state as unknown and ask again later, never as
"the job is gone" (the mistake that makes workflow tools resubmit running jobs).
"""

from __future__ import annotations

import getpass
import logging
import re
import subprocess
import time
from dataclasses import dataclass

from clusterfarm.errors import LaunchError

LOG = logging.getLogger("clusterfarm.launchers.slurm")
COMMAND_TIMEOUT = 20.0  # seconds for one call of a SLURM command
TRIES = 3  # squeue and scontrol are asked this often before the state counts as unknown
ENDED = frozenset(
    "COMPLETED CANCELLED FAILED TIMEOUT OUT_OF_MEMORY NODE_FAIL PREEMPTED BOOT_FAIL "
    "DEADLINE".split()
)
_FIELD = re.compile(r"(\w+)=(\S*)")


class SlurmUnavailable(LaunchError):
    """A SLURM command failed or gave no answer: the cluster's state is unknown for now."""


@dataclass(frozen=True)
class Job:
    """One task of a worker job array, as ``squeue`` shows it."""

    array_job: str
    task: str
    state: str  # PENDING, CONFIGURING, RUNNING, COMPLETING...
    reason: str  # why it is pending (Resources, Priority, QOSMaxJobsPerUserLimit...) or None
    node: str
    used: float  # seconds it has run

    @property
    def id(self) -> str:
        return f"{self.array_job}_{self.task}"

    @property
    def worker(self) -> str:
        """The worker name its daemon registers as (after ``clusterfarm.worker.``)."""
        return f"slurm-{self.id}"


def run(command: list[str], stdin: str | None = None, tries: int = 1) -> str:
    """Run a SLURM command; return its output, or raise :class:`SlurmUnavailable`."""
    problem = ""
    for attempt in range(tries):
        if attempt:
            time.sleep(attempt)
        try:
            done = subprocess.run(
                command, input=stdin, capture_output=True, text=True, timeout=COMMAND_TIMEOUT
            )
        except FileNotFoundError:
            raise SlurmUnavailable(
                f"slurm: {command[0]} not found; run clusterfarm on a machine with the SLURM "
                "client commands (a login node), or set [run] launcher"
            ) from None
        except subprocess.TimeoutExpired:
            problem = f"no answer within {COMMAND_TIMEOUT:g} s"
        else:
            if done.returncode == 0:
                return done.stdout
            lines = done.stderr.strip().splitlines() or [f"exit {done.returncode}"]
            problem = lines[-1]
            if "Invalid job id" in problem:
                raise JobUnknown(problem)
        LOG.debug("%s failed (%s)", command[0], problem)
    raise SlurmUnavailable(f"slurm: {' '.join(command[:2])} failed ({problem}); is slurmctld up?")


class JobUnknown(SlurmUnavailable):
    """SLURM does not know the job (never existed, or ended longer ago than MinJobAge)."""


def submit(options: list[str], script: str) -> str:
    """Submit ``script`` with ``sbatch OPTIONS``; return the job id."""
    out = run(["sbatch", "--parsable", *options], stdin=script)
    return out.strip().split(";")[0]


def queue(job_name: str) -> list[Job]:
    """This user's jobs named ``job_name`` still in the queue, one per array task."""
    out = run(
        ["squeue", "-h", "-r", "-u", getpass.getuser(), "-n", job_name, "-o", "%F|%K|%T|%r|%N|%M"],
        tries=TRIES,
    )
    jobs = []
    for line in out.splitlines():
        parts = line.strip().split("|")
        if len(parts) == 6:
            array_job, task, state, reason, node, used = parts
            jobs.append(Job(array_job, task, state, reason, node, _seconds(used)))
    return jobs


def cancel(job_ids: list[str], signal: str = "", batch: bool = False) -> None:
    """``scancel`` the jobs (``signal``: send that signal instead; ``batch``: to the batch
    script's process only, which for a worker job is the worker daemon itself)."""
    if not job_ids:
        return
    options = [f"--signal={signal}"] if signal else []
    options += ["--batch"] if batch else []
    try:
        run(["scancel", *options, *job_ids], tries=TRIES)
    except JobUnknown:
        pass  # one of them ended meanwhile; scancel has still signalled the others


def show_job(job_id: str) -> dict[str, str]:
    """``scontrol show job``'s fields of one job (raises :class:`JobUnknown` if forgotten)."""
    out = run(["scontrol", "show", "job", "-o", job_id], tries=TRIES)
    return dict(_FIELD.findall(out.splitlines()[0] if out.strip() else ""))


def _seconds(used: str) -> float:
    """squeue's ``%M`` (``[days-][hours:]minutes:seconds``) in seconds."""
    days, _, clock = used.rpartition("-")
    total = 0.0
    for part in clock.split(":"):
        total = total * 60 + (float(part) if part.isdigit() else 0.0)
    return total + (float(days) * 86400 if days.isdigit() else 0.0)
