"""Show a run's progress in Jupyter: the plain block, coloured, redrawn in one output area.

Used by :meth:`clusterfarm.api.Farm.run` when it runs inside an IPython kernel (or with
``progress="notebook"``). It draws what :class:`~clusterfarm.show.console.PlainView` prints (the
header line and the progress strings), as HTML updated in place through IPython's ``display``
handle, at most once a second and once at the end. Without IPython it prints the plain blocks.
"""

from __future__ import annotations

import html
import sys
import time
from typing import Any

from clusterfarm.show.board import Board
from clusterfarm.show.console import STATUS_STYLES, PlainView
from clusterfarm.show.text import header, progress_lines

_COLORS = {"-": "#999", "W": "#c49000", "+": "#2e9e48", "F": "#d62728", "T": "#9b30d0"}


def in_notebook() -> bool:
    """True inside an IPython kernel (Jupyter, VS Code notebooks...), not a plain terminal."""
    shell = sys.modules.get("IPython")
    if shell is None:
        return False
    ip = shell.get_ipython()
    return ip is not None and "IPKernelApp" in getattr(ip, "config", {})


class NotebookView:
    """A live progress block in one notebook output area (see the module docstring)."""

    def __init__(self, interval: float = 1.0) -> None:
        self.interval = interval
        self._handle: Any = None
        self._fallback: PlainView | None = None

    def start(self, board: Board) -> None:
        self.board = board
        self._started = self._last = time.monotonic()
        self._shown_version = -1
        try:
            from IPython.display import HTML, display
        except ImportError:
            self._fallback = PlainView()
            self._fallback.start(board)
            return
        self._html = HTML
        self._handle = display(HTML(self.render()), display_id=True)

    def tick(self) -> None:
        if self._fallback is not None:
            self._fallback.tick()
            return
        now = time.monotonic()
        if self.board.version != self._shown_version and now - self._last >= self.interval:
            self._update(now)

    def close(self) -> None:
        if self._fallback is not None:
            self._fallback.close()
        else:
            self._update(time.monotonic())

    def _update(self, now: float) -> None:
        self._shown_version, self._last = self.board.version, now
        if self._handle is not None:
            self._handle.update(self._html(self.render()))

    def render(self) -> str:
        """The block as HTML: the header, then one coloured progress string per line."""
        progress, counts = self.board.snapshot()
        elapsed = time.monotonic() - self._started
        lines = [html.escape(header(elapsed, counts, self.board.total))]
        for line in progress_lines(self.board.tasks, self.board.years, progress):
            label, _, chars = line.rpartition(" ")
            cells = "".join(
                f'<span style="color:{_COLORS[c]}">{html.escape(c)}</span>'
                if c in STATUS_STYLES
                else html.escape(c)
                for c in chars
            )
            lines.append(f"<b>{html.escape(label)}</b> {cells}")
        notes = [f'<span style="color:#d62728">{html.escape(n)}</span>' for n in self.board.notes]
        return "<pre>" + "\n".join(lines + notes[-5:]) + "</pre>"
