"""One person, one address: addresses are compared without regard to case everywhere, and
the migration that brought this in merges the pairs an older version let in."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner

from newsletter import db
from newsletter.cli import main
from newsletter.schema import MIGRATIONS
from newsletter.subscribers import SqliteStore, Status

from .test_bounces import bounce_env

MERGE = next(i for i, script in enumerate(MIGRATIONS) if "subscriber_merges" in script)


def run(workdir: Path, *args: str):
    return CliRunner().invoke(main, list(args), env=bounce_env(workdir, 1))


def test_an_import_with_two_cases_of_one_address_gives_one_subscriber(workdir: Path):
    (workdir / "list.csv").write_text(
        "email,name,language\nA@Example.org,Ann,fr\nkevin@example.org,Kevin,en\n"
        "a@example.org,Ann Smith,en\nKEVIN@EXAMPLE.ORG,,\n"
    )
    result = run(workdir, "subscribers", "import", "list.csv")
    assert result.exit_code == 0, result.output
    assert "2 added" in result.output
    assert "a@example.org also on line 2; this later row wins" in result.output
    listed = run(workdir, "subscribers", "list").output
    # the later row wins, whole (blanks: the defaults of a new subscriber)
    assert listed == "a@example.org\ten\tactive\tAnn Smith\nKEVIN@EXAMPLE.ORG\tboth\tactive\t\n"
    assert run(workdir, "subscribers", "add", "Kevin@example.ORG").output == (
        "error: KEVIN@EXAMPLE.ORG is already subscribed\n"
    )
    assert run(workdir, "subscribers", "unsubscribe", "kevin@example.org").exit_code == 0
    # someone who left is not brought back by another spelling either
    again = run(workdir, "subscribers", "import", "list.csv")
    assert "KEVIN@EXAMPLE.ORG is unsubscribed" in again.output


def test_resubscribe_keeps_the_language_unless_told(workdir: Path):
    run(workdir, "subscribers", "add", "ann@example.org", "--language", "fr")
    run(workdir, "subscribers", "unsubscribe", "ann@example.org")
    result = run(workdir, "subscribers", "add", "Ann@example.org", "--resubscribe")
    assert result.output == "added ann@example.org (fr)\n"


def _database_before_the_merge(path: Path) -> None:
    """A file as the version before the merge left it, with one address in two cases."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.create_function("nl_ascii_email", 1, lambda e: e)
    conn.create_function("nl_email_key", 1, lambda e: e)
    for number, script in enumerate(MIGRATIONS[:MERGE], start=1):
        for statement in db._statements(script):
            conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {number}")
    rows = [  # id, email, key, language, status
        (1, "kevin.smith@example.org", "kevin.smith@example.org", "en", "active"),
        (2, "KEVIN.Smith@Example.ORG", "KEVIN.Smith@example.org", "fr", "unsubscribed"),
        (3, "ann@example.org", "ann@example.org", "en", "active"),
    ]
    for sid, email, key, language, status in rows:
        conn.execute(
            "INSERT INTO subscribers (id, email, email_key, language, status, joined_at,"
            " join_source, updated_at) VALUES (?, ?, ?, ?, ?,"
            " '2026-01-0' || ? || 'T00:00:00+00:00', 'import:old.csv',"
            " '2026-01-01T00:00:00+00:00')",
            (sid, email, key, language, status, sid),
        )
        conn.execute(
            "INSERT INTO subscriber_events (subscriber_id, email, at, kind, route, detail)"
            " VALUES (?, ?, '2026-01-0' || ? || 'T00:00:00+00:00', 'join', 'import:old.csv',"
            " 'form')",
            (sid, key, sid),
        )
    conn.execute(
        "INSERT INTO subscriber_events (subscriber_id, email, at, kind, route, detail) VALUES"
        " (2, 'KEVIN.Smith@example.org', '2026-01-05T00:00:00+00:00', 'unsubscribe', 'web',"
        " 'unsubscribed')"
    )
    conn.execute(  # the proof of consent of the row that will be merged away
        "INSERT INTO consents (subscriber_id, email, basis, method, recorded_at, note) VALUES"
        " (1, 'kevin.smith@example.org', 'express', 'import', '2026-01-01T00:00:00+00:00',"
        " 'paper form')"
    )
    conn.close()


def test_the_migration_merges_what_differs_only_in_case_and_says_so(workdir: Path):
    path = workdir / "news.db"
    _database_before_the_merge(path)
    result = run(workdir, "subscribers", "list")
    assert result.exit_code == 0, result.output
    # the unsubscribe wins; the address kept is the one that had it
    assert result.stdout.splitlines() == [
        "KEVIN.Smith@Example.ORG\tfr\tunsubscribed\t",
        "ann@example.org\ten\tactive\t",
    ]
    assert (
        "note: merged kevin.smith@example.org (#1, active, en) into KEVIN.Smith@Example.ORG (#2)"
        in result.stderr
    )
    assert "note:" not in run(workdir, "subscribers", "list").stderr  # said once
    with SqliteStore(path) as store:
        assert store.conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
        kevin = store.find("kevin.smith@example.org")
        assert kevin.id == 2 and kevin.status is Status.UNSUBSCRIBED
        assert store.get(1) == kevin  # links mailed to the other spelling still find him
        kinds = [(e["kind"], e["route"]) for e in store.events(kevin.id)]
        assert kinds == [
            ("join", "import:old.csv"),  # both histories
            ("join", "import:old.csv"),
            ("unsubscribe", "web"),
            ("update", "migration:same-address"),
        ]
        # his consent record followed him, and consent records are append-only again
        record = store.conn.execute("SELECT subscriber_id, email, note FROM consents").fetchone()
        assert tuple(record) == (2, "kevin.smith@example.org", "paper form")
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            store.conn.execute("UPDATE consents SET note = 'x'")
    shown = run(workdir, "subscribers", "show", "Kevin.Smith@example.org").output
    assert "express, import" in shown
    assert "merged #1 kevin.smith@example.org (active, en) into this subscriber" in shown
