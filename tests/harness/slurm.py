"""A real single-node SLURM cluster for the tests: munged, slurmctld and slurmd, no systemd.

:func:`start_cluster` writes ``/etc/slurm/slurm.conf`` (node and controller ``localhost``,
loopback only), starts munged as the ``munge`` user and the two SLURM daemons by hand, and
waits until the node is idle; :meth:`SlurmCluster.stop` cancels every job and stops the three
daemons by the pid in their pid files (never by process name). Root only.

Pitfalls this handles (each cost an afternoon somewhere):

- munged refuses to run as root ("logfile is insecure"); it runs as ``munge``, and without
  systemd nobody makes ``/run/munge`` for it.
- ``proctrack/cgroup`` (a writable cgroup-v1 freezer) is what makes ``scancel`` end every
  process of a job; ``proctrack/linuxproc`` lets a double-forked process survive, so it is
  only the fallback.
- ``--mem`` is only enforced if something enforces it. Here the cgroup-v1 memory controller
  does (``TaskPlugin=task/cgroup``, ``ConstrainRAMSpace=yes``): the kernel OOM-kills the
  biggest process of the job, the task's child process, and the worker says "out of memory"
  from its cgroup's ``oom_kill`` count (the job ends ``OUT_OF_MEMORY`` if it ends after that).
  ``JobAcctGatherParams=OverMemoryKill`` was tried too: it kills the whole job step, but
  SLURM 22.05 then records the job as ``FAILED``, not ``OUT_OF_MEMORY``.
- The node advertises more CPUs than the machine has (``config_overrides``) so several
  one-CPU workers fit on a two-core machine.
- PID 1 here reaps orphans late: a killed daemon lingers as a zombie, so "alive" reads the
  process state, not ``kill -0``.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from clusterfarm.launchers.slurm import commands
from tests.harness.cli import PLUGIN_SETTINGS, Result, cli_env, run_cli
from tests.harness.processes import stop_process
from tests.harness.sshd import free_port

CONF = Path("/etc/slurm/slurm.conf")
CGROUP_CONF = Path("/etc/slurm/cgroup.conf")
STATE = Path("/var/lib/slurm")
LOG_DIR = Path("/var/log/slurm")
MUNGE_RUN = Path("/run/munge")
MUNGE_KEY = Path("/etc/munge/munge.key")
PID_FILES = {
    "munged": MUNGE_RUN / "munged.pid",
    "slurmctld": Path("/run/slurmctld.pid"),
    "slurmd": Path("/run/slurmd.pid"),
}
CPUS = 8
MEMORY_MB = 16000
KILL_WAIT = 5  # seconds between SIGTERM and SIGKILL when a job ends (SLURM's default is 30)


def slurm_missing() -> str | None:
    """Why the SLURM tests cannot run here, or None if they can."""
    if os.geteuid() != 0:
        return "needs root to run a SLURM cluster (munged, slurmctld, slurmd)"
    needed = ("/usr/sbin/slurmctld", "/usr/sbin/slurmd", "/usr/sbin/munged")
    if not all(Path(path).is_file() for path in needed) or not shutil.which("sbatch"):
        return "needs slurm-wlm and munge (apt-get install --no-install-recommends slurm-wlm munge)"
    return None


def alive(pid: int, comm: str | None = None) -> bool:
    """True if ``pid`` runs (not a zombie), and is ``comm`` when given (pid reuse)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        name = Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X") and comm in (None, name)


def _pid(daemon: str) -> int | None:
    try:
        text = PID_FILES[daemon].read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() and alive(int(text), daemon) else None


def _proctrack() -> str:
    probe = Path(f"/sys/fs/cgroup/freezer/.clusterfarm-probe.{os.getpid()}")
    try:
        probe.mkdir()
    except OSError:
        return "linuxproc"
    probe.rmdir()
    return "cgroup"


def write_config() -> str:
    """Write slurm.conf (and cgroup.conf when cgroups are used); return the proctrack plugin."""
    proctrack = _proctrack()
    CONF.parent.mkdir(parents=True, exist_ok=True)
    CONF.write_text(
        f"""# written by clusterfarm's tests (tests/harness/slurm.py): one node, loopback only
ClusterName=clusterfarm-tests
SlurmctldHost=localhost
SlurmUser=slurm
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
MailProg=/bin/true
ProctrackType=proctrack/{proctrack}
TaskPlugin={"task/cgroup" if proctrack == "cgroup" else "task/none"}
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
ReturnToService=2
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1000
SlurmdParameters=config_overrides
KillWait={KILL_WAIT}
MinJobAge=300
SlurmctldPidFile={PID_FILES["slurmctld"]}
SlurmdPidFile={PID_FILES["slurmd"]}
StateSaveLocation={STATE}/slurmctld
SlurmdSpoolDir={STATE}/slurmd
SlurmctldLogFile={LOG_DIR}/slurmctld.log
SlurmdLogFile={LOG_DIR}/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
NodeName=localhost NodeAddr=127.0.0.1 CPUs={CPUS} RealMemory={MEMORY_MB} State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
"""
    )
    if proctrack == "cgroup":
        CGROUP_CONF.write_text(
            "CgroupPlugin=cgroup/v1\nCgroupAutomount=no\nConstrainCores=no\n"
            "ConstrainRAMSpace=yes\nConstrainSwapSpace=yes\nConstrainDevices=no\n"
        )
    else:
        CGROUP_CONF.unlink(missing_ok=True)
    return proctrack


def _run(*command: str) -> None:
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, timeout=30)


def _wait(condition: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            logs = [LOG_DIR / "slurmctld.log", LOG_DIR / "slurmd.log"]
            tails = "\n".join(p.read_text()[-2000:] for p in logs if p.is_file())
            raise RuntimeError(f"SLURM: {what} after {timeout:g} s\n{tails}")
        time.sleep(0.1)


def _munge_answers() -> bool:
    munge = subprocess.run(["munge", "-n"], capture_output=True, timeout=5)
    if munge.returncode != 0:
        return False
    check = subprocess.run(["unmunge"], input=munge.stdout, capture_output=True, timeout=5)
    return check.returncode == 0


def _start_munge() -> None:
    if _pid("munged"):
        return
    for folder, mode in (
        (MUNGE_RUN, 0o755),
        (MUNGE_KEY.parent, 0o700),
        (Path("/var/log/munge"), 0o700),
        (Path("/var/lib/munge"), 0o711),
    ):
        folder.mkdir(parents=True, exist_ok=True)
        shutil.chown(folder, "munge", "munge")
        folder.chmod(mode)
    if not MUNGE_KEY.is_file() or not MUNGE_KEY.stat().st_size:
        _run("runuser", "-u", "munge", "--", "mungekey", "--create", f"--keyfile={MUNGE_KEY}")
    shutil.chown(MUNGE_KEY, "munge", "munge")
    MUNGE_KEY.chmod(0o400)
    PID_FILES["munged"].unlink(missing_ok=True)
    # --force: start even when a killed munged left its socket behind
    _run("runuser", "-u", "munge", "--", "/usr/sbin/munged", "--force")
    _wait(_munge_answers, 10, "munged does not answer")


def _node_state() -> str:
    try:
        done = subprocess.run(
            ["sinfo", "-h", "-n", "localhost", "-o", "%T"],
            capture_output=True,
            text=True,
            timeout=5,
        )
    except subprocess.TimeoutExpired:
        return ""
    state = done.stdout.strip()
    if state.startswith(("down", "drain", "fail")):
        subprocess.run(
            ["scontrol", "update", "nodename=localhost", "state=resume"],
            capture_output=True,
            timeout=5,
        )
    return state


@dataclass
class SlurmCluster:
    """A started cluster: what it runs with, and how long it took to start."""

    proctrack: str
    started_in: float

    def stop(self) -> None:
        """Cancel every job, then stop slurmd, slurmctld and munged by pid."""
        if _pid("slurmctld") and _pid("slurmd"):
            subprocess.run(["scancel", "--user=root"], capture_output=True, timeout=10)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and _squeue_lines():
                time.sleep(0.2)
        for daemon in ("slurmd", "slurmctld", "munged"):
            stop_daemon(daemon)


def _squeue_lines() -> list[str]:
    done = subprocess.run(["squeue", "-h"], capture_output=True, text=True, timeout=10)
    return done.stdout.splitlines()


def stop_daemon(daemon: str) -> None:
    """SIGTERM the daemon in ``daemon``'s pid file, SIGKILL after 10 s; remove the pid file."""
    pid = _pid(daemon)
    if pid is not None:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while alive(pid, daemon) and time.monotonic() < deadline:
            time.sleep(0.1)
        if alive(pid, daemon):
            os.kill(pid, signal.SIGKILL)
    PID_FILES[daemon].unlink(missing_ok=True)


def start_cluster() -> SlurmCluster:
    """Start (or find running) munged, slurmctld and slurmd; wait until the node is idle."""
    began = time.monotonic()
    proctrack = write_config() if not (_pid("slurmctld") or _pid("slurmd")) else "running"
    _start_munge()
    for path in (STATE, STATE / "slurmctld", STATE / "slurmd", LOG_DIR):
        path.mkdir(parents=True, exist_ok=True)
        shutil.chown(path, "slurm", "slurm")
    try:
        if not _pid("slurmctld"):
            PID_FILES["slurmctld"].unlink(missing_ok=True)
            _run("/usr/sbin/slurmctld", "-i")  # -i: tolerate stale state files
            _wait(lambda: _pid("slurmctld"), 10, "slurmctld did not start")
        if not _pid("slurmd"):
            PID_FILES["slurmd"].unlink(missing_ok=True)
            _run("/usr/sbin/slurmd", "-N", "localhost")
            _wait(lambda: _pid("slurmd"), 10, "slurmd did not start")
        ready = ("idle", "mixed", "allocated", "completing")
        _wait(lambda: _node_state() in ready, 30, "node localhost not ready")
    except BaseException:
        SlurmCluster(proctrack, 0).stop()
        raise
    return SlurmCluster(proctrack, time.monotonic() - began)


# -- what a test needs: settings of its own, its jobs, its cleanup --------------------------

LIVENESS = "heartbeat = 0.5\nlost_after = 2\n"


class Lab:
    """A test's settings (its own nameserver port, so its own job name) and its cleanup."""

    def __init__(self, tmp_path: Path) -> None:
        self.dir = tmp_path
        self.runs: list[subprocess.Popen[str]] = []
        self.port = free_port()
        self.job_name = f"clusterfarm@127.0.0.1:{self.port}"
        self.settings = tmp_path / "slurm.toml"
        self.write()

    def write(self, run: str = "", slurm: str = "", tasks: str = "") -> Path:
        self.settings.write_text(
            f'[nameserver]\nhost = "127.0.0.1"\nport = {self.port}\n'
            f'[run]\nlauncher = "slurm"\nrun_dir = "{self.dir / "run"}"\n{LIVENESS}{run}'
            f'[workers]\nworkdir = "{self.dir / "work"}"\n'
            "[slurm]\n"
            + ("" if "python =" in slurm else f'python = "{sys.executable}"\n')
            + ("" if "workers =" in slurm else "workers = 2\n")
            + f"{slurm}\n"
            f"{PLUGIN_SETTINGS}{tasks}"
        )
        return self.settings

    def cli(self, *args: str, timeout: float = 120) -> Result:
        return run_cli("--settings", str(self.settings), *args, cwd=self.dir, timeout=timeout)

    def run_in_background(self, *args: str) -> subprocess.Popen[str]:
        process = subprocess.Popen(
            [sys.executable, "-m", "clusterfarm", "--settings", str(self.settings), "run"]
            + ["--json", "--progress", "none", *args],
            cwd=self.dir,
            env=cli_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.runs.append(process)  # stopped at cleanup if a test failed before it ended
        return process

    def jobs(self) -> list[commands.Job]:
        return commands.queue(self.job_name)

    def worker_processes(self) -> list[int]:
        """Live processes of this lab's worker daemons (from /proc, by their command line)."""
        found = []
        for entry in Path("/proc").iterdir():
            try:
                args = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"worker" in args and f"127.0.0.1:{self.port}".encode() in args:
                found.append(int(entry.name))
        return found

    def wait_no_jobs(self, timeout: float) -> float:
        """Wait until none of this lab's jobs is in the queue; return how long it took."""
        began = time.monotonic()
        while self.jobs():
            assert time.monotonic() - began < timeout, f"jobs left: {self.jobs()}"
            time.sleep(0.1)
        return time.monotonic() - began

    def cleanup(self) -> None:
        for process in self.runs:
            stop_process(process)
        jobs = self.jobs()
        if jobs:
            commands.cancel([job.id for job in jobs])
            self.wait_no_jobs(60)


if __name__ == "__main__":  # python -m tests.slurm [start|stop]: by hand, while debugging
    import sys

    if sys.argv[1:] == ["stop"]:
        SlurmCluster("", 0).stop()
    else:
        cluster = start_cluster()
        print(f"SLURM up ({cluster.proctrack}) in {cluster.started_in:.1f} s")
