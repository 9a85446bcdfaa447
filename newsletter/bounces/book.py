"""Match a report to one of our deliveries, record it once, take people off the list.

A report is matched, in this order, by our bounce token in the address it was delivered to
(VERP), by its DSN envelope id, by a token in the headers of our message that came back, or
by that message's Message-ID in the ledger; what matched is recorded. A report that carries
a token that is not ours (forged, damaged) or too old is never acted on, and neither is
one that names an address and nothing else.

Each message is one commit: its fingerprint, its events and the status changes they cause.
A message whose fingerprint is already there was recorded before (a second run, or a crash
after the commit and before the message was moved): it is reported as such, never counted
again.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

from .. import store
from ..store import CONFLICT
from ..subscribers import Status, Store
from .classify import SOFT_STREAK, Class, classify_feedback, classify_status
from .parse import MAX_BYTES, Kind, Parsed, parse, status_code
from .tokens import (
    BOUNCE_LOCAL,
    MAX_AGE_DAYS,
    UNSUBSCRIBE_LOCAL,
    day_of,
    issue_tag,
    read_bounce_token,
    read_unsubscribe_token,
)

# What a class does to the person, and the route recorded with it.
_LEAVES = {
    Class.HARD: (Status.BOUNCED, "bounce"),
    Class.COMPLAINT: (Status.COMPLAINED, "complaint"),
    Class.UNSUBSCRIBE: (Status.UNSUBSCRIBED, "mailto"),
}
# starts the diagnostic of a report about mail sent before the person came back
BEFORE_RETURN = "(about mail sent before they came back: not acted on) "
ACTION_FOR = {Status.BOUNCED: "bounced", Status.COMPLAINED: "complained",
              Status.UNSUBSCRIBED: "unsubscribed"}  # fmt: skip


@dataclass(frozen=True)
class Event:
    klass: Class
    source: str  # dsn | arf | mailto | autoreply | smtp | other
    subscriber_id: int | None = None
    email: str = ""
    issue_id: str | None = None
    status: str = ""  # RFC 3463
    diagnostic: str = ""  # the server's own words, or why it could not be matched
    domain: str = ""  # the receiving domain
    matched_by: str = ""  # verp | envid | returned-token | message-id | mailto | send
    action: str = ""  # what recording it did: bounced | complained | unsubscribed
    held: bool = False  # not acted on: about mail sent before the person came back
    at: str = ""


@dataclass(frozen=True)
class Recorded:
    """One message read: where it goes next, and what it said."""

    origin: str  # the mailbox and UID, or the file
    fingerprint: str
    outcome: str  # processed | ignored | unrecognised: the folder it is moved to
    events: tuple[Event, ...]
    note: str = ""
    already: bool = False  # recorded by an earlier run: nothing counted now


@dataclass(frozen=True)
class _Match:
    subscriber_id: int | None = None
    email: str = ""
    issue_id: str | None = None
    matched_by: str = ""
    problem: str = ""  # why nothing may be done


_MESSAGE_ID = re.compile(rb"^message-id:[ \t]*(<[^<>\r\n]+>)", re.IGNORECASE | re.MULTILINE)


def fingerprint(raw: bytes) -> str:
    """What makes two messages the same report: its Message-ID and body, whatever trace
    headers each delivery added on top (an MTA that delivers a report twice, a copy left in
    the inbox), and whatever the line ends; the whole message when it has no Message-ID."""
    normal = raw.replace(b"\r\n", b"\n")
    head, sep, body = normal.partition(b"\n\n")
    found = _MESSAGE_ID.search(head)
    if found is None or not sep:
        return hashlib.sha256(raw).hexdigest()
    return hashlib.sha256(b"id:" + found.group(1) + b"\n" + body.rstrip()).hexdigest()


class Book:
    """The bounce records in the store's database."""

    def __init__(self, store: Store, secret: bytes = b"", now: float | None = None):
        self.store = store
        self.conn = store.conn
        self.secret = secret
        self.now = time.time() if now is None else now

    # --- reading a message ---------------------------------------------------------------

    def seen(self, fp: str) -> Recorded | None:
        row = self.conn.execute(
            "SELECT origin, outcome, note FROM bounce_messages WHERE fingerprint = ?", (fp,)
        ).fetchone()
        if row is None:
            return None
        return Recorded(row["origin"], fp, row["outcome"], tuple(self._events(fp)), row["note"],
                        already=True)  # fmt: skip

    def read(self, raw: bytes, origin: str, *, dry_run: bool = False) -> Recorded:
        """Interpret one message and record it (unless `dry_run`); never raises for what the
        message holds, however malformed."""
        fp = fingerprint(raw)
        earlier = self.seen(fp)
        if earlier is not None:
            return earlier
        if len(raw) > MAX_BYTES:
            note = f"{len(raw) / 1e6:.1f} MB, larger than a bounce can be ({MAX_BYTES // 2**20} MB)"
            events = [Event(Class.UNRECOGNISED, "other", diagnostic=note)]
        else:
            parsed = parse(raw)
            events = self._interpret(parsed)
            note = parsed.problem
        return self._record(fp, origin, events, note, dry_run)

    def skip(self, fp: str, origin: str, note: str, *, dry_run: bool = False) -> Recorded:
        """Record a message that is not read at all (too large), as unrecognised."""
        earlier = self.seen(fp)
        if earlier is not None:
            return earlier
        event = Event(Class.UNRECOGNISED, "other", diagnostic=note)
        return self._record(fp, origin, [event], note, dry_run)

    def _interpret(self, parsed: Parsed) -> list[Event]:
        if parsed.kind is Kind.AUTOREPLY:
            return [Event(Class.IGNORED, "autoreply", diagnostic=parsed.subject[:200])]
        if parsed.kind is Kind.MAILTO:
            return [self._mailto(parsed)]
        if parsed.kind is Kind.ARF:
            return [self._complaint(parsed)]
        if parsed.kind is Kind.DSN and parsed.recipients:
            match = self._match(parsed)
            return [self._dsn_event(parsed, r, match) for r in parsed.recipients]
        why = parsed.problem or "not a bounce, complaint or unsubscribe we can read"
        return [Event(Class.UNRECOGNISED, str(parsed.kind), diagnostic=why)]

    def _dsn_event(self, parsed: Parsed, r, match: _Match) -> Event:
        klass = classify_status(r.status, r.action or "failed")
        domain = r.recipient.rpartition("@")[2].lower() or match.email.rpartition("@")[2]
        words = r.diagnostic or f"{r.action} {r.status}".strip()
        event = Event(klass, "dsn", status=r.status, diagnostic=words, domain=domain,
                      email=r.recipient)  # fmt: skip
        if match.problem:
            if klass in (Class.IGNORED, Class.BLOCKED):
                return event  # counted; nobody is acted on for these anyway
            return replace(event, klass=Class.UNRECOGNISED, diagnostic=f"{match.problem}: {words}")
        return replace(
            event,
            subscriber_id=match.subscriber_id,
            email=match.email,
            issue_id=match.issue_id,
            matched_by=match.matched_by,
        )

    def _complaint(self, parsed: Parsed) -> Event:
        klass = classify_feedback(parsed.feedback_type)
        words = f"feedback type {parsed.feedback_type or '(none)'}"
        if parsed.extra.get("user-agent"):
            words += f" from {parsed.extra['user-agent']}"
        if parsed.problem:
            return Event(Class.UNRECOGNISED, "arf", diagnostic=parsed.problem)
        if klass is Class.IGNORED:
            return Event(klass, "arf", diagnostic=words)
        match = self._match(parsed)
        if match.problem:
            return Event(Class.UNRECOGNISED, "arf", diagnostic=f"{match.problem}: {words}")
        return Event(klass, "arf", match.subscriber_id, match.email, match.issue_id,
                     diagnostic=words, domain=match.email.rpartition("@")[2],
                     matched_by=match.matched_by)  # fmt: skip

    def _mailto(self, parsed: Parsed) -> Event:
        for token in parsed.envelope_tokens(UNSUBSCRIBE_LOCAL):
            subscriber_id = read_unsubscribe_token(self.secret, token)
            person = self.store.get(subscriber_id) if subscriber_id else None
            if person is not None:
                words = f"mail to the unsubscribe address, subject {parsed.subject[:80]!r}"
                return Event(Class.UNSUBSCRIBE, "mailto", person.id, person.email,
                             diagnostic=words, matched_by="mailto")  # fmt: skip
        return Event(
            Class.UNRECOGNISED,
            "mailto",
            diagnostic="an unsubscribe request without a valid token of ours: not acted on "
            f"(from {parsed.sender[:80]})",
        )

    def _match(self, parsed: Parsed) -> _Match:
        candidates = [(t, "verp") for t in parsed.envelope_tokens(BOUNCE_LOCAL)]
        if parsed.envid:
            candidates.append((parsed.envid.lower(), "envid"))
        candidates += [(t, "returned-token") for t in parsed.returned_tokens(BOUNCE_LOCAL)]
        problems = []
        for token, how in candidates:
            found = read_bounce_token(self.secret, token)
            if found is None:
                problems.append(f"a forged or damaged token ({how})")
                continue
            age = day_of(self.now) - found.day
            if age > MAX_AGE_DAYS:
                problems.append(f"an expired token: about a message sent {age} days ago")
                continue
            delivery = self._delivery_by_tag(found.subscriber_id, found.issue_tag)
            if delivery is None:
                problems.append("a token for a delivery the ledger does not have")
                continue
            return _Match(self._person(found.subscriber_id), delivery[1], delivery[0], how)
        if problems:  # a token was there and was not good: nothing else is trusted
            return _Match(problem=problems[0])
        if parsed.returned_message_id:
            row = self.conn.execute(
                "SELECT issue_id, subscriber_id, email FROM deliveries WHERE message_id = ?",
                (parsed.returned_message_id,),
            ).fetchone()
            if row is not None:
                person = self._person(row["subscriber_id"])
                return _Match(person, row["email"], row["issue_id"], "message-id")
        for token in parsed.returned_tokens(UNSUBSCRIBE_LOCAL):
            subscriber_id = read_unsubscribe_token(self.secret, token)
            person = self.store.get(subscriber_id) if subscriber_id else None
            if person is not None:
                return _Match(person.id, person.email, None, "returned-token")
        named = [r.recipient for r in parsed.recipients if r.recipient] or [parsed.returned_to]
        named = [n for n in named if n]
        if named and self.store.find(named[0]) is not None:
            return _Match(problem=f"names {named[0]}, a subscriber, but carries no token of ours")
        return _Match(problem="no token of ours and no Message-ID the ledger knows")

    def _person(self, subscriber_id: int) -> int:
        """The subscriber a delivery's id stands for now: a message sent to an address that
        the case-merging migration merged away is about the row kept (store.get follows the
        merge); the row itself no longer exists, so acting on its id would do nothing."""
        person = self.store.get(subscriber_id)
        return person.id if person is not None else subscriber_id

    def _delivery_by_tag(self, subscriber_id: int, tag: bytes) -> tuple[str, str] | None:
        rows = self.conn.execute(
            "SELECT issue_id, email FROM deliveries WHERE subscriber_id = ?", (subscriber_id,)
        )
        for issue_id, email in rows:
            if issue_tag(issue_id) == tag:
                return issue_id, email
        return None

    # --- recording -----------------------------------------------------------------------

    def _record(
        self, fp: str, origin: str, events: list[Event], note: str, dry_run: bool
    ) -> Recorded:
        classes = {e.klass for e in events}
        if classes <= {Class.IGNORED}:
            outcome = "ignored"
        elif classes <= {Class.UNRECOGNISED, Class.IGNORED}:
            outcome = "unrecognised"
        else:
            outcome = "processed"
        stamp = store.stamp()
        done: list[Event] = []
        try:
            with self.conn.transaction(commit=not dry_run):
                self.conn.execute(
                    "INSERT INTO bounce_messages (fingerprint, origin, received_at, outcome, note)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (fp, origin, stamp, outcome, note[:500]),
                )
                for event in events:
                    done.append(self._apply(fp, replace(event, at=stamp)))
        except CONFLICT:
            # another process recorded the same message between our look and our insert
            earlier = self.seen(fp)
            if earlier is not None:
                return earlier
            raise
        return Recorded(origin, fp, outcome, tuple(done), note)

    def _apply(self, fp: str, event: Event) -> Event:
        """Inside the message's transaction: insert the event, change the status it calls for."""
        stale = event.klass in _LEAVES and self._before_return(event)
        if stale:
            event = replace(event, diagnostic=BEFORE_RETURN + event.diagnostic)
        event_id = self._insert(fp, event)
        action = ""
        if event.subscriber_id is not None and event.klass in _LEAVES and not stale:
            status, route = _LEAVES[event.klass]
            how = f"{route}:{event.status}" if event.status else route
            if self.store.set_status(event.subscriber_id, status, how):
                action = ACTION_FOR[status]
        elif event.subscriber_id is not None and event.klass is Class.SOFT:
            streak = self.soft_streak(event.subscriber_id)
            if streak >= SOFT_STREAK and self.store.set_status(
                event.subscriber_id, Status.BOUNCED, f"bounce:soft x{streak}"
            ):
                action = "bounced"
        if action:
            self.conn.execute(
                "UPDATE bounce_events SET action = ? WHERE id = ?", (action, event_id)
            )
        return replace(event, action=action, held=stale)

    def _before_return(self, event: Event) -> bool:
        """Whether the report is about a message sent before the person came back (their
        new consent, or a reactivation): a late complaint or bounce about the old mail does
        not undo the return. It is recorded, not acted on."""
        if event.subscriber_id is None or event.issue_id is None:
            return False
        # By the send's start, not the row's updated_at (restamped when a resumed send turns
        # a row uncertain, and written by each host's clock): to come back they had left,
        # and leaving skips their rows still waiting, so a send begun before the return
        # reached them before it or not at all (but for --resend-uncertain, after it).
        row = self.conn.execute(
            "SELECT 1 FROM sends WHERE issue_id = ? AND started_at < (SELECT max(at)"
            " FROM subscriber_events WHERE subscriber_id = ? AND kind = 'resubscribe')",
            (event.issue_id, event.subscriber_id),
        ).fetchone()
        return row is not None

    def _insert(self, fp: str, e: Event) -> int:
        return self.conn.execute(
            "INSERT INTO bounce_events (fingerprint, at, class, source, subscriber_id, email,"
            " issue_id, status, diagnostic, domain, matched_by) VALUES"
            " (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
            (fp, e.at, str(e.klass), e.source, e.subscriber_id, e.email, e.issue_id, e.status,
             e.diagnostic[:500], e.domain, e.matched_by),
        ).fetchone()[0]  # fmt: skip

    def soft_streak(self, subscriber_id: int) -> int:
        """Issues in a row that soft-bounced, counting back from the latest one that did;
        an issue that went out with no report breaks the run, and so does a reactivation."""
        since = self.conn.execute(
            "SELECT max(at) FROM subscriber_events WHERE subscriber_id = ?"
            " AND kind = 'resubscribe'",
            (subscriber_id,),
        ).fetchone()[0]
        rows = self.conn.execute(
            "SELECT d.issue_id, EXISTS (SELECT 1 FROM bounce_events e"
            "   WHERE e.subscriber_id = d.subscriber_id AND e.issue_id = d.issue_id"
            "   AND e.class = 'soft') AS soft"
            # sends first (CROSS JOIN keeps SQLite to that order): each one's row of
            # theirs by its key, not a walk of every ledger
            " FROM sends s CROSS JOIN deliveries d WHERE d.issue_id = s.issue_id"
            " AND d.subscriber_id = ? AND d.state IN ('sent', 'failed')"
            " AND s.started_at >= ? ORDER BY s.started_at, s.rowid",
            (subscriber_id, since or ""),
        ).fetchall()
        flags = [bool(r["soft"]) for r in rows]
        while flags and not flags[-1]:
            flags.pop()  # issues since the last soft bounce: their reports may still come
        streak = 0
        for soft in reversed(flags):
            if not soft:
                break
            streak += 1
        return streak

    # --- refusals during a send --------------------------------------------------------

    def record_refusals(self, issue_id: str | None = None) -> list[Recorded]:
        """The `failed` rows of the ledger not yet classified: a 5xx to RCPT, DATA or the
        message, or a deferral that expired. Each is one record, `send:ISSUE:ID`."""
        query = (
            "SELECT issue_id, subscriber_id, email, last_reply FROM deliveries d"
            " WHERE state = 'failed' AND NOT EXISTS (SELECT 1 FROM bounce_messages m"
            "   WHERE m.fingerprint = 'send:' || d.issue_id || ':' || d.subscriber_id)"
        )
        params: tuple = ()
        if issue_id is not None:
            query += " AND issue_id = ?"
            params = (issue_id,)
        out = []
        for row in self.conn.execute(query, params).fetchall():
            reply = row["last_reply"]
            status = status_code("", reply)
            event = Event(
                classify_status(status),
                "smtp",
                self._person(row["subscriber_id"]),
                row["email"],
                row["issue_id"],
                status,
                reply,
                row["email"].rpartition("@")[2].lower(),
                "send",
            )
            fp = f"send:{row['issue_id']}:{row['subscriber_id']}"
            out.append(self._record(fp, f"send of issue {row['issue_id']}", [event], "", False))
        return out

    # --- reading the records -------------------------------------------------------------

    def _events(self, fp: str) -> Iterator[Event]:
        rows = self.conn.execute(
            "SELECT * FROM bounce_events WHERE fingerprint = ? ORDER BY id", (fp,)
        )
        for row in rows:
            yield _event(row)

    def events(
        self,
        since: str | None = None,
        classes: tuple[str, ...] = (),
        subscriber_id: int | None = None,
    ) -> list[tuple[Event, str]]:
        """Events with where their message came from, oldest first."""
        query = (
            "SELECT e.*, m.origin FROM bounce_events e JOIN bounce_messages m"
            " USING (fingerprint) WHERE 1 = 1"
        )
        params: list[object] = []
        if since:
            query += " AND e.at >= ?"
            params.append(since)
        if classes:
            query += f" AND e.class IN ({', '.join('?' * len(classes))})"
            params.extend(classes)
        if subscriber_id is not None:
            query += " AND e.subscriber_id = ?"
            params.append(subscriber_id)
        rows = self.conn.execute(query + " ORDER BY e.id", params)
        return [(_event(row), row["origin"]) for row in rows]


def _event(row: Any) -> Event:
    return Event(
        klass=Class(row["class"]),
        source=row["source"],
        subscriber_id=row["subscriber_id"],
        email=row["email"],
        issue_id=row["issue_id"],
        status=row["status"],
        diagnostic=row["diagnostic"],
        domain=row["domain"],
        matched_by=row["matched_by"],
        action=row["action"],
        at=row["at"],
    )
