"""One transaction around a block, on the autocommit connections the run state uses."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from clusterfarm.record.transaction import transaction


def open_db(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None)  # as state.connect opens it
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE IF NOT EXISTS t (n INTEGER CHECK (n > 0))")
    return db


def test_the_block_lands_together_in_one_commit(tmp_path: Path) -> None:
    db, other = open_db(tmp_path / "s.sqlite"), open_db(tmp_path / "s.sqlite")
    with transaction(db):
        db.execute("INSERT INTO t VALUES (1)")
        assert db.in_transaction
        assert other.execute("SELECT count(*) FROM t").fetchone() == (0,)  # not yet
        db.executemany("INSERT INTO t VALUES (?)", [(2,), (3,)])
    assert not db.in_transaction
    assert other.execute("SELECT count(*) FROM t").fetchone() == (3,)


def test_a_failing_statement_takes_the_whole_block_back(tmp_path: Path) -> None:
    db = open_db(tmp_path / "s.sqlite")
    with pytest.raises(sqlite3.IntegrityError), transaction(db):
        db.execute("INSERT INTO t VALUES (1)")  # with ``with db:`` alone, this one stayed
        db.execute("INSERT INTO t VALUES (-1)")
    assert not db.in_transaction
    assert db.execute("SELECT count(*) FROM t").fetchone() == (0,)
    with transaction(db):  # and the connection takes the next transaction
        db.execute("INSERT INTO t VALUES (5)")
    assert db.execute("SELECT n FROM t").fetchall() == [(5,)]
