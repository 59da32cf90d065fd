"""Logging set-up for every clusterfarm process: text or JSON lines, rotated files."""

from __future__ import annotations

import json
import logging
import logging.handlers
import time
from pathlib import Path
from typing import Any

from clusterfarm.config.settings import Settings


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message (and the traceback, if any)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry)


TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def setup_logging(settings: Settings, path: Path | None = None, verbose: bool = False) -> None:
    """Send clusterfarm's log records to ``path`` (rotated) or stderr, per ``[logging]``."""
    config = settings.logging
    logging.raiseExceptions = False  # a full disk must not print a traceback per log line
    handler: logging.Handler
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.handlers.RotatingFileHandler(
            path, maxBytes=config.max_bytes, backupCount=config.backups
        )
    else:
        handler = logging.StreamHandler()
    formatter = JsonFormatter() if config.format == "json" else logging.Formatter(TEXT_FORMAT)
    handler.setFormatter(formatter)
    root = logging.getLogger("clusterfarm")
    for old in list(root.handlers):
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel("DEBUG" if verbose else config.level.upper())
    root.propagate = False
