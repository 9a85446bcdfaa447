"""The database's failures, as ours: every backend's driver errors become one of these at the
adapter (SQLite's own exceptions pass through unchanged; `conflict` and `busy` say which is
which for either), and the CLI prints them as one line."""

from __future__ import annotations

import sqlite3

from ..errors import StoreError


class DbError(StoreError):
    """The database failed (a PostgreSQL error this tool does not expect)."""


class Conflict(DbError):
    """A constraint refused the change: a unique key taken, a check, an append-only table."""


class Busy(DbError):
    """Another writer held a lock longer than we wait (lock_timeout), or a deadlock."""


class Lost(DbError):
    """The connection to the server is gone (a restart, a network cut): reconnect or stop."""


CONFLICT = (sqlite3.IntegrityError, Conflict)


def is_busy(exc: BaseException) -> bool:
    """Whether `exc` means another connection held the lock for the whole wait."""
    if isinstance(exc, Busy):
        return True
    if isinstance(exc, sqlite3.Error):
        primary = getattr(exc, "sqlite_errorcode", 0) & 0xFF  # e.g. BUSY_SNAPSHOT is BUSY
        return primary in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
    return False
