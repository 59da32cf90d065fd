"""What a task leaves behind is cleaned up: processes, partial outputs, floods of output,
and summaries that are not small plain dicts fail with the real reason."""

from __future__ import annotations

import json
import time

import pytest

from tests.harness.cli import PLUGIN_SETTINGS, run_cli, write_settings
from tests.harness.processes import alive


def run_one(tmp_path, task, extra="", *args):
    write_settings(tmp_path / "clusterfarm.toml", PLUGIN_SETTINGS + extra)
    result = run_cli(
        "run", "--local", "1", "--task", task, "--years", "2000", "--members", "0", "--json",
        *args, cwd=tmp_path,
    )  # fmt: skip
    return result.code, json.loads(result.out) if result.out.strip() else None, result.err


def test_processes_a_task_leaves_running_end_with_its_cell(tmp_path):
    pid_file = tmp_path / "pids"
    code, report, err = run_one(
        tmp_path, "leave_children", f'[tasks.leave_children]\npid_file = "{pid_file}"\n'
    )
    assert code == 0, err
    pids = [int(p) for p in pid_file.read_text().split()]
    assert len(pids) == 2  # a child, and a grandchild in its own session (double-forked)
    deadline = time.monotonic() + 5
    while any(alive(pid) for pid in pids):
        assert time.monotonic() < deadline, [pid for pid in pids if alive(pid)]
        time.sleep(0.05)


def test_processes_a_task_detaches_end_with_its_cell_when_it_times_out(tmp_path):
    """The task is killed at its time limit while its child and its setsid'ed grandchild
    run: neither survives (they were below the task process, which the daemon ends)."""
    pid_file = tmp_path / "pids"
    code, report, err = run_one(
        tmp_path,
        "leave_children",
        f'[run]\nretries = 0\n[tasks.leave_children]\npid_file = "{pid_file}"\nhang = true\n',
        "--timeout",
        "1",
    )
    assert code == 1 and report["failures"][0]["status"] == "T", err
    pids = [int(p) for p in pid_file.read_text().split()]
    assert len(pids) == 2
    deadline = time.monotonic() + 5
    while any(alive(pid) for pid in pids):
        assert time.monotonic() < deadline, [pid for pid in pids if alive(pid)]
        time.sleep(0.05)


def test_a_cell_that_closes_its_streams_does_not_break_the_cells_after_it(tmp_path):
    """Eight cells in one task process: member 0 closes stdin, stdout and stderr."""
    write_settings(tmp_path / "clusterfarm.toml", PLUGIN_SETTINGS + "[run]\nretries = 0\n")
    result = run_cli(
        "run", "--local", "1", "--task", "close_streams", "--years", "2000", "--members", "0-7",
        "--json", cwd=tmp_path,
    )  # fmt: skip
    assert result.code == 0, result.err
    report = json.loads(result.out)
    assert report["progress"]["close_streams"]["2000"] == "+" * 8 and report["ran"] == 8
    printed = (tmp_path / "clusterfarm-run" / "logs" / "local.0.out").read_text()
    assert all(f"cell 2000 m{m}" in printed for m in range(1, 8))


@pytest.mark.slow
def test_a_task_killed_inside_atomic_output_leaves_no_temporary_file(tmp_path):
    code, report, err = run_one(
        tmp_path, "hang_in_output", "[run]\nretries = 0\n", "--timeout", "1"
    )
    assert code == 1 and report["failures"][0]["status"] == "T", err
    results = tmp_path / "clusterfarm-run" / "results"
    assert [p.name for p in results.rglob("*") if p.is_file()] == []


def test_task_output_rotates_like_the_logs(tmp_path):
    extra = "[tasks.shout]\nmegabytes = 6\n[logging]\nmax_bytes = 1000000\nbackups = 2\n"
    code, _, err = run_one(tmp_path, "shout", extra)
    assert code == 0, err
    outs = sorted((tmp_path / "clusterfarm-run" / "logs").glob("local.0.out*"))
    assert [p.name for p in outs] == ["local.0.out", "local.0.out.1", "local.0.out.2"]
    assert sum(p.stat().st_size for p in outs) <= 3_000_000 + 4096


def test_a_summary_that_is_not_a_dict_fails_the_task_with_the_real_reason(tmp_path):
    code, report, err = run_one(tmp_path, "list_summary", "[run]\nretries = 0\n")
    assert code == 1, err
    (failure,) = report["failures"]
    assert failure["error_kind"] == "task" and failure["attempts"] == 1
    assert "returned a list, not a dict or None" in failure["error"]


def test_a_summary_with_nan_fails_the_task_saying_where(tmp_path):
    code, report, err = run_one(tmp_path, "nan_summary", "[run]\nretries = 0\n")
    assert code == 1, err
    (failure,) = report["failures"]
    assert failure["error_kind"] == "task"
    assert "NaN or an infinity at ['speeds'][1]" in failure["error"]


def test_a_summary_over_the_limit_is_refused_with_a_clear_error(tmp_path):
    code, report, err = run_one(tmp_path, "huge_summary", "[run]\nretries = 0\n")
    assert code == 1, err
    (failure,) = report["failures"]
    assert failure["error_kind"] == "task" and "over the limit of 65,536" in failure["error"]
