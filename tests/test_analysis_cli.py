"""The science commands end to end: tasks, sample-data --difficulty hard, score."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from clusterfarm.tasks.vort_track import DEFAULTS, PARAM_HELP
from tests.harness.cli import run_cli


@pytest.mark.slow
def test_tasks_lists_every_vort_track_parameter_with_default_and_meaning(tmp_path: Path) -> None:
    done = run_cli("tasks", "vort_track", cwd=tmp_path)
    assert done.code == 0, done.err
    text = " ".join(done.out.split())
    for key, default in DEFAULTS.items():
        assert f"{key} = {json.dumps(default)}" in text
        assert " ".join(PARAM_HELP[key].split()) in text
    listing = run_cli("tasks", cwd=tmp_path)
    assert {"noop", "vort_track", "year_summary"} <= {
        line.split()[0] for line in listing.out.splitlines() if not line.startswith(" ")
    }


def test_tasks_of_an_unknown_name_is_one_error_line(tmp_path: Path) -> None:
    done = run_cli("tasks", "vort_trak", cwd=tmp_path)
    assert done.code == 2
    assert done.err.startswith("Error: unknown task 'vort_trak'")
    assert len(done.err.strip().splitlines()) == 1


@pytest.mark.slow
def test_hard_sample_data_scores_with_intensity_error(tmp_path: Path) -> None:
    made = run_cli("sample-data", "--out", "data", "--years", "2000", "--members", "1",
                   "--difficulty", "hard", cwd=tmp_path)  # fmt: skip
    assert made.code == 0, made.err
    assert "(small, hard)" in made.out
    (tmp_path / "clusterfarm.toml").write_text('[run]\ndata_dir = "data"\nrun_dir = "run"\n')
    ran = run_cli("run-task", "--task", "vort_track", "--year", "2000", "--member", "0",
                  cwd=tmp_path)  # fmt: skip
    assert json.loads(ran.out)["status"] == "complete", ran.err
    scored = run_cli("score", "--run-dir", "run", "--truth", "data", cwd=tmp_path)
    assert scored.code == 0, scored.err
    assert "intensity error: mean |error|" in scored.out
    figures = json.loads(
        run_cli("score", "--run-dir", "run", "--truth", "data", "--json", cwd=tmp_path).out
    )
    assert figures["intensity_error"]["relative"] < 0.5
