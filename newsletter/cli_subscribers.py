"""`newsletter subscribers ...` and `newsletter serve`: the list and the web app, thin on top
of subscribers.py, csvimport.py and web.py."""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import datetime as dt
import logging
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import TextIO

import click

from .cli_context import AppContext, need_db, pass_app
from .config import SUBSCRIBER_LANGUAGES
from .consent import Basis, Consent, lapses_on
from .csvimport import FORMULA_STARTS, read_csv
from .errors import StoreError
from .exits import Exit
from .normalise import parse_language
from .store import set_aside_instead
from .subscribers import Status, Subscriber, open_store

STATUSES = [status.value for status in Status]
PENDING = "pending"  # signup requests waiting for their confirmation: not subscribers


def _consent_options(command):
    """--consent, --consent-date and --note: the basis of these people's consent (CASL)."""
    command = click.option(
        "--note", default=None, help="How they consented, in your words, kept as proof."
    )(command)
    command = click.option(
        "--consent-date",
        type=click.DateTime(["%Y-%m-%d"]),
        default=None,
        help="When they consented (YYYY-MM-DD); for implied consent, when the membership "
        "or donation began: it lapses two years later.",
    )(command)
    return click.option(
        "--consent",
        "basis",
        type=click.Choice([b.value for b in Basis]),
        default=None,
        help="express (they asked for it) or implied (a membership, a donation).",
    )(command)


def _comes_back(resubscribe: bool, basis: str | None, note: str | None) -> None:
    """Someone who left withdrew their consent: only their new, express consent brings them
    back, and the record must say how they gave it (CASL: the sender proves consent)."""
    if resubscribe and (basis != Basis.EXPRESS or not (note or "").strip()):
        raise click.UsageError(
            "--resubscribe brings back people who left: only their new consent does that; add "
            '--consent express --note "how they asked to come back" (kept as proof)'
        )


def _consent(basis: str | None, date: dt.datetime | None, note: str, method: str) -> Consent | None:
    """The consent to record, from the options; UsageError for a combination that proves
    nothing."""
    if basis is None:
        if date is not None:
            raise click.UsageError("--consent-date goes with --consent express or implied")
        return None
    if basis == Basis.IMPLIED and date is None:
        raise click.UsageError(
            "--consent implied needs --consent-date: when the membership or donation began "
            "(implied consent lapses two years later)"
        )
    day = date.date() if date is not None else None
    if day is not None and day > dt.datetime.now(dt.UTC).date():
        raise click.UsageError(f"--consent-date {day} is in the future")
    return Consent(Basis(basis), method, consent_date=day.isoformat() if day else "", note=note)


EXPORT_COLUMNS = (
    "email", "name", "language", "status", "joined_at", "join_source", "consent_note",
    "left_at", "left_how",
)  # fmt: skip


def _language(value: str | None) -> str | None:
    try:
        return parse_language(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


@click.group()
def subscribers() -> None:
    """Keep the list: import, add, set, show, unsubscribe, reactivate, remove, list, export,
    count."""


@subscribers.command("import")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
@click.option(
    "--resubscribe",
    is_flag=True,
    help="Make people who left active again (only with their new consent).",
)
@_consent_options
@click.option("--dry-run", is_flag=True, help="Report what would change; change nothing.")
@pass_app
def import_(
    app: AppContext,
    file: Path,
    resubscribe: bool,
    basis: str | None,
    consent_date: dt.datetime | None,
    note: str | None,
    dry_run: bool,
) -> None:
    """Add or update subscribers from FILE.csv (columns email, name, language).

    An optional status column (as `export` writes it) keeps off who left: a new address
    the file says unsubscribed, bounced or complained is recorded so, and sent nothing.

    Accepts , or ; separators and a UTF-8 BOM. A blank name or language keeps what an existing
    subscriber has (a new one gets the default language). Within the file, the last row for an
    address wins. The whole import is one transaction. Exits 1 when rows were rejected (the
    other rows are imported), 2 when the file cannot be read (nothing is).

    With --consent, each person added or resubscribed (and each one already on the list with
    no consent recorded) gets a consent record: express, or implied with --consent-date.
    """
    _comes_back(resubscribe, basis, note)
    consent = _consent(basis, consent_date, note or "", f"import:{file.name}")
    parsed = read_csv(file)
    settings = app.settings
    with contextlib.ExitStack() as stack:
        copied = set_aside_instead(settings.db_path) if isinstance(settings.db_path, Path) else None
        if copied is not None:
            raise copied  # the list is in PostgreSQL now: no dry run against an empty one
        if dry_run and isinstance(settings.db_path, Path) and not settings.db_path.exists():
            # nothing to compare with: everyone would be added; a dry run makes no database
            scratch = Path(stack.enter_context(tempfile.TemporaryDirectory()))
            settings = dataclasses.replace(settings, db_path=scratch / "dry-run.db")
        store = stack.enter_context(open_store(settings))
        result = store.import_rows(
            parsed.rows,
            source=f"import:{file.name}",
            default_language=app.settings.default_language,
            consent_note=note or "",
            resubscribe=resubscribe,
            dry_run=dry_run,
            consent=consent,
        )
    verb = "would import" if dry_run else "imported"
    click.echo(
        f"{verb} {file}: {result.added} added, {result.updated} updated, "
        f"{result.unchanged} unchanged, {len(parsed.rejected)} rejected"
    )
    if result.resubscribed:
        click.echo(f"{result.resubscribed} resubscribed (--resubscribe)")
    if result.renewed:
        click.echo(
            f"{result.renewed} consent(s) renewed: their implied consent had lapsed; issues "
            "reach them again"
        )
    if result.left:
        click.echo(
            f"{result.left} added as having left (the file's status column says so): "
            "they are sent nothing, and stay off when imported again"
        )
    ends = lapses_on(consent) if consent is not None else None
    if ends is not None and ends <= dt.datetime.now(dt.UTC).date():
        click.echo(
            f"warning: implied consent dated {consent.consent_date} lapsed on {ends}: "
            "send skips these people until they confirm again",
            err=True,
        )
    notes = [(r.line, r.reason) for r in (*parsed.unread, *parsed.rejected)]
    notes += [
        (d.line, f"{d.email} also on line {d.earlier_line}; this later row wins")
        for d in parsed.duplicates
    ]
    notes += [
        (
            k.row.line or 0,
            f"{k.why()}; not resubscribed (use --resubscribe only if they asked to come back)",
        )
        for k in result.kept
    ]
    back = "would come back" if dry_run else "came back"
    notes += [(k.row.line or 0, f"{k.why()}; {back} (--resubscribe)") for k in result.came_back]
    notes += [
        (
            c.row.line or 0,
            f"{c.row.email} keeps the {c.column} they chose themselves on {c.at[:10]} "
            f"({c.kept or 'none'}); the file is older on that point",
        )
        for c in result.theirs
    ]
    notes += [
        (
            row.line or 0,
            f"{row.email}: the file says {row.status}, but they are active here; left as is "
            f"(if the file is right: newsletter subscribers unsubscribe {row.email})",
        )
        for row in result.still_active
    ]
    for line, note in sorted(notes, key=lambda note: note[0]):
        click.echo(f"{file}:{line}: {note}")
    if parsed.rejected:
        # The good rows are in; a script (or cron) still hears that some were not.
        rows, them = ("row", "it") if len(parsed.rejected) == 1 else ("rows", "them")
        click.echo(
            f"{file}: {len(parsed.rejected)} {rows} rejected, listed above; fix {them} and "
            "import the file again (rows already in stay unchanged)",
            err=True,
        )
        sys.exit(Exit.INCOMPLETE)


@subscribers.command()
@click.argument("email")
@click.option("--name", default="", help="Name as the subscriber gave it.")
@click.option(
    "--language", default=None, help="en, fr or both (default: NEWSLETTER_DEFAULT_LANGUAGE)."
)
@_consent_options
@click.option("--resubscribe", is_flag=True, help="Re-add someone who left (with their consent).")
@pass_app
def add(
    app: AppContext,
    email: str,
    name: str,
    language: str | None,
    basis: str | None,
    consent_date: dt.datetime | None,
    note: str | None,
    resubscribe: bool,
) -> None:
    """Add one subscriber."""
    _comes_back(resubscribe, basis, note)
    consent = _consent(basis, consent_date, note or "", "cli")
    language = _language(language)
    with open_store(app.settings) as store:
        known = store.find(email)
        if language is None:  # someone coming back keeps their language unless told
            language = known.language if known else app.settings.default_language
        subscriber = store.add(
            email,
            name=name,
            language=language,
            source="cli",
            consent_note="added by hand" if note is None else note,
            resubscribe=resubscribe,
            consent=consent,
        )
    if known is not None and known.status is Status.ACTIVE:  # add() said nothing else
        click.echo(
            f"consent renewed: {subscriber.email} ({basis}); their implied consent had lapsed, "
            "and issues reach them again"
        )
        return
    click.echo(f"added {subscriber.email} ({subscriber.language})")


@subscribers.command()
@click.argument("email")
@pass_app
def remove(app: AppContext, email: str) -> None:
    """Delete a subscriber's record: name, language and status (e.g. on a request to erase
    their data).

    The address stays in the audit trail (when they joined and consented, what they were
    sent, bounces, this removal), which proves what was done; `show EMAIL` still shows it.
    They are no longer on the list; `add` or `import` brings them back only with
    --resubscribe (their new consent)."""
    need_db(app.settings)
    with open_store(app.settings) as store:
        if not store.remove(email, how="cli"):
            raise StoreError(f"{email} is not on the list; check the spelling with `list`")
    click.echo(f"removed {email} (name, language, status); the audit trail keeps the address")


@subscribers.command()
@click.argument("email")
@pass_app
def unsubscribe(app: AppContext, email: str) -> None:
    """Unsubscribe someone (keeps the record, as proof they are not to be mailed)."""
    need_db(app.settings)
    with open_store(app.settings) as store:
        subscriber = store.find(email)
        if subscriber is None:
            raise StoreError(f"{email} is not on the list; check the spelling with `list`")
        if store.unsubscribe(subscriber.id, "cli"):
            click.echo(f"unsubscribed {subscriber.email}")
        else:
            click.echo(f"{subscriber.email} was already {store.get(subscriber.id).status}")


@subscribers.command("set")
@click.argument("email")
@click.option("--language", default=None, help="en, fr or both.")
@click.option("--name", default=None, help="Name as the subscriber gave it ('' clears it).")
@pass_app
def set_(app: AppContext, email: str, language: str | None, name: str | None) -> None:
    """Change someone's language or name (recorded in their history)."""
    need_db(app.settings)
    language = _language(language)
    if language is None and name is None:
        raise click.UsageError("give --language, --name or both")
    with open_store(app.settings) as store:
        person = store.find(email)
        if person is None:
            raise StoreError(f"{email} is not on the list; check the spelling with `list`")
        changed = []
        if language is not None and store.set_language(person.id, language, "cli"):
            changed.append(f"language {language}")
        if name is not None and store.set_name(person.id, name, "cli"):
            changed.append(f"name {store.get(person.id).name!r}")
    click.echo(f"{person.email}: " + (", ".join(changed) if changed else "nothing to change"))


@subscribers.command()
@click.argument("email")
@click.option("--reason", required=True, help="Why the address works again (kept as proof).")
@pass_app
def reactivate(app: AppContext, email: str, reason: str) -> None:
    """Make a bounced address active again, e.g. when its owner says it works now."""
    need_db(app.settings)
    if not reason.strip():
        raise click.BadParameter("say why", param_hint="--reason")
    with open_store(app.settings) as store:
        person = store.find(email)
        if person is None:
            raise StoreError(f"{email} is not on the list; check the spelling with `list`")
        if person.status in (Status.UNSUBSCRIBED, Status.COMPLAINED):
            raise StoreError(
                f"{person.email} {person.status} ({person.left_how}); only their new consent "
                "brings them back: subscribers add --resubscribe --consent express --note ..."
            )
        if not store.reactivate(person.id, reason.strip()):
            raise StoreError(f"{person.email} is already active")
    click.echo(f"reactivated {person.email} ({reason.strip()})")


@subscribers.command("list")
@click.option(
    "--status",
    type=click.Choice([*STATUSES, PENDING]),
    default=None,
    help="Only this status; pending: signup requests not confirmed yet (not subscribers).",
)
@click.option(
    "--language", type=click.Choice(SUBSCRIBER_LANGUAGES), default=None, help="Only this language."
)
@click.option(
    "--lapsed", is_flag=True, help="Only active subscribers whose implied consent has lapsed."
)
@pass_app
def list_(app: AppContext, status: str | None, language: str | None, lapsed: bool) -> None:
    """Print subscribers, one a line: email, language, status, name (tab-separated).

    Pending requests add when they were made and when they expire."""
    need_db(app.settings)
    from .cli_signup import list_pending

    with open_store(app.settings) as store:
        if status == PENDING:
            for line in list_pending(store, language):
                click.echo(line)
            return
        if lapsed and status not in (None, "active"):
            raise click.UsageError("--lapsed lists active subscribers; leave out --status")
        people = store.lapsed() if lapsed else store.iter(status=status, language=language)
        for subscriber in people:
            if language not in (None, subscriber.language):
                continue
            click.echo(
                f"{subscriber.email}\t{subscriber.language}\t{subscriber.status}\t{subscriber.name}"
            )


# Excel reads a CSV file without a byte-order mark in the Windows code page: "Ã©" for "é".
# import reads the mark; what is piped (standard output) goes without it.
SPREADSHEET_UTF8 = "utf-8-sig"


@subscribers.command()
@click.argument(
    "file", type=click.Path(path_type=Path, dir_okay=False, allow_dash=True), required=False
)
@click.option("--status", type=click.Choice(STATUSES), default=None, help="Only this status.")
@click.option(
    "--consent",
    "consent",
    is_flag=True,
    help="Instead: the proof for an auditor, every consent record, join and leaving.",
)
@pass_app
def export(app: AppContext, file: Path | None, status: str | None, consent: bool) -> None:
    """Write subscribers, with how they joined and left, as CSV to FILE (or standard output:
    no FILE, or -).

    The file can be imported again, into this list or another: import reads email, name,
    language and status (who left stays off) and ignores the rest. FILE starts with a UTF-8
    byte-order mark, so that Excel shows accented names right; standard output has none.
    With --consent: one row per consent record (basis, times, form, words' version and hash,
    language, IP if recorded) and per join, unsubscribe, bounce, complaint or removal, with
    the words of each consent text at the end.
    """
    need_db(app.settings)
    if file == Path("-"):
        file = None
    if consent:
        return _export_consent(app, file, status)
    with open_store(app.settings) as store:
        people = list(store.iter(status=status))
    if file is None:
        _write_csv(sys.stdout, people)
        return
    try:
        with file.open("w", encoding=SPREADSHEET_UTF8, newline="") as out:
            _write_csv(out, people)
    except OSError as exc:
        raise StoreError(f"cannot write: {exc.strerror}", file) from None
    click.echo(f"exported {len(people)} subscribers to {file}", err=True)


def _export_consent(app: AppContext, file: Path | None, status: str | None) -> None:
    from .cli_signup import write_consent_csv

    if status is not None:
        raise click.UsageError("--consent exports everyone's records; leave out --status")
    with open_store(app.settings) as store:
        if file is None:
            write_consent_csv(sys.stdout, store, _cell)
            return
        try:
            with file.open("w", encoding=SPREADSHEET_UTF8, newline="") as out:
                rows = write_consent_csv(out, store, _cell)
        except OSError as exc:
            raise StoreError(f"cannot write: {exc.strerror}", file) from None
    click.echo(f"exported {rows} consent rows to {file}", err=True)


def _cell(value: object) -> object:
    """A spreadsheet must not read a subscriber's name as a formula (CSV injection)."""
    if value is None:
        return ""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def _write_csv(out: TextIO, people: Iterable[Subscriber]) -> None:
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(EXPORT_COLUMNS)
    for person in people:
        writer.writerow([_cell(getattr(person, c)) for c in EXPORT_COLUMNS])


@subscribers.command()
@pass_app
def count(app: AppContext) -> None:
    """Number of subscribers by language and status."""
    need_db(app.settings)
    with open_store(app.settings) as store:
        counts = store.counts()
        lapsed = store.lapsed_counts()
    width = max(len(status) for status in STATUSES)
    click.echo(f"{'':<{width}}  {'en':>6} {'fr':>6} {'both':>6} {'total':>6}")
    for status in Status:
        numbers = [counts.get((language, status), 0) for language in SUBSCRIBER_LANGUAGES]
        cells = " ".join(f"{n:>6}" for n in [*numbers, sum(numbers)])
        click.echo(f"{status.value:<{width}}  {cells}")
    totals = [
        sum(n for (lang, _), n in counts.items() if lang == language)
        for language in SUBSCRIBER_LANGUAGES
    ]
    cells = " ".join(f"{n:>6}" for n in [*totals, sum(totals)])
    click.echo(f"{'total':<{width}}  {cells}")
    if lapsed:
        # active, but a send skips them: the count of who gets the next issue differs
        numbers = [lapsed.get(language, 0) for language in SUBSCRIBER_LANGUAGES]
        cells = " ".join(f"{n:>6}" for n in [*numbers, sum(numbers)])
        click.echo(f"{'':<{width}}  {cells}  of the active: implied consent lapsed, not mailed")


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port",
    default=8000,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="Port to listen on (0: a free one).",
)
@click.option(
    "--forwarded-allow-ips",
    default="127.0.0.1",
    show_default=True,
    help="Proxies trusted for X-Forwarded-For/-Proto (comma-separated, or '*').",
)
@click.option(
    "--access-log/--no-access-log",
    default=True,
    show_default=True,
    help="Log each request (subscribers' tokens are left out of the paths).",
)
@pass_app
def serve(
    app: AppContext, host: str, port: int, forwarded_allow_ips: str, access_log: bool
) -> None:
    """Run the web app (behind a reverse proxy in production): the public archive, the
    unsubscribe and preferences pages, and the signup pages /subscribe and /abonnement."""
    import uvicorn  # only this command needs the server

    from .archive.serve import with_archive
    from .listen import listen
    from .web import RedactTokens, create_app

    site = app.settings.archive_dir
    web_app = with_archive(create_app(app.settings), site)
    sock = listen(host, port)  # a port in use: one line, before anything says "serving"
    port = sock.getsockname()[1]  # --port 0: the one the system chose
    click.echo(f"serving on http://{host}:{port}/ (links use {app.settings.identity.base_url})")
    if not (site / "index.html").is_file():
        click.echo(
            f"warning: no archive in {site}/ yet: the home page and issue pages answer 404 "
            "until 'newsletter archive build' (or a send) writes it",
            err=True,
        )
    config = uvicorn.Config(
        web_app,
        host=host,
        port=port,
        proxy_headers=True,
        forwarded_allow_ips=forwarded_allow_ips,
        server_header=False,
        access_log=access_log,
        log_level="info",
    )  # configures logging: the filter goes on after
    logging.getLogger("uvicorn.access").addFilter(RedactTokens())
    uvicorn.Server(config).run(sockets=[sock])
