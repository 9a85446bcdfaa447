"""The delivery ledger: who gets an issue, and where each delivery stands.

Never twice for anything recorded as sent: a row is claimed (`sending`, committed) before
its message goes out and marked `sent` after the server's 250. A crash leaves at most the
in-flight rows in `sending`; the next run turns them into `uncertain` and reports them.

On SQLite, one send runs per database at a time (an OS lock beside the file, released even
by SIGKILL). On PostgreSQL several hosts send the same issue at once, and what guards what
is said in `send_lock` below: the ledger's rows guard themselves (a claim locks and skips
what another holds, a lease runs on the database's clock, an outcome is recorded only by
the row's owner), and a send starts once (the `sends` row: a second host is told to join).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import functools
import hashlib
import json
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

from . import store
from .errors import DeliveryError, StoreError, shown_dir
from .store import CONFLICT, Busy, Lost, PgUrl

T = TypeVar("T")
# How long a PostgreSQL worker tries to get its connection back (a restart, a failover)
# before the error stops it; doubling waits from RECONNECT_FIRST up to RECONNECT_MOST.
RECONNECT_FOR = 30.0
RECONNECT_FIRST, RECONNECT_MOST = 0.05, 2.0
# the database's clock, in epoch seconds (PostgreSQL): leases are measured on it, so hosts
# whose clocks disagree still agree on when a lease ran out
PG_NOW = "extract(epoch FROM now())::float8"


class SendBusy(DeliveryError):
    """Another send holds this database."""


class SendStarted(DeliveryError):
    """The send of this issue was started by someone else (another host): join it."""


class State(StrEnum):
    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    DEFERRED = "deferred"  # a temporary refusal; retried at next_attempt until it expires
    FAILED = "failed"
    UNCERTAIN = "uncertain"
    SKIPPED = "skipped"  # unsubscribed (or bounced, complained) before their turn


class Stopped(StrEnum):
    """Why a worker's pass ended before nothing was left for it (send_workers.stopped)."""

    INTERRUPTED = "interrupted"  # Ctrl-C (to it, or to its send)
    TERMINATED = "terminated"  # SIGTERM (to it, or to its send), or its send killed
    PAUSED = "paused"  # failures in a row, or no session could be opened
    FAILED = "failed"  # an error ended it
    STOPPED = "stopped"  # asked to (another worker paused or failed), or its lease ran out


class SendState(StrEnum):
    ACTIVE = "active"  # going, or waiting for retries: `due` carries it on
    HELD = "held"  # stopped by the user (Ctrl-C): only `send` resumes it
    DONE = "done"


# Delivery and Outcome are named tuples, not dataclasses: a send makes one of each per
# message, and a frozen dataclass costs several times as much to build.
class Delivery(NamedTuple):
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


class Outcome(NamedTuple):
    """What happened to one claimed delivery."""

    subscriber_id: int
    state: State  # SENT, FAILED, UNCERTAIN, or DEFERRED (retry at next_attempt)
    reply: str
    next_attempt: float = 0.0


class Claim(NamedTuple):
    rows: list[Delivery]
    cursor: int  # claim from just past this id next; 0: the end was reached
    skipped: int  # rows of people who had left, marked skipped by this claim
    # of the outcomes the claim was given, the rows they were recorded for (still held by
    # the worker); the others' leases had lapsed, and they were turned uncertain meanwhile
    recorded: frozenset[int] = frozenset()


@dataclass(frozen=True)
class SendInfo:
    issue_dir: str
    options: dict
    state: SendState
    started_at: str
    finished_at: str | None


# A row a claim takes (SQLite; given `now`).
_DUE = "state = 'pending' OR (state = 'deferred' AND next_attempt <= ?)"
# The columns a Delivery is read from, in its order: every query that makes one selects
# these (a claim returns them), and _delivery reads them by position.
_CLAIMED = (
    "subscriber_id, email, name, edition, state, attempts, last_reply, message_id,"
    " next_attempt, first_attempt"
)


STOPPED = "claimed by a send that stopped (in flight, or next in line); it may have arrived"
_PG_DROP_GONE = (
    "UPDATE deliveries SET state = 'uncertain', owner = NULL, lease_until = NULL,"
    f" updated_at = ?, last_reply = '{STOPPED}' WHERE issue_id = ? AND state = 'sending'"
    " AND owner = ANY(?::text[])"
)


@functools.cache
def this_machine() -> str:
    """What tells this machine apart beyond its host name: its boot and its PID namespace.
    Two containers that share a host name (`--network host`) each see only their own
    processes, and a pid from before a reboot names no process of now."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        space = os.readlink("/proc/self/ns/pid")
    except OSError:  # not Linux: the host name alone
        return ""
    return hashlib.blake2b(f"{boot} {space}".encode(), digest_size=8).hexdigest()


def process_alive(host: str, pid: int, machine: str) -> bool | None:
    """Whether a worker's process still runs, when it ran on this machine (None: elsewhere,
    unknown here; its lease tells)."""
    if host != socket.gethostname() or machine != this_machine():
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # a process of another user has that pid now: say nothing new
    try:  # a worker killed outright is a zombie until its `send` reaps it, at the end
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _delivery(row: Any) -> Delivery:
    return Delivery(row[0], row[1], row[2], row[3], State(row[4]), *row[5:10])


def _taken(row: Any, now: float) -> Delivery:
    """A row a SQLite claim picked, as its UPDATE left it (the write lock is held from the
    SELECT to the UPDATE: nobody else changed it)."""
    first = now if row[9] is None else row[9]
    return Delivery(row[0], row[1], row[2], row[3], State.SENDING, row[5] + 1, *row[6:9], first)


class Ledger:
    """The ledger of one issue, in the database at `path` (a SQLite file or a postgresql://
    URL); safe to share between threads (one statement at a time on its connection)."""

    def __init__(self, path: Path | str, issue_id: str):
        self.path = store.resolve(path)
        self.issue_id = issue_id
        self.conn = store.connect(self.path)
        self.pg = self.conn.dialect == "postgres"
        self._lock = threading.RLock()
        # PostgreSQL: the rows each worker was handed and has not yet recorded, and whether
        # its last claim died with the connection (its rows, if it committed, are orphans)
        self._handed: dict[str, set[int]] = {}
        self._claim_lost: set[str] = set()
        self._file = None if self.pg else _file_id(self.path)  # type: ignore[arg-type]
        self._queue_fd = None if self.pg else _queue_file(self.path)

    def close(self) -> None:
        self.conn.close()
        if self._queue_fd is not None:
            os.close(self._queue_fd)
            self._queue_fd = None

    def check_in_place(self) -> None:
        """Stop if the database file was moved or deleted: SQLite would go on writing to a
        file nobody can open again, and every outcome from then on would be lost."""
        if self.pg:
            return
        if _file_id(self.path) != self._file:  # type: ignore[arg-type]
            raise StoreError(
                "the database was moved or deleted during the send; put it back, then run "
                "send again (it resumes; messages in flight then are reported uncertain)",
                self.path,
            )

    @contextlib.contextmanager
    def _tx(self) -> Iterator[Any]:
        # SQLite: worker processes queue for the ledger on a file lock before SQLite's own:
        # a lock released wakes the next at once, where SQLite's busy handler sleeps and
        # polls (up to 100 ms a time), which stalled every worker of a busy send.
        with self._lock, _queued(self._queue_fd), self.conn.transaction():
            yield self.conn

    def _queue(self, work: Callable[[Any], T]) -> T:
        """One step of the work queue (claim, mark, renew...). On PostgreSQL each is one
        statement, atomic by itself and taking only the row locks it needs (not the store's
        one-writer lock); a lost connection is opened again, with backoff, and the step
        done again, for up to RECONNECT_FOR seconds. So is a step the server rolled back
        (a deadlock between two claims, each reaping rows the other was marking). Each step
        is safe to repeat: a claim that committed unseen leaves rows that lapse into
        uncertain (never sent twice), and an outcome, a release or a renewal is fenced on
        the owner."""
        if not self.pg:
            with self._tx() as conn:
                return work(conn)
        deadline, delay = time.monotonic() + RECONNECT_FOR, RECONNECT_FIRST
        while True:
            try:
                with self._lock:
                    return work(self.conn)
            except (Lost, StoreError) as exc:
                rolled_back = isinstance(exc, Busy)  # the connection is still good
                if not rolled_back and not isinstance(exc, Lost) and not unreachable(exc):
                    raise
                if time.monotonic() + delay > deadline:
                    if rolled_back:
                        raise
                    raise Lost(
                        f"{exc}; tried again for {RECONNECT_FOR:.0f} s: check that the server"
                        " is running, then run the command again (a send resumes)"
                    ) from None
            time.sleep(delay)
            delay = min(2 * delay, RECONNECT_MOST)
            if not rolled_back:
                with self._lock, contextlib.suppress(StoreError):
                    self.conn.reconnect()

    def _read(self, sql: str, params: tuple | dict = ()) -> list[Any]:
        if self.pg:  # a connection cut meanwhile (a restart) is opened again, as for a claim
            return self._queue(lambda conn: conn.execute(sql, params).fetchall())
        with self._lock:
            return self.conn.execute(sql, params).fetchall()

    # --- the send and its recipient list ---------------------------------------------------

    def started(self) -> bool:
        return bool(self._read("SELECT 1 FROM sends WHERE issue_id = ?", (self.issue_id,)))

    def info(self) -> SendInfo | None:
        rows = self._read("SELECT * FROM sends WHERE issue_id = ?", (self.issue_id,))
        if not rows:
            return None
        row = rows[0]
        return SendInfo(
            issue_dir=row["issue_dir"],
            options=json.loads(row["options"]),
            state=SendState(row["state"]),
            started_at=row["started_at"],
            finished_at=row["finished_at"],
        )

    def start(
        self,
        recipients: Iterable[tuple[int, str, str, str]] | store.Query,
        domain: str,
        issue_dir: str = "",
        options: dict | None = None,
        frozen: Mapping[str, str] | None = None,
    ) -> int:
        """Fix the recipient list from (id, email, name, edition), or from the store's query
        of them (Store.recipients_query), and freeze the editions every message is made of,
        in one commit; returns how many."""
        safe_issue = "".join(c if c.isalnum() or c == "-" else "-" for c in self.issue_id)
        rows: Iterable[tuple] | store.Query
        if isinstance(recipients, store.Query):
            # copied within the database, each Message-ID with a salt drawn there (from the
            # operating system's randomness, as secrets does: a bounce that quotes it is ours)
            ours = {"fill_issue": self.issue_id, "fill_safe": safe_issue, "fill_domain": domain}
            assert not ours.keys() & recipients.params.keys(), recipients.params
            rows = store.Query(
                f"SELECT :fill_issue, id, email, name, edition, '<' || :fill_safe || '.' || id"
                f" || '.' || {_SALT[self.conn.dialect]} || '@' || :fill_domain || '>'"
                f" FROM ({recipients.sql}) AS recipients",
                {**recipients.params, **ours},
            )
        else:  # a generator: 100,000 subscribers never sit in memory at once
            rows = (
                (self.issue_id, sid, email, name, edition, f"<{safe_issue}.{sid}.{salt}@{domain}>")
                for (sid, email, name, edition), salt in zip(recipients, _salts(), strict=False)
            )
        try:
            with self._tx() as conn:
                conn.execute(
                    "INSERT INTO sends (issue_id, started_at, issue_dir, options)"
                    " VALUES (?, ?, ?, ?)",
                    (
                        self.issue_id,
                        store.stamp(),
                        issue_dir,
                        json.dumps(options or {}, sort_keys=True),
                    ),
                )
                return self._fill(conn, rows, frozen)
        except CONFLICT:
            # two hosts started it at the same moment: the other one's commit came first
            where = shown_dir(issue_dir) if issue_dir else "ISSUE"
            raise SendStarted(
                f"the send of issue {self.issue_id} was started meanwhile by another host; "
                f"join it with: newsletter send {where} --join"
            ) from None

    def _fill(
        self, conn: Any, rows: Iterable[tuple] | store.Query, frozen: Mapping[str, str] | None
    ) -> int:
        columns = ("issue_id", "subscriber_id", "email", "name", "edition", "message_id")
        if isinstance(rows, store.Query):
            conn.execute(f"INSERT INTO deliveries ({', '.join(columns)}) {rows.sql}", rows.params)
        elif self.pg:  # COPY: a million rows in seconds, not minutes
            with conn.raw.cursor().copy(
                f"COPY deliveries ({', '.join(columns)}) FROM STDIN"
            ) as copy:
                for row in rows:
                    copy.write_row(row)
        else:
            conn.executemany(
                f"INSERT INTO deliveries ({', '.join(columns)}) VALUES (?, ?, ?, ?, ?, ?)", rows
            )
        if self.pg:
            # Statistics now, not when autovacuum gets to it: until then the planner takes
            # the new rows for a handful, and marked each batch through a scan of them all
            # (9 ms a batch of 50, against 1.5 ms after)
            conn.execute("ANALYZE deliveries")
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
        # one statement: on PostgreSQL it needs no transaction of its own, and is done again
        # on a connection opened anew (the command's own sits idle while workers send)
        sql = (
            "UPDATE sends SET state = ?, finished_at = CASE WHEN ? = 'done'"
            " THEN coalesce(finished_at, ?) END WHERE issue_id = ?"
        )
        params = (state.value, state.value, store.stamp(), self.issue_id)
        self._queue(lambda conn: conn.execute(sql, params))

    def _freeze(self, conn: Any, editions: Mapping[str, str]) -> None:
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
        rows = self._read(
            "SELECT edition, frozen FROM frozen_editions WHERE issue_id = ?", (self.issue_id,)
        )
        return {r[0]: r[1] for r in rows}

    def recover(self) -> int:
        """Rows left in `sending` by a run that died: they may have been delivered.

        On SQLite the send lock says no other send runs, but not that no worker of one does:
        a `send` killed outright leaves its workers finishing the messages in flight, for a
        moment. Their rows are left to them while they run and their lease holds; every
        other such row is a dead run's. On PostgreSQL other hosts may be sending this issue
        now: only rows whose lease has run out are theirs no longer (the same as `reap`)."""
        if self.pg:
            # and at once those of workers of this machine whose process is gone (killed)
            gone = [
                r["worker"]
                for r in self.workers()
                if r["finished_at"] is None
                and process_alive(r["host"], r["pid"], r["machine"]) is False
            ]
            params = (store.stamp(), self.issue_id, gone)
            dropped = (
                self._queue(lambda conn: conn.execute(_PG_DROP_GONE, params).rowcount)
                if gone
                else 0
            )
            return dropped + self.reap()
        running = [
            r["worker"]
            for r in self.workers()
            if r["finished_at"] is None and process_alive(r["host"], r["pid"], r["machine"])
        ]
        with self._tx() as conn:
            cur = conn.execute(
                f"UPDATE {self._rows_in(State.SENDING)} SET state = 'uncertain', updated_at = ?,"
                f" last_reply = '{STOPPED}' WHERE issue_id = ? AND state = 'sending'"
                f" AND (owner NOT IN ({','.join('?' * len(running))}) OR owner IS NULL"
                " OR lease_until < ?)",
                (store.stamp(), self.issue_id, *running, time.time()),
            )
            return cur.rowcount

    def resend_uncertain(self) -> int:
        with self._tx() as conn:
            cur = conn.execute(
                f"UPDATE {self._rows_in(State.UNCERTAIN)} SET state = 'pending',"
                " next_attempt = 0 WHERE issue_id = ? AND state = 'uncertain'",
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
        rows = self._read(
            f"SELECT {_CLAIMED} FROM deliveries WHERE issue_id = ? AND subscriber_id > ?"
            " AND (state = 'pending' OR (state = 'deferred' AND next_attempt <= ?))"
            " ORDER BY subscriber_id LIMIT ?",
            (self.issue_id, after, now, limit + len(exclude)),
        )
        return [_delivery(r) for r in rows if r[0] not in exclude][:limit]

    def count_due(self, now: float | None = None) -> int:
        now = time.time() if now is None else now
        return self._read(
            "SELECT count(*) FROM deliveries WHERE issue_id = ?"
            " AND (state = 'pending' OR (state = 'deferred' AND next_attempt <= ?))",
            (self.issue_id, now),
        )[0][0]

    def start_after(self, fraction: float) -> int:
        """Where a worker's first claim begins: the cursor `fraction` of the way through the
        ids of the rows still to send (0: from the first). Workers that all began at the
        first id leapfrogged, each claim stepping over the rows the others had just taken:
        spread apart, 4 workers claimed and marked a tenth to a quarter more rows a second
        on PostgreSQL (bench/ledger.py, 100,000 rows, runs taking turns). Past the end, a
        worker starts again from the first id, as always, so each still ends up sending
        whatever is left anywhere."""
        if fraction <= 0:
            return 0

        def end(way: str) -> int | None:
            # by the primary key, from that side: a walk that stops at the first row still
            # to send (a min() and max() together walked every row of the issue)
            rows = self._read(
                "SELECT subscriber_id FROM deliveries WHERE issue_id = ?"
                f" AND state IN ('pending', 'deferred') ORDER BY subscriber_id {way} LIMIT 1",
                (self.issue_id,),
            )
            return rows[0][0] if rows else None

        low = end("ASC")
        if low is None:
            return 0
        high = end("DESC") or low
        return low - 1 + int((high - low + 1) * min(fraction, 1.0))

    def next_retry(self) -> float | None:
        """When the earliest deferred row may go again, or None if none is deferred."""
        return self._read(
            "SELECT min(next_attempt) FROM deliveries WHERE issue_id = ? AND state = 'deferred'",
            (self.issue_id,),
        )[0][0]

    def claim(
        self,
        worker: str,
        k: int,
        lease: float,
        after: int = 0,
        now: float | None = None,
        outcomes: Sequence[Outcome] = (),
    ) -> Claim:
        """Claim up to `k` rows that are due, walking forward by id from just past `after`,
        in one commit: each becomes `sending`, owned by `worker` until `now + lease`.
        Returns them, the cursor to claim from next, and how many were skipped. `outcomes`
        of rows the worker holds are recorded first (as `mark` does), in the same commit on
        SQLite: a worker's rows turn over in one commit per batch, not two.

        A row whose subscriber has left meanwhile is marked skipped instead. A cursor of 0
        means the end was reached: the next claim starts again from the first id (the retries
        that came due behind). No transaction stays open while the messages go.

        On PostgreSQL it is one statement: the rows are picked FOR UPDATE SKIP LOCKED (a row
        another worker is claiming is passed over, never waited for), and `now` is the
        database's clock unless given.
        """
        if self.pg:
            outcomes = list(outcomes)
            tries: list[int] = []

            def step(conn: Any) -> Claim:
                tries.append(1)
                return self._claim_pg(conn, worker, k, lease, after, now, outcomes)

            claim = self._queue(step)
            if outcomes and not claim.rows and not claim.skipped:
                # it took no row, so it recorded no outcome (see _PG_CLAIM); unless a try
                # whose answer never came did, and took the rows this one did not find
                recorded = self.mark(worker, outcomes)
                return claim._replace(recorded=_retried(tries, recorded, outcomes))
            self._settled(worker, [o.subscriber_id for o in outcomes])
            return claim._replace(recorded=_retried(tries, claim.recorded, outcomes))
        now = time.time() if now is None else now
        stamp = store.stamp()
        with self._tx() as conn:
            recorded = self._mark_sqlite(conn, worker, outcomes, stamp)
            conn.execute(_SQLITE_REAP, (stamp, self.issue_id, now))  # whoever claims, reaps
            # the rows in id order, each with whether its reader is still subscribed (a
            # lookup by key), then made ours by key: no RETURNING, which SQLite buffers in
            # a temporary table (a fifth of a claim's CPU)
            picked = conn.execute(
                f"SELECT {_CLAIMED}, (SELECT s.status = 'active' FROM subscribers s"
                " WHERE s.id = d.subscriber_id) FROM deliveries d WHERE issue_id = ?"
                f" AND subscriber_id > ? AND ({_DUE}) ORDER BY subscriber_id LIMIT ?",
                (self.issue_id, after, now, k),
            ).fetchall()
            if not picked:
                return Claim([], 0, 0, recorded)
            claimed = [_taken(r, now) for r in picked if r[10]]
            left = [r[0] for r in picked if not r[10]]  # people who have left meanwhile
            if claimed:
                # Mostly every row picked is claimed: they are all the due rows from the
                # first id to the last, and a range takes them at a fifth less CPU than a
                # list of ids (which SQLite sorts into a temporary index first).
                if left:
                    which = f"IN ({','.join('?' * len(claimed))})"
                    bounds = [d.subscriber_id for d in claimed]
                else:
                    which = f"BETWEEN ? AND ? AND ({_DUE})"
                    bounds = [picked[0][0], picked[-1][0], now]
                conn.execute(
                    "UPDATE deliveries SET state = 'sending', owner = ?, lease_until = ?,"
                    " attempts = attempts + 1, first_attempt = coalesce(first_attempt, ?),"
                    f" updated_at = ? WHERE issue_id = ? AND subscriber_id {which}",
                    (worker, now + lease, now, stamp, self.issue_id, *bounds),
                )
            if left:
                conn.execute(
                    "UPDATE deliveries SET state = 'skipped', updated_at = ?,"
                    " last_reply = 'no longer subscribed' WHERE issue_id = ?"
                    f" AND subscriber_id IN ({','.join('?' * len(left))})",
                    (stamp, self.issue_id, *left),
                )
        return Claim(claimed, picked[-1][0], len(left), recorded)

    def _claim_pg(
        self,
        conn: Any,
        worker: str,
        k: int,
        lease: float,
        after: int,
        now: float | None,
        outcomes: Sequence[Outcome],
    ) -> Claim:
        handed = self._handed.setdefault(worker, set())
        if worker in self._claim_lost:
            # The last claim's answer never came (the connection died): if it committed,
            # its rows are ours and nobody was handed them, so no message of theirs can
            # have started. They go back as they were, now, not when their lease runs out.
            conn.execute(
                _RELEASE + " AND NOT (subscriber_id = ANY(?::bigint[]))",
                (self.issue_id, worker, sorted(handed)),
            )
        self._claim_lost.add(worker)
        # one statement, one round trip: the outcomes, the reaping and the claim
        rows = conn.tuples(_PG_CLAIM, {
            "worker": worker, "lease": lease, "now": now, "stamp": store.stamp(),
            "issue": self.issue_id, "after": after, "k": k, **_pg_outcomes(outcomes),
        })  # fmt: skip
        self._claim_lost.discard(worker)
        if not rows:
            return Claim([], 0, 0)  # (nor were the outcomes recorded: see _PG_CLAIM)
        some = rows[0][10]  # None: every outcome was recorded
        recorded = frozenset(o.subscriber_id for o in outcomes) if some is None else frozenset(some)
        claimed = sorted(
            (_delivery(r) for r in rows if r[4] == "sending"), key=lambda d: d.subscriber_id
        )
        handed.update(d.subscriber_id for d in claimed)
        return Claim(claimed, max(r[0] for r in rows), len(rows) - len(claimed), recorded)

    def _settled(self, worker: str, ids: Iterable[int]) -> None:
        self._handed.get(worker, set()).difference_update(ids)

    def mark(self, worker: str, outcomes: Iterable[Outcome]) -> frozenset[int]:
        """Record outcomes in one commit, only where `worker` still holds the row (fenced: a
        row whose lease lapsed was turned uncertain and stays so). Returns the rows recorded."""
        stamp = store.stamp()
        outcomes = list(outcomes)
        if not outcomes:
            return frozenset()
        if self.pg:
            params = {"stamp": stamp, "issue": self.issue_id, "worker": worker,
                      **_pg_outcomes(outcomes)}  # fmt: skip
            tries: list[int] = []

            def step(conn: Any) -> list[Any]:
                tries.append(1)
                return conn.tuples(_PG_MARK, params)

            rows = self._queue(step)
            self._settled(worker, [o.subscriber_id for o in outcomes])
            return _retried(tries, frozenset(r[0] for r in rows), outcomes)
        with self._tx() as conn:
            return self._mark_sqlite(conn, worker, outcomes, stamp)

    def _mark_sqlite(
        self, conn: Any, worker: str, outcomes: Sequence[Outcome], stamp: str
    ) -> frozenset[int]:
        """Inside a write transaction. A worker counts what it recorded, not what it tried
        to: when a row was no longer its own (rare: its lease had lapsed), the marks are
        undone and made again on the rows it still holds, asked first."""
        if not outcomes:
            return frozenset()
        conn.execute("SAVEPOINT marks")
        ids = [o.subscriber_id for o in outcomes]
        if self._marked_sqlite(conn, worker, outcomes, stamp) != len(outcomes):
            conn.execute("ROLLBACK TO marks")
            held: set[int] = set()
            for n in range(0, len(ids), _IDS_AT_ONCE):
                some = ids[n : n + _IDS_AT_ONCE]
                held.update(r[0] for r in conn.execute(
                    "SELECT subscriber_id FROM deliveries WHERE issue_id = ?"
                    f" AND +state = 'sending' AND owner = ? AND subscriber_id IN"
                    f" ({','.join('?' * len(some))})",
                    (self.issue_id, worker, *some),
                ))  # fmt: skip
            outcomes = [o for o in outcomes if o.subscriber_id in held]
            ids = [o.subscriber_id for o in outcomes]
            self._marked_sqlite(conn, worker, outcomes, stamp)
        conn.execute("RELEASE marks")
        return frozenset(ids)

    def _marked_sqlite(
        self, conn: Any, worker: str, outcomes: Sequence[Outcome], stamp: str
    ) -> int:
        """One UPDATE for each state in the batch (mostly one: sent), each row's reply (and
        retry time, where they differ) picked by a CASE on its id: three quarters of the
        CPU of joining the rows to a VALUES list, half of one UPDATE an outcome
        (executemany). Returns the rows changed."""
        kinds: dict[str, list[Outcome]] = {}
        for o in outcomes:
            kinds.setdefault(o.state, []).append(o)
        done = 0
        for state, alike in kinds.items():
            for n in range(0, len(alike), _MARKS_AT_ONCE):
                some = alike[n : n + _MARKS_AT_ONCE]
                replies = [x for o in some for x in (o.subscriber_id, o.reply[:500])]
                ids = replies[::2]
                retry, retries = "?", [some[0].next_attempt]
                if any(o.next_attempt != retries[0] for o in some):  # deferred, each its own
                    retry = _by_id(len(some))
                    retries = [x for o in some for x in (o.subscriber_id, o.next_attempt)]
                lo, hi = min(ids), max(ids)
                if hi - lo < 4 * len(ids):
                    # close together (mostly the rows of one claim): the rows between the
                    # first and last id are walked, the outcomes' picked by a CASE (a tenth
                    # less CPU than looking up each id of a list)
                    which = f"BETWEEN ? AND ? AND {_by_id(len(ids), '1')}"
                    keys = [lo, hi, *ids]
                else:
                    which, keys = f"IN ({','.join('?' * len(ids))})", ids
                done += conn.execute(
                    f"UPDATE deliveries SET updated_at = ?, state = ?, next_attempt = {retry},"
                    f" owner = NULL, lease_until = NULL, last_reply = {_by_id(len(some))}"
                    " WHERE issue_id = ?"
                    f" AND +state = 'sending' AND owner = ? AND subscriber_id {which}",
                    (stamp, state, *retries, *replies, self.issue_id, worker, *keys),
                ).rowcount
        return done

    def release(self, worker: str, subscriber_ids: Iterable[int]) -> None:
        """Give back claimed rows whose message no server took (never sent, or its sender
        refused at MAIL): as they were, no attempt counted (fenced on the owner, so never a
        row someone else holds)."""
        ids = list(subscriber_ids)
        if not ids:
            return
        back = _RELEASE
        if self.pg:
            self._queue(
                lambda conn: conn.execute(
                    back + " AND subscriber_id = ANY(?::bigint[])", (self.issue_id, worker, ids)
                )
            )
            self._settled(worker, ids)
            return
        with self._tx() as conn:
            conn.executemany(
                back + " AND subscriber_id = ?", [(self.issue_id, worker, sid) for sid in ids]
            )

    def renew(self, worker: str, lease: float, now: float | None = None) -> None:
        """Extend the leases of every row `worker` holds, and say it is alive."""
        if self.pg:
            params: dict[str, Any] = {
                "now": now, "lease": lease, "issue": self.issue_id, "worker": worker
            }  # fmt: skip
            sql = _PG_RENEW
            with self._lock:
                # by the ids it holds (the primary key), unless a claim's answer was lost:
                # then rows it was never handed may be its own, found by owner
                if worker not in self._claim_lost:
                    sql, params["ids"] = _PG_RENEW_HELD, sorted(self._handed.get(worker, ()))
            self._queue(lambda conn: conn.execute(sql, params))
            return
        now = time.time() if now is None else now
        with self._tx() as conn:
            conn.execute(
                "UPDATE deliveries INDEXED BY deliveries_sending SET lease_until = ?"
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
        if not self.pg:
            with self._tx() as conn:
                stamp = (store.stamp(), self.issue_id, time.time() if now is None else now)
                return conn.execute(_SQLITE_REAP, stamp).rowcount
        params = {"stamp": store.stamp(), "issue": self.issue_id, "now": now}
        return self._queue(lambda conn: conn.execute(_PG_REAP, params).rowcount)

    # --- the workers -----------------------------------------------------------------------

    def join(self, worker: str, host: str, pid: int, now: float | None = None) -> None:
        """Say a worker takes part: `host` and `pid` name its process (on this machine)."""
        machine = this_machine()
        if self.pg:
            params = {"issue": self.issue_id, "worker": worker, "host": host, "pid": pid,
                      "machine": machine, "now": now}  # fmt: skip
            self._queue(lambda conn: conn.execute(_PG_JOIN, params))
            return
        now = time.time() if now is None else now
        with self._tx() as conn:
            conn.execute(
                "INSERT INTO send_workers (issue_id, worker, host, pid, machine, started_at,"
                " seen_at) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (issue_id, worker)"
                " DO UPDATE SET seen_at = excluded.seen_at, finished_at = NULL, stopped = ''",
                (self.issue_id, worker, host, pid, machine, now, now),
            )

    def tally(
        self, worker: str, progress: dict[str, int], finished: bool = False, stopped: str = ""
    ) -> None:
        """Add a worker's counts since its last tally (status shows each worker's share);
        `finished`: its pass is over, `stopped` says why if it ended early (a Stopped)."""
        clock = PG_NOW if self.pg else "?"
        now: tuple = () if self.pg else (time.time(),)
        sql = (
            "UPDATE send_workers SET sent = sent + ?, failed = failed + ?,"
            f" deferred = deferred + ?, uncertain = uncertain + ?, seen_at = {clock},"
            f" finished_at = CASE WHEN ? THEN {clock} END, stopped = ?"
            " WHERE issue_id = ? AND worker = ?"
        )
        params = (
            progress.get("sent", 0),
            progress.get("failed", 0),
            progress.get("deferred", 0),
            progress.get("uncertain", 0),
            *now,
            finished,
            *now,
            stopped,
            self.issue_id,
            worker,
        )
        self._queue(lambda conn: conn.execute(sql, params))

    def workers(self) -> list[Any]:
        return self._read(
            "SELECT * FROM send_workers WHERE issue_id = ? ORDER BY started_at, worker",
            (self.issue_id,),
        )

    def live_workers(self, within: float) -> list[Any]:
        """Workers of this send not finished and seen within `within` seconds (by the
        database's clock on PostgreSQL): someone is sending it now. Those of this machine
        whose process is gone (killed) are not: known at once, not when the lease lapses."""
        clock = PG_NOW if self.pg else "?"
        now: tuple = () if self.pg else (time.time(),)
        rows = self._read(
            "SELECT * FROM send_workers WHERE issue_id = ? AND finished_at IS NULL"
            f" AND seen_at > {clock} - ? ORDER BY started_at, worker",
            (self.issue_id, *now, within),
        )
        return [r for r in rows if process_alive(r["host"], r["pid"], r["machine"]) is not False]

    def holding(self) -> dict[str, int]:
        """How many rows each worker holds (`sending`) now."""
        rows = self._read(
            f"SELECT owner, count(*) FROM {self._rows_in(State.SENDING)} WHERE issue_id = ?"
            " AND state = 'sending' AND owner IS NOT NULL GROUP BY owner",
            (self.issue_id,),
        )
        return {r[0]: r[1] for r in rows}

    def clock(self) -> float:
        """The time by the database's clock (PostgreSQL), or this machine's (SQLite)."""
        if not self.pg:
            return time.time()
        return self._read(f"SELECT {PG_NOW}")[0][0]

    # --- reports -------------------------------------------------------------------------

    def counts(self) -> dict[tuple[str, State], int]:
        rows = self._read(
            "SELECT edition, state, count(*) FROM deliveries WHERE issue_id = ?"
            " GROUP BY edition, state",
            (self.issue_id,),
        )
        return {(r[0], State(r[1])): r[2] for r in rows}

    def in_state(self, *states: State, limit: int = -1) -> list[Delivery]:
        # the states written out, not bound: a partial index (one state each: sending,
        # deferred, failed, uncertain) serves a query only if its WHERE says that state
        if not states:
            return []
        wanted = " OR ".join(f"state = '{State(s).value}'" for s in states)
        rows = self._read(
            f"SELECT {_CLAIMED} FROM {self._rows_in(*states)} WHERE issue_id = ? AND ({wanted})"
            " ORDER BY next_attempt, subscriber_id" + (" LIMIT ?" if limit >= 0 else ""),
            (self.issue_id, *([limit] if limit >= 0 else [])),
        )
        return [_delivery(r) for r in rows]

    def _rows_in(self, *states: State) -> str:
        """The table, on SQLite through the partial index of the one state asked for, if it
        has one: without statistics, its planner walked every row of the issue instead."""
        if self.pg or len(states) != 1 or states[0] not in _INDEXED_STATES:
            return "deliveries"
        return f"deliveries INDEXED BY deliveries_{states[0].value}"

    def sent_within(self, seconds: float, most: int) -> list[float]:
        """How long ago, in seconds, each of the last `most` messages sent from this database
        within the last `seconds` (every issue) was sent, the longest ago first."""
        now = dt.datetime.now(dt.UTC)
        since = store.stamp(now - dt.timedelta(seconds=seconds))
        rows = self._read(
            "SELECT updated_at FROM deliveries WHERE state = 'sent' AND updated_at >= ?"
            " ORDER BY updated_at DESC LIMIT ?",
            (since, most),
        )
        ages = [(now - dt.datetime.fromisoformat(r[0])).total_seconds() for r in rows]
        return [max(0.0, age) for age in reversed(ages)]


# A row given back unattempted (its message never reached a server), fenced on its owner.
# (the planner would walk every row of the issue without the index named)
REAPED = "in flight when its worker stopped (its lease ran out); it may have arrived"
# the states with a partial index of their own (schema 13)
_INDEXED_STATES = frozenset({State.SENDING, State.DEFERRED, State.FAILED, State.UNCERTAIN})
_SQLITE_REAP = (
    "UPDATE deliveries INDEXED BY deliveries_sending SET state = 'uncertain', owner = NULL,"
    f" lease_until = NULL, updated_at = ?, last_reply = '{REAPED}' WHERE issue_id = ?"
    " AND state = 'sending' AND lease_until < ?"
)
_RELEASE = (
    "UPDATE deliveries SET attempts = attempts - 1, owner = NULL, lease_until = NULL,"
    " state = CASE WHEN attempts > 1 THEN 'deferred' ELSE 'pending' END,"
    " first_attempt = CASE WHEN attempts > 1 THEN first_attempt END"
    " WHERE issue_id = ? AND state = 'sending' AND owner = ?"
)

# The PostgreSQL statements of the work queue. `now` is the caller's clock when given (tests),
# else the database's. The claim picks its rows in id order from the cursor, skipping those
# another worker is locking, and in the same statement marks each `sending` (ours, with a
# lease) or `skipped` (the reader left). The pick is a MATERIALIZED CTE, run once: as a
# subquery in FROM the planner may rescan it for each row updated, and each rescan would
# lock k more rows past the ones this very statement just changed.
_NOW = f"coalesce(:now::float8, {PG_NOW})"


def _pg_outcomes(outcomes: Sequence[Outcome]) -> dict[str, str]:
    """Outcomes as the four arrays _PG_MARK reads: one statement for a whole batch. Each is
    sent as one array literal made here: psycopg adapting four lists, element by element,
    took half of a claim's CPU in the sending process."""
    return {
        "ids": _pg_array([str(o.subscriber_id) for o in outcomes]),
        "states": _pg_array([o.state.value for o in outcomes]),
        "replies": _pg_array([_pg_quoted(o.reply[:500]) for o in outcomes]),
        "nexts": _pg_array([repr(float(o.next_attempt)) for o in outcomes]),
    }


def _pg_array(elements: list[str]) -> str:
    return "{" + ",".join(elements) + "}"


def _pg_quoted(text: str) -> str:
    """One element of an array literal, whatever it holds. PostgreSQL's text has no NUL: a
    server that replied with one still gets its reply recorded, without it."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\x00", "")
    return '"' + escaped + '"'


def _by_id(n: int, then: str = "?") -> str:
    """A value for each of n ids, picked by the row's id (its parameters: id, value, ...;
    or ids alone, when `then` is a constant); NULL for an id not among them."""
    return f"CASE subscriber_id{f' WHEN ? THEN {then}' * n} END"


_IDS_AT_ONCE = 500  # ids in one SQLite statement (it takes 32,766 values since 3.32)
# outcomes in one: each row's reply is looked for in a CASE of them all, so CPU a row grows
# with their number (a fifth more at 125 than at 64)
_MARKS_AT_ONCE = 64

# The claim's own parts (see _PG_CLAIM below): the rows picked, and each made ours.
_PG_PICK = f"""
p AS MATERIALIZED (
    -- a correlated lookup by key for each row, never an EXISTS: with statistics saying the
    -- subscribers are few (a list just imported), the planner hashed all of them each claim
    SELECT q.subscriber_id,
           coalesce((SELECT s.status = 'active' FROM subscribers s
                     WHERE s.id = q.subscriber_id), false) AS active
    FROM deliveries q
    WHERE q.issue_id = :issue AND q.subscriber_id > :after
      AND (q.state = 'pending' OR (q.state = 'deferred' AND q.next_attempt <= {_NOW}))
    ORDER BY q.subscriber_id
    LIMIT :k
    FOR UPDATE OF q SKIP LOCKED
)"""
_PG_TAKE = f"""
UPDATE deliveries d SET
    state = CASE WHEN p.active THEN 'sending' ELSE 'skipped' END,
    owner = CASE WHEN p.active THEN :worker END,
    lease_until = CASE WHEN p.active THEN {_NOW} + :lease END,
    attempts = d.attempts + CASE WHEN p.active THEN 1 ELSE 0 END,
    first_attempt = CASE WHEN p.active THEN coalesce(d.first_attempt, {_NOW})
                         ELSE d.first_attempt END,
    last_reply = CASE WHEN p.active THEN d.last_reply ELSE 'no longer subscribed' END,
    updated_at = :stamp
FROM p
WHERE d.issue_id = :issue AND d.subscriber_id = p.subscriber_id
RETURNING {", ".join(f"d.{c.strip()}" for c in _CLAIMED.split(","))},
    -- the outcomes recorded: NULL when all were (as nearly always), else their ids
    CASE WHEN (SELECT count(*) FROM marked) <> cardinality(:ids::bigint[])
         THEN ARRAY(SELECT subscriber_id FROM marked) END
"""

# Each row by its primary key. `state || ''`: not through deliveries_sending, whose entries
# of rows long since marked stay until a vacuum; a bitmap scan of it read all of them (20 ms
# a mark, 100,000 rows into a send, and growing).
_PG_MARK_ROWS = """
UPDATE deliveries d SET state = v.state, last_reply = v.reply, next_attempt = v.next_attempt,
    updated_at = :stamp, owner = NULL, lease_until = NULL
FROM unnest(:ids::bigint[], :states::text[], :replies::text[], :nexts::float8[])
    AS v (subscriber_id, state, reply, next_attempt)
WHERE d.issue_id = :issue AND d.subscriber_id = v.subscriber_id
  AND d.state || '' = 'sending' AND d.owner = :worker"""
_PG_MARK = _PG_MARK_ROWS + "\nRETURNING d.subscriber_id"
# What reap() does, by the database's clock unless `now` is given.
_PG_REAP = f"""
UPDATE deliveries SET state = 'uncertain', owner = NULL, lease_until = NULL,
    updated_at = :stamp, last_reply = '{REAPED}'
WHERE issue_id = :issue AND state = 'sending' AND lease_until < {_NOW}
"""
# A claim on PostgreSQL, in one statement and one round trip: the worker's outcomes so far
# are recorded, lapsed leases reaped (whoever claims, reaps), and k rows taken. Each part
# touches its own rows: the reaping passes over the rows being marked (a row of a worker
# that froze past its lease and woke: its outcome is known, and recorded, as on SQLite;
# PostgreSQL would apply only one of two changes to one row, and the reaping's first).
# The outcomes are recorded only when rows are taken: the answer (the rows taken, each
# saying which outcomes were recorded) is then never empty, and a claim that takes none
# leaves them to mark(), which says it. (Returning the marked rows beside the taken ones,
# UNION ALL, cost a fifth of the claims a second with 4 workers: bench/ledger.py.)
_PG_CLAIM = f"""WITH {_PG_PICK},
marked AS ({_PG_MARK_ROWS} AND EXISTS (SELECT FROM p)
    RETURNING d.subscriber_id),
reaped AS ({_PG_REAP} AND NOT (subscriber_id = ANY(:ids::bigint[])))
{_PG_TAKE}"""
# deliveries_sending keeps the entries of rows long since marked until a vacuum: found by
# owner through it, a renewal read them all (as the mark did, see _PG_MARK)
_PG_RENEW_HELD = f"""
WITH held AS (
    UPDATE deliveries SET lease_until = {_NOW} + :lease
    WHERE issue_id = :issue AND subscriber_id = ANY(:ids::bigint[]) AND owner = :worker
      AND state || '' = 'sending'
)
UPDATE send_workers SET seen_at = {_NOW} WHERE issue_id = :issue AND worker = :worker
"""
_PG_RENEW = f"""
WITH held AS (
    UPDATE deliveries SET lease_until = {_NOW} + :lease
    WHERE issue_id = :issue AND owner = :worker AND state = 'sending'
)
UPDATE send_workers SET seen_at = {_NOW} WHERE issue_id = :issue AND worker = :worker
"""
_PG_JOIN = f"""
INSERT INTO send_workers (issue_id, worker, host, pid, machine, started_at, seen_at)
VALUES (:issue, :worker, :host, :pid, :machine, {_NOW}, {_NOW})
ON CONFLICT (issue_id, worker) DO UPDATE SET seen_at = excluded.seen_at, finished_at = NULL,
    stopped = ''
"""


def _retried(tries: list[int], recorded: frozenset[int], outcomes: list[Outcome]) -> frozenset[int]:
    """What a PostgreSQL step recorded, as far as the worker can tell: a step done again (its
    connection lost) finds the rows a try whose answer never came had recorded no longer
    held, so it cannot tell those from rows refused; all are counted then, as before."""
    return recorded if len(tries) < 2 else frozenset(o.subscriber_id for o in outcomes)


def unreachable(exc: Exception) -> bool:
    """A failure to connect again (the server still down), as opposed to a refusal."""
    return "cannot reach the server" in str(exc) or "lost the connection" in str(exc)


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


# 12 random hex digits, drawn by the database: SQLite's randomness is ChaCha20 seeded by the
# operating system (since 3.40), PostgreSQL's gen_random_uuid its strong random source
_SALT = {
    "sqlite": "lower(hex(randomblob(6)))",
    "postgres": "left(replace(gen_random_uuid()::text, '-', ''), 12)",
}


def _salts(batch: int = 4096) -> Iterator[str]:
    """Random 12-hex-digit strings, drawn from the system a batch at a time."""
    while True:
        drawn = secrets.token_hex(6 * batch)
        for n in range(0, len(drawn), 12):
            yield drawn[n : n + 12]


def _file_id(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def unfinished(path: Path | str) -> list[tuple[str, SendInfo]]:
    """Every send not done, with what `due` needs to carry it on."""
    return [(issue_id, info) for issue_id, info in sends(path) if info.state != SendState.DONE]


def sends(path: Path | str) -> list[tuple[str, SendInfo]]:
    """Every send of this database, oldest first."""
    conn = store.connect(path)
    try:
        rows = conn.execute("SELECT issue_id FROM sends ORDER BY started_at, issue_id").fetchall()
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


# pg_try_advisory_lock key of the send lock on PostgreSQL (the same on every host)
SEND_LOCK = 0x6E6C_7365_6E64  # "nlsend"


def totals(path: Path | str) -> dict[str, dict[State, int]]:
    """Each send's rows by state (one pass over the ledger), for an overview of them all."""
    conn = store.connect(path)
    try:
        rows = conn.execute(
            "SELECT issue_id, state, count(*) FROM deliveries GROUP BY issue_id, state"
        ).fetchall()
    finally:
        conn.close()
    out: dict[str, dict[State, int]] = {}
    for issue_id, state, n in rows:
        out.setdefault(issue_id, {})[State(state)] = n
    return out


@contextlib.contextmanager
def send_lock(db_path: Path | str, joinable: bool = False) -> Iterator[None]:
    """Who may send now; the lock goes when the process dies.

    SQLite: one send at a time per database file, whatever `joinable` says (an OS lock
    beside the file). PostgreSQL: a session advisory lock, held shared by every host taking
    part in a send (`joinable`: `send`, `send --join`), taken whole only by what must run
    alone (`due`, and `status` before it relabels rows): a `due` started on any host while
    some host sends does nothing, as on one machine. What keeps two hosts from mailing
    anyone twice is not this lock but the ledger's rows (see the module's docstring)."""
    where = store.resolve(db_path)
    if isinstance(where, PgUrl):
        with _pg_send_lock(where, joinable):
            yield
        return
    # the real file: the same database through a symlink or another relative path is one lock
    lock_path = Path(f"{os.path.realpath(where)}.send-lock")
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
                where,
            ) from None
        with contextlib.suppress(OSError):  # who holds it, for the message above; a full
            os.ftruncate(fd, 0)  # disk must not stop the send here: it says so itself later
            os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)


@contextlib.contextmanager
def _pg_send_lock(url: PgUrl, shared: bool) -> Iterator[None]:
    conn = store.connect(url)  # its own session: the lock lives as long as it does
    try:
        how = "_shared" if shared else ""
        got = conn.execute(f"SELECT pg_try_advisory_lock{how}(?)", (SEND_LOCK,)).fetchone()[0]
        if not got:
            raise SendBusy(
                "a send is running on this database (on this host or another); "
                + (
                    "wait for the command that runs alone (due) to end"
                    if shared
                    else "wait for it to end, or join it with send --join"
                )  # fmt: skip
            )
        yield
    finally:
        conn.close()
