"""The board: a mirror of the cells fed only by saved changes, and of the workers fed by the
manager's events."""

from __future__ import annotations

from clusterfarm.manager.events import WorkerJoined, WorkerLeft, WorkersPending
from clusterfarm.record.schedule import TaskSchedule
from clusterfarm.record.state_writer import CellChange
from clusterfarm.show.board import Board


def board_for(members=range(3)):
    return Board(TaskSchedule([2000, 2001], members, ["sleep"]))


def test_board_follows_cell_changes_and_workers():
    board = board_for()
    board.apply(WorkerJoined("clusterfarm.worker.a.0", "a"))
    board.cells_saved([CellChange("sleep", 2000, 1, "W", "clusterfarm.worker.a.0", None)])
    ((name, row),) = board.worker_rows()
    assert row.cell == "sleep 2000 m001"
    board.cells_saved(
        [CellChange("sleep", 2000, 1, "F", "clusterfarm.worker.a.0", "RuntimeError: boom")]
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
