"""What a cell cost its process, measured in that process (clusterfarm.usage)."""

import os
import time

import pytest

from clusterfarm.wire.protocol import USAGE_FIELDS, named, pack_answers, parse_answers
from clusterfarm.worker.task_process import run_cells
from clusterfarm.worker.usage import DETAIL_SECONDS, Meter

linux_only = pytest.mark.skipif(
    not os.path.exists("/proc/self/io"), reason="per-cell peak RSS and I/O need Linux /proc"
)


def measured(meter, work):
    meter.start()
    began = time.monotonic()
    work()
    return named(meter.stop(time.monotonic() - began))


def test_cpu_seconds_count_the_work_done_in_the_cell():
    spent = measured(Meter(), lambda: sum(i * i for i in range(2_000_000)))
    assert 0.02 < spent["cpu"] < 10
    assert abs(spent["started"] - time.time()) < 10


@linux_only
def test_peak_rss_is_the_cells_own_not_the_processs_lifetime_peak():
    meter = Meter()

    def grow():
        block = bytearray(200 * 2**20)
        block[::4096] = b"x" * len(block[::4096])
        time.sleep(DETAIL_SECONDS)

    big = measured(meter, grow)["peak_rss"]
    small = measured(meter, lambda: time.sleep(DETAIL_SECONDS))["peak_rss"]
    assert big > 200 * 2**20
    assert small < big - 150 * 2**20  # the high-water mark was reset between the cells


@linux_only
def test_bytes_written_and_read_by_the_cell_are_counted(tmp_path):
    def write_and_read():
        path = tmp_path / "out.bin"
        path.write_bytes(os.urandom(3 * 2**20))
        path.read_bytes()

    spent = measured(Meter(), write_and_read)
    assert spent["wchar"] >= 3 * 2**20 and spent["rchar"] >= 3 * 2**20
    assert spent["write_bytes"] is not None and spent["read_bytes"] is not None


def test_a_cell_too_short_to_matter_pays_no_proc_reads():
    spent = measured(Meter(), lambda: None)
    assert spent["cpu"] >= 0 and spent["peak_rss"] > 0
    assert spent["rchar"] is None and spent["write_bytes"] is None  # not measured, not zero


def test_every_cell_answer_carries_its_usage_and_it_survives_the_wire(tmp_path):
    import sys

    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "plugins"))
    from clusterfarm.tasks.registry import load_task_modules

    load_task_modules(("cf_test_tasks",))
    context = {"params": {}, "data_dir": str(tmp_path), "results_dir": str(tmp_path)}
    answers = [
        *run_cells({**context, "task": "noop"}, [(2000, 1)]),
        *run_cells({**context, "task": "fail_always"}, [(2000, 2)]),
    ]
    ok, failed = parse_answers(pack_answers(answers), 2)
    for answer in (ok, failed):
        assert answer.usage is not None and len(answer.usage) == len(USAGE_FIELDS)
        assert named(answer.usage)["peak_rss"] > 0
    assert failed.status == "F" and failed.kind == "task"
