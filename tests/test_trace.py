"""``clusterfarm trace``: one row per attempt, failed ones included, loadable by pandas as is."""

import io
import json
import sqlite3

import pandas
import pytest

from clusterfarm.record.trace import read_attempts
from tests.harness.cli import PLUGIN_SETTINGS, run_cli, write_settings


@pytest.fixture
def failing_run(tmp_path):
    """A finished run of 4 cells where member 0 fails on each of its 3 attempts."""
    write_settings(tmp_path / "clusterfarm.toml", PLUGIN_SETTINGS)
    result = run_cli(
        "run", "--local", "2", "--json", "--task", "fail_member", "--years", "2000",
        "--members", "0-3", "--retries", "2", cwd=tmp_path,
    )  # fmt: skip
    assert result.code == 1, result.err
    assert json.loads(result.out)["progress"]["fail_member"]["2000"] == "F+++"
    return tmp_path


def test_trace_loads_into_pandas_with_one_row_per_attempt_failed_ones_included(failing_run):
    result = run_cli("trace", cwd=failing_run)
    assert result.code == 0, result.err
    frame = pandas.read_csv(io.StringIO(result.out), sep="\t")
    assert len(frame) == 6
    failed = frame[frame.member == 0].sort_values("attempt")
    assert list(failed.attempt) == [1, 2, 3]
    assert set(failed.status) == {"failure"} and set(failed.error_kind) == {"task"}
    assert failed.error.str.contains("member 0 always fails").all()
    done = frame[frame.member != 0]
    assert set(done.status) == {"complete"} and list(done.attempt) == [1, 1, 1]
    assert done.error.isna().all()
    for column in ("queued", "started", "ended"):
        times = pandas.to_datetime(frame[column], utc=True, format="ISO8601")
        assert times.notna().all()
    assert (frame.ended >= frame.started).all()  # ISO strings of one zone sort as times
    assert (frame.elapsed >= 0).all() and (frame.cpu >= 0).all()
    assert (frame.peak_rss > 10 * 2**20).all()  # a Python process: tens of MiB
    assert frame.worker.str.startswith("clusterfarm.worker.local.").all()
    assert set(frame.host) == {"local"} and set(frame.invocation) == {1}


@pytest.mark.slow
def test_trace_csv_and_json_hold_the_same_rows(failing_run):
    tsv = pandas.read_csv(io.StringIO(run_cli("trace", cwd=failing_run).out), sep="\t")
    csv = pandas.read_csv(io.StringIO(run_cli("trace", "--format", "csv", cwd=failing_run).out))
    rows = json.loads(run_cli("trace", "--format", "json", cwd=failing_run).out)
    assert csv.equals(tsv)
    assert len(rows) == 6 and rows[0]["started"].endswith("Z")
    assert [r["attempt"] for r in rows] == list(tsv.attempt)


@pytest.mark.slow
def test_attempts_of_earlier_invocations_stay_and_the_run_id_does_not_change(failing_run):
    db = sqlite3.connect(failing_run / "clusterfarm-run/state.sqlite")
    (first_id,) = db.execute("SELECT value FROM meta WHERE key='run_id'").fetchone()
    run_cli("run", "--local", "1", "--task", "fail_member", "--years", "2000",
            "--members", "0-3", "--retries", "0", cwd=failing_run)  # fmt: skip
    rows = [(r["invocation"], r["member"], r["status"]) for r in read_attempts(db)]
    assert len(rows) == 7 and rows[-1] == (2, 0, "failure")  # only the F cell ran again
    assert rows.count((1, 0, "failure")) == 3  # and its attempts of the first run stay
    assert db.execute("SELECT value FROM meta WHERE key='run_id'").fetchone() == (first_id,)
    assert len(first_id) == 32


def test_trace_of_a_dir_without_a_run_is_one_error_line_and_exit_2(tmp_path):
    result = run_cli("trace", "--run-dir", str(tmp_path / "nothing"), cwd=tmp_path)
    assert result.code == 2
    assert result.err.startswith("Error: ") and len(result.err.strip().splitlines()) == 1
    bad = run_cli("trace", "--format", "xml", cwd=tmp_path)
    assert bad.code == 2 and "Error:" in bad.err


@pytest.mark.slow
def test_a_run_dir_from_before_the_record_still_traces_and_reports(failing_run, tmp_path):
    db = sqlite3.connect(failing_run / "clusterfarm-run/state.sqlite")
    with db:  # what a run dir written before this record looks like
        db.execute("DROP TABLE attempts")
        db.execute("ALTER TABLE invocations DROP COLUMN argv")
        db.execute("ALTER TABLE invocations DROP COLUMN settings")
        for column in ("invocation", "task_started", "cpu", "peak_rss", "rchar", "wchar"):
            db.execute(f"ALTER TABLE cells DROP COLUMN {column}")
        db.execute("ALTER TABLE cells DROP COLUMN read_bytes")
        db.execute("ALTER TABLE cells DROP COLUMN write_bytes")
    db.close()
    result = run_cli("trace", cwd=failing_run)
    assert result.code == 0, result.err
    assert result.out.startswith("invocation\ttask\t") and len(result.out.splitlines()) == 1
    out = tmp_path / "old.html"
    report = run_cli("report", "--out", str(out), cwd=failing_run)
    assert report.code == 0, report.err
    assert "F" in out.read_text()
