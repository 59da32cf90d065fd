"""Every bad input gets one ``Error:`` line naming what and where, its exit code (2 bad input,
3 infrastructure) and no traceback: one table, each row a real ``python -m clusterfarm``
process."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.harness.cli import run_cli
from tests.harness.mounts import Mounts, tmpfs_missing

USAGE, INFRA = 2, 3
NOOP_RUN = ("--task", "noop", "--years", "2000", "--members", "0-1", "--local", "1")


@dataclass(frozen=True)
class Case:
    """A command (``{place}`` stands for the folder ``setup`` made), its settings file
    (``./clusterfarm.toml``), the exit code and a piece of the one error line."""

    args: tuple[str, ...]
    code: int
    complaint: str
    settings: bytes | None = None
    setup: str | None = None  # "damaged_state", "read_only", "full_disk"


def case(*args: str, code: int = USAGE, complaint: str, **extra: object) -> object:
    marks = [pytest.mark.hosts] if extra.get("setup") in ("read_only", "full_disk") else []
    bad = Case(args, code, complaint, **extra)  # type: ignore[arg-type]
    return pytest.param(bad, id=" ".join(args)[:60], marks=marks)


CASES = [
    # files and folders
    case("status", "--run-dir", "{place}", complaint="run state is damaged", setup="damaged_state"),
    case("run", "--run-dir", "{place}", *NOOP_RUN, complaint="damaged", setup="damaged_state"),
    case("run", "--run-dir", "{place}", *NOOP_RUN, complaint="must be writable", setup="read_only"),
    case("run", "--run-dir", "{place}/run", *NOOP_RUN, complaint="writable", setup="read_only"),
    case(
        "run",
        "--run-dir",
        "{place}/run",
        *NOOP_RUN,
        code=INFRA,
        complaint="No space left on device",
        setup="full_disk",
    ),
    case("settings", complaint="not UTF-8 text (byte 0xff", settings=b'[run]\nyears = "\xff"\n'),
    case("plot", "--year", "2000", "--out", "x.txt", complaint="--out x.txt: plot writes PNG"),
    case("sample-data", "--out", "/proc/x", complaint="--out /proc/x: No such file"),
    # years and members
    case("sample-data", "--out", "d", "--years", "1e23", complaint="'1e23' is not a number"),
    case("plot", "--year", "1" + "0" * 23, "--out", "x.png", complaint="give 0 to 9999"),
    case("run", "--years", "0-99999999", complaint="years go from 0 to 9999"),
    case("run", "--members", "0-1000", complaint="members go from 0 to 999"),
    case("settings", complaint="years go from 0 to 9999", settings=b'[run]\nyears = "0-99999999"'),
    case(
        "settings",
        complaint="at most 1,000,000",
        settings=b'[run]\nyears = "0-9999"\nmembers = "0-999"\n',
    ),
    case("run", "--years", "2000--2001", complaint="'2000--2001' is not a number or range"),
    case("run", "--years", "\uff12\uff10\uff10\uff10", complaint="is not a number or range"),
    case("run", "--years", "2_000", complaint="'2_000' is not a number or range"),
    case("run-task", "--year", "-5", "--member", "0", complaint="'-5' is not a whole number"),
    case("run-task", "--year", "2_000", "--member", "0", complaint="not a whole number"),
    case("run-task", "--year", "2000", "--member", "1000", complaint="give 0 to 999"),
    # durations
    case("run", "--timeout", "inf", complaint="'--timeout': must be a finite number"),
    case("run", "--timeout", "nan", complaint="must be a finite number"),
    case("run", "--timeout", "1e-9", complaint="must be at least 0.1 s"),
    case("run", "--timeout", "1e12", complaint="at most 10,000,000 s"),
    case("settings", complaint="run.timeout must be a finite", settings=b"[run]\ntimeout = inf\n"),
    case(
        "settings",
        complaint="run.heartbeat must be at least 0.1 s",
        settings=b"[run]\nheartbeat = 1e-9\n",
    ),
    case(
        "settings",
        complaint="run.lost_after must be a finite",
        settings=b"[run]\nlost_after = inf\n",
    ),
    case(
        "settings",
        complaint="orphan_after must be a finite",
        settings=b"[workers]\norphan_after = nan\n",
    ),
    case("stop-workers", "--grace", "inf", complaint="'--grace': must be a finite"),
    # workers and ports
    case("run", "--local", "10000", complaint="give 1 to 256"),
    case("run", "--local", "0", complaint="give 1 to 256"),
    case(
        "settings",
        complaint="port 0 is not a TCP port (1 to 65535)",
        settings=b"[nameserver]\nport = 0\n",
    ),
    case("nameserver", "--port", "65536", complaint="give 0 to 65535"),  # 0: a free port
    case("worker", "--nameserver", "h:\uff19\uff10", complaint="port from 1 to 65535"),
    # task parameters, caught when the settings are loaded
    case(
        "settings",
        complaint="[tasks.vort_track] bogus: unknown parameter",
        settings=b"[tasks.vort_track]\nbogus = 1\n",
    ),
    case(
        "workers",
        complaint="[tasks.vort_track] bogus: unknown",
        settings=b"[tasks.vort_track]\nbogus = 1\n",
    ),
    case(
        "settings", complaint="run.data_dir: unterminated", settings=b'[run]\ndata_dir = "${X:-a"\n'
    ),
]


@pytest.mark.parametrize("bad", CASES)
def test_bad_input_is_one_error_line_with_the_spec_exit_code(bad, tmp_path, request):
    if bad.settings is not None:
        (tmp_path / "clusterfarm.toml").write_bytes(bad.settings)
    place = _set_up(bad.setup, tmp_path / "place", request)
    args = [arg.replace("{place}", str(place)) for arg in bad.args]
    result = run_cli(*args, cwd=tmp_path)
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.err
    assert bad.complaint in lines[0]
    assert "Traceback" not in result.err and "negative" not in lines[0]
    assert result.code == bad.code, result.err


def _set_up(setup: str | None, place: Path, request: pytest.FixtureRequest) -> Path:
    if setup == "damaged_state":
        _damaged_state(place)
    elif setup == "read_only":
        mounts(request).read_only(place)
    elif setup == "full_disk":
        if reason := tmpfs_missing():
            pytest.skip(reason)
        mounts(request).full_disk(place)
    return place


def mounts(request: pytest.FixtureRequest) -> Mounts:
    """The ``mounts`` fixture, made only for the cases that mount something."""
    return request.getfixturevalue("mounts")


def _damaged_state(run_dir: Path) -> None:
    """A state database with a page overwritten, as a bad disk or a stray write leaves it."""
    from clusterfarm.record.state import connect

    db = connect(run_dir)
    db.executemany(
        "INSERT INTO cells (task, year, member) VALUES ('noop', ?, 0)", [(y,) for y in range(3000)]
    )
    page = db.execute("PRAGMA page_size").fetchone()[0]
    db.close()
    with open(run_dir / "state.sqlite", "r+b") as state:
        state.seek(page * 3)
        state.write(b"\x5a" * page)
    with pytest.raises(sqlite3.DatabaseError):  # it is damaged for SQLite itself
        sqlite3.connect(run_dir / "state.sqlite").execute("SELECT count(*) FROM cells").fetchone()
