"""`newsletter bounces fetch|read|list`: what came back after a send, thin on top of
newsletter/bounces/."""

from __future__ import annotations

import datetime as dt
import sqlite3
import sys
from collections import Counter
from pathlib import Path

import click

from .bounces.book import BEFORE_RETURN, Book, Recorded
from .bounces.classify import Class
from .bounces.mailbox import fetch as fetch_mailbox
from .bounces.parse import MAX_BYTES
from .cli_context import AppContext, need_db, pass_app
from .errors import NewsletterError, SettingsError, StoreError
from .exits import Exit
from .subscribers import open_store
from .tokens import signing_key

CLASSES = [c.value for c in Class]
LABELS = {Class.UNSUBSCRIBE: "unsubscribe request"}
ACTIONS = {"bounced": "taken off the list (bounced)", "complained": "taken off the list "
           "(complained)", "unsubscribed": "unsubscribed"}  # fmt: skip


@click.group()
def bounces() -> None:
    """Bounces, complaints and mailto unsubscribes: read them, record them, list them."""


@bounces.command()
@click.option("--dry-run", is_flag=True, help="Read and classify; record, move and delete nothing.")
@pass_app
def fetch(app: AppContext, dry_run: bool) -> None:
    """Read NEWSLETTER_BOUNCE_MAILBOX: record each message, then move it to Processed,
    Ignored or Unrecognised (IMAP) or delete it (POP3). Safe to run from a timer."""
    settings = app.settings
    box = settings.bounces.mailbox
    if box is None:
        raise SettingsError(
            "NEWSLETTER_BOUNCE_MAILBOX is not set; set it, e.g. "
            "imaps://bounces@mail.example.org/INBOX (or pipe mail to 'newsletter bounces read -')"
        )
    if not box.password:
        raise SettingsError(f"NEWSLETTER_BOUNCE_PASSWORD is not set; it is the password of {box}")
    # The tokens are signed as the links are, bound to the list. Never a new database or
    # secret here: with a wrong NEWSLETTER_DB every report would match nobody and be filed
    # away as unrecognised.
    key = signing_key(settings, create=False)
    with open_store(settings, create=False) as store:
        book = Book(store, key)
        refusals = [] if dry_run else book.record_refusals()
        records = fetch_mailbox(book, box, dry_run=dry_run)
    _report([*refusals, *records], f"mailbox {box}", dry_run)


@bounces.command()
@click.argument("files", nargs=-1, required=True, metavar="FILE... | -")
@click.option("--dry-run", is_flag=True, help="Read and classify; record nothing.")
@pass_app
def read(app: AppContext, files: tuple[str, ...], dry_run: bool) -> None:
    """Read messages from files, or one from standard input ('-'), as fetch does: an MTA can
    pipe the bounce address's mail here (Postfix aliases: bounces: "|newsletter bounces read -").

    When the database cannot be written (busy, disk full), it exits 75, which asks an MTA
    to keep the message and try again later."""
    settings = app.settings
    messages = [(name, _read_input(name)) for name in files]
    try:
        key = signing_key(settings, create=False)  # as fetch: never a new database
        with open_store(settings, create=False) as store:
            book = Book(store, key)
            records = [book.read(raw, origin, dry_run=dry_run) for origin, raw in messages]
    except (StoreError, sqlite3.OperationalError) as exc:  # (a PostgreSQL one is a StoreError)
        if files == ("-",):
            click.echo(f"error: {exc}; the message was not recorded (try again later)", err=True)
            raise SystemExit(Exit.TEMPFAIL) from None
        raise
    _report(records, "standard input" if files == ("-",) else f"{len(files)} file(s)", dry_run)


def _read_input(name: str) -> bytes:
    if name == "-":
        data = sys.stdin.buffer.read(MAX_BYTES + 1)
        return data + sys.stdin.buffer.read() if len(data) > MAX_BYTES else data
    path = Path(name)
    try:
        return path.read_bytes()
    except OSError as exc:
        raise NewsletterError(f"cannot read it: {exc.strerror}", path) from None


@bounces.command("list")
@click.option("--since", metavar="DATE", help="Only from this day on (YYYY-MM-DD, UTC).")
@click.option(
    "--class", "classes", type=click.Choice(CLASSES), multiple=True, help="Only this class."
)
@pass_app
def list_(app: AppContext, since: str | None, classes: tuple[str, ...]) -> None:
    """Every recorded event: when, class, who, issue, status, what the server said."""
    need_db(app.settings)
    if since is not None:
        try:
            since = dt.date.fromisoformat(since).isoformat()
        except ValueError:
            raise click.BadParameter("write the date as YYYY-MM-DD", param_hint="--since") from None
    with open_store(app.settings, create=False) as store:
        events = Book(store).events(since=since, classes=classes)
    if not events:
        click.echo("no bounces, complaints or mailto unsubscribes recorded" + (
            " for this choice" if since or classes else ""))  # fmt: skip
    for event, origin in events:
        who = event.email or "-"
        issue = event.issue_id or "-"
        action = f" -> {event.action}" if event.action else ""
        matched = f" [{event.matched_by}]" if event.matched_by else ""
        click.echo(
            f"{event.at[:16]}  {event.klass:<12} {who:<32} {issue:<10} {event.status or '-':<6}"
            f" {event.diagnostic[:120]}{matched}{action}  ({origin})"
        )


def _report(records: list[Recorded], source: str, dry_run: bool) -> None:
    new = [r for r in records if not r.already]
    counts: Counter[Class] = Counter(e.klass for r in new for e in r.events)
    verb = "would record" if dry_run else "recorded"
    already = len(records) - len(new)
    line = f"{source}: {len(records)} message(s), {len(new)} {verb}"
    if already:
        line += f", {already} already recorded (not counted again)"
    click.echo(line)
    if new:
        click.echo("  " + ", ".join(f"{LABELS.get(c, c.value)} {counts.get(c, 0)}" for c in Class))
    blocked: dict[str, list[str]] = {}
    for record in new:
        for event in record.events:
            if event.klass is Class.BLOCKED:
                blocked.setdefault(event.domain or "?", []).append(
                    f"{event.status} {event.diagnostic}".strip()
                )
            if event.klass in (Class.IGNORED, Class.BLOCKED):
                continue
            if event.klass is Class.UNRECOGNISED:
                click.echo(f"  unrecognised  {record.origin}: {event.diagnostic}")
                continue
            what = ACTIONS.get(event.action, "recorded")
            if event.klass is Class.SOFT and not event.action:
                what = "recorded (soft: off after three issues in a row)"
            words = event.diagnostic
            if event.held:
                words = words.removeprefix(BEFORE_RETURN)
                what = "recorded, not acted on: they came back after that mail went"
            if dry_run:
                what = f"dry run, nothing done: {what}"
            issue = f" issue {event.issue_id}" if event.issue_id else ""
            status = f" {event.status}" if event.status else ""
            click.echo(
                f"  {LABELS.get(event.klass, event.klass.value):<13} {event.email}{issue}:{status}"
                f" {words[:160]!r} -> {what} (matched by {event.matched_by})"
            )
    for domain, words in blocked.items():
        click.echo(
            f"warning: {domain} refused our mail for policy or reputation ({words[0][:160]}); "
            "nobody was taken off the list: check SPF, DKIM, DMARC and the sending address's "
            "reputation",
            err=True,
        )
