"""The ``clusterfarm`` command as a subprocess: run it, or start a run in the background."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.harness.processes import stop_process
from tests.harness.secret import SECRET_FILE

PLUGINS = Path(__file__).resolve().parent.parent / "plugins"
PLUGIN_SETTINGS = '[tasks]\nmodules = ["cf_test_tasks"]\n'
# workers pinged often and declared lost soon: faults show within seconds
FAST_LIVENESS = "[run]\nheartbeat = 0.3\nlost_after = 1.5\n"

assert SECRET_FILE.exists()  # the session's secret is set up before any command runs


def cli_env(**extra: str) -> dict[str, str]:
    """The environment for clusterfarm subprocesses: test plugins importable."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PLUGINS), env.get("PYTHONPATH")]))
    env.pop("CLUSTERFARM_SETTINGS", None)
    env.update(extra)
    return env


@dataclass
class Result:
    code: int
    out: str
    err: str


def run_cli(*args: str, cwd: Path, timeout: float = 120, **env: str) -> Result:
    """Run ``clusterfarm ARGS`` as a subprocess and return its exit code and output."""
    done = subprocess.run(
        [sys.executable, "-m", "clusterfarm", *args],
        cwd=cwd,
        env=cli_env(**env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return Result(done.returncode, done.stdout, done.stderr)


def write_settings(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def start_run(cwd: Path, *args: str, as_json: bool = True) -> subprocess.Popen[str]:
    """``clusterfarm run ARGS`` in the background (with ``--json`` unless told otherwise)."""
    return subprocess.Popen(
        [sys.executable, "-m", "clusterfarm", "run", *(["--json"] if as_json else []), *args],
        cwd=cwd,
        env=cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(process: subprocess.Popen[str], timeout: float = 120) -> tuple[int, Any, str]:
    """Wait for a run started by :func:`start_run`: its exit code, JSON (or None), stderr."""
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        stop_process(process)  # a test that fails leaves no run behind
        raise
    return process.returncode, (json.loads(out) if out.strip() else None), err
