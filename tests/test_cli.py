"""The command line: help and settings through click's runner, exit codes as subprocesses."""

import tomllib

import pytest
from click.testing import CliRunner

from clusterfarm.cli import cli
from tests.harness.cli import run_cli, write_settings


def test_help_lists_the_commands():
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0
    for command in ("run", "status", "workers", "nameserver", "worker", "settings", "run-task"):
        assert command in result.output


def test_settings_prints_effective_toml(tmp_path, monkeypatch):
    monkeypatch.setenv("CF_TEST_YEARS", "1990-1991")
    path = write_settings(tmp_path / "s.toml", '[run]\nyears = "${CF_TEST_YEARS}"\n')
    result = CliRunner().invoke(cli, ["settings", "--settings", str(path)])
    assert result.exit_code == 0, result.output
    printed = tomllib.loads(result.output)
    assert printed["run"]["years"] == "1990-1991" and printed["run"]["timeout"] == 900.0


def test_settings_prints_the_effective_parameters_of_the_tasks(tmp_path):
    path = write_settings(
        tmp_path / "s.toml",
        '[run]\ntask = "vort_track,year_summary"\n[tasks.vort_track]\nthreshold = 2e-5\n'
        "[tasks.sleep]\nseconds = 1\n",
    )
    result = CliRunner().invoke(cli, ["settings", "--settings", str(path)])
    assert result.exit_code == 0, result.output
    tasks = tomllib.loads(result.output)["tasks"]
    assert tasks["vort_track"]["threshold"] == 2e-5 and tasks["vort_track"]["min_steps"] == 6
    assert tasks["year_summary"]["box_deg"] == 5.0  # a run task without a table: its defaults
    assert tasks["sleep"] == {"seconds": 1.0}


@pytest.mark.parametrize(
    ("args", "settings", "code", "complaint"),
    [
        (["run", "--years", "2012-2000"], None, 2, "--years: year spec '2012-2000'"),
        (["run", "--years", "20x0"], None, 2, "'20x0' is not a number"),
        (["run", "--members", ""], None, 2, "empty member spec"),
        (["run", "--task", "nope"], None, 2, "unknown task 'nope'"),
        (["run", "--timeout", "-5"], None, 2, "'--timeout': must be positive"),
        (["run", "--local", "0", "--task", "noop"], None, 2, "'--local': 0 is out of range"),
        (["run"], "[run]\ntimeot = 3\n", 2, "unknown key run.timeot"),
        (["run"], '[run]\nretries = "many"\n', 2, "run.retries must be an integer"),
        (["run"], "[tasks.sleep]\nsecs = 1\n", 2, "[tasks.sleep] secs: unknown parameter"),
        (
            ["run", "--task", "noop"],
            '[[hosts]]\nname = "a"\n[nameserver]\nport = 1\n',
            3,
            "no nameserver at 127.0.0.1:1",
        ),
        (["workers"], "[nameserver]\nport = 1\n", 3, "no nameserver at 127.0.0.1:1"),
        (["status", "--run-dir", "nowhere"], None, 2, "nowhere: no clusterfarm run here"),
        (["run", "--bogus"], None, 2, "No such option '--bogus'"),
    ],
)
def test_bad_input_gives_one_error_line_and_exit_code(tmp_path, args, settings, code, complaint):
    if settings is not None:
        write_settings(tmp_path / "clusterfarm.toml", settings)
    result = run_cli(*args, cwd=tmp_path)
    assert result.code == code, result.err
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.err
    assert complaint in lines[0]
    assert "Traceback" not in result.err


def test_debug_shows_the_traceback(tmp_path):
    result = run_cli("--debug", "run", "--years", "2012-2000", cwd=tmp_path)
    assert result.code != 0 and "Traceback" in result.err


def test_run_task_runs_one_cell_here(tmp_path):
    result = run_cli("run-task", "--year", "2000", "--member", "1", "--task", "sleep", cwd=tmp_path)
    assert result.code == 0, result.err
    assert '"status": "complete"' in result.out and '"slept": 0.05' in result.out


def test_python_dash_m_is_the_same_command(tmp_path):
    assert run_cli("--version", cwd=tmp_path).out.startswith("clusterfarm, version")
