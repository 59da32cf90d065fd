"""A disk that fills mid-run: the run stops at once, says where and why in one line, and the
rerun does exactly the cells whose completion was not saved (a small tmpfs, as root)."""

from __future__ import annotations

import errno
import json
import os
import sqlite3
import subprocess
import time

import pytest

from tests.harness.cli import finish, run_cli, start_run, write_settings
from tests.harness.faults import complete_cells
from tests.harness.processes import wait_until

pytestmark = pytest.mark.hosts  # a small tmpfs, mounted as root

CELLS = 2000


@pytest.fixture
def small_disk(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    mount = tmp_path / "disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def empty_wal(run_dir):
    """Checkpoint the state's write-ahead log and truncate it, so the run's next commit must
    grow it (SQLite otherwise reuses the log's space: a disk filled then may not show)."""
    db = sqlite3.connect(run_dir / "state.sqlite", timeout=10)
    try:
        for _ in range(100):
            busy, _, _ = db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            if not busy:
                return
            time.sleep(0.01)
        raise AssertionError("the state's log stayed busy")
    finally:
        db.close()


def fill(disk):
    """Write a file until the disk is full; return it."""
    filler = disk / "filler"
    with open(filler, "wb", buffering=0) as handle:  # nothing left in a buffer at close
        try:
            while True:
                handle.write(b"\0" * 65536)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    return filler


def test_a_disk_full_mid_run_stops_it_at_once_and_the_rerun_redoes_only_what_was_unsaved(
    tmp_path, small_disk
):
    # min_free_mb 0: the workers' own check would wait for space (it has its own test)
    write_settings(
        tmp_path / "clusterfarm.toml",
        "[workers]\nmin_free_mb = 0\n[tasks.sleep]\nseconds = 0.005\n",
    )
    run_dir = small_disk / "run"
    args = ("--local", "2", "--task", "sleep", "--years", "2000-2001", "--members", "0-999")
    process = start_run(tmp_path, *args, "--run-dir", str(run_dir))
    wait_until(lambda: complete_cells(run_dir) >= 300, what="progress")
    empty_wal(run_dir)
    filler = fill(small_disk)
    full_at = time.monotonic()
    code, report, err = finish(process)
    stopped_after = time.monotonic() - full_at
    assert code == 3, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith(f"Error: {run_dir / 'state.sqlite'}: cannot write the run state")
    assert "full" in lines[0]
    assert stopped_after < 3.0  # the first write after the fill fails within its commit window
    filler.unlink()
    saved = complete_cells(run_dir)
    assert 300 <= saved < CELLS
    again = run_cli("run", *args, "--run-dir", str(run_dir), "--json", cwd=tmp_path)
    assert again.code == 0, again.err
    rerun = json.loads(again.out)
    assert rerun["ran"] == CELLS - saved and rerun["skipped"] == saved
