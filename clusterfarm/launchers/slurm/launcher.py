"""Worker daemons as the tasks of a SLURM job array: submit, wait, keep, explain, cancel.

``start`` submits ONE array (``sbatch --array=0-(N-1)%k``) whose tasks ``exec`` the worker
daemon, so the daemon itself gets SLURM's signals; each registers as
``clusterfarm.worker.slurm-<arrayjob>_<task>`` and logs to ``{workdir}/logs`` (a shared file
system). Jobs are found again by their name, ``clusterfarm@<nameserver host>:<port>``, and
this user. ``stop`` sends SIGTERM to each daemon (``scancel --batch --signal=TERM``) so it
hands its cell back, then cancels what is left and waits until no job is in the queue.

For ``run``, :meth:`SlurmLauncher.keep` tops the pool up in a thread while cells remain
(array tasks end at their time limit, or are cancelled, or fail), and :meth:`why_lost` tells the
manager why a worker went, from ``scontrol show job`` (never ``sacct``).
"""

from __future__ import annotations

import logging
import os
import shlex
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clusterfarm.config.settings import Settings
from clusterfarm.errors import LaunchError, NameServerError, UsageError
from clusterfarm.launchers.base import (
    START_TIMEOUT,
    ClusterLauncher,
    setup_then,
    tail_file,
    text_table,
)
from clusterfarm.launchers.slurm import commands
from clusterfarm.launchers.slurm.commands import Job, JobUnknown, SlurmUnavailable
from clusterfarm.wire.access import Access
from clusterfarm.wire.nameserver import WorkerEntry, list_workers
from clusterfarm.wire.pyro import WORKER_PREFIX

LOG = logging.getLogger("clusterfarm.launchers.slurm")
STOP_GRACE = 10.0  # seconds workers get to hand back their cells after SIGTERM
GONE_TIMEOUT = 60.0  # seconds for cancelled jobs to leave the queue
KEEP_EVERY = 2.0  # seconds between two looks at the pool while a run goes on
WHY_WAIT = 2.0  # seconds to wait for a lost worker's job to reach its final state
_EXPLAIN = {
    "OUT_OF_MEMORY": "ran out of memory; give the workers more with [slurm] mem",
    "TIMEOUT": "hit its time limit ([slurm] time)",
    "NODE_FAIL": "lost its node (NODE_FAIL)",
    "CANCELLED": "was cancelled (scancel, or an administrator)",
    "PREEMPTED": "was preempted by a job of higher priority",
}


@dataclass
class WorkerRow:
    """One worker job in the tables of start-workers, stop-workers and workers."""

    worker: str
    job: str
    state: str
    detail: str = ""


class SlurmLauncher(ClusterLauncher):
    """Starts, keeps and stops worker daemons as SLURM array jobs (see the module docstring)."""

    def __init__(
        self,
        settings: Settings,
        exit_when_idle: float = 0.0,
        grace: float = STOP_GRACE,
        access: Access | None = None,
    ) -> None:
        self.settings = settings
        self._access = access  # the cluster's (its jobs read the secret from the shared home)
        self.slurm = settings.slurm
        ns = settings.nameserver
        self.nameserver = f"{ns.host}:{ns.port}"
        self.job_name = f"clusterfarm@{self.nameserver}"
        self.log_dir = Path(os.path.expanduser(settings.workers.workdir)).absolute() / "logs"
        self.exit_when_idle = exit_when_idle
        self.grace = grace
        self.rows: list[WorkerRow] = []
        self.submitted: list[str] = []  # array jobs this object submitted
        self._jobs: list[Job] = []  # what squeue said last
        self._seen_at = 0.0  # time.monotonic() of that
        self._failed_starts = 0
        self._max_failed_starts = max(3, self.slurm.workers)  # then stop replacing workers
        self._keeper: threading.Thread | None = None
        self._keeping = threading.Event()

    # -- submitting ---------------------------------------------------------------------------

    def job_script(self) -> str:
        """The batch script of a worker job: ``slurm.setup``, then exec the worker daemon."""
        args = ["-m", "clusterfarm"]
        if self.settings.user_file is not None:
            args += ["--settings", self.settings.user_file]
        args += ["worker", "--nameserver", self.nameserver]
        args += ["--orphan-after", f"{self.settings.workers.orphan_after:g}"]
        if self.exit_when_idle > 0:
            args += ["--exit-when-idle", f"{self.exit_when_idle:g}"]
        logs = shlex.quote(str(self.log_dir))
        line = (
            f"exec {self.slurm.python} {shlex.join(args)} "
            f'--name "$cf_name" --log-file {logs}/"$cf_name".log'
        )
        return (
            "#!/bin/bash\n# a clusterfarm worker (clusterfarm start-workers / run)\n"
            'cf_name="slurm-${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}"\n'
            + setup_then(self.slurm.setup, "slurm.setup", line)
            + "\n"
        )

    def sbatch_options(self, count: int) -> list[str]:
        """The options of one worker array of ``count`` tasks."""
        slurm = self.slurm
        limit = f"%{slurm.max_running}" if slurm.max_running else ""
        options = [
            f"--job-name={self.job_name}",
            f"--array=0-{count - 1}{limit}",
            f"--output={self.log_dir}/slurm-%A_%a.out",
            "--open-mode=append",
            f"--time={slurm.time}",
            f"--cpus-per-task={slurm.cpus_per_worker}",
            "--no-requeue",  # a replacement is submitted under a new name instead
        ]
        for option, value in (
            ("--mem", slurm.mem),
            ("--partition", slurm.partition),
            ("--account", slurm.account),
            ("--qos", slurm.qos),
        ):
            if value:
                options.append(f"{option}={value}")
        return options + list(slurm.sbatch_args)

    def submit(self, count: int) -> str:
        """Submit one array of ``count`` workers; return its job id."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        try:
            job = commands.submit(self.sbatch_options(count), self.job_script())
        except SlurmUnavailable as exc:
            raise LaunchError(
                f"slurm: sbatch refused the worker array ({str(exc).partition('(')[2][:-1]}); "
                "check [slurm] partition, account, qos, time, mem and sbatch_args"
            ) from exc
        LOG.debug("submitted worker array %s (%d tasks)", job, count)
        self.submitted.append(job)
        return job

    def jobs(self) -> list[Job]:
        """Our worker jobs in the queue (raises :class:`SlurmUnavailable` when unknown)."""
        self._jobs, self._seen_at = commands.queue(self.job_name), time.monotonic()
        return self._jobs

    # -- start-workers --------------------------------------------------------------------------

    def start(self, timeout: float = START_TIMEOUT) -> list[WorkerEntry]:
        """Submit the missing workers as one array; wait until they register (or say why not)."""
        self.nameserver_proxy()  # none: fail now, not in every job
        missing = self.slurm.workers - len(self.jobs())
        if missing > 0:
            self.submit(missing)
        return self.wait_registered(timeout)

    def wait_registered(self, timeout: float) -> list[WorkerEntry]:
        """Wait until every queued worker job has registered; fill :attr:`rows`.

        Jobs still pending at the end are no error (the rows say why they wait); a job that
        ended without registering is.
        """
        ns = self.nameserver_proxy()
        deadline = time.monotonic() + timeout
        known: dict[str, Job] = {}
        while True:
            jobs = self.jobs()
            known.update({job.id: job for job in jobs})
            registered = {w.name.removeprefix(WORKER_PREFIX): w for w in list_workers(ns)}
            queued = {job.id for job in jobs}
            ended = [j for j in known.values() if j.id not in queued and j.worker not in registered]
            ended = [job for job in ended if self._has_ended(job.id)]  # squeue may lag: ask
            if ended:
                self.rows = self._rows(known.values(), registered, ended)
                raise LaunchError("; ".join(self._never_registered(job) for job in ended))
            waiting = [job for job in jobs if job.worker not in registered]
            if not waiting or time.monotonic() > deadline:
                self.rows = self._rows(known.values(), registered, [])
                # one that ran most of the wait and is still not there will not be (a booting
                # node, or a slow shared file system, may still be starting the others)
                running = [j for j in waiting if j.state == "RUNNING" and j.used >= timeout / 2]
                if running:
                    raise LaunchError(
                        f"slurm: {', '.join(j.worker for j in running)} running but not "
                        f"registered with the nameserver {self.nameserver} after {timeout:g} s; "
                        f"can the nodes reach it? see {self.log_dir}/<worker>.log"
                    )
                return [w for name, w in registered.items() if name in _workers(known)]
            time.sleep(0.25)

    def _rows(
        self, jobs: Iterable[Job], registered: dict[str, WorkerEntry], ended: list[Job]
    ) -> list[WorkerRow]:
        rows = []
        gone = {job.id for job in ended}
        for job in sorted(jobs, key=lambda j: (int(j.array_job), int(j.task))):
            if job.worker in registered:
                rows.append(WorkerRow(job.worker, job.id, "registered", f"on {job.node}"))
            elif job.id in gone:
                rows.append(WorkerRow(job.worker, job.id, "ended", "never registered"))
            elif job.state == "PENDING":
                rows.append(WorkerRow(job.worker, job.id, "pending", f"reason: {job.reason}"))
            else:
                rows.append(WorkerRow(job.worker, job.id, job.state.lower(), "not registered"))
        return rows

    def _has_ended(self, job_id: str) -> bool:
        try:
            return commands.show_job(job_id).get("JobState") in commands.ENDED
        except JobUnknown:
            return True
        except SlurmUnavailable:
            return False  # unknown is not ended: look again

    def _never_registered(self, job: Job) -> str:
        """One line on a job that ran but never registered: its state and last words."""
        try:
            fields = commands.show_job(job.id)
            state = f"{fields.get('JobState', '?')}, exit {fields.get('ExitCode', '?')}"
        except SlurmUnavailable:
            state = "state unknown"
        out = self.log_dir / f"{job.worker}.out"
        try:
            lines = [line for line in out.read_text(errors="replace").splitlines() if line]
        except OSError:
            lines = []
        last = lines[-1].strip() if lines else "no output"
        return (
            f"{job.worker}: job {job.id} ran on {job.node or '?'} but never registered "
            f"({state}): {last}; is [slurm] python right, can the node reach the nameserver "
            f"{self.nameserver}? see {out}"
        )

    # -- stop-workers -----------------------------------------------------------------------

    def stop(self) -> None:
        """SIGTERM every worker (it hands its cell back), then cancel; confirm none is left."""
        jobs = self.jobs()
        running = [job.id for job in jobs if job.state in ("RUNNING", "CONFIGURING")]
        pending = [job.id for job in jobs if job.id not in running]
        commands.cancel(pending)
        commands.cancel(running, signal="TERM", batch=True)  # to the daemon, not its task
        left = self._wait_gone(self.grace)
        if left:
            LOG.info("cancelling %d worker jobs still there after %g s", len(left), self.grace)
            commands.cancel([job.id for job in left])
            left = self._wait_gone(GONE_TIMEOUT)
        still = {job.id for job in left}
        self.rows = [
            WorkerRow(job.worker, job.id, "left" if job.id in still else "stopped") for job in jobs
        ]
        self._forget([job.worker for job in jobs])
        if left:
            raise LaunchError(
                f"slurm: jobs {', '.join(job.id for job in left)} still in the queue "
                f"{GONE_TIMEOUT:g} s after scancel; ask the cluster's administrators"
            )

    def _wait_gone(self, timeout: float) -> list[Job]:
        deadline = time.monotonic() + timeout
        while True:
            try:
                jobs = self.jobs()
            except SlurmUnavailable as exc:  # unknown is not gone: look again
                LOG.warning("%s", exc)
                jobs = self._jobs
            if not jobs or time.monotonic() > deadline:
                return jobs
            time.sleep(0.2)

    def _forget(self, workers: list[str]) -> None:
        """Remove stopped workers' names from the nameserver (a killed one cannot)."""
        try:
            ns = self.nameserver_proxy(timeout=3)
            for worker in list_workers(ns):
                if worker.name.removeprefix(WORKER_PREFIX) in workers:
                    ns.remove(worker.name)
        except NameServerError as exc:
            LOG.debug("names not removed from the nameserver (%s): it is gone", exc)

    # -- during a run -------------------------------------------------------------------------

    def keep(
        self,
        cells_left: Callable[[], int],
        on_pending: Callable[[list[tuple[str, str]]], None] = lambda pending: None,
    ) -> None:
        """Top the pool up every few seconds, in a thread, until :meth:`stop_keeping`;
        tell ``on_pending`` which worker jobs wait in the queue, and why."""

        def loop() -> None:
            while not self._keeping.wait(KEEP_EVERY):
                try:
                    self.maintain(cells_left())
                except LaunchError as exc:
                    LOG.warning("%s", exc)
                queued = [job for job in self._jobs if job.state == "PENDING"]
                on_pending([(WORKER_PREFIX + job.worker, job.reason) for job in queued])

        self._keeper = threading.Thread(target=loop, name="slurm-keeper", daemon=True)
        self._keeper.start()

    def stop_keeping(self) -> None:
        self._keeping.set()
        if self._keeper is not None:
            self._keeper.join(commands.COMMAND_TIMEOUT * commands.TRIES)

    def maintain(self, cells_left: int) -> None:
        """Submit workers for the array tasks that ended, while cells remain to be done."""
        before = {job.id for job in self._jobs}
        try:
            jobs = self.jobs()
        except SlurmUnavailable as exc:  # unknown: never read as "every job is gone"
            LOG.warning("pool not checked: %s", exc)
            return
        for job_id in before - {job.id for job in jobs}:
            self._note_end(job_id)
        missing = min(self.slurm.workers, cells_left) - len(jobs)
        if missing <= 0:
            return
        if self._failed_starts >= self._max_failed_starts:
            LOG.error("not replacing workers: %d worker jobs failed", self._failed_starts)
            return
        LOG.info("%d cells left and %d worker jobs: submitting %d", cells_left, len(jobs), missing)
        self.submit(missing)
        self.jobs()

    def _note_end(self, job_id: str) -> None:
        try:
            state = commands.show_job(job_id).get("JobState", "")
        except SlurmUnavailable:
            return
        LOG.info("worker job %s ended: %s", job_id, state)
        if state in ("FAILED", "BOOT_FAIL"):
            self._failed_starts += 1

    def expecting(self) -> bool:
        """True while this launcher keeps the pool: an ended worker is replaced (unless worker
        jobs keep failing), so a moment without a live worker is no reason to give up."""
        keeping = self._keeper is not None and not self._keeping.is_set()
        return keeping and self._failed_starts < self._max_failed_starts

    def why_lost(self, worker: str) -> str | None:
        """Why ``worker``'s job ended, from ``scontrol show job`` (None: it still runs)."""
        job_id = worker.removeprefix(WORKER_PREFIX).removeprefix("slurm-")
        if job_id == worker.removeprefix(WORKER_PREFIX):
            return None  # not one of ours
        deadline = time.monotonic() + WHY_WAIT
        while True:
            try:
                fields = commands.show_job(job_id)
            except JobUnknown:
                return f"SLURM no longer knows job {job_id}"
            except SlurmUnavailable as exc:
                return f"its SLURM job {job_id} is in an unknown state ({exc})"
            state = fields.get("JobState", "")
            if state in commands.ENDED or time.monotonic() > deadline:
                break
            time.sleep(0.25)  # the controller records the end a moment after the kill
        if state not in commands.ENDED:
            return None
        why = _EXPLAIN.get(state, f"ended {state} (exit {fields.get('ExitCode', '?')})")
        return f"its SLURM job {job_id} {why} [{state}]"

    def log_tail(self, worker: str, lines: int) -> str:
        """The end of a SLURM worker's log, on the shared file system."""
        name = worker.removeprefix(WORKER_PREFIX)
        if not name.startswith("slurm-"):
            raise UsageError(f"{worker!r} is not a SLURM worker; give slurm-<job>_<task>")
        hint = f"SLURM workers log to {self.log_dir} ([workers] workdir) with its .out beside"
        return tail_file(self.log_dir / f"{name}.log", lines, hint)


def with_jobs(described: list[dict[str, Any]], jobs: list[Job]) -> list[dict[str, Any]]:
    """``clusterfarm workers`` rows with each SLURM worker's job id, plus the queued jobs."""
    by_worker = {WORKER_PREFIX + job.worker: job for job in jobs}
    rows = []
    for row in described:
        job = by_worker.pop(row["name"], None)
        rows.append({**row, "job": job.id} if job else row)
    for name, job in by_worker.items():  # queued, or started and not registered yet
        state = f"pending ({job.reason})" if job.state == "PENDING" else job.state.lower()
        row = dict.fromkeys(("uri", "pid", "task", "done", "uptime"))
        rows.append({**row, "name": name, "host": job.node or "-", "state": state, "job": job.id})
    return rows


def _workers(jobs: dict[str, Job]) -> set[str]:
    return {job.worker for job in jobs.values()}


def rows_table(rows: list[WorkerRow]) -> str:
    """The worker jobs as an aligned table (start-workers, stop-workers)."""
    if not rows:
        return "no SLURM worker jobs"
    return text_table(
        [("WORKER", "JOB", "STATE", "DETAIL")]
        + [(row.worker, row.job, row.state, row.detail) for row in rows]
    )
