"""One SQLite transaction around a block of statements.

The state's connections are in autocommit mode (``isolation_level=None``): there, ``with db:``
opens no transaction, and each statement commits on its own (each ``executemany`` row too).
:func:`transaction` begins one explicitly, so the block's changes land together or not at
all, in one commit.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator


@contextlib.contextmanager
def transaction(db: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """``BEGIN IMMEDIATE`` … ``COMMIT`` around the block; rolled back when it raises (a failed
    ``COMMIT`` too: a full disk leaves no transaction open behind it)."""
    db.execute("BEGIN IMMEDIATE")  # they all write: take the lock now, waiting if need be
    try:
        yield db
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
        raise
