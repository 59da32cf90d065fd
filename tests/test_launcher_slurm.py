"""The SLURM launcher against a real single-node SLURM (tests/harness/slurm.py): no fakes of sbatch,
squeue, scancel or scontrol. Root only; the cluster starts once per session (conftest.py).

Each test names its jobs by its own nameserver port (``clusterfarm@127.0.0.1:<port>``), so it
sees and cleans up only its own, and short liveness settings keep the suite quick.
"""

from __future__ import annotations

import json
import re
import signal
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from clusterfarm.config.settings import load_settings
from clusterfarm.launchers.roster import workers_table
from clusterfarm.launchers.slurm import commands
from clusterfarm.launchers.slurm.launcher import SlurmLauncher, with_jobs
from tests.harness.secret import ACCESS
from tests.harness.slurm import Lab

pytestmark = pytest.mark.slow


@pytest.fixture
def lab(slurm_cluster: object, tmp_path: Path) -> Iterator[Lab]:
    lab = Lab(tmp_path)
    yield lab
    lab.cleanup()


def test_workers_rows_carry_job_ids_and_list_queued_jobs_with_their_reason():
    described = [
        {
            **dict.fromkeys(("uri", "pid", "task", "done", "uptime")),
            **{"name": "clusterfarm.worker.slurm-9_0", "host": "n1", "state": "idle"},
        }
    ]
    jobs = [
        commands.Job("9", "0", "RUNNING", "None", "n1", 12.0),
        commands.Job("9", "1", "PENDING", "Resources", "", 0.0),
    ]
    rows = with_jobs(described, jobs)
    assert rows[0]["job"] == "9_0" and rows[0]["state"] == "idle"
    assert rows[1]["name"] == "clusterfarm.worker.slurm-9_1"
    assert rows[1]["state"] == "pending (Resources)" and rows[1]["job"] == "9_1"
    assert "pending (Resources)" in workers_table(rows)


def test_squeue_time_used_reads_days_hours_minutes_seconds():
    assert commands._seconds("0:05") == 5
    assert commands._seconds("1:02:03") == 3723
    assert commands._seconds("2-00:00:10") == 2 * 86400 + 10


def test_job_script_execs_the_worker_after_the_setup_line(tmp_path: Path) -> None:
    settings = tmp_path / "s.toml"
    settings.write_text('[run]\nlauncher = "slurm"\n[slurm]\nsetup = "module load py"\n')
    launcher = SlurmLauncher(load_settings(str(settings)), exit_when_idle=6)
    script = launcher.job_script()
    assert "module load py" in script and "slurm.setup exited with" in script
    last = script.strip().splitlines()[-1]
    assert last.startswith("exec python3 -m clusterfarm --settings ")
    assert '--name "$cf_name"' in last and "--exit-when-idle 6" in last
    options = launcher.sbatch_options(3)
    assert "--array=0-2" in options and "--no-requeue" in options


def wait_until(condition: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def working_cells(lab: Lab) -> int:
    """Cells marked W in the lab's run state (0 while the run is still making it)."""
    try:
        db = sqlite3.connect(f"file:{lab.dir / 'run' / 'state.sqlite'}?mode=ro", uri=True)
        try:
            return int(db.execute("SELECT count(*) FROM cells WHERE status='W'").fetchone()[0])
        finally:
            db.close()
    except sqlite3.OperationalError:
        return 0


def running_workers(lab: Lab) -> list[commands.Job]:
    return [job for job in lab.jobs() if job.state == "RUNNING"]


def report(process: subprocess.Popen[str], timeout: float = 120) -> tuple[int, dict, str]:
    out, err = process.communicate(timeout=timeout)
    return process.returncode, (json.loads(out) if out.strip() else {}), err


# -- start-workers, run, stop-workers ----------------------------------------------------------


def test_start_workers_registers_an_array_that_runs_40_cells_and_stop_leaves_nothing(
    lab: Lab, nameserver_on: object
) -> None:
    began = time.monotonic()
    started = lab.cli("start-workers")
    registered_after = time.monotonic() - began
    assert started.code == 0, started.err
    assert started.out.count("registered") == 2, started.out
    [array] = {job.array_job for job in lab.jobs()}  # ONE job array
    assert f"slurm-{array}_0" in started.out and f"slurm-{array}_1" in started.out

    listed = lab.cli("workers", "--json")
    assert {w["job"] for w in json.loads(listed.out)} == {f"{array}_0", f"{array}_1"}

    ran = lab.cli("run", "--json", "--task", "sleep", "--years", "2000-2003", "--members", "0-9")
    assert ran.code == 0, ran.err
    done = json.loads(ran.out)
    assert done["complete"] == 40 and done["ran"] == 40
    log = lab.cli("logs", f"slurm-{array}_0")
    assert log.code == 0 and f"worker clusterfarm.worker.slurm-{array}_0 listening" in log.out

    began = time.monotonic()
    stopped = lab.cli("stop-workers")
    gone_after = time.monotonic() - began
    assert stopped.code == 0, stopped.err
    assert "no worker job" in stopped.out and stopped.out.count("stopped") == 2
    assert lab.jobs() == [] and lab.worker_processes() == []
    print(
        f"start-workers: 2 registered {registered_after:.1f} s after submit; "
        f"stop-workers: nothing left after {gone_after:.1f} s"
    )


@pytest.fixture
def nameserver_on(lab: Lab) -> Iterator[object]:
    """A nameserver at the lab's settings address (start-workers needs one running)."""
    from clusterfarm.wire.nameserver import NameServer

    server = NameServer("127.0.0.1", lab.port, ACCESS)
    yield server
    server.stop()


def test_start_workers_shows_a_job_held_by_max_running_as_pending_with_its_reason(
    lab: Lab, nameserver_on: object
) -> None:
    lab.write(slurm="workers = 2\nmax_running = 1\n")
    started = lab.cli("start-workers", "--timeout", "2.5")
    assert started.code == 0, started.err
    assert started.out.count("registered") == 1, started.out
    assert re.search(r"slurm-\d+_1 +\d+_1 +pending +reason: JobArrayTaskLimit", started.out)
    assert "1 worker job(s) still pending" in started.out
    listed = json.loads(lab.cli("workers", "--json").out)
    assert sorted(w["state"] for w in listed) == ["idle", "pending (JobArrayTaskLimit)"]
    assert lab.cli("stop-workers").code == 0
    assert lab.jobs() == [] and lab.worker_processes() == []


def test_a_job_that_runs_but_never_registers_is_one_clear_line(
    lab: Lab, nameserver_on: object
) -> None:
    lab.write(slurm='workers = 1\npython = "/opt/no/python3"\n')
    started = lab.cli("start-workers")
    assert started.code == 3
    [line] = started.err.strip().splitlines()
    assert line.startswith("Error: start-workers: slurm-") and "never registered" in line
    assert "/opt/no/python3" in line and "[slurm] python" in line


def test_doctor_checks_a_compute_node_with_one_short_job(lab: Lab, nameserver_on: object) -> None:
    (lab.dir / "data").mkdir()
    lab.write(run=f'data_dir = "{lab.dir / "data"}"\n')
    checked = lab.cli("doctor")
    assert checked.code == 0, checked.out + checked.err
    for check in ("sbatch", "python", "clusterfarm", "data_dir", "disk", "nameserver"):
        assert f"{check}" in checked.out
    assert "FAIL" not in checked.out and "ran on localhost" in checked.out
    assert lab.jobs() == []


# -- run with its own pool ---------------------------------------------------------------------


def test_run_without_workers_submits_its_own_pool_and_leaves_no_job(lab: Lab) -> None:
    ran = lab.cli("run", "--json", "--task", "sleep", "--years", "2000", "--members", "0-19")
    assert ran.code == 0, ran.err
    assert json.loads(ran.out)["complete"] == 20
    assert lab.jobs() == [] and lab.worker_processes() == []


def test_ctrl_c_cancels_the_runs_pool(lab: Lab) -> None:
    lab.write(tasks="[tasks.sleep]\nseconds = 30\n")
    process = lab.run_in_background("--task", "sleep", "--years", "2000", "--members", "0-3")
    wait_until(lambda: working_cells(lab) >= 2, 30, "both workers busy")
    process.send_signal(signal.SIGINT)
    code, _, err = report(process, 60)
    assert code == 130, err
    assert lab.jobs() == [] and lab.worker_processes() == []


def test_sigkilled_manager_leaves_no_job_behind(lab: Lab) -> None:
    lab.write(tasks="[tasks.sleep]\nseconds = 30\n")
    process = lab.run_in_background("--task", "sleep", "--years", "2000", "--members", "0-3")
    wait_until(lambda: working_cells(lab) >= 2, 30, "both workers busy")
    process.kill()
    process.communicate()
    gone_after = lab.wait_no_jobs(2 + 10)  # lost_after + a few seconds
    wait_until(lambda: not lab.worker_processes(), 5, "worker processes to end")
    print(f"manager SIGKILLed: its SLURM jobs gone after {gone_after:.1f} s")


# -- faults during a run -------------------------------------------------------------------------


def test_a_cancelled_worker_job_is_replaced_and_its_cell_redone(lab: Lab) -> None:
    lab.write(tasks="[tasks.sleep]\nseconds = 1\n")
    process = lab.run_in_background("--task", "sleep", "--years", "2000", "--members", "0-7")
    wait_until(lambda: working_cells(lab) >= 2, 30, "both workers busy")
    victim = running_workers(lab)[0]
    subprocess.run(["scancel", victim.id], check=True)
    code, done, err = report(process)
    assert code == 0, err
    assert done["complete"] == 8 and done["progress"]["sleep"]["2000"] == "+" * 8
    log = (lab.dir / "run" / "logs" / "manager.log").read_text()
    assert "submitting 1" in log  # the pool was topped up


def test_a_worker_killed_under_slurm_is_lost_and_its_cell_says_what_slurm_saw(lab: Lab) -> None:
    lab.write(run="retries = 0\n", slurm="workers = 1\n", tasks="[tasks.sleep]\nseconds = 30\n")
    process = lab.run_in_background("--task", "sleep", "--years", "2000", "--members", "0")
    wait_until(lambda: working_cells(lab) == 1, 30, "the cell to be worked on")
    [victim] = running_workers(lab)
    subprocess.run(["scancel", "--batch", "--signal=KILL", victim.id], check=True)
    code, done, err = report(process)
    assert code == 1, err
    [failure] = done["failures"]
    assert failure["error_kind"] == "lost"
    assert f"its SLURM job {victim.id} ended FAILED" in failure["error"]


def test_a_task_past_the_memory_limit_fails_saying_out_of_memory(lab: Lab) -> None:
    lab.write(run="retries = 0\n", slurm='mem = "200M"\nworkers = 1\n')
    ran = lab.cli("run", "--json", "--task", "hog", "--years", "2000", "--members", "0")
    assert ran.code == 1, ran.err
    [failure] = json.loads(ran.out)["failures"]
    assert "out of memory" in failure["error"], failure


def test_why_lost_reads_the_end_of_a_job_from_scontrol(lab: Lab) -> None:
    script = "#!/bin/bash\nexec sleep 300\n"
    job = commands.submit([f"--job-name={lab.job_name}", "--array=0", "--output=/dev/null"], script)
    wait_until(lambda: running_workers(lab), 20, "the job to run")
    launcher = SlurmLauncher(load_settings(str(lab.settings)))
    assert launcher.why_lost(f"clusterfarm.worker.slurm-{job}_0") is None  # still running
    commands.cancel([f"{job}_0"])
    why = launcher.why_lost(f"clusterfarm.worker.slurm-{job}_0")
    assert why is not None and "CANCELLED" in why and f"{job}_0" in why


def test_a_worker_near_its_time_limit_drains_and_is_replaced(
    walltime_run: tuple[Lab, subprocess.Popen[str]],
) -> None:
    lab, process = walltime_run
    code, done, err = report(process, 150)
    assert code == 0, err
    assert done["complete"] == 5 and done["failure"] == 0 and done["failures"] == []
    log = (lab.dir / "run" / "logs" / "manager.log").read_text()
    # the first workers left on their own before their limit (COMPLETED, not TIMEOUT) ...
    ended = re.search(r"worker job (\d+)_0 ended: COMPLETED", log)
    assert ended and f"worker job {ended.group(1)}_1 ended: COMPLETED" in log
    assert "TIMEOUT" not in log
    # ... and the pool was topped up for the cell they handed back
    assert "1 cells left and 0 worker jobs: submitting 1" in log
    assert lab.jobs() == []
