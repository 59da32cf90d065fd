"""The terminal views: plain blocks that grow with what happens, the live rich board."""

from __future__ import annotations

import io
import os
import pty
import select
import sys

import pytest

from clusterfarm.record.schedule import TaskSchedule
from clusterfarm.record.state_writer import CellChange
from clusterfarm.show.board import Board
from clusterfarm.show.console import PlainView
from tests.harness.cli import cli_env, run_cli


def board_for(members=range(3)):
    return Board(TaskSchedule([2000, 2001], members, ["sleep"]))


def test_plain_view_prints_a_block_only_when_something_changed():
    board, out = board_for(), io.StringIO()
    view = PlainView(out, interval=0.0)
    view.start(board)
    view.tick()
    view.tick()  # nothing changed since
    board.cells_saved([CellChange("sleep", 2001, 0, "+", None, None)])
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


@pytest.mark.slow
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


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def blocks_of(text):
    """The blocks of plain output: each a header line and the lines after it."""
    blocks = []
    for line in text.splitlines():
        if line.startswith("["):
            blocks.append([line])
        else:
            blocks[-1].append(line)
    return blocks


@pytest.mark.slow
def test_plain_output_of_a_long_run_is_bounded_and_ends_with_the_whole_board():
    years, members = list(range(1000)), list(range(200))  # 200,000 cells, as in the issue
    board, out, clock = Board(TaskSchedule(years, members, ["noop"])), io.StringIO(), Clock()
    view = PlainView(out, clock=clock)
    view.start(board)
    cells = [(year, member) for year in years for member in members]
    step = len(cells) // 370  # all done in 37 s, ten changes a second
    for i in range(0, len(cells), step):
        changes = [CellChange("noop", y, m, "+", None, None) for y, m in cells[i : i + step]]
        board.cells_saved(changes)
        clock.now += 0.1
        view.tick()
    view.close()
    whole_board = sum(len(f"{year}: {'+' * 200}\n") for year in years)
    # the first and the last board, and each line about once per second it changed in;
    # printing the whole board every second was 37 of them
    assert len(out.getvalue()) < 4 * whole_board
    last = blocks_of(out.getvalue())[-1]
    assert last[0].endswith("200000/200000 complete, 0 working, 0 failed, 0 timeout")
    assert last[1:] == [f"{year}: {'+' * 200}" for year in years]


def test_plain_view_prints_the_whole_board_at_most_once_a_minute():
    board, out, clock = board_for(range(56)), io.StringIO(), Clock()
    view = PlainView(out, clock=clock)
    view.start(board)
    for second in range(3600):  # an hour with a change every second
        status = "W" if second // 2 % 2 else "+"
        board.cells_saved([CellChange("sleep", 2000 + second % 2, 0, status, None, None)])
        clock.now += 1.0
        view.tick()
    view.close()
    blocks = blocks_of(out.getvalue())
    assert len(blocks) == 3601
    whole = [block for block in blocks if len(block) == 3]  # header and both years
    assert 60 <= len(whole) <= 62  # once a minute, and at the end
    assert all(len(block) == 2 for block in blocks if block not in whole)  # the changed line


@pytest.mark.slow
def test_plain_run_prints_changed_lines_between_whole_boards(tmp_path):
    (tmp_path / "clusterfarm.toml").write_text("[tasks.sleep]\nseconds = 0.02\n")
    result = run_cli(
        "run", "--local", "2", "--task", "sleep", "--years", "2000-2049", "--members", "0-3",
        "--progress", "plain", cwd=tmp_path,
    )  # fmt: skip
    assert result.code == 0, result.err
    blocks = blocks_of(result.out.split("\nran ")[0])
    assert len(blocks) >= 3, result.out
    assert len(blocks[0]) == 51 and len(blocks[-1]) == 51  # whole: the header and 50 years
    assert blocks[-1][1:] == [f"{year}: ++++" for year in range(2000, 2050)]
    shown = {line.split(":")[0]: line for line in blocks[0][1:]}
    for block in blocks[1:-1]:
        for line in block[1:]:
            assert shown[line.split(":")[0]] != line, f"{line} printed again unchanged"
            shown[line.split(":")[0]] = line
