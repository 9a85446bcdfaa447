"""`newsletter db`: create or upgrade the schema; copy a SQLite list into PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import click

from . import store
from .cli_context import AppContext, pass_app
from .errors import StoreError
from .exits import EXIT_TABLE
from .store.migrate import latest


@click.group(epilog=EXIT_TABLE)
def db() -> None:
    """The database NEWSLETTER_DB names: create or upgrade its schema, copy a list into it."""


@db.command(epilog=EXIT_TABLE)
@pass_app
def migrate(app: AppContext) -> None:
    """Create the schema, or bring it to this version (every command also does it on start;
    hosts starting at the same moment migrate once)."""
    where = app.settings.db_path
    conn = store.connect(where)
    conn.close()
    found, now = conn.found_version, latest(conn.dialect)
    if not found:
        done = f"schema created, version {now}"
    elif found < now:
        done = f"schema upgraded from version {found} to {now}"
    else:
        done = f"schema at version {now} (up to date)"
    click.echo(f"{store.shown(where)}: {done}")


@db.command("copy", epilog=EXIT_TABLE)
@click.option(
    "--from",
    "source",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The SQLite file to copy (e.g. newsletter.db).",
)
@pass_app
def copy_command(app: AppContext, source: Path) -> None:
    """Copy a SQLite list, whole (subscribers, their history and consent records, signups,
    sends and their ledgers, schedules, bounces, the archive's state), into the empty
    PostgreSQL database NEWSLETTER_DB names, in one transaction."""
    from .store.copy import copy

    settings = app.settings
    if not isinstance(settings.db_path, store.PgUrl):
        raise StoreError(
            "db copy fills a PostgreSQL database: set NEWSLETTER_DB=postgresql://user@host/db "
            f"(it names the file {settings.db_path} now)"
        )
    copied = copy(source, settings.db_path)
    into = store.shown(settings.db_path)
    click.echo(f"copied {copied.total:,} row(s) from {source} into {into}:")
    for table, n in copied.rows.items():
        if n:
            click.echo(f"  {table:<18} {n:>9,}")
    # from now on the list lives in PostgreSQL: what the old file took in would be lost
    click.echo(
        f"{source} is now {copied.aside.name}: a command, serve or a timer still pointed at it "
        "stops instead of taking unsubscribes the copy would never see. Every host and service "
        f"must use {into} (to use the file again, rename it back)"
    )
    secret = source.with_name(source.name + ".secret")
    if not settings.secret and secret.is_file():
        click.echo(
            f"links already mailed are signed with the secret in {secret}: set NEWSLETTER_SECRET "
            "to its contents on every host (the tool never reads that file with PostgreSQL)"
        )
    elif secret.is_file() and secret.read_text("utf-8").strip() != settings.secret:
        click.echo(
            f"warning: NEWSLETTER_SECRET is not the secret in {secret}, which signed the links "
            "already mailed (unsubscribe, preferences): they stop working unless every host "
            "sets NEWSLETTER_SECRET to that file's contents",
            err=True,
        )
