"""The SQLite side of the store (see store/__init__.py): the file shared by the subscriber
store, the ledger and everything else; connect, migrate, transactions."""

from __future__ import annotations

import os
import shutil
import sqlite3
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from .errors import StoreError
from .normalise import check_email, email_key_v1
from .schema import MIGRATIONS
from .store import errors as store_errors
from .store import not_a_file, set_aside_instead

# How long a connection waits for another process's write lock before it gives up with
# "database is locked". An import of a large list holds the lock for a quarter of a minute;
# a command started meanwhile should wait for it rather than fail.
BUSY_TIMEOUT_MS = 30_000


class SqliteDb:
    """A sqlite3 connection behind the store's interface (store/__init__.py). Its statements
    go straight to sqlite3 (`execute` is the connection's own): the embedded default pays
    nothing for the boundary."""

    dialect = "sqlite"
    found_version = 0  # the schema's version when opened, before migrating (0: none yet)

    def __init__(self, raw: sqlite3.Connection, path: Path):
        self.raw = raw
        self.where = path
        self.execute = raw.execute
        self.executemany = raw.executemany

    @property
    def in_transaction(self) -> bool:
        return self.raw.in_transaction

    def transaction(self, commit: bool = True, exclusive: bool = True):
        """BEGIN IMMEDIATE (SQLite has one writer at a time whatever `exclusive` says)."""
        return transaction(self.raw, commit)

    def script(self, sql: str) -> None:
        for statement in _statements(sql):
            self.raw.execute(statement)

    def close(self) -> None:
        self.raw.close()

    def __getattr__(self, name: str):
        return getattr(self.raw, name)  # the rest of sqlite3's connection (total_changes...)


def connect(
    path: Path | str, busy_timeout_ms: int | None = None, *, create: bool = True
) -> SqliteDb:
    """Open (creating if needed, unless not `create`) the database at `path`, WAL mode,
    migrated to the latest schema.

    The connection is in autocommit mode (`isolation_level=None`): callers open transactions
    explicitly with `BEGIN IMMEDIATE`, so that a writer takes the lock before it reads and two
    processes never both decide on stale data. It waits `busy_timeout_ms` (by default
    BUSY_TIMEOUT_MS) for another writer's lock.
    """
    path = Path(path)
    if busy_timeout_ms is None:
        busy_timeout_ms = BUSY_TIMEOUT_MS
    if path.is_dir():
        raise not_a_file(path)
    copied = set_aside_instead(path)
    if copied is not None:
        raise copied
    if not create and not path.is_file():
        raise StoreError("no database here; check NEWSLETTER_DB", path)
    # Processes opening a new file at the same moment can find each other holding SQLite's
    # locks in a way its busy handler does not wait out (one is told at once): try again.
    deadline = time.monotonic() + busy_timeout_ms / 1000
    while True:
        try:
            return _open(path, busy_timeout_ms, create)
        except sqlite3.OperationalError as exc:
            if not is_busy(exc):
                raise
            if time.monotonic() > deadline:
                raise StoreError(
                    "the database is busy: another newsletter command is writing to it; "
                    "run this again when that one ends",
                    path,
                ) from None
            time.sleep(0.02)


def _open(path: Path, busy_timeout_ms: int, create: bool) -> SqliteDb:
    conn: sqlite3.Connection | None = None
    try:
        if create:
            path.parent.mkdir(parents=True, exist_ok=True)
            _create_private(path)
        # mode=rw never creates the file, even if it vanishes after the check above.
        target = path if create else f"file:{urllib.parse.quote(str(path.absolute()))}?mode=rw"
        # check_same_thread=False: the web app may open a store in one worker thread and use
        # it in another. A connection must still not be used by two threads at once.
        conn = sqlite3.connect(
            target,
            timeout=busy_timeout_ms / 1000,
            isolation_level=None,
            check_same_thread=False,
            uri=not create,
        )
        conn.row_factory = sqlite3.Row
        _refuse_foreign(conn, path)
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        conn.execute("PRAGMA foreign_keys = ON")
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if mode.lower() != "wal":  # pragma: no cover - e.g. a network file system
            raise StoreError(
                f"cannot use WAL journal mode (got {mode}); put it on a local disk", path
            )
        conn.execute("PRAGMA synchronous = NORMAL")  # safe with WAL; a commit survives a crash
        conn.create_function("nl_ascii_email", 1, _ascii_email, deterministic=True)
        # migration 3's key, as it was when that migration was written
        conn.create_function("nl_email_key", 1, email_key_v1, deterministic=True)
        found = conn.execute("PRAGMA user_version").fetchone()[0]
        migrate(conn, path)
        opened = SqliteDb(conn, path)
        opened.found_version = found
        return opened
    except BaseException as exc:
        if conn is not None:
            conn.close()
        if isinstance(exc, sqlite3.OperationalError):
            if is_busy(exc):
                raise  # connect() tries again
            raise describe(exc, path) from None
        if isinstance(exc, sqlite3.DatabaseError):  # e.g. "file is not a database"
            raise StoreError(
                f"cannot open the database: {exc}; check the path in NEWSLETTER_DB", path
            ) from None
        if isinstance(exc, OSError):
            raise StoreError(f"cannot create the database: {exc.strerror}", path) from None
        raise


def _create_private(path: Path) -> None:
    """Create the file readable by its owner only: it holds people's addresses. SQLite gives
    the -wal and -shm files the mode of the database file, so they follow."""
    with suppress(FileExistsError):
        os.close(os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600))


def describe(exc: sqlite3.Error, path: Path | str) -> StoreError:
    """One line for a database that cannot be written or read any more (disk full, a
    read-only folder, a file that vanished); the ledger itself stays as it was."""
    text = str(exc).lower()
    if "full" in text or ("i/o" in text and _nearly_full(Path(path))):
        problem = "the disk is full; free some space and run this again (nothing was lost)"
    elif "readonly" in text or "read-only" in text:
        problem = "cannot write to the database (read-only); check the file and its folder"
    elif (
        "unable to open" in text
        and Path(path).parent.is_dir()
        and not os.access(Path(path).parent, os.W_OK)
    ):
        problem = (
            "cannot open the database: its folder is read-only, and SQLite keeps its journal "
            "(-wal, -shm) beside the file; make the folder writable"
        )
    elif "unable to open" in text or "no such table" in text:
        problem = "cannot open the database; check that it and its folder are still there"
    else:
        problem = f"the database failed: {exc}; check the disk, then run this again"
    return StoreError(problem, path)


def _nearly_full(path: Path) -> bool:
    """SQLite reports a full disk under its -shm file as a mere I/O error."""
    try:
        return shutil.disk_usage(path.parent).free < 1024 * 1024
    except OSError:
        return False


def _ascii_email(email: str) -> str:
    """The address as the store keeps it (see normalise.check_email), or as it was."""
    try:
        return check_email(email)
    except ValueError:
        return email


def is_busy(exc: BaseException) -> bool:
    """Whether `exc` means another connection held the lock for the whole wait (either
    backend: see store/errors.py)."""
    return store_errors.is_busy(exc)


def _refuse_foreign(conn: sqlite3.Connection | SqliteDb, path: Path | str | None) -> None:
    """Every version of ours sets user_version with its tables: tables without it are
    another program's, and the file is left exactly as it was (not even set to WAL)."""
    # one statement, one snapshot: another process may be making this very file, and its
    # first migration's tables and version bump are one commit
    version, tables, ours = conn.execute(
        "SELECT (SELECT user_version FROM pragma_user_version),"
        " (SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite%'),"
        " (SELECT count(*) FROM sqlite_master WHERE type = 'table'"
        "   AND name IN ('subscribers', 'subscriber_events', 'deliveries'))"
    ).fetchone()
    if version or not tables:
        return
    if ours == 3:  # a list of ours that lost its version: sqlite3's .dump does not keep it
        raise StoreError(
            "has this tool's tables but no schema version (restored from a .dump?); "
            "restore it from the file itself, or from sqlite3's .backup, which keep it",
            path,
        )
    raise StoreError(
        "holds tables but not this tool's schema: it was made by another program; "
        "give another file in NEWSLETTER_DB (it was left as it was)",
        path,
    )


def migrate(conn: sqlite3.Connection | SqliteDb, path: Path | str | None = None) -> int:
    """Bring the schema to the latest version, one transaction per migration; return the version."""
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version == 0:
        _refuse_foreign(conn, path)
    if version > len(MIGRATIONS):
        raise StoreError(
            f"database schema is version {version}, newer than this program knows "
            f"({len(MIGRATIONS)}); upgrade newsletter",
            path,
        )
    for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
        # Not executescript(): it commits before running, which would split the schema change
        # from the version bump. BEGIN IMMEDIATE plus the re-check below makes two processes
        # opening a new file at the same moment safe: the second finds the work done.
        conn.execute("BEGIN IMMEDIATE")
        try:
            if conn.execute("PRAGMA user_version").fetchone()[0] >= number:
                conn.execute("COMMIT")
                continue
            for statement in _statements(script):
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {number}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    return max(version, len(MIGRATIONS))


@contextmanager
def transaction(conn: sqlite3.Connection | SqliteDb, commit: bool = True) -> Iterator[None]:
    """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK on error or when `commit` is false.

    IMMEDIATE takes the write lock at the start, so a read-then-write in the block cannot be
    overtaken by another process. Inside an open transaction it joins the outer one, so
    helpers can be called as parts of a larger change.
    """
    if not isinstance(conn, sqlite3.Connection):
        with conn.transaction(commit):  # a store connection, of either backend
            yield
        return
    if conn.in_transaction:
        yield
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT" if commit else "ROLLBACK")


def _statements(script: str) -> list[str]:
    """Split a migration into complete statements (sqlite3 runs one per execute())."""
    statements, current = [], ""
    for line in script.splitlines(keepends=True):
        current += line
        if sqlite3.complete_statement(current):
            if current.strip():
                statements.append(current)
            current = ""
    if current.strip():
        statements.append(current)
    return statements
