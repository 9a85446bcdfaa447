"""One person, one address: addresses are compared without regard to case everywhere, and
the migration that brought this in merges the pairs an older version let in."""

from __future__ import annotations

import sqlite3
import time
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
    result = run(workdir, "subscribers", "add", "Ann@example.org", "--resubscribe",
                 "--consent", "express", "--note", "phoned us")  # fmt: skip
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


def test_a_report_about_a_message_sent_before_the_merge_reaches_the_person_kept(workdir: Path):
    """Mail sent to both spellings before the upgrade comes back after it: the report must
    act on the row kept (the other no longer exists) and show in that person's history."""
    path = workdir / "news.db"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.create_function("nl_ascii_email", 1, lambda e: e)
    conn.create_function("nl_email_key", 1, lambda e: e)
    for number, script in enumerate(MIGRATIONS[:MERGE], start=1):
        for statement in db._statements(script):
            conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {number}")
    people = [  # both spellings active: the oldest row is kept, the later one merged into it
        (1, "kevin@example.org", "kevin@example.org"),
        (2, "KEVIN@Example.ORG", "KEVIN@example.org"),
        (3, "ann@example.org", "ann@example.org"),
        (4, "Ann@example.org", "Ann@example.org"),
    ]
    conn.execute(
        "INSERT INTO sends (issue_id, started_at, finished_at, state) VALUES"
        " ('2017-11', '2026-01-10T00:00:00+00:00', '2026-01-10T00:01:00+00:00', 'done')"
    )
    for sid, email, key in people:
        conn.execute(
            "INSERT INTO subscribers (id, email, email_key, language, status, joined_at,"
            " join_source, updated_at) VALUES (?, ?, ?, 'en', 'active',"
            " '2026-01-01T00:00:00+00:00', 'import:old.csv', '2026-01-01T00:00:00+00:00')",
            (sid, email, key),
        )
        conn.execute(
            "INSERT INTO deliveries (issue_id, subscriber_id, email, edition, state,"
            " attempts, last_reply, updated_at, message_id) VALUES ('2017-11', ?, ?, 'en',"
            " 'sent', 1, '250 ok', '2026-01-10T00:00:30+00:00', ?)",
            (sid, email, f"<2017-11.{sid}.abc@example.org>"),
        )
    conn.close()
    assert run(workdir, "subscribers", "count").exit_code == 0  # migrates: 2 into 1, 4 into 3

    from newsletter.bounces.tokens import bounce_token, day_of

    from . import bounce_fixtures as fx
    from .test_bounces import BOUNCE_DOMAIN, key, write

    token = bounce_token(key(workdir), 2, "2017-11", day_of(time.time()))
    kevin = fx.Sent(
        f"bounces+{token}@{BOUNCE_DOMAIN}",
        "KEVIN@Example.ORG",
        "<2017-11.2.abc@example.org>",
        "<https://news.example.org/unsubscribe/x>",
    )
    ann = fx.Sent("news@example.org", "Ann@example.org", "<2017-11.4.abc@example.org>",
                  "<https://news.example.org/unsubscribe/y>")  # fmt: skip
    files = [
        write(workdir, "hard.eml", fx.dsn(kevin, "5.1.1", "550 5.1.1 User unknown")),
        write(workdir, "abuse.eml", fx.arf(ann)),  # redacted: found by its Message-ID
    ]
    result = run(workdir, "bounces", "read", *files)
    assert result.exit_code == 0, result.output
    assert "-> taken off the list (bounced) (matched by verp)" in result.output
    assert "-> taken off the list (complained) (matched by message-id)" in result.output
    with SqliteStore(path) as store:
        assert {s.id: s.status for s in store.iter()} == {
            1: Status.BOUNCED,
            3: Status.COMPLAINED,
        }
        recorded = store.conn.execute("SELECT subscriber_id FROM bounce_events ORDER BY id")
        assert [r[0] for r in recorded] == [1, 3]
    shown = run(workdir, "subscribers", "show", "kevin@example.org").output
    sends = shown.split("sends and reports\n")[1].splitlines()
    assert len([line for line in sends if " sent " in line]) == 2  # both spellings' copies
    assert any(" hard " in line and "5.1.1" in line for line in sends)
