"""The task process's raw output (stdout and stderr) in a file that rotates like the logs.

A task that prints 200 MB must not fill the worker's disk. The task process writes into a
pipe; one thread of the daemon copies the pipe into ``<worker>.out``, starting a new file at
``max_bytes`` and keeping ``backups`` old ones (``.out.1``, ``.out.2``...), as the logging
module's RotatingFileHandler does for the logs.
"""

from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path

_CHUNK = 1 << 16


class RotatingOutput:
    """A pipe whose far end is a rotating file; give :meth:`fileno` as a child's stdout."""

    def __init__(self, path: Path, max_bytes: int, backups: int) -> None:
        self.path = Path(path)
        self.max_bytes = max(1, int(max_bytes))
        self.backups = max(0, int(backups))
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._read_end, self._write_end = os.pipe()
        self._file = open(self.path, "ab")  # noqa: SIM115 - kept open, rotated by the thread
        self._thread = threading.Thread(target=self._copy, name="task-output", daemon=True)
        self._thread.start()

    def fileno(self) -> int:
        return self._write_end

    def _copy(self) -> None:
        while True:
            try:
                data = os.read(self._read_end, _CHUNK)
            except OSError:
                return
            if not data:
                return
            while data:
                room = self.max_bytes - self._file.tell()
                if room <= 0:
                    self._rotate()
                    room = self.max_bytes
                self._file.write(data[:room])
                data = data[room:]
            self._file.flush()

    def _rotate(self) -> None:
        self._file.close()
        if self.backups:
            for n in range(self.backups - 1, 0, -1):
                older = self.path.with_name(f"{self.path.name}.{n}")
                if older.exists():
                    os.replace(older, self.path.with_name(f"{self.path.name}.{n + 1}"))
            os.replace(self.path, self.path.with_name(f"{self.path.name}.1"))
        else:
            self.path.unlink(missing_ok=True)
        self._file = open(self.path, "ab")  # noqa: SIM115

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self._write_end)
        self._thread.join(2)
        self._file.close()
