"""The SQLite schema as an ordered list of migrations: MIGRATIONS[i] brings a file to version
i+1. Each is a numbered SQL file in store/migrations/sqlite/ (PostgreSQL has its own folder,
store/migrations/postgres/, at the same version numbers: see store/migrate.py).

Append only. A released migration is never edited: a file already at its version would not
run the edit. Each script runs in its own transaction (see `db.migrate`).
"""

from __future__ import annotations

from .store.migrate import scripts

MIGRATIONS: list[str] = [script for _, _, script in scripts("sqlite")]

# The migration that gave each list its own id (tests simulate a file from before it).
LIST_IDENTITY = next(s for s in MIGRATIONS if "CREATE TABLE list_identity" in s)
