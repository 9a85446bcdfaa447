"""`newsletter subscribers show`, the consent export and pending requests, and `newsletter
signup-form`: the proof of how each person joined and left, and the form for another site.

`show` prints one section after another (who, consent, history, pending); a section is a
function of the Profile returning lines, so another kind of history adds one more.
"""

from __future__ import annotations

import csv
import datetime as dt
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TextIO

import click

from .cli_context import AppContext, need_db, pass_app
from .consent import ConsentRecord, ConsentText, lapses_on
from .errors import StoreError
from .history import Happening, sends_and_reports
from .signup.requests import SignupRequest
from .subscribers import SqliteStore, Subscriber, open_store

# How the audit trail's kinds read in `show` and in the consent export.
EVENT_WORDS = {
    "join": "joined",
    "resubscribe": "came back",
    "unsubscribe": "unsubscribed",
    "language": "language",
    "name": "name changed",
    "update": "updated",
    "remove": "removed",
}
LEAVING = ("join", "resubscribe", "unsubscribe", "status", "remove")
CONSENT_COLUMNS = (
    "email", "at", "event", "how", "basis", "consent_date", "lapses_on", "requested_at",
    "confirmed_at", "form_url", "text_version", "text_hash", "language", "request_ip",
    "request_user_agent", "confirm_ip", "confirm_user_agent", "note",
)  # fmt: skip


@dataclass(frozen=True)
class Profile:
    """Everything the store knows of one address, for `subscribers show`."""

    email: str
    subscriber: Subscriber | None  # None once removed (the trail stays)
    trail: list[dict[str, str]]
    consents: list[ConsentRecord]
    texts: dict[str, ConsentText]  # by hash
    pending: SignupRequest | None
    mail: list[Happening] = field(default_factory=list)  # issues sent, reports about them


def profile(store: SqliteStore, email: str, now: dt.datetime) -> Profile:
    subscriber = store.find(email)
    trail = store.trail(email)
    consents = store.consents(email=email)
    pending = [r for r in store.pending_signups(now) if r.email.lower() == email.lower()]
    if subscriber is None and not trail and not consents and not pending:
        raise StoreError(f"{email} is not on the list and has no history; check the spelling")
    texts = {}
    for record in consents:
        text = store.consent_text(record.consent.text_hash) if record.consent.text_hash else None
        if text is not None:
            texts[record.consent.text_hash] = text
    mail = sends_and_reports(store.conn, subscriber.id) if subscriber else []
    return Profile(email, subscriber, trail, consents, texts, pending[0] if pending else None, mail)


def _who(p: Profile) -> list[str]:
    s = p.subscriber
    if s is None:
        removed = [e["at"] for e in p.trail if e["kind"] == "remove"]
        gone = f"removed on {removed[-1]}" if removed else "not a subscriber"
        return [p.email, f"  status      {gone}"]
    if s.status == "active":
        status = f"active since {s.joined_at} ({s.join_source})"
    else:
        status = f"{s.status} since {s.left_at} ({s.left_how})"
    lines = [s.email, f"  status      {status}", f"  language    {s.language}"]
    if s.name:
        lines.append(f"  name        {s.name}")
    if s.consent_note:
        lines.append(f"  note        {s.consent_note}")
    return lines


def _consent(p: Profile) -> list[str]:
    if not p.consents:
        why = (
            "none yet: the signup request waits for its confirmation"
            if p.subscriber is None and p.pending is not None
            else "none recorded (added before consent was recorded, or without a basis)"
        )
        return ["consent", f"  {why}"]
    today = dt.datetime.now(dt.UTC).date()
    lines = ["consent"]
    for record in p.consents:
        c = record.consent
        lines.append(f"  {c.confirmed_at or record.recorded_at}  {c.basis}, {c.method}")
        if c.consent_date:
            lines.append(f"      dated      {c.consent_date}")
        ends = lapses_on(c)
        if ends is not None:
            state = "lapsed" if ends <= today else "lapses"
            lines.append(f"      {state:<10} {ends.isoformat()} (implied consent lasts two years)")
        if c.requested_at:
            lines.append(f"      asked      {c.requested_at} on {c.form_url}")
        if c.confirmed_at:
            lines.append(f"      confirmed  {c.confirmed_at} by the link in the e-mail")
        if c.text_hash:
            lines.append(
                f"      words      version {c.text_version}, {c.text_hash}, in {c.language}"
            )
            text = p.texts.get(c.text_hash)
            if text is not None:
                lines += [f"                 {line}" for line in text.text.splitlines() if line]
        for label, first, second in (
            ("ip", c.request_ip, c.confirm_ip),
            ("agent", c.request_user_agent, c.confirm_user_agent),
        ):
            if first or second:
                lines.append(
                    f"      {label:<10} {first or '-'} (asked), {second or '-'} (confirmed)"
                )
        if c.note:
            lines.append(f"      note       {c.note}")
    return lines


def _history(p: Profile) -> list[str]:
    lines = ["history"]
    for event in p.trail:
        what = EVENT_WORDS.get(event["kind"], event["kind"])
        if event["kind"] == "status":
            what = event["detail"]  # bounced, complained
        # the language chosen, the reason for a reactivation, what a merge joined
        detail = event["detail"] if event["kind"] in ("language", "resubscribe", "update") else ""
        lines.append(f"  {event['at']}  {what:<13} {event['route']}  {detail}".rstrip())
    return lines


def _mail(p: Profile) -> list[str]:
    """Every issue sent, and every bounce, complaint or mailto unsubscribe about it."""
    if not p.mail:
        return []
    lines = ["sends and reports"]
    for h in p.mail:
        lines.append(f"  {h.at}  {h.kind:<13} {h.route}  {h.detail}".rstrip())
    return lines


def _pending(p: Profile) -> list[str]:
    r = p.pending
    if r is None:
        return []
    mailed = f"mailed {r.mailed_at}" if r.mailed_at else "not mailed yet"
    return [
        "pending",
        f"  {r.requested_at}  asked by {r.method} ({r.language}), {mailed}, expires {r.expires_at}",
    ]


SECTIONS: list[Callable[[Profile], list[str]]] = [_who, _consent, _history, _mail, _pending]


@click.command()
@click.argument("email")
@pass_app
def show(app: AppContext, email: str) -> None:
    """Everything about one address: status, consent evidence, history, pending request."""
    need_db(app.settings)
    with open_store(app.settings) as store:
        p = profile(store, email, dt.datetime.now(dt.UTC))
    blocks = [section(p) for section in SECTIONS]
    click.echo("\n\n".join("\n".join(lines) for lines in blocks if lines))


def list_pending(store: SqliteStore, language: str | None) -> Iterable[str]:
    """`subscribers list --status pending`: requests waiting for their confirmation click."""
    for r in store.pending_signups(dt.datetime.now(dt.UTC)):
        if language is None or r.language == language:
            yield f"{r.email}\t{r.language}\tpending\t{r.name}\t{r.requested_at}\t{r.expires_at}"


def write_consent_csv(out: TextIO, store: SqliteStore, cell: Callable[[object], object]) -> int:
    """`subscribers export --consent`: every consent record and every join and leaving, by
    address then time, and at the end the words of each consent text; the number of rows."""
    rows: list[dict[str, object]] = []
    for record in store.consents():
        c = record.consent
        ends = lapses_on(c)
        rows.append(
            {
                **{name: getattr(c, name) for name in CONSENT_COLUMNS if hasattr(c, name)},
                "email": record.email,
                "at": c.confirmed_at or record.recorded_at,
                "event": "consent",
                "how": c.method,
                "lapses_on": ends.isoformat() if ends else "",
            }
        )
    for event in store.trail(kinds=LEAVING):
        kind = event["kind"]
        rows.append(
            {
                "email": event["email"],
                "at": event["at"],
                "event": event["detail"] if kind == "status" else EVENT_WORDS[kind],
                "how": event["route"],
                "note": "" if kind == "status" else event["detail"],
            }
        )
    rows.sort(key=lambda row: (str(row["email"]), str(row["at"])))
    hashes = dict.fromkeys(str(row.get("text_hash")) for row in rows if row.get("text_hash"))
    for text_hash in hashes:
        text = store.consent_text(text_hash)
        if text is not None:
            rows.append(
                {"event": "consent text", "text_hash": text_hash, "text_version": text.version,
                 "language": text.language, "note": text.text}
            )  # fmt: skip
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CONSENT_COLUMNS)
    for row in rows:
        writer.writerow([cell(row.get(name, "")) for name in CONSENT_COLUMNS])
    return len(rows)


@click.command("signup-form")
@click.option(
    "--lang", type=click.Choice(["en", "fr"]), default="en", show_default=True,
    help="Language of the form.",
)  # fmt: skip
@pass_app
def signup_form(app: AppContext, lang: str) -> None:
    """Print the signup form as an HTML snippet to paste into another site.

    It posts to NEWSLETTER_BASE_URL (where `newsletter serve` answers), brings its own
    styles and runs no script. People who send it get the confirmation e-mail as with the
    form on /subscribe and /abonnement.
    """
    need_db(
        app.settings,
        "signup-form signs the form with its secret: run it where 'newsletter serve' runs",
    )
    from .signup.snippet import snippet  # only this command needs the templates

    with open_store(app.settings) as store:
        click.echo(snippet(app.settings, store, lang, dt.datetime.now(dt.UTC)), nl=False)
