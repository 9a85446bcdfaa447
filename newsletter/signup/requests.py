"""Signup requests waiting for their confirmation click, and the limits on asking.

A request is not a subscriber: it lives in its own table, is never mailed an issue, is
counted nowhere else, and is gone 7 days after it was made. The subscriber store takes
these methods on (Store inherits them), so every change is one of its transactions.
"""

from __future__ import annotations

import datetime as dt
import secrets
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from .. import consent as consents
from ..consent import Basis, Consent, ConsentText
from ..normalise import email_key
from ..store import stamp

if TYPE_CHECKING:
    from ..subscribers import Subscriber

REQUEST_LIFETIME = dt.timedelta(days=7)
LIMITS_KEPT = dt.timedelta(days=1)  # the longest window below


@dataclass(frozen=True)
class Limit:
    count: int
    window: dt.timedelta


# At most 1 confirmation per address per 10 minutes and 3 a day: enough for a typo'd first
# try, too few to bury anyone's inbox. Per IP address, room for a room full of people
# signing up at a meeting behind one router, not for a script.
ADDRESS_LIMITS = (Limit(1, dt.timedelta(minutes=10)), Limit(3, dt.timedelta(days=1)))
IP_LIMITS = (Limit(10, dt.timedelta(minutes=10)), Limit(50, dt.timedelta(days=1)))


@dataclass(frozen=True)
class SignupRequest:
    id: int
    email: str
    name: str
    language: str  # what they will receive: en, fr or both
    page_language: str  # the language they asked in, and of the confirmation e-mail
    method: str  # web:signup or web:comeback
    nonce: str
    requested_at: str
    expires_at: str
    mailed_at: str | None
    confirmed_at: str | None
    subscriber_id: int | None
    form_url: str
    text_hash: str
    ip: str
    user_agent: str


class Admitted(StrEnum):
    CONFIRM = "confirm"  # a confirmation e-mail is to go out
    ALREADY = "already"  # the address is subscribed: a note says so, nothing else
    LIMITED = "limited"  # too many requests: nothing is to go out


@dataclass(frozen=True)
class Admission:
    kind: Admitted
    request: SignupRequest | None = None
    subscriber: Subscriber | None = None
    retry_after: int = 0  # seconds, when LIMITED


class Confirmed(StrEnum):
    CONFIRMED = "confirmed"
    ALREADY = "already"  # a second click: the first one did it
    EXPIRED = "expired"
    UNKNOWN = "unknown"  # deleted ("this wasn't me"), or never existed
    EARLY = "early"  # an automatic confirmation within the guard window: refused


@dataclass(frozen=True)
class Confirmation:
    outcome: Confirmed
    request: SignupRequest | None = None
    subscriber: Subscriber | None = None


def _request(row: Any) -> SignupRequest:
    values = dict(row)
    del values["email_key"]
    return SignupRequest(**values)


class SignupRequests:
    """The store's methods for signup requests and their limits (a mixin of Store)."""

    conn: Any  # a store connection (store/__init__.py)

    # provided by Store
    def find(self, email: str) -> Subscriber | None: ...
    def get(self, subscriber_id: int) -> Subscriber | None: ...

    def signup_request(self, request_id: int) -> SignupRequest | None:
        row = self.conn.execute(
            "SELECT * FROM signup_requests WHERE id = ?", (request_id,)
        ).fetchone()
        return _request(row) if row else None

    def consent_text(self, text_hash: str) -> ConsentText | None:
        """A consent text kept under its hash (see consent.keep_text)."""
        return consents.text_for(self.conn, text_hash)

    def keep_consent_text(self, text: ConsentText, now: dt.datetime) -> None:
        """Keep the words of a form printed for another site, so its records can name them."""
        with self.conn.transaction():
            consents.keep_text(self.conn, text, stamp(now))

    def pending_signups(self, now: dt.datetime) -> list[SignupRequest]:
        """Open requests that have not expired, oldest first."""
        rows = self.conn.execute(
            "SELECT * FROM signup_requests WHERE confirmed_at IS NULL AND expires_at > ?"
            " ORDER BY requested_at, id",
            (stamp(now),),
        )
        return [_request(row) for row in rows]

    def request_signup(
        self,
        *,
        email: str,
        name: str,
        language: str,
        page_language: str,
        method: str,
        form_url: str,
        text: ConsentText,
        limit_keys: dict[str, tuple[Limit, ...]],
        now: dt.datetime,
        ip: str = "",
        user_agent: str = "",
    ) -> Admission:
        """Admit a request to join, under the limits, in one transaction: the same reads and
        writes whatever the address's state, so that neither the answer nor its timing tells
        a stranger whether it is on the list.

        `limit_keys` maps opaque keys (a keyed hash of the IP address, of the address) to
        the limits on each; an admitted request counts against every one of them."""
        at = stamp(now)
        with self.conn.transaction():
            self._forget_old(now)
            retry_after = 0
            for key, limits in limit_keys.items():
                for limit in limits:
                    since = stamp(now - limit.window)
                    row = self.conn.execute(
                        "SELECT count(*), min(at) FROM signup_limits WHERE key = ? AND at > ?",
                        (key, since),
                    ).fetchone()
                    if row[0] >= limit.count:
                        oldest = dt.datetime.fromisoformat(row[1])
                        wait = oldest + limit.window - now
                        retry_after = max(retry_after, int(wait.total_seconds()) + 1)
            if retry_after:
                return Admission(Admitted.LIMITED, retry_after=retry_after)
            self.conn.executemany(
                "INSERT INTO signup_limits (key, at) VALUES (?, ?)",
                [(key, at) for key in limit_keys],
            )
            consents.keep_text(self.conn, text, at)
            subscriber = self.find(email)
            if (
                subscriber is not None
                and subscriber.status == "active"
                # one whose implied consent lapsed is sent nothing: confirming renews it
                and not self.has_lapsed(subscriber.id)  # type: ignore[attr-defined]
            ):
                return Admission(Admitted.ALREADY, subscriber=subscriber)
            key = email_key(email)
            expires = stamp(now + REQUEST_LIFETIME)
            fields = {
                "email": email,
                "name": name,
                "language": language,
                "page_language": page_language,
                "method": method,
                "requested_at": at,
                "expires_at": expires,
                "form_url": form_url,
                "text_hash": text.hash,
                "ip": ip,
                "user_agent": user_agent,
            }
            # Asking again refreshes the open request and keeps its link: the first e-mail
            # still works, and the guard window starts again with the new one.
            updated = self.conn.execute(
                f"UPDATE signup_requests SET {', '.join(f'{k} = :{k}' for k in fields)},"
                " mailed_at = NULL WHERE email_key = :key AND confirmed_at IS NULL",
                {**fields, "key": key},
            ).rowcount
            if not updated:
                self.conn.execute(
                    f"INSERT INTO signup_requests (email_key, nonce, {', '.join(fields)})"
                    f" VALUES (:key, :nonce, {', '.join(':' + k for k in fields)})",
                    {**fields, "key": key, "nonce": secrets.token_hex(16)},
                )
            row = self.conn.execute(
                "SELECT * FROM signup_requests WHERE email_key = ? AND confirmed_at IS NULL",
                (key,),
            ).fetchone()
        return Admission(Admitted.CONFIRM, request=_request(row))

    def signup_mailed(self, request_id: int, now: dt.datetime) -> None:
        """The confirmation e-mail went out now: the guard window starts."""
        with self.conn.transaction():
            self.conn.execute(
                "UPDATE signup_requests SET mailed_at = ? WHERE id = ?", (stamp(now), request_id)
            )

    def cancel_signup(self, request_id: int) -> bool:
        """Delete an open request ("this wasn't me"); False if there was none to delete."""
        with self.conn.transaction():
            return bool(
                self.conn.execute(
                    "DELETE FROM signup_requests WHERE id = ? AND confirmed_at IS NULL",
                    (request_id,),
                ).rowcount
            )

    def confirm_signup(
        self,
        request_id: int,
        *,
        now: dt.datetime,
        automatic: bool,
        guard: dt.timedelta,
        ip: str = "",
        user_agent: str = "",
    ) -> Confirmation:
        """Make the request's address a subscriber and record the consent, once.

        An `automatic` confirmation (the page's script, not a click) is refused within
        `guard` of the e-mail going out: link scanners open the link in that time."""
        with self.conn.transaction():
            request = self.signup_request(request_id)
            if request is None:
                return Confirmation(Confirmed.UNKNOWN)
            if request.confirmed_at is not None:
                subscriber = self.get(request.subscriber_id) if request.subscriber_id else None
                return Confirmation(Confirmed.ALREADY, request, subscriber)
            if dt.datetime.fromisoformat(request.expires_at) <= now:
                return Confirmation(Confirmed.EXPIRED, request)
            if automatic and (
                request.mailed_at is None
                or now < dt.datetime.fromisoformat(request.mailed_at) + guard
            ):
                return Confirmation(Confirmed.EARLY, request)
            at = stamp(now)
            text = consents.text_for(self.conn, request.text_hash)
            proof = Consent(
                basis=Basis.EXPRESS,
                method=request.method,
                requested_at=request.requested_at,
                confirmed_at=at,
                form_url=request.form_url,
                text_version=text.version if text else "",
                text_hash=request.text_hash,
                language=request.page_language,
                request_ip=request.ip,
                request_user_agent=request.user_agent,
                confirm_ip=ip,
                confirm_user_agent=user_agent,
            )
            subscriber = self._join(request, proof)
            self.conn.execute(
                "UPDATE signup_requests SET confirmed_at = ?, subscriber_id = ?, ip = '',"
                " user_agent = '' WHERE id = ?",
                (at, subscriber.id, request.id),
            )
            confirmed = self.signup_request(request.id)
        return Confirmation(Confirmed.CONFIRMED, confirmed, subscriber)

    def _join(self, request: SignupRequest, proof: Consent) -> Subscriber:
        """Inside confirm_signup's transaction: add, or bring back, the subscriber."""
        from ..subscribers import Row  # the store module imports this one

        note = f"confirmed by e-mail ({request.method})"
        existing = self.find(request.email)
        if existing is not None and existing.status == "active":
            # became active another way meanwhile: their choices and this proof still count
            choices = Row(request.email, request.name or None, request.language)
            self._update(existing, choices, request.method)  # type: ignore[attr-defined]
            self.record_consent(existing.id, proof)  # type: ignore[attr-defined]
            subscriber = self.get(existing.id)
        else:
            subscriber = self.add(  # type: ignore[attr-defined]
                request.email,
                name=request.name,
                language=request.language,
                source=request.method,
                consent_note=note,
                resubscribe=True,  # they asked to come back, and have just confirmed it
                consent=proof,
            )
        assert subscriber is not None
        return subscriber

    def _forget_old(self, now: dt.datetime) -> None:
        """Expired requests, confirmed ones whose link has expired, and limits past use."""
        self.conn.execute("DELETE FROM signup_requests WHERE expires_at <= ?", (stamp(now),))
        self.conn.execute("DELETE FROM signup_limits WHERE at <= ?", (stamp(now - LIMITS_KEPT),))
