"""The views: the board that mirrors committed changes, plain blocks, the live rich board."""

from __future__ import annotations

import io
import os
import pty
import select
import sys

from clusterfarm.events import (
    CellChange,
    CellsChanged,
    WorkerJoined,
    WorkerLeft,
    WorkersPending,
)
from clusterfarm.schedule import TaskSchedule
from clusterfarm.view import Board, PlainView
from tests.conftest import cli_env


def board_for(members=range(3)):
    return Board(TaskSchedule([2000, 2001], members, ["sleep"]))


def test_board_follows_cell_changes_and_workers():
    board = board_for()
    board.apply(WorkerJoined("clusterfarm.worker.a.0", "a"))
    board.apply(CellsChanged([CellChange("sleep", 2000, 1, "W", "clusterfarm.worker.a.0", None)]))
    ((name, row),) = board.worker_rows()
    assert row.cell == "sleep 2000 m001"
    board.apply(
        CellsChanged(
            [CellChange("sleep", 2000, 1, "F", "clusterfarm.worker.a.0", "RuntimeError: boom")]
        )
    )
    progress, counts = board.snapshot()
    assert progress[("sleep", 2000)] == "-F-" and counts["F"] == 1 and counts["-"] == 5
    ((name, row),) = board.worker_rows()
    assert row.cell is None and row.last_error == "RuntimeError: boom" and row.done == 0
    board.apply(WorkerLeft("clusterfarm.worker.a.0", "lost"))
    assert board.worker_rows()[0][1].gone and board.notes == [
        "worker clusterfarm.worker.a.0 left: lost"
    ]


def test_board_shows_queued_worker_jobs_with_their_reason_until_they_join():
    board = board_for()
    first, second = "clusterfarm.worker.slurm-7_0", "clusterfarm.worker.slurm-7_1"
    board.apply(WorkersPending(((first, "Resources"),)))
    board.apply(WorkersPending(((first, "Priority"), (second, "Priority"))))
    rows = [(name, row.pending) for name, row in board.worker_rows()]
    assert rows == [(first, "Priority"), (second, "Priority")]
    board.apply(WorkerJoined(first, "node17"))
    board.apply(WorkersPending(()))  # the second was cancelled: its row goes
    ((name, row),) = board.worker_rows()
    assert name == first and row.pending is None and row.host == "node17"


def test_plain_view_prints_a_block_only_when_something_changed():
    board, out = board_for(), io.StringIO()
    view = PlainView(out, interval=0.0)
    view.start(board)
    view.tick()
    view.tick()  # nothing changed since
    board.apply(CellsChanged([CellChange("sleep", 2001, 0, "+", None, None)]))
    view.tick()
    blocks = [line for line in out.getvalue().splitlines() if line.startswith("[")]
    assert len(blocks) == 2
    assert blocks[-1].endswith("1/6 complete, 0 working, 0 failed, 0 timeout")
    assert out.getvalue().splitlines()[-1] == "2001: +--"


def run_in_terminal(args, cwd):
    """Run clusterfarm under a pseudo-terminal (as a person would); return output, exit code."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: a process on a real terminal
        os.chdir(cwd)
        env = cli_env(COLUMNS="100", LINES="40", TERM="xterm-256color")
        os.execve(sys.executable, [sys.executable, "-m", "clusterfarm", *args], env)
    output = b""
    while True:
        ready, _, _ = select.select([fd], [], [], 60)
        if not ready:
            break
        try:
            data = os.read(fd, 65536)
        except OSError:  # the terminal closed: the child is done
            break
        if not data:
            break
        output += data
    _, status = os.waitpid(pid, 0)
    return output.decode(errors="replace"), os.waitstatus_to_exitcode(status)


def test_run_on_a_terminal_shows_the_live_coloured_board(tmp_path):
    output, code = run_in_terminal(
        ["run", "--local", "2", "--task", "sleep", "--years", "2000-2001", "--members", "0-5"],
        tmp_path,
    )
    assert code == 0, output
    green_plus = "\x1b[32m+\x1b[0m"
    assert "2000: " in output and "2001: " in output
    assert green_plus * 6 in output  # a whole year complete, in colour
    assert "12/12 complete, 0 working, 0 failed, 0 timeout" in output
    assert "local.0" in output and "local.1" in output  # the worker table
    assert "ETA" in output
