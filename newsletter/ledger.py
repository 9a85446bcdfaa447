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
import os
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from . import db
from .errors import DeliveryError


class State(StrEnum):
    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"
    UNCERTAIN = "uncertain"
    SKIPPED = "skipped"  # unsubscribed (or bounced, complained) before their turn


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


@dataclass(frozen=True)
class Outcome:
    """What happened to one claimed delivery."""

    subscriber_id: int
    state: State  # SENT, FAILED, UNCERTAIN, or PENDING (retry at next_attempt)
    reply: str
    next_attempt: float = 0.0


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
    )


class Ledger:
    """The ledger of one issue in the SQLite file; safe to share between threads."""

    def __init__(self, path: Path | str, issue_id: str):
        self.path = Path(path)
        self.issue_id = issue_id
        self.conn = db.connect(self.path)
        self._lock = threading.Lock()

    def close(self) -> None:
        self.conn.close()

    @contextlib.contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock, db.transaction(self.conn):
            yield self.conn

    # --- the recipient list --------------------------------------------------------------

    def started(self) -> bool:
        row = self.conn.execute("SELECT 1 FROM sends WHERE issue_id = ?", (self.issue_id,))
        return row.fetchone() is not None

    def start(self, recipients: Iterable[tuple[int, str, str, str]], domain: str) -> int:
        """Fix the recipient list from (id, email, name, edition); returns how many."""
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
                "INSERT INTO sends (issue_id, started_at) VALUES (?, ?)", (self.issue_id, _now())
            )
            conn.executemany(
                "INSERT INTO deliveries (issue_id, subscriber_id, email, name, edition,"
                " message_id) VALUES (?, ?, ?, ?, ?, ?)",
                rows,
            )
            count = conn.execute(
                "SELECT count(*) FROM deliveries WHERE issue_id = ?", (self.issue_id,)
            ).fetchone()[0]
        return count

    def recover(self) -> int:
        """Rows left in `sending` by a run that died: they may have been delivered."""
        with self._tx() as conn:
            cur = conn.execute(
                "UPDATE deliveries SET state = 'uncertain', updated_at = ?,"
                " last_reply = 'in flight when a previous send stopped; it may have arrived'"
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

    def finish(self) -> None:
        with self._tx() as conn:
            conn.execute(
                "UPDATE sends SET finished_at = ? WHERE issue_id = ?", (_now(), self.issue_id)
            )

    # --- the work ------------------------------------------------------------------------

    def due(
        self, limit: int, exclude: set[int] | frozenset[int] = frozenset(), after: int = 0
    ) -> list[Delivery]:
        """Pending rows whose time has come, by subscriber id, from just past `after`.

        Paging by id keeps each batch as cheap at the end of a long send as at its start.
        """
        with self._lock:
            rows = self.conn.execute(
                "SELECT * FROM deliveries WHERE issue_id = ? AND subscriber_id > ?"
                " AND state = 'pending' AND next_attempt <= ? ORDER BY subscriber_id LIMIT ?",
                (self.issue_id, after, time.time(), limit + len(exclude)),
            ).fetchall()
        return [_delivery(r) for r in rows if r["subscriber_id"] not in exclude][:limit]

    def next_retry(self) -> float | None:
        """When the earliest pending row may go, or None if nothing is pending."""
        row = self.conn.execute(
            "SELECT min(next_attempt) FROM deliveries WHERE issue_id = ? AND state = 'pending'",
            (self.issue_id,),
        ).fetchone()
        return row[0]

    def record(self, outcome: Outcome | None, claim: int | None) -> bool:
        """Record an outcome and claim the next row, in one commit.

        The claim succeeds only for a pending row whose subscriber is still active; a
        subscriber who left meanwhile is marked skipped. Returns whether the claim holds.
        """
        claimed = False
        with self._tx() as conn:
            now = _now()
            if outcome is not None:
                conn.execute(
                    "UPDATE deliveries SET state = ?, last_reply = ?, next_attempt = ?,"
                    " updated_at = ? WHERE issue_id = ? AND subscriber_id = ?"
                    " AND state = 'sending'",
                    (
                        outcome.state.value,
                        outcome.reply[:500],
                        outcome.next_attempt,
                        now,
                        self.issue_id,
                        outcome.subscriber_id,
                    ),
                )
            if claim is not None:
                cur = conn.execute(
                    "UPDATE deliveries SET state = 'sending', attempts = attempts + 1,"
                    " updated_at = ? WHERE issue_id = ? AND subscriber_id = ?"
                    " AND state = 'pending' AND EXISTS (SELECT 1 FROM subscribers s"
                    " WHERE s.id = deliveries.subscriber_id AND s.status = 'active')",
                    (now, self.issue_id, claim),
                )
                claimed = cur.rowcount == 1
                if not claimed:
                    conn.execute(
                        "UPDATE deliveries SET state = 'skipped', updated_at = ?,"
                        " last_reply = 'no longer subscribed' WHERE issue_id = ?"
                        " AND subscriber_id = ? AND state = 'pending'",
                        (now, self.issue_id, claim),
                    )
        return claimed

    # --- reports -------------------------------------------------------------------------

    def counts(self) -> dict[tuple[str, State], int]:
        rows = self.conn.execute(
            "SELECT edition, state, count(*) FROM deliveries WHERE issue_id = ?"
            " GROUP BY edition, state",
            (self.issue_id,),
        )
        return {(r[0], State(r[1])): r[2] for r in rows}

    def in_state(self, *states: State) -> list[Delivery]:
        marks = ",".join("?" * len(states))
        rows = self.conn.execute(
            f"SELECT * FROM deliveries WHERE issue_id = ? AND state IN ({marks})"
            " ORDER BY subscriber_id",
            (self.issue_id, *[s.value for s in states]),
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


@contextlib.contextmanager
def send_lock(db_path: Path) -> Iterator[None]:
    """One send at a time per database; the OS drops the lock when the process dies."""
    lock_path = Path(f"{db_path}.send-lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            raise DeliveryError(
                f"another send is running on this database (process {holder}); wait for it "
                "or stop it first",
                db_path,
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)
