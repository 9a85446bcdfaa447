"""Migrations as numbered SQL files, one folder per backend, at the same version numbers.

    migrations/sqlite/0001_subscribers.sql ... 0010_work_queue.sql   (SQLite's whole history)
    migrations/postgres/0010_schema.sql                             (PostgreSQL starts at 10)

A version N means the same schema on either backend; a new migration adds one file to each
folder under the next number. The first PostgreSQL file brings an empty database to its
number at once (there never was an older PostgreSQL schema to upgrade).

Where the version is kept: SQLite's own version slot in the file header (PRAGMA
user_version), which every release reads, so an older one refuses a newer file
(db.migrate); PostgreSQL's `schema_migrations` table, one row per file applied. On
PostgreSQL, a session advisory lock makes hosts that start at the same moment migrate once:
the first applies the files, the others wait and then find the work done.
"""

from __future__ import annotations

import functools
import re
from importlib import resources

from ..errors import StoreError
from .target import shown

# pg_advisory_lock key of the migration lock (any constant; the same on every host)
MIGRATE_LOCK = 0x6E6C_6D69_6772  # "nlmigr"
_NAME = re.compile(r"(\d{4})_([a-z0-9_]+)\.sql")


@functools.cache
def scripts(dialect: str) -> tuple[tuple[int, str, str], ...]:
    """(number, name, SQL) of every migration of a backend, in order."""
    folder = resources.files(__package__) / "migrations" / dialect
    found = []
    for entry in folder.iterdir():
        m = _NAME.fullmatch(entry.name)
        if m:
            found.append((int(m.group(1)), m.group(2), entry.read_text("utf-8")))
    found.sort()
    numbers = [n for n, _, _ in found]
    # after the first, no gap: a missing file would silently skip a schema change
    assert numbers == list(range(numbers[0], numbers[0] + len(numbers))), numbers
    return tuple(found)


def latest(dialect: str) -> int:
    return scripts(dialect)[-1][0]


def newer_than_known(version: int, known: int, where: object) -> StoreError:
    return StoreError(
        f"{shown(where)}: database schema is version {version}, newer than this program "  # type: ignore[arg-type]
        f"knows ({known}); upgrade newsletter"
    )


def _pg_version(db) -> int | None:
    exists = db.execute("SELECT to_regclass('schema_migrations') IS NOT NULL").fetchone()[0]
    if not exists:
        return None
    return db.execute("SELECT coalesce(max(version), 0) FROM schema_migrations").fetchone()[0]


def migrate_postgres(db) -> int:
    """Bring a PostgreSQL database to the latest schema; returns the version."""
    known = latest("postgres")
    version = _pg_version(db)
    db.found_version = version or 0
    if version is not None and version > known:
        raise newer_than_known(version, known, db.where)
    if version == known:
        return version  # every command passes here: one query, no lock
    db.execute("SELECT pg_advisory_lock(?)", (MIGRATE_LOCK,))
    try:
        db.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version integer PRIMARY KEY,"
            " name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        version = _pg_version(db) or 0  # again, under the lock: another host may have done it
        db.found_version = version  # what this one found to do (`db migrate` says it)
        if version > known:
            raise newer_than_known(version, known, db.where)
        if version == 0 and db.execute("SELECT to_regclass('subscribers')").fetchone()[0]:
            raise StoreError(
                f"{shown(db.where)}: this database has a subscribers table but no "
                "schema_migrations: it was not made by this tool; use an empty database"
            )
        for number, name, sql in scripts("postgres"):
            if number <= version:
                continue
            with db.transaction(exclusive=False):
                db.script(sql)
                db.execute(
                    "INSERT INTO schema_migrations (version, name) VALUES (?, ?)", (number, name)
                )
            version = number
    finally:
        db.execute("SELECT pg_advisory_unlock(?)", (MIGRATE_LOCK,))
    return version
