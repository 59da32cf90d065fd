"""Progress in Jupyter: the plain block as coloured HTML, redrawn in one output area."""

import sys

from clusterfarm.record.schedule import TaskSchedule
from clusterfarm.show.board import Board
from clusterfarm.show.notebook import NotebookView, in_notebook


def test_the_block_is_rendered_as_html_with_one_coloured_span_per_cell():
    schedule = TaskSchedule([2000, 2001], [0, 1, 2], ["sleep"])
    schedule.start(schedule.cell("sleep", 2000, 1), "w", "h", 0.0)
    view = NotebookView()
    view.board, view._started = Board(schedule), 0.0
    page = view.render()
    assert page.startswith("<pre>") and "0/6 complete, 1 working" in page
    assert "<b>2000:</b>" in page and page.count("<span") == 6
    assert '<span style="color:#c49000">W</span>' in page


def test_outside_a_kernel_it_prints_the_plain_blocks(capsys):
    assert not in_notebook()
    view = NotebookView()
    board = Board(TaskSchedule([2000], [0, 1], ["sleep"]))
    if "IPython" in sys.modules:  # a kernel-less IPython still displays as text
        return
    view.start(board)
    view.close()
    assert "2000: --" in capsys.readouterr().out
