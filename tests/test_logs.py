"""Logs: text or JSON lines, rotation that loses nothing, and `clusterfarm logs`."""

from __future__ import annotations

import dataclasses
import json
import logging
import threading

import pytest

from clusterfarm.config.logging_setup import setup_logging
from clusterfarm.config.settings import LoggingSettings, load_settings
from tests.harness.cli import PLUGIN_SETTINGS, run_cli, write_settings


def json_lines(folder, pattern):
    """Every line of every (rotated) log file matching ``pattern``, parsed as JSON."""
    files = sorted(folder.glob(pattern))
    return files, [json.loads(line) for f in files for line in f.read_text().splitlines()]


@pytest.fixture
def restored_logging():
    """Give the clusterfarm logger back as it was (the test points it at a file)."""
    logger = logging.getLogger("clusterfarm")
    before = (list(logger.handlers), logger.level, logger.propagate)
    yield
    for handler in logger.handlers:
        handler.close()
    logger.handlers, logger.level, logger.propagate = before


def test_rotation_with_a_tiny_max_bytes_loses_and_breaks_no_json_line(tmp_path, restored_logging):
    tiny = LoggingSettings(level="INFO", format="json", max_bytes=2000, backups=200)
    setup_logging(dataclasses.replace(load_settings(), logging=tiny), tmp_path / "w.log")
    log = logging.getLogger("clusterfarm.test")

    def write(thread):
        for i in range(250):
            log.info("record %d-%d", thread, i)

    threads = [threading.Thread(target=write, args=(t,)) for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    logging.getLogger("clusterfarm").handlers[0].flush()
    files, records = json_lines(tmp_path, "w.log*")
    assert len(files) > 10  # it rotated many times
    assert sorted(r["message"] for r in records) == sorted(
        f"record {t}-{i}" for t in range(4) for i in range(250)
    )
    assert {r["level"] for r in records} == {"INFO"} and all("time" in r for r in records)


def test_worker_logs_hold_the_task_lines_rotated_and_whole(tmp_path):
    write_settings(
        tmp_path / "clusterfarm.toml",
        PLUGIN_SETTINGS + '[logging]\nformat = "json"\nmax_bytes = 3000\nbackups = 100\n',
    )
    result = run_cli(
        "run",
        "--local",
        "2",
        "--task",
        "write_file",
        "--years",
        "2000-2001",
        "--members",
        "0-49",
        "--json",
        cwd=tmp_path,
    )
    assert result.code == 0, result.err
    files, records = json_lines(tmp_path / "clusterfarm-run/logs", "local.*.log*")
    assert any(f.name.endswith(".log.1") for f in files)
    wrote = [r["message"] for r in records if r["message"].startswith("wrote ")]
    assert len(wrote) == 100 == len(set(wrote))


def test_logs_shows_the_end_of_a_local_workers_log(tmp_path):
    write_settings(tmp_path / "clusterfarm.toml", PLUGIN_SETTINGS)
    assert (
        run_cli(
            "run",
            "--local",
            "1",
            "--task",
            "write_file",
            "--years",
            "2000",
            "--members",
            "0-2",
            cwd=tmp_path,
        ).code
        == 0
    )
    shown = run_cli("logs", "local.0", "-n", "3", cwd=tmp_path)
    assert shown.code == 0, shown.err
    lines = shown.out.splitlines()
    assert len(lines) == 3 and lines[-1].endswith("worker clusterfarm.worker.local.0 stopped")
    assert "wrote write_file_2000_m002.nc" in run_cli("logs", "local.0", cwd=tmp_path).out


@pytest.mark.parametrize(
    ("worker", "complaint"),
    [
        ("berlin", "is not a worker name"),
        ("paris.0", "no host 'paris' in the settings"),
        ("local.9", "no such log"),
    ],
)
def test_logs_of_unknown_workers_is_one_clear_line(tmp_path, worker, complaint):
    shown = run_cli("logs", worker, cwd=tmp_path)
    assert shown.code in (2, 3) and complaint in shown.err
    assert len(shown.err.strip().splitlines()) == 1


@pytest.mark.slow
def test_logs_of_a_remote_worker_come_over_ssh(ssh_lab, sshd_server):
    from tests.harness.sshd import started_lab

    settings = started_lab(ssh_lab, sshd_server, workers=1)
    shown = ssh_lab.cli(settings, "logs", "loc.0", "-n", "5")
    assert shown.code == 0, shown.err
    assert "worker clusterfarm.worker.loc.0 listening" in shown.out
    assert ssh_lab.cli(settings, "stop-workers").code == 0
