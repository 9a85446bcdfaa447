"""The proof of consent (CASL; GDPR art. 7(1)): how each person agreed to be mailed.

A record is written when someone confirms the web form (express consent: an unticked box
they ticked, then a click in the e-mail) and when a list is imported with a stated basis.
Records are append-only: the database refuses to change or delete one.

Express consent does not expire. Implied consent (a membership, a donation) lapses two
years after its date: such people are not mailed unless the owner insists. The rule is the
SQL below, so that a send, a count and a list all apply the same one.

`conn` below is a store connection (store/__init__.py), of either backend.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass, fields
from enum import StrEnum
from typing import Any

IMPLIED_YEARS = 2


class Basis(StrEnum):
    EXPRESS = "express"
    IMPLIED = "implied"


@dataclass(frozen=True)
class Consent:
    """What is recorded; every field but the first two may be unknown ("")."""

    basis: Basis
    method: str  # web:signup, web:comeback, import:FILE.csv, cli
    consent_date: str = ""  # YYYY-MM-DD, the date stated on import (implied: when it began)
    requested_at: str = ""  # UTC, ISO 8601: the form was sent
    confirmed_at: str = ""  # UTC, ISO 8601: the link in the e-mail was followed
    form_url: str = ""
    text_version: str = ""
    text_hash: str = ""  # sha256 of the consent text shown, kept in consent_texts
    language: str = ""  # the language the text was shown in: en, fr or both
    request_ip: str = ""  # only with NEWSLETTER_RECORD_CONSENT_IP
    request_user_agent: str = ""
    confirm_ip: str = ""
    confirm_user_agent: str = ""
    note: str = ""  # the owner's words on import (e.g. "members at the 2024 AGM")


@dataclass(frozen=True)
class ConsentRecord:
    id: int
    subscriber_id: int
    email: str  # the address's key (see normalise.email_key)
    recorded_at: str
    consent: Consent


@dataclass(frozen=True)
class ConsentText:
    """The words next to the box, exactly as shown, in one or both languages."""

    version: str
    language: str  # en, fr or both
    text: str

    @property
    def hash(self) -> str:
        return "sha256:" + hashlib.sha256(self.text.encode("utf-8")).hexdigest()


_CONSENT_FIELDS = [f.name for f in fields(Consent)]


def lapsed_sql(alias: str = "subscribers") -> str:
    """A condition, true for a subscriber whose latest consent is implied and dated on or
    before `:cutoff` (see lapse_cutoff: the same on either database, as plain text)."""
    return (
        "EXISTS (SELECT 1 FROM consents c WHERE c.id = (SELECT max(id) FROM consents"
        f" WHERE subscriber_id = {alias}.id) AND c.basis = 'implied' AND c.consent_date != ''"
        " AND c.consent_date <= :cutoff)"
    )


def lapse_day(start: dt.date) -> dt.date:
    """The day consent dated `start` stops counting: IMPLIED_YEARS later."""
    try:
        return start.replace(year=start.year + IMPLIED_YEARS)
    except ValueError:  # 29 February: the 1st of March, as SQLite's date() has always said
        return dt.date(start.year + IMPLIED_YEARS, 3, 1)


def lapse_cutoff(today: str) -> str:
    """The latest consent date that has lapsed by `today` (both YYYY-MM-DD): a consent dated
    on or before it has lapsed. Dates compare as text, so both databases apply this rule."""
    day = dt.date.fromisoformat(today)
    one = dt.timedelta(days=1)
    cutoff = day - dt.timedelta(days=366 * IMPLIED_YEARS)
    while lapse_day(cutoff + one) <= day:
        cutoff += one
    return cutoff.isoformat()


def lapses_on(consent: Consent) -> dt.date | None:
    """The day implied consent stops counting; None for express consent (or no date)."""
    if consent.basis is not Basis.IMPLIED or not consent.consent_date:
        return None
    return lapse_day(dt.date.fromisoformat(consent.consent_date))


def insert(conn: Any, subscriber_id: int, key: str, consent: Consent, now: str) -> int:
    """Append one record (inside the caller's transaction)."""
    values = [str(getattr(consent, name)) for name in _CONSENT_FIELDS]
    return conn.execute(
        f"INSERT INTO consents (subscriber_id, email, recorded_at, {', '.join(_CONSENT_FIELDS)})"
        f" VALUES (?, ?, ?, {', '.join('?' * len(_CONSENT_FIELDS))}) RETURNING id",
        (subscriber_id, key, now, *values),
    ).fetchone()[0]


def keep_text(conn: Any, text: ConsentText, now: str) -> None:
    """Store a consent text under its hash, once (the first use is kept)."""
    conn.execute(
        "INSERT INTO consent_texts (hash, version, language, text, first_used)"
        " VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
        (text.hash, text.version, text.language, text.text, now),
    )


def text_for(conn: Any, text_hash: str) -> ConsentText | None:
    row = conn.execute(
        "SELECT version, language, text FROM consent_texts WHERE hash = ?", (text_hash,)
    ).fetchone()
    return ConsentText(row["version"], row["language"], row["text"]) if row else None


def record(row: Any) -> ConsentRecord:
    values = {name: row[name] for name in _CONSENT_FIELDS}
    values["basis"] = Basis(values["basis"])
    return ConsentRecord(
        id=row["id"],
        subscriber_id=row["subscriber_id"],
        email=row["email"],
        recorded_at=row["recorded_at"],
        consent=Consent(**values),
    )


def records(conn: Any, where: str, params: tuple) -> list[ConsentRecord]:
    rows = conn.execute(
        f"SELECT id, subscriber_id, email, recorded_at, {', '.join(_CONSENT_FIELDS)}"
        f" FROM consents WHERE {where} ORDER BY id",
        params,
    )
    return [record(row) for row in rows]
