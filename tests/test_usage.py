"""What a job cost its process, measured in that process (clusterfarm.usage)."""

import os
import sys

import pytest

from clusterfarm import usage
from clusterfarm.executor import run_job

linux_only = pytest.mark.skipif(
    not os.path.exists("/proc/self/io"), reason="per-job peak RSS and I/O need Linux /proc"
)


def test_cpu_seconds_count_the_work_done_in_the_job():
    start = usage.begin()
    sum(i * i for i in range(2_000_000))
    spent = usage.unpack(usage.since(start))
    assert 0.02 < spent["cpu"] < 10
    assert spent["ended"] >= spent["started"]


@linux_only
def test_peak_rss_is_the_jobs_own_not_the_processs_lifetime_peak():
    start = usage.begin()
    block = bytearray(200 * 2**20)
    block[::4096] = b"x" * len(block[::4096])
    big = usage.unpack(usage.since(start))["peak_rss"]
    del block
    start = usage.begin()
    small = usage.unpack(usage.since(start))["peak_rss"]
    assert big > 200 * 2**20
    assert small < big - 150 * 2**20  # the high-water mark was reset between the jobs


@linux_only
def test_bytes_written_by_the_job_are_counted(tmp_path):
    start = usage.begin()
    path = tmp_path / "out.bin"
    path.write_bytes(os.urandom(3 * 2**20))
    with open(path, "rb") as handle:
        handle.read()
    spent = usage.unpack(usage.since(start))
    assert spent["wchar"] >= 3 * 2**20 and spent["rchar"] >= 3 * 2**20
    assert spent["write_bytes"] is not None and spent["read_bytes"] is not None


def test_every_job_outcome_carries_its_usage(tmp_path):
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "plugins"))
    from clusterfarm.tasks.registry import load_task_modules

    load_task_modules(("cf_test_tasks",))
    job = {"year": 2000, "member": 1, "params": {}, "data_dir": str(tmp_path)}
    job["results_dir"] = str(tmp_path)
    ok = run_job({**job, "task": "noop"})
    failed = run_job({**job, "task": "fail_always"})
    for outcome in (ok, failed):
        outcome["usage"] = usage.unpack(outcome["usage"])
        assert set(outcome["usage"]) == {
            "started", "ended", "cpu", "peak_rss", "rchar", "wchar", "read_bytes", "write_bytes"
        }  # fmt: skip
        assert outcome["usage"]["peak_rss"] > 0
    assert failed["status"] == "failure"


def test_the_packed_figures_read_back_by_name():
    packed = usage.since(usage.begin())
    figures = usage.unpack(packed)
    assert tuple(figures) == usage.FIELDS
    assert isinstance(figures["peak_rss"], int) and isinstance(figures["started"], float)
    assert figures["started"] == float(packed.split(",")[0])
    assert figures["started"] <= figures["ended"] < figures["started"] + 1
    assert usage.unpack(None) == {} and usage.unpack("1,2") == {}
    back = usage.unpack("1000.5,2.5,0.1,100,,,,")
    assert back["ended"] == 1003.0 and back["peak_rss"] == 102400 and back["rchar"] is None
