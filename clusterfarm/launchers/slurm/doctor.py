"""``clusterfarm doctor`` with SLURM: one short job runs the preflight probe on a compute node.

The job asks for what a worker asks for (partition, account, qos, CPUs, memory, the extra
sbatch options) but one minute, runs ``slurm.setup`` and the probe with ``slurm.python``, and
prints one JSON line; the checks are those of every launcher (python, clusterfarm, data_dir,
disk, nameserver) after one of its own: that the job could be submitted and ran.
"""

from __future__ import annotations

import json
import shlex
import time
from pathlib import Path
from typing import Any

from clusterfarm.config.settings import Settings
from clusterfarm.launchers.base import setup_then
from clusterfarm.launchers.preflight import PROBE, Check, judge
from clusterfarm.launchers.slurm import commands
from clusterfarm.launchers.slurm.commands import SlurmUnavailable
from clusterfarm.launchers.slurm.launcher import SlurmLauncher

CHECKS = ("sbatch", "python", "clusterfarm", "data_dir", "disk", "nameserver")
WAIT = 120.0  # seconds the probe job may wait in the queue and run


def diagnose_node(settings: Settings, wait: float = WAIT) -> list[Check]:
    """Submit the probe job, wait for it, and judge what it found."""
    launcher = SlurmLauncher(settings)
    checks: list[Check] = []
    where = "slurm"

    def add(name: str, ok: bool | None, detail: str, hint: str = "") -> None:
        checks.append(Check(where, name, ok, detail, "" if ok else hint))

    def skip_rest(reason: str) -> list[Check]:
        for name in CHECKS[len(checks) :]:
            add(name, None, "not checked", reason)
        return checks

    ns = settings.nameserver
    data_dir = str(Path(settings.run.data_dir).absolute())
    args = [PROBE, data_dir, settings.workers.workdir, ns.host, str(ns.port), "localhost"]
    line = f"exec {settings.slurm.python} -c {shlex.join(args)}"
    script = "#!/bin/bash\n" + setup_then(settings.slurm.setup, "slurm.setup", line) + "\n"
    launcher.log_dir.mkdir(parents=True, exist_ok=True)
    out = launcher.log_dir / "doctor-%j.out"
    options = [o for o in launcher.sbatch_options(1) if not o.startswith(("--array", "--output"))]
    options = [o for o in options if not o.startswith("--time")] + ["--time=1", f"--output={out}"]
    began = time.monotonic()
    try:
        job = commands.submit(options, script)
        state, node = _wait(job, wait)
    except SlurmUnavailable as exc:
        add("sbatch", False, str(exc).removeprefix("slurm: "), "check the [slurm] settings")
        return skip_rest("fix sbatch first")
    output = Path(str(out).replace("%j", job))
    where = node or "slurm"
    if state != "COMPLETED":
        last = _last_line(output)
        add("sbatch", False, f"job {job} {state}: {last}", f"see {output}")
        return skip_rest("fix the job first")
    add("sbatch", True, f"job {job} ran on {node} ({time.monotonic() - began:.1f} s)")
    try:
        probe: dict[str, Any] = json.loads(_last_line(output))
    except ValueError:
        add("python", False, f"unexpected probe output {_last_line(output)!r}", "check slurm.setup")
        return skip_rest("fix python first")
    judge(settings, f"compute node {node}", probe, data_dir, add, "slurm")
    return checks


def _wait(job: str, wait: float) -> tuple[str, str]:
    """Wait until ``job`` has ended; return its state and node (PENDING: waited too long)."""
    deadline = time.monotonic() + wait
    fields: dict[str, str] = {}
    while time.monotonic() < deadline:
        fields = commands.show_job(job)
        if fields.get("JobState") in commands.ENDED:
            return fields["JobState"], fields.get("NodeList", "")
        time.sleep(0.25)
    commands.cancel([job])
    reason = fields.get("Reason", "?")
    return f"still {fields.get('JobState', '?')} after {wait:g} s ({reason})", ""


def _last_line(path: Path) -> str:
    try:
        lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return "no output"
    return lines[-1].strip() if lines else "no output"
