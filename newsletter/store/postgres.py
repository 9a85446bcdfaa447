"""The PostgreSQL side of the store: a psycopg (3) connection that speaks as the SQLite one
does, so that the same SQL serves both.

- `?` and `:name` placeholders are rewritten to psycopg's `%s` and `%(name)s` once per
  statement text (cached); a literal `%` is doubled.
- Rows answer by position and by column name, as sqlite3.Row does.
- `transaction()` is BEGIN plus a transaction-level advisory lock: one writer at a time over
  the whole list, which is what SQLite's BEGIN IMMEDIATE gives and what every read-then-write
  in the store relies on. `transaction(exclusive=False)` takes no such lock: the ledger's
  work queue (claim, mark, renew) relies on its row locks instead, so hosts never queue
  behind each other there.
- Errors become ours (store/errors.py); a failure to connect is one line naming
  NEWSLETTER_DB with its password masked.

psycopg is imported here only, and only for a postgresql:// URL.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from ..errors import StoreError
from .errors import Busy, Conflict, DbError, Lost
from .target import PgUrl, shown, without_password

# pg_advisory_xact_lock key of the one-writer lock (any constant; the same on every host)
WRITE_LOCK = 0x6E6C_7772_6974  # "nlwrit"
CONNECT_TIMEOUT = 10  # seconds


def _psycopg():
    try:
        import psycopg
    except ImportError:
        raise StoreError(
            "NEWSLETTER_DB names a PostgreSQL server, and psycopg is not installed: "
            "install the tool's postgres extra (in its checkout: pip install -e '.[postgres]')"
        ) from None
    return psycopg


# --- placeholders ----------------------------------------------------------------------------

# a quoted string, a quoted name, a comment: copied as they are; else ?, :name or %
_TOKENS = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|--[^\n]*|::|\?|:([A-Za-z_]\w*)|%")
_cache: dict[str, str] = {}


def translate(sql: str) -> str:
    """The statement with psycopg's placeholders (only for a statement given parameters:
    without them psycopg reads the text as it is)."""
    done = _cache.get(sql)
    if done is None:

        def one(m: re.Match) -> str:
            token = m.group(0)
            if token == "?":
                return "%s"
            if token == "%":
                return "%%"
            if m.group(1):
                return f"%({m.group(1)})s"
            if token[0] in "'\"-":  # psycopg reads % even in a quoted string or a comment
                return token.replace("%", "%%")
            return token

        done = _cache[sql] = _TOKENS.sub(one, sql)
    return done


# --- rows --------------------------------------------------------------------------------------


class Row(tuple):
    """A row by position and by name; `dict(row)` gives the columns (as sqlite3.Row)."""

    __slots__ = ()
    _index: dict[str, int] = {}

    def __getitem__(self, key):  # type: ignore[override]
        if isinstance(key, str):
            return tuple.__getitem__(self, self._index[key])
        return tuple.__getitem__(self, key)

    def keys(self) -> list[str]:
        return list(self._index)


_row_classes: dict[tuple[str, ...], type[Row]] = {}


def _row_factory(cursor):
    description = cursor.description
    if description is None:
        return tuple
    names = tuple(c.name for c in description)
    cls = _row_classes.get(names)
    if cls is None:
        cls = _row_classes[names] = type(
            "Row", (Row,), {"__slots__": (), "_index": {n: i for i, n in enumerate(names)}}
        )
    return cls


def _tuple_row(cursor):
    return tuple


# --- the connection ------------------------------------------------------------------------


class PgDb:
    """One connection to the server, in autocommit mode: a statement outside `transaction()`
    is its own transaction. Not to be used by two threads at once."""

    dialect = "postgres"
    found_version = 0  # the schema's version when opened, before migrating (0: none yet)

    def __init__(self, url: PgUrl, lock_timeout_ms: int | None = None):
        self.where = url
        self.lock_timeout_ms = lock_timeout_ms
        self._depth = 0
        self.raw = self._open()

    def _open(self):
        psycopg = _psycopg()
        try:
            raw = psycopg.connect(
                str(self.where),
                autocommit=True,
                connect_timeout=CONNECT_TIMEOUT,
                application_name="newsletter",
            )
        except psycopg.Error as exc:
            problem = f"{shown(self.where)}: {without_password(_connect_problem(exc), self.where)}"
            raise StoreError(problem, *self.where.origin) from None
        raw.row_factory = _row_factory
        # psycopg prepares a statement run often; PostgreSQL may then plan it once for any
        # parameters, and the ledger's are skewed (one issue of a million rows, another
        # done): a claim planned for "any issue" sorted the whole issue, seconds each
        raw.execute("SET plan_cache_mode = force_custom_plan")
        if self.lock_timeout_ms:
            raw.execute(f"SET lock_timeout = {int(self.lock_timeout_ms)}")
        return raw

    def reconnect(self) -> None:
        """A new session after the server went away (what was not committed is gone)."""
        with contextlib.suppress(Exception):
            self.raw.close()
        self._depth = 0
        self.raw = self._open()

    def close(self) -> None:
        self.raw.close()

    @property
    def in_transaction(self) -> bool:
        return self._depth > 0

    def execute(self, sql: str, params: Sequence[Any] | dict | None = ()) -> Any:
        try:
            if params or isinstance(params, dict):
                return self.raw.execute(translate(sql), params)
            return self.raw.execute(sql)
        except Exception as exc:
            raise self._ours(exc) from exc

    def tuples(self, sql: str, params: Sequence[Any] | dict) -> list[tuple]:
        """All the rows as plain tuples, over the binary protocol: for a statement run for
        every batch of a send, whose rows are read by position (no names, no text parsing)."""
        try:
            cursor = self.raw.cursor(row_factory=_tuple_row)
            return cursor.execute(translate(sql), params, binary=True).fetchall()
        except Exception as exc:
            raise self._ours(exc) from exc

    def executemany(self, sql: str, rows: Iterable[Sequence[Any] | dict]) -> Any:
        cursor = self.raw.cursor()
        try:
            cursor.executemany(translate(sql), rows)
        except Exception as exc:
            raise self._ours(exc) from exc
        return cursor

    def script(self, sql: str) -> None:
        """Several statements, no parameters (a migration)."""
        self.execute(sql)

    @contextlib.contextmanager
    def transaction(self, commit: bool = True, exclusive: bool = True) -> Iterator[None]:
        """BEGIN ... COMMIT (ROLLBACK on error or when not `commit`). `exclusive`: one writer
        at a time over the whole database, as SQLite's BEGIN IMMEDIATE. Inside an open
        transaction it joins the outer one."""
        if self._depth:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        self.execute("BEGIN")
        self._depth = 1
        try:
            if exclusive:
                self.execute("SELECT pg_advisory_xact_lock(?)", (WRITE_LOCK,))
            yield
        except BaseException:
            self._depth = 0
            with contextlib.suppress(Exception):
                self.raw.execute("ROLLBACK")
            raise
        self._depth = 0
        self.execute("COMMIT" if commit else "ROLLBACK")

    def _ours(self, exc: Exception) -> Exception:
        psycopg = _psycopg()
        if not isinstance(exc, psycopg.Error):
            return exc
        errors = psycopg.errors
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if isinstance(exc, psycopg.IntegrityError) or getattr(exc, "sqlstate", "") == "23000":
            return Conflict(message)
        if isinstance(exc, errors.LockNotAvailable | errors.DeadlockDetected |
                      errors.SerializationFailure | errors.QueryCanceled):  # fmt: skip
            return Busy(
                f"{shown(self.where)}: the database is busy ({message}): another newsletter "
                "command is writing to it; run this again when that one ends"
            )
        if self.raw.closed or self.raw.broken or isinstance(exc, psycopg.OperationalError):
            return Lost(f"{shown(self.where)}: lost the connection to the server ({message})")
        return DbError(f"{shown(self.where)}: the database failed: {message}")


def _connect_problem(exc: Exception) -> str:
    """What went wrong, for a person; libpq's words only when they are not one of these."""
    text = str(exc).strip()
    low = text.lower()
    if "no password supplied" in low:
        return (
            "the server wants a password and none was given; put it in the URL "
            "(user:password@), or in PGPASSWORD or ~/.pgpass"
        )
    if "password authentication failed" in low:
        return "the server refused the login; check the user and the password"
    if "authentication failed" in low or "pg_hba.conf" in low:
        return "the server refused this user from here (authentication); check pg_hba.conf"
    if "database" in low and "does not exist" in low:
        return "no such database on the server; create it (createdb), or check its name"
    if "role" in low and "does not exist" in low:
        return "no such user on the server; check the user name"
    if "translate host name" in low or "name or service not known" in low:
        return "unknown host; check the host name"
    if any(w in low for w in ("connection refused", "no such file", "timeout", "timed out",
                              "could not connect", "network is unreachable")):  # fmt: skip
        return "cannot reach the server; check the host and port, and that it is running"
    if "percent-encoded" in low or "unexpected spaces" in low:
        return (
            f"cannot read the URL ({text.splitlines()[-1]}); in it, write % as %25 and a "
            "space as %20 (and / ? # @ : as %2F %3F %23 %40 %3A)"
        )
    if "invalid" in low and ("dsn" in low or "uri" in low or "connection option" in low):
        return f"cannot read the URL ({text.splitlines()[-1]}); write postgresql://user@host/db"
    return text.splitlines()[-1] if text else type(exc).__name__


def connect(url: PgUrl, lock_timeout_ms: int | None = None) -> PgDb:
    """A connection, the schema migrated (see migrate.py)."""
    from .migrate import migrate_postgres

    db = PgDb(url, lock_timeout_ms)
    try:
        migrate_postgres(db)
    except BaseException:
        db.close()
        raise
    return db
