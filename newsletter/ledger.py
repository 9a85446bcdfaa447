"""The delivery ledger: who gets an issue, and where each delivery stands.

Never twice for anything recorded as sent: a row is claimed (`sending`, committed) before
its message goes out and marked `sent` after the server's 250. A crash leaves at most the
in-flight rows in `sending`; the next run turns them into `uncertain` and reports them.
Only one send runs per database at a time (an OS lock, released even by SIGKILL).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import os
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import NamedTuple

from . import db
from .errors import DeliveryError, StoreError


class SendBusy(DeliveryError):
    """Another send holds this database."""


class State(StrEnum):
    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    DEFERRED = "deferred"  # a temporary refusal; retried at next_attempt until it expires
    FAILED = "failed"
    UNCERTAIN = "uncertain"
    SKIPPED = "skipped"  # unsubscribed (or bounced, complained) before their turn


class SendState(StrEnum):
    ACTIVE = "active"  # going, or waiting for retries: `due` carries it on
    HELD = "held"  # stopped by the user (Ctrl-C): only `send` resumes it
    DONE = "done"


@dataclass(frozen=True)
class Delivery:
    subscriber_id: int
    email: str
    name: str
    edition: str
    state: State
    attempts: int
    last_reply: str
    message_id: str
    next_attempt: float = 0.0
    first_attempt: float | None = None


@dataclass(frozen=True)
class Outcome:
    """What happened to one claimed delivery."""

    subscriber_id: int
    state: State  # SENT, FAILED, UNCERTAIN, or DEFERRED (retry at next_attempt)
    reply: str
    next_attempt: float = 0.0


class Claim(NamedTuple):
    rows: list[Delivery]
    cursor: int  # claim from just past this id next; 0: the end was reached
    skipped: int  # rows of people who had left, marked skipped by this claim


@dataclass(frozen=True)
class SendInfo:
    issue_dir: str
    options: dict
    state: SendState
    started_at: str
    finished_at: str | None


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def _delivery(row: sqlite3.Row) -> Delivery:
    return Delivery(
        subscriber_id=row["subscriber_id"],
        email=row["email"],
        name=row["name"],
        edition=row["edition"],
        state=State(row["state"]),
        attempts=row["attempts"],
        last_reply=row["last_reply"],
        message_id=row["message_id"],
        next_attempt=row["next_attempt"],
        first_attempt=row["first_attempt"],
    )


class Ledger:
    """The ledger of one issue in the SQLite file; safe to share between threads."""

    def __init__(self, path: Path | str, issue_id: str):
        self.path = Path(path)
        self.issue_id = issue_id
        self.conn = db.connect(self.path)
        self._lock = threading.Lock()
        self._file = _file_id(self.path)
        self._queue_fd = _queue_file(self.path)

    def close(self) -> None:
        self.conn.close()
        if self._queue_fd is not None:
            os.close(self._queue_fd)
            self._queue_fd = None

    def check_in_place(self) -> None:
        """Stop if the database file was moved or deleted: SQLite would go on writing to a
        file nobody can open again, and every outcome from then on would be lost."""
        if _file_id(self.path) != self._file:
            raise StoreError(
                "the database was moved or deleted during the send; put it back, then run "
                "send again (it resumes; messages in flight then are reported uncertain)",
                self.path,
            )

    @contextlib.contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        # Worker processes queue for the ledger on a file lock before SQLite's own: a lock
        # released wakes the next at once, where SQLite's busy handler sleeps and polls
        # (up to 100 ms a time), which stalled every worker of a busy send.
        with self._lock, _queued(self._queue_fd), db.transaction(self.conn):
            yield self.conn

    # --- the send and its recipient list ---------------------------------------------------

    def started(self) -> bool:
        row = self.conn.execute("SELECT 1 FROM sends WHERE issue_id = ?", (self.issue_id,))
        return row.fetchone() is not None

    def info(self) -> SendInfo | None:
        row = self.conn.execute(
            "SELECT * FROM sends WHERE issue_id = ?", (self.issue_id,)
        ).fetchone()
        if row is None:
            return None
        return SendInfo(
            issue_dir=row["issue_dir"],
            options=json.loads(row["options"]),
            state=SendState(row["state"]),
            started_at=row["started_at"],
            finished_at=row["finished_at"],
        )

    def start(
        self,
        recipients: Iterable[tuple[int, str, str, str]],
        domain: str,
        issue_dir: str = "",
        options: dict | None = None,
        frozen: Mapping[str, str] | None = None,
    ) -> int:
        """Fix the recipient list from (id, email, name, edition) and freeze the editions
        every message is made of, in one commit; returns how many."""
        safe_issue = "".join(c if c.isalnum() or c == "-" else "-" for c in self.issue_id)
        # a generator: 100,000 subscribers never sit in memory at once
        rows = (
            (
                self.issue_id,
                sid,
                email,
                name,
                edition,
                f"<{safe_issue}.{sid}.{secrets.token_hex(6)}@{domain}>",
            )
            for sid, email, name, edition in recipients
        )
        with self._tx() as conn:
            conn.execute(
                "INSERT INTO sends (issue_id, started_at, issue_dir, options) VALUES (?, ?, ?, ?)",
                (self.issue_id, _now(), issue_dir, json.dumps(options or {}, sort_keys=True)),
            )
            conn.executemany(
                "INSERT INTO deliveries (issue_id, subscriber_id, email, name, edition,"
                " message_id) VALUES (?, ?, ?, ?, ?, ?)",
                rows,
            )
            count = conn.execute(
                "SELECT count(*) FROM deliveries WHERE issue_id = ?", (self.issue_id,)
            ).fetchone()[0]
            if frozen is not None:
                self._freeze(conn, frozen)
        return count

    def set_options(self, options: dict) -> None:
        with self._tx() as conn:
            conn.execute(
                "UPDATE sends SET options = ? WHERE issue_id = ?",
                (json.dumps(options, sort_keys=True), self.issue_id),
            )

    def set_state(self, state: SendState) -> None:
        with self._tx() as conn:
            conn.execute(
                "UPDATE sends SET state = ?, finished_at = CASE WHEN ? = 'done'"
                " THEN coalesce(finished_at, ?) END WHERE issue_id = ?",
                (state.value, state.value, _now(), self.issue_id),
            )

    def _freeze(self, conn: sqlite3.Connection, editions: Mapping[str, str]) -> None:
        conn.execute("DELETE FROM frozen_editions WHERE issue_id = ?", (self.issue_id,))
        conn.executemany(
            "INSERT INTO frozen_editions (issue_id, edition, frozen) VALUES (?, ?, ?)",
            [(self.issue_id, name, data) for name, data in editions.items()],
        )

    def refreeze(self, editions: Mapping[str, str]) -> None:
        """Replace the frozen editions (a resume with --rebuild)."""
        with self._tx() as conn:
            self._freeze(conn, editions)

    def frozen(self) -> dict[str, str]:
        rows = self.conn.execute(
            "SELECT edition, frozen FROM frozen_editions WHERE issue_id = ?", (self.issue_id,)
        )
        return {r[0]: r[1] for r in rows}

    def recover(self) -> int:
        """Rows left in `sending` by a run that died: they may have been delivered."""
        with self._tx() as conn:
            cur = conn.execute(
                "UPDATE deliveries SET state = 'uncertain', updated_at = ?,"
                " last_reply = 'claimed by a send that stopped (in flight, or next in line);"
                " it may have arrived'"
                " WHERE issue_id = ? AND state = 'sending'",
                (_now(), self.issue_id),
            )
            return cur.rowcount

    def resend_uncertain(self) -> int:
        with self._tx() as conn:
            cur = conn.execute(
                "UPDATE deliveries SET state = 'pending', next_attempt = 0"
                " WHERE issue_id = ? AND state = 'uncertain'",
                (self.issue_id,),
            )
            return cur.rowcount

    # --- the work ------------------------------------------------------------------------

    def due(
        self,
        limit: int,
        exclude: set[int] | frozenset[int] = frozenset(),
        after: int = 0,
        now: float | None = None,
    ) -> list[Delivery]:
        """Pending rows, and deferred ones whose time has come, by id from just past `after`.

        Paging by id keeps each batch as cheap at the end of a long send as at its start.
        """
        now = time.time() if now is None else now
        with self._lock:
            rows = self.conn.execute(
                "SELECT * FROM deliveries WHERE issue_id = ? AND subscriber_id > ?"
                " AND (state = 'pending' OR (state = 'deferred' AND next_attempt <= ?))"
                " ORDER BY subscriber_id LIMIT ?",
                (self.issue_id, after, now, limit + len(exclude)),
            ).fetchall()
        return [_delivery(r) for r in rows if r["subscriber_id"] not in exclude][:limit]

    def count_due(self, now: float | None = None) -> int:
        now = time.time() if now is None else now
        return self.conn.execute(
            "SELECT count(*) FROM deliveries WHERE issue_id = ?"
            " AND (state = 'pending' OR (state = 'deferred' AND next_attempt <= ?))",
            (self.issue_id, now),
        ).fetchone()[0]

    def next_retry(self) -> float | None:
        """When the earliest deferred row may go again, or None if none is deferred."""
        row = self.conn.execute(
            "SELECT min(next_attempt) FROM deliveries WHERE issue_id = ? AND state = 'deferred'",
            (self.issue_id,),
        ).fetchone()
        return row[0]

    def claim(
        self, worker: str, k: int, lease: float, after: int = 0, now: float | None = None
    ) -> Claim:
        """Claim up to `k` rows that are due, walking forward by id from just past `after`,
        in one commit: each becomes `sending`, owned by `worker` until `now + lease`.
        Returns them, the cursor to claim from next, and how many were skipped.

        A row whose subscriber has left meanwhile is marked skipped instead. A cursor of 0
        means the end was reached: the next claim starts again from the first id (the retries
        that came due behind). No transaction stays open while the messages go.
        """
        now = time.time() if now is None else now
        stamp = _now()
        with self._tx() as conn:
            self._reap(conn, now)  # in the same commit: whoever claims, reaps
            ids = [
                r[0]
                for r in conn.execute(
                    "SELECT subscriber_id FROM deliveries WHERE issue_id = ? AND subscriber_id > ?"
                    " AND (state = 'pending' OR (state = 'deferred' AND next_attempt <= ?))"
                    " ORDER BY subscriber_id LIMIT ?",
                    (self.issue_id, after, now, k),
                )
            ]
            if not ids:
                return Claim([], 0, 0)
            marks = ",".join("?" * len(ids))
            skipped = conn.execute(
                "UPDATE deliveries SET state = 'skipped', updated_at = ?,"
                " last_reply = 'no longer subscribed' WHERE issue_id = ?"
                f" AND subscriber_id IN ({marks}) AND NOT EXISTS (SELECT 1 FROM subscribers s"
                " WHERE s.id = deliveries.subscriber_id AND s.status = 'active')",
                (stamp, self.issue_id, *ids),
            ).rowcount
            rows = conn.execute(
                "UPDATE deliveries SET state = 'sending', owner = ?, lease_until = ?,"
                " attempts = attempts + 1, first_attempt = coalesce(first_attempt, ?),"
                f" updated_at = ? WHERE issue_id = ? AND subscriber_id IN ({marks})"
                # `+state`: by the primary key, not by walking every pending row's index entry
                " AND +state IN ('pending', 'deferred') RETURNING *",
                (worker, now + lease, now, stamp, self.issue_id, *ids),
            ).fetchall()
        claimed = sorted((_delivery(r) for r in rows), key=lambda d: d.subscriber_id)
        return Claim(claimed, ids[-1], skipped)

    def mark(self, worker: str, outcomes: Iterable[Outcome]) -> int:
        """Record outcomes in one commit, only where `worker` still holds the row (fenced: a
        row whose lease lapsed was turned uncertain and stays so). Returns how many held."""
        stamp = _now()
        with self._tx() as conn:
            before = conn.total_changes
            conn.executemany(
                "UPDATE deliveries SET state = ?, last_reply = ?, next_attempt = ?,"
                " updated_at = ?, owner = NULL, lease_until = NULL WHERE issue_id = ?"
                " AND subscriber_id = ? AND state = 'sending' AND owner = ?",
                [
                    (
                        o.state.value,
                        o.reply[:500],
                        o.next_attempt,
                        stamp,
                        self.issue_id,
                        o.subscriber_id,
                        worker,
                    )
                    for o in outcomes
                ],
            )
            return conn.total_changes - before

    def release(self, worker: str, subscriber_ids: Iterable[int]) -> None:
        """Give back claimed rows whose message never reached a server: as they were, no
        attempt counted (fenced on the owner, so never a row someone else holds)."""
        with self._tx() as conn:
            conn.executemany(
                "UPDATE deliveries SET attempts = attempts - 1, owner = NULL, lease_until = NULL,"
                " state = CASE WHEN attempts > 1 THEN 'deferred' ELSE 'pending' END,"
                " first_attempt = CASE WHEN attempts > 1 THEN first_attempt END"
                " WHERE issue_id = ? AND subscriber_id = ? AND state = 'sending' AND owner = ?",
                [(self.issue_id, sid, worker) for sid in subscriber_ids],
            )

    def renew(self, worker: str, lease: float, now: float | None = None) -> None:
        """Extend the leases of every row `worker` holds, and say it is alive."""
        now = time.time() if now is None else now
        with self._tx() as conn:
            conn.execute(
                "UPDATE deliveries INDEXED BY deliveries_state SET lease_until = ?"
                " WHERE issue_id = ? AND owner = ? AND state = 'sending'",
                (now + lease, self.issue_id, worker),
            )
            conn.execute(
                "UPDATE send_workers SET seen_at = ? WHERE issue_id = ? AND worker = ?",
                (now, self.issue_id, worker),
            )

    def reap(self, now: float | None = None) -> int:
        """Rows whose lease lapsed (their worker died or froze): they may have gone, so they
        become uncertain, never pending. Returns how many."""
        with self._tx() as conn:
            return self._reap(conn, time.time() if now is None else now)

    def _reap(self, conn: sqlite3.Connection, now: float) -> int:
        return conn.execute(
            # (the planner would walk every row of the issue without the hint)
            "UPDATE deliveries INDEXED BY deliveries_state SET state = 'uncertain',"
            " owner = NULL, lease_until = NULL, updated_at = ?, last_reply = 'in flight when"
            " its worker stopped (its lease ran out); it may have arrived' WHERE issue_id = ?"
            " AND state = 'sending' AND lease_until < ?",
            (_now(), self.issue_id, now),
        ).rowcount

    # --- the workers -----------------------------------------------------------------------

    def join(self, worker: str, host: str, pid: int, now: float | None = None) -> None:
        now = time.time() if now is None else now
        with self._tx() as conn:
            conn.execute(
                "INSERT INTO send_workers (issue_id, worker, host, pid, started_at, seen_at)"
                " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (issue_id, worker) DO UPDATE SET"
                " seen_at = excluded.seen_at, finished_at = NULL",
                (self.issue_id, worker, host, pid, now, now),
            )

    def tally(self, worker: str, progress: dict[str, int], finished: bool = False) -> None:
        """Add a worker's counts since its last tally (status shows each worker's share)."""
        with self._tx() as conn:
            conn.execute(
                "UPDATE send_workers SET sent = sent + ?, failed = failed + ?,"
                " deferred = deferred + ?, uncertain = uncertain + ?, seen_at = ?,"
                " finished_at = CASE WHEN ? THEN ? END WHERE issue_id = ? AND worker = ?",
                (
                    progress.get("sent", 0),
                    progress.get("failed", 0),
                    progress.get("deferred", 0),
                    progress.get("uncertain", 0),
                    time.time(),
                    finished,
                    time.time(),
                    self.issue_id,
                    worker,
                ),
            )

    def workers(self) -> list[sqlite3.Row]:
        return self.conn.execute(
            "SELECT * FROM send_workers WHERE issue_id = ? ORDER BY started_at, worker",
            (self.issue_id,),
        ).fetchall()

    # --- reports -------------------------------------------------------------------------

    def counts(self) -> dict[tuple[str, State], int]:
        rows = self.conn.execute(
            "SELECT edition, state, count(*) FROM deliveries WHERE issue_id = ?"
            " GROUP BY edition, state",
            (self.issue_id,),
        )
        return {(r[0], State(r[1])): r[2] for r in rows}

    def in_state(self, *states: State, limit: int = -1) -> list[Delivery]:
        marks = ",".join("?" * len(states))
        rows = self.conn.execute(
            f"SELECT * FROM deliveries WHERE issue_id = ? AND state IN ({marks})"
            " ORDER BY next_attempt, subscriber_id LIMIT ?",
            (self.issue_id, *[s.value for s in states], limit),
        )
        return [_delivery(r) for r in rows]

    def sent_since(self, seconds: float) -> int:
        """Messages sent from this database within the last `seconds` (every issue)."""
        since = (dt.datetime.now(dt.UTC) - dt.timedelta(seconds=seconds)).isoformat(
            timespec="seconds"
        )
        row = self.conn.execute(
            "SELECT count(*) FROM deliveries WHERE state = 'sent' AND updated_at >= ?", (since,)
        ).fetchone()
        return row[0]


def _queue_file(path: Path) -> int | None:
    """The file whose lock orders the ledger's writers (None where it cannot be made: then
    SQLite's busy handler alone orders them, slower but as safe)."""
    try:
        return os.open(f"{os.path.realpath(path)}.ledger-lock", os.O_RDWR | os.O_CREAT, 0o600)
    except OSError:
        return None


@contextlib.contextmanager
def _queued(fd: int | None) -> Iterator[None]:
    if fd is None:
        yield
        return
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)


def _file_id(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def unfinished(path: Path | str) -> list[tuple[str, SendInfo]]:
    """Every send not done, with what `due` needs to carry it on."""
    conn = db.connect(path)
    try:
        rows = conn.execute(
            "SELECT issue_id FROM sends WHERE state != 'done' ORDER BY started_at"
        ).fetchall()
    finally:
        conn.close()
    out = []
    for (issue_id,) in rows:
        ledger = Ledger(path, issue_id)
        try:
            info = ledger.info()
        finally:
            ledger.close()
        if info is not None:
            out.append((issue_id, info))
    return out


@contextlib.contextmanager
def send_lock(db_path: Path) -> Iterator[None]:
    """One send at a time per database; the OS drops the lock when the process dies."""
    # the real file: the same database through a symlink or another relative path is one lock
    lock_path = Path(f"{os.path.realpath(db_path)}.send-lock")
    try:
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise StoreError(
            f"cannot create the send lock: {exc.strerror}; check that its folder is writable",
            lock_path,
        ) from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            raise SendBusy(
                f"another send is running on this database (process {holder}); wait for it "
                "or stop it first",
                db_path,
            ) from None
        with contextlib.suppress(OSError):  # who holds it, for the message above; a full
            os.ftruncate(fd, 0)  # disk must not stop the send here: it says so itself later
            os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)
