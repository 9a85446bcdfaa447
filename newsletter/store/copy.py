"""`newsletter db copy`: a SQLite list, whole, into an empty PostgreSQL database.

Every table at the same schema version (the source is migrated first, as any command would),
every row with its id (signed links carry subscriber ids; the list's own id comes along, so
links already mailed keep working), in one transaction: a failure leaves the target as it
was. The identities then continue after the highest id SQLite ever gave (its
sqlite_sequence), so that no id is ever handed out twice. A target that holds anything is
refused: this is a move, never a merge.
"""

from __future__ import annotations

import contextlib
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from ..errors import StoreError
from . import SET_ASIDE, set_aside_instead
from .target import PgUrl, looks_like_a_connection, shown

# Parents before children (deliveries need their send, bounce events their message).
TABLES = (
    "subscribers", "subscriber_events", "subscriber_merges", "consent_texts", "consents",
    "signup_requests", "signup_limits", "sends", "deliveries", "frozen_editions",
    "send_workers", "schedules", "archive_issues", "archive_entries", "list_identity",
    "bounce_messages", "bounce_events", "mailbox_uids",
)  # fmt: skip
# identity columns, and the SQLite table whose AUTOINCREMENT counter they continue
IDENTITIES = {
    "subscribers": "id", "subscriber_events": "id", "consents": "id",
    "signup_requests": "id", "schedules": "id", "bounce_events": "id", "sends": "rowid",
}  # fmt: skip
# rows a new database is made with (the list's random id): replaced by the source's
MADE_WITH = {"list_identity"}


@dataclass(frozen=True)
class Copied:
    rows: dict[str, int]
    aside: Path  # what the SQLite file is called now (see set_aside)

    @property
    def total(self) -> int:
        return sum(self.rows.values())


def _columns_pg(target, table: str) -> list[str]:
    rows = target.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_schema ="
        " current_schema() AND table_name = ? ORDER BY ordinal_position",
        (table,),
    ).fetchall()
    return [r[0] for r in rows]


def _columns_sqlite(source, table: str) -> list[str]:
    return [r[1] for r in source.execute(f"PRAGMA table_info({table})")]


def check_empty(target) -> None:
    held = {}
    for table in TABLES:
        if table in MADE_WITH:
            continue
        n = target.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
        if n:
            held[table] = n
    if held:
        what = ", ".join(f"{n:,} {t}" for t, n in held.items())
        raise StoreError(
            f"{shown(target.where)}: not empty ({what}); db copy fills an empty database "
            "only (it never merges two lists): create a new one (createdb) and point "
            "NEWSLETTER_DB at it"
        )


def set_aside(source_path: Path) -> Path:
    """Rename a copied SQLite file (and its -wal and -shm, if any) so that nothing opens it
    any more: whatever reached it after the copy (an unsubscribe, a signup) would stay there,
    unseen by the database now in use."""
    source_path = Path(source_path)
    aside = source_path.with_name(source_path.name + SET_ASIDE)
    for suffix in ("-wal", "-shm", ""):
        part = source_path.with_name(source_path.name + suffix)
        if part.exists():
            part.rename(aside.with_name(aside.name + suffix))
    return aside


def copy(source_path: Path, target_url: PgUrl) -> Copied:
    """Copy every table of the SQLite file into the (empty) PostgreSQL database, then set
    the file aside. Not while a send or a scheduled send runs on the file: its outcomes
    after the copy began would be missing, and those readers mailed again. The file is read
    in one transaction, so the copy is of one moment. A `serve` must be stopped first: what
    it would write meanwhile waits for that transaction, then goes into the file set aside,
    unseen by PostgreSQL."""
    from .. import db
    from ..ledger import SendBusy, send_lock
    from . import connect

    _check_source(Path(source_path))
    try:
        with send_lock(source_path):
            source = db.connect(source_path, create=False)
            target = connect(target_url)
            try:
                with source.transaction():
                    rows = _copy(source, source_path, target, target_url)
            except sqlite3.Error as exc:
                raise StoreError(f"cannot read it: {exc}", source_path) from None
            finally:
                source.close()
                target.close()
            return Copied(rows, set_aside(source_path))  # before any send may start on it
    except SendBusy as exc:
        holder = exc.message.partition("(")[2].partition(")")[0] or "another process"
        raise StoreError(
            f"a send is running on it ({holder}); copy once it has ended (or stop it: "
            "send resumes from PostgreSQL afterwards)",
            source_path,
        ) from None


def _check_source(path: Path) -> None:
    """Refuse, before anything is opened for writing, what is not a list of ours to copy:
    the file must never be changed (migrated, renamed) unless it is one."""
    if looks_like_a_connection(str(path)):  # not echoed: it may hold a password
        raise StoreError(
            "--from takes the SQLite file to copy (e.g. newsletter.db), not a URL or a "
            "connection string; NEWSLETTER_DB names the PostgreSQL database to fill"
        )
    if not path.is_file():
        copied = set_aside_instead(path)
        if copied is not None:
            raise copied
        raise StoreError("no SQLite database here; give the file to copy with --from", path)
    if path.name.endswith(SET_ASIDE):
        raise StoreError(
            "already copied to PostgreSQL (its name says so); a second copy would make two "
            "lists with the same links. If the first copy is gone, rename the file back first",
            path,
        )
    problem = "not a newsletter list (none of this tool's tables); give --from its newsletter.db"
    try:
        with contextlib.closing(
            sqlite3.connect(f"file:{quote(str(path.absolute()))}?mode=ro", uri=True)
        ) as peek:
            version = peek.execute("PRAGMA user_version").fetchone()[0]
            ours = peek.execute(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'subscribers'"
            ).fetchone()[0]
    except sqlite3.OperationalError as exc:  # there, but cannot be opened (locked, read-only)
        from ..db import describe

        raise describe(exc, path) from None
    except sqlite3.DatabaseError:
        problem = "not a SQLite database; give --from the newsletter.db to copy"
        version = ours = 0
    if not (version and ours):
        raise StoreError(problem, path)


def _copy(source, source_path: Path, target, target_url: PgUrl) -> dict[str, int]:
    check_empty(target)
    rows: dict[str, int] = {}
    with target.transaction():
        for table in TABLES:
            wanted = _columns_pg(target, table)
            have = _columns_sqlite(source, table) + (["rowid"] if table == "sends" else [])
            if sorted(wanted) != sorted(have):
                raise StoreError(
                    f"table {table} differs between the two databases ({sorted(have)} in "
                    f"{source_path}, {sorted(wanted)} in {shown(target_url)}); "
                    "upgrade newsletter on both sides"
                )
            if table in MADE_WITH:
                target.execute(f"DELETE FROM {table}")
            order = " ORDER BY rowid" if table == "sends" else ""  # keeps their order
            select = f"SELECT {', '.join(wanted)} FROM {table}{order}"
            count = 0
            with target.raw.cursor().copy(f"COPY {table} ({', '.join(wanted)}) FROM STDIN") as out:
                for row in source.execute(select):
                    out.write_row(tuple(row))
                    count += 1
            rows[table] = count
        for table, column in IDENTITIES.items():
            used = _highest(source, table, column)
            target.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', '{column}'),"
                " greatest(?::bigint, 1), ?::bigint > 0)",
                (used, used),
            )
    return rows


def _highest(source, table: str, column: str) -> int:
    """The highest id the SQLite file ever gave in `table`, rows deleted since included."""
    top = source.execute(f"SELECT coalesce(max({column}), 0) FROM {table}").fetchone()[0]
    seq = source.execute("SELECT seq FROM sqlite_sequence WHERE name = ?", (table,)).fetchone()
    return max(top, seq[0] if seq else 0)
