"""The store boundary: the one way the tool reaches its database.

`connect(where)` gives a connection to the database NEWSLETTER_DB names, migrated: a SQLite
file for a path (db.py, the embedded default), a PostgreSQL server for a postgresql:// URL
(postgres.py). Both answer the same small interface, so the modules above them (subscribers,
ledger, schedules, archive, signup, bounces) hold one set of SQL:

    dialect            "sqlite" | "postgres", for the few statements that must differ
    execute(sql, params) -> cursor (fetchone, fetchall, iteration, rowcount)
    executemany(sql, rows) -> cursor (rowcount: the rows changed in all)
    transaction(commit=True, exclusive=True)   a context; nested ones join the outer one
    in_transaction, close(), where (the path or the URL)

Placeholders are SQLite's (`?`, `:name`); rows answer by position and by name. A
constraint's refusal is `CONFLICT`, a lock held too long `is_busy` (errors.py).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any, NamedTuple

from ..errors import StoreError
from .errors import CONFLICT, Busy, Conflict, DbError, Lost, is_busy
from .target import PgUrl, mask, parse_db, shown

Db = Any  # db.SqliteDb | postgres.PgDb: the interface above


class Query(NamedTuple):
    """A SELECT one module hands another, for it to use within the database (INSERT ...
    SELECT) rather than bring every row through Python: its SQL and its named parameters."""

    sql: str
    params: dict[str, Any]


# What `db copy` renames a SQLite file to once its list is in PostgreSQL (store/copy.py).
SET_ASIDE = ".copied-to-postgresql"


def set_aside_instead(path: Path) -> StoreError | None:
    """The error for a SQLite file that `db copy` set aside (the list now in PostgreSQL),
    for a command pointed at its old name: it must stop, not start a new list there."""
    aside = path.with_name(path.name + SET_ASIDE)
    if path.exists() or not aside.is_file():
        return None
    return StoreError(
        f"this list was copied to PostgreSQL (db copy), and the file set aside as "
        f"{aside.name}: set NEWSLETTER_DB to the PostgreSQL URL (to use the file again, "
        "rename it back)",
        path.absolute(),
    )


def not_a_file(path: Path) -> StoreError:
    return StoreError(
        f"is a folder; NEWSLETTER_DB names the database file, e.g. {path / 'newsletter.db'}", path
    )


def stamp(moment: dt.datetime | None = None) -> str:
    """A moment as every table keeps it: UTC, ISO 8601 to the second (text on both backends,
    so it sorts and compares as written). Now, unless `moment` is given."""
    moment = dt.datetime.now(dt.UTC) if moment is None else moment.astimezone(dt.UTC)
    return moment.isoformat(timespec="seconds")


def resolve(where: Path | str) -> Path | PgUrl:
    if isinstance(where, PgUrl | Path):
        return where
    return parse_db(where)


def connect(where: Path | str, busy_timeout_ms: int | None = None, *, create: bool = True) -> Db:
    """The database at `where` (a path or a postgresql:// URL), migrated. `busy_timeout_ms`:
    how long a writer waits for another's lock; `create`: whether a missing SQLite file may
    be made (a PostgreSQL database must exist: `createdb`)."""
    where = resolve(where)
    if isinstance(where, PgUrl):
        from . import postgres

        return postgres.connect(where, busy_timeout_ms)
    from .. import db

    return db.connect(where, busy_timeout_ms, create=create)


def is_postgres(where: Path | str) -> bool:
    return isinstance(resolve(where), PgUrl)


__all__ = [
    "CONFLICT", "Busy", "Conflict", "Db", "DbError", "Lost", "PgUrl", "connect", "is_busy",
    "is_postgres", "mask", "parse_db", "resolve", "shown",
]  # fmt: skip
