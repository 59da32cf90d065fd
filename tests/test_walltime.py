"""Workers in a batch job: the job's end, which cells still fit, leaving before the limit."""

from __future__ import annotations

import threading
import time

import pytest

from clusterfarm.wire.nameserver import locate
from clusterfarm.worker.walltime import EXIT_MARGIN, Walltime, end_time_of, slurm_job_end
from tests.harness.secret import ACCESS

SCONTROL_LINE = (
    "JobId=12 JobName=w UserId=root(0) JobState=RUNNING Reason=None "
    "RunTime=00:00:05 TimeLimit=00:01:00 StartTime=2026-11-29T16:00:00 "
    "EndTime=2026-11-29T16:01:00 Deadline=N/A NodeList=localhost"
)


def test_end_time_is_read_from_scontrol_in_the_controllers_local_time():
    start = end_time_of(SCONTROL_LINE.replace("EndTime=2026-11-29T16:01:00", "EndTime=x"))
    assert start is None
    end = end_time_of(SCONTROL_LINE)
    assert end is not None
    assert time.localtime(end)[:6] == (2026, 11, 29, 16, 1, 0)
    assert end_time_of(SCONTROL_LINE.replace("2026-11-29T16:01:00", "Unknown")) is None


def test_slurm_job_end_time_variable_wins_and_no_job_means_no_end():
    assert slurm_job_end({"SLURM_JOB_END_TIME": "1800000000", "SLURM_JOB_ID": "1"}) == 1.8e9
    assert slurm_job_end({}) is None


def test_a_task_not_measured_yet_is_tried_and_one_that_does_not_fit_is_refused():
    walltime = Walltime(time.time() + EXIT_MARGIN + 30)
    assert walltime.refusal("sleep", 1) is None  # unmeasured: tried
    walltime.record("sleep", [20.0])
    assert walltime.refusal("sleep", 1) is None  # 20 s of the 30 left
    refusal = walltime.refusal("sleep", 2)  # 40 s do not fit
    assert refusal is not None and "too soon for 2 cell(s) of sleep" in refusal
    assert walltime.leaving.is_set()  # a refusal sends the worker away


def test_the_watch_stops_the_worker_at_the_margin():
    walltime = Walltime(time.time() + 0.3, margin=0.0)
    stopped = threading.Event()
    threading.Thread(target=walltime.watch, args=(stopped.set,), daemon=True).start()
    assert not stopped.wait(0.1)
    assert stopped.wait(2)


@pytest.mark.slow
def test_a_worker_near_its_jobs_end_hands_back_a_cell_that_would_not_fit_and_leaves(
    start_worker, nameserver
):
    end = time.time() + EXIT_MARGIN + 10  # as if SLURM said the job ends then
    process = start_worker("job.0", env={"SLURM_JOB_END_TIME": str(int(end))})
    uri = locate(nameserver.host, nameserver.port, ACCESS).lookup("clusterfarm.worker.job.0")
    with ACCESS.proxy(uri) as worker:
        worker._pyroTimeout = 30
        first = worker.do_work(2000, 0, "sleep", {"seconds": 6})
        assert first["status"] == "complete"  # not measured yet: tried, and it fitted
        refused = worker.do_work(2000, 1, "sleep", {"seconds": 6})  # under 4 s left
    assert refused["error_kind"] == "draining"  # handed back, not counted as an attempt
    assert "its batch job ends in" in refused["error"]
    assert process.wait(10) == 0  # it left on its own, cleanly
