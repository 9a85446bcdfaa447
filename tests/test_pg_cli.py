"""NEWSLETTER_DB=postgresql://...: bad settings get one line, `db migrate`, `db copy`."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from newsletter import store
from newsletter.bounces.book import Book as BounceBook
from newsletter.cli import main
from newsletter.consent import Basis, Consent
from newsletter.ledger import Ledger, Outcome, State
from newsletter.schedule import Book
from newsletter.store.migrate import latest
from newsletter.subscribers import Store

from .conftest import DEMO_ISSUE


def newsletter(tmp_path: Path, *args: str, **env: str):
    env_file = tmp_path / "test.env"  # so a developer's own .env is not read
    env_file.touch()
    return CliRunner().invoke(main, ["--env-file", str(env_file), *args], env=env)


def one_error_line(result) -> str:
    assert result.exit_code == 2, result.output
    (line,) = result.stderr.strip().splitlines()
    assert "Traceback" not in result.output
    return line


# --- bad settings: one line naming NEWSLETTER_DB, the password masked ----------------------


def test_a_url_of_another_kind_is_refused_at_load(tmp_path: Path) -> None:
    result = newsletter(tmp_path, "subscribers", "count", NEWSLETTER_DB="mysql://u:pw@db/x")
    assert one_error_line(result) == (
        "error: NEWSLETTER_DB=mysql://u:***@db/x: mysql:// is not a database this tool knows; "
        "give a file path (SQLite) or postgresql://user@host/dbname"
    )


def test_a_url_without_a_database_name_is_refused(tmp_path: Path) -> None:
    result = newsletter(
        tmp_path, "db", "migrate", NEWSLETTER_DB="postgresql://ann:pw@db.example.org"
    )
    line = one_error_line(result)
    assert "NEWSLETTER_DB=postgresql://ann:***@db.example.org: names no database" in line
    assert "pw" not in line.replace("***", "")


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://ann:ab%zzSECRET@/news?host=/nowhere",
        "postgresql://ann:SEC RET@/news?host=/nowhere",
        "postgresql://ann:ab%00SECRET@/news?host=/nowhere",
        "postgresql://ann@/news?host=/nowhere&password=ab%zzSECRET",
        'postgresql://ann:ab"SE%zzCRET@/news?host=/nowhere',
        'postgresql://ann:Tr0ub"SEC RET@/news?host=/nowhere',
        'postgresql://ann@/news?host=/nowhere&password=x"SE%zzCRET',
    ],
)
def test_a_password_libpq_cannot_read_is_not_quoted_back(tmp_path: Path, url: str) -> None:
    """libpq quotes the part of a URL it cannot read: here, the password."""
    pytest.importorskip("psycopg")
    line = one_error_line(newsletter(tmp_path, "subscribers", "count", NEWSLETTER_DB=url))
    assert not any(part in line for part in ("SECRET", "SEC RET", "SE%zz", "CRET")), line
    assert line.startswith("error: NEWSLETTER_DB=postgresql://ann"), line
    assert "cannot read the URL (" in line and "write % as %25 and a space as %20" in line


def test_a_refused_login_names_the_setting_and_masks_the_password(pg_cluster, tmp_path) -> None:
    url = pg_cluster.url("postgres", pg_cluster.PASSWORD_USER, "not-the-password")
    result = newsletter(tmp_path, "subscribers", "count", NEWSLETTER_DB=url)
    line = one_error_line(result)
    assert line.startswith(f"error: NEWSLETTER_DB=postgresql://{pg_cluster.PASSWORD_USER}:***@")
    assert line.endswith("the server refused the login; check the user and the password")
    assert "not-the-password" not in result.output


def test_a_login_with_no_password_says_where_one_goes(pg_cluster, tmp_path) -> None:
    url = pg_cluster.url("postgres", pg_cluster.PASSWORD_USER)
    result = newsletter(tmp_path, "subscribers", "count", NEWSLETTER_DB=url,
                        PGPASSWORD="", PGPASSFILE=str(tmp_path / "none"))  # fmt: skip
    assert one_error_line(result).endswith(
        "the server wants a password and none was given; put it in the URL (user:password@), "
        "or in PGPASSWORD or ~/.pgpass"
    )


def test_the_right_password_in_the_query_works_and_is_never_shown(pg_cluster, tmp_path) -> None:
    pg_cluster.execute("CREATE DATABASE guarded_list OWNER guarded")
    url = (
        f"postgresql://{pg_cluster.PASSWORD_USER}@/guarded_list?host={pg_cluster.root}"
        f"&password={pg_cluster.PASSWORD}"
    )
    result = newsletter(tmp_path, "db", "migrate", NEWSLETTER_DB=url)
    assert result.exit_code == 0, result.output
    assert "password=%2A%2A%2A" in result.output or "password=***" in result.output
    assert pg_cluster.PASSWORD not in result.output
    pg_cluster.drop("guarded_list")


def test_an_unreachable_server_and_a_missing_database_get_one_line(pg_cluster, tmp_path) -> None:
    down = "postgresql://ann:secret-word@127.0.0.1:1/news"  # nothing listens on port 1
    line = one_error_line(newsletter(tmp_path, "subscribers", "count", NEWSLETTER_DB=down))
    assert line == (
        "error: NEWSLETTER_DB=postgresql://ann:***@127.0.0.1:1/news: cannot reach the server; "
        "check the host and port, and that it is running"
    )
    # read from the settings file: its line is named, as for a setting refused at load
    env_file = tmp_path / "test.env"
    env_file.write_text(f"# the list\nNEWSLETTER_DB={down}\n")
    line = one_error_line(newsletter(tmp_path, "subscribers", "count"))
    assert line == (
        f"error: {env_file}:2: NEWSLETTER_DB=postgresql://ann:***@127.0.0.1:1/news: cannot "
        "reach the server; check the host and port, and that it is running"
    )
    env_file.write_text("")
    missing = pg_cluster.url("no_such_list")
    line = one_error_line(newsletter(tmp_path, "subscribers", "count", NEWSLETTER_DB=missing))
    assert line.endswith("no such database on the server; create it (createdb), or check its name")


def test_without_psycopg_one_line_says_which_extra_to_install(
    pg_url, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "psycopg", None)  # import psycopg now raises ImportError
    line = one_error_line(newsletter(tmp_path, "subscribers", "count", NEWSLETTER_DB=pg_url))
    assert line == (
        "error: NEWSLETTER_DB names a PostgreSQL server, and psycopg is not installed: "
        "install the tool's postgres extra (in its checkout: pip install -e '.[postgres]')"
    )


def test_postgresql_needs_the_secret_set_rather_than_a_file(pg_url, workdir: Path) -> None:
    result = newsletter(workdir, "send", f"issues/{DEMO_ISSUE}", "--yes", NEWSLETTER_DB=pg_url)
    assert "NEWSLETTER_SECRET is needed with a PostgreSQL NEWSLETTER_DB" in one_error_line(result)


# --- db migrate, db copy -----------------------------------------------------------------


def test_db_migrate_creates_the_schema_once(pg_cluster, tmp_path: Path) -> None:
    url = pg_cluster.create("fresh_list")
    try:
        said = []
        for _ in range(2):
            result = newsletter(tmp_path, "db", "migrate", NEWSLETTER_DB=url)
            assert result.exit_code == 0, result.output
            said.append(result.output.rpartition(": ")[2])
        now = latest("postgres")
        assert said == [
            f"schema created, version {now}\n",
            f"schema at version {now} (up to date)\n",
        ]
        conn = store.connect(url)
        conn.execute("DELETE FROM schema_migrations WHERE version > 10")
        for column in ("machine", "stopped"):  # as version 10 left it (11, 12 add them)
            conn.execute(f"ALTER TABLE send_workers DROP COLUMN {column}")
        for index in ("deliveries_failed", "deliveries_uncertain"):  # (13 adds them)
            conn.execute(f"DROP INDEX {index}")
        conn.close()
        result = newsletter(tmp_path, "db", "migrate", NEWSLETTER_DB=url)
        assert result.output.endswith(f": schema upgraded from version 10 to {now}\n")
        conn = store.connect(url)
        applied = conn.execute("SELECT version FROM schema_migrations ORDER BY version")
        assert [r[0] for r in applied] == list(range(10, now + 1))  # each once
        conn.close()
    finally:
        pg_cluster.drop("fresh_list")


def _a_whole_list(path: Path) -> None:
    """A SQLite list with something in every table that matters."""
    with Store(path) as s:
        ann = s.add("ann@example.org", name="Ann", language="fr", source="test",
                    consent=Consent(Basis.EXPRESS, "cli"))  # fmt: skip
        s.add("bob@example.org", language="en", source="test")
        gone = s.add("cy@example.org", language="both", source="test")
        s.remove("cy@example.org")  # its id must never come back
        s.unsubscribe(ann.id, "web:one-click")
        assert gone.id == 3
    ledger = Ledger(path, DEMO_ISSUE)
    ledger.start([(2, "bob@example.org", "", "en")], "example.org", "issues/2017-11", {},
                 {"en": "{}"})  # fmt: skip
    batch, _, _, _ = ledger.claim("w", 5, 60.0)
    ledger.mark("w", [Outcome(d.subscriber_id, State.FAILED, "550 5.1.1 no such user")
                      for d in batch])  # fmt: skip
    ledger.close()
    with Store(path) as s:
        BounceBook(s).record_refusals(DEMO_ISSUE)
    with Book(path) as book:
        book.add("2018-01", Path("issues/2018-01"), 2e9, "America/Toronto", 60.0, False, {}, {},
                 {"en": "{}"})  # fmt: skip


def test_db_copy_moves_a_whole_sqlite_list_into_an_empty_database(pg_url, tmp_path) -> None:
    source = tmp_path / "news.db"
    _a_whole_list(source)
    (tmp_path / "news.db.secret").write_text("s" * 64 + "\n")
    result = newsletter(tmp_path, "db", "copy", "--from", str(source), NEWSLETTER_DB=pg_url)
    assert result.exit_code == 0, result.output
    assert f"into NEWSLETTER_DB={pg_url.masked}:" in result.output
    assert "set NEWSLETTER_SECRET to its contents on every host" in result.output
    assert f"{source} is now news.db.copied-to-postgresql: a command, serve or a timer" in (
        result.output
    )
    assert f"must use NEWSLETTER_DB={pg_url.masked} (to use the file again" in result.output
    # the file is set aside: anything still pointed at it stops, takes nothing in
    aside = tmp_path / "news.db.copied-to-postgresql"
    assert not source.exists() and aside.is_file()
    stale = newsletter(tmp_path, "subscribers", "list", NEWSLETTER_DB=str(source))
    assert one_error_line(stale) == (
        f"error: {source}: this list was copied to PostgreSQL (db copy), and the file set aside"
        " as news.db.copied-to-postgresql: set NEWSLETTER_DB to the PostgreSQL URL (to use the "
        "file again, rename it back)"
    )
    assert not source.exists()
    old, new = store.connect(aside), store.connect(pg_url)
    try:
        from newsletter.store.copy import TABLES

        for table in TABLES:
            columns = [r[1] for r in old.execute(f"PRAGMA table_info({table})")]
            select = f"SELECT {', '.join(columns)} FROM {table}"
            want = sorted(map(tuple, old.execute(select)), key=repr)
            got = sorted(map(tuple, new.execute(select)), key=repr)
            assert got == want, table
        assert new.execute("SELECT count(*) FROM consents").fetchone()[0] == 1
    finally:
        old.close()
        new.close()
    with Store(pg_url) as s:
        assert s.list_identity() == Store(aside).list_identity()
        dan = s.add("dan@example.org", language="en", source="test")
        assert dan.id == 4  # after the highest id SQLite ever gave, the removed one's too
        assert s.find("ann@example.org").status == "unsubscribed"
    again = newsletter(tmp_path, "db", "copy", "--from", str(aside), NEWSLETTER_DB=pg_url)
    assert "already copied to PostgreSQL (its name says so)" in one_error_line(again)
    other = tmp_path / "other.db"
    Store(other).close()
    into_full = newsletter(tmp_path, "db", "copy", "--from", str(other), NEWSLETTER_DB=pg_url)
    line = one_error_line(into_full)
    assert "not empty (3 subscribers, " in line
    assert "db copy fills an empty database only" in line
    assert other.is_file()  # not set aside: nothing was copied


def test_db_copy_refuses_a_file_a_send_is_running_on(pg_url, tmp_path) -> None:
    """Its outcomes after the copy began would be missing from PostgreSQL: those readers
    would be mailed again by the send resumed there."""
    import os

    from newsletter.ledger import send_lock

    source = tmp_path / "news.db"
    _a_whole_list(source)
    with send_lock(source):
        busy = newsletter(tmp_path, "db", "copy", "--from", str(source), NEWSLETTER_DB=pg_url)
    assert one_error_line(busy) == (
        f"error: {source}: a send is running on it (process {os.getpid()}); copy once it has "
        "ended (or stop it: send resumes from PostgreSQL afterwards)"
    )
    assert source.is_file()  # neither copied nor set aside: the same copy works afterwards
    result = newsletter(tmp_path, "db", "copy", "--from", str(source), NEWSLETTER_DB=pg_url)
    assert result.exit_code == 0, result.output
    assert not source.exists()


def test_db_copy_needs_a_postgresql_target(tmp_path: Path) -> None:
    source = tmp_path / "news.db"
    Store(source).close()
    result = newsletter(
        tmp_path, "db", "copy", "--from", str(source), NEWSLETTER_DB=str(tmp_path / "x.db")
    )
    assert "db copy fills a PostgreSQL database" in one_error_line(result)


def test_join_is_for_postgresql(workdir: Path) -> None:
    sqlite = str(workdir / "news.db")
    result = newsletter(workdir, "send", f"issues/{DEMO_ISSUE}", "--join", NEWSLETTER_DB=sqlite)
    assert "--join is for a send shared by several hosts" in one_error_line(result)


def test_join_needs_a_send_to_join(workdir: Path, pg_url) -> None:
    result = newsletter(workdir, "send", f"issues/{DEMO_ISSUE}", "--join",
                        NEWSLETTER_DB=pg_url, NEWSLETTER_SECRET="s" * 32)  # fmt: skip
    assert one_error_line(result) == (
        f"error: issue {DEMO_ISSUE} has no send to join; start it on one host first: "
        f"newsletter send issues/{DEMO_ISSUE}"
    )


def test_the_web_app_on_postgresql_unsubscribes_and_saves_preferences(pg_url) -> None:
    from newsletter.config import load_settings
    from newsletter.subscribers import Status
    from newsletter.tokens import make_token, signing_key

    from .test_web import ONE_CLICK, Server, post

    settings = load_settings(None, environ={
        "NEWSLETTER_DB": str(pg_url),
        "NEWSLETTER_SECRET": "test-secret-with-enough-entropy-0123456789",
        "NEWSLETTER_BASE_URL": "https://news.example.org",
    })  # fmt: skip
    with Store(pg_url) as s:
        ann = s.add("ann@example.org", language="en", source="test").id
    token = make_token(signing_key(settings), ann)
    with Server(settings) as server:
        saved = post(server.url(f"/preferences/{token}"), {"language": "fr", "name": "Ann"})
        assert saved.status == 200
        assert post(server.url(f"/unsubscribe/{token}"), ONE_CLICK).status == 200
    with Store(pg_url) as s:
        after = s.get(ann)
        assert (after.status, after.language, after.left_how) == (
            Status.UNSUBSCRIBED, "fr", "web:one-click",
        )  # fmt: skip
        assert [e["kind"] for e in s.events(ann)] == ["join", "language", "name", "unsubscribe"]


def test_db_copy_warns_of_a_secret_that_would_break_mailed_links(tmp_path: Path, pg_url) -> None:
    source = tmp_path / "news.db"
    Store(source).close()
    (tmp_path / "news.db.secret").write_text("s" * 64 + "\n")
    result = newsletter(tmp_path, "db", "copy", "--from", str(source), NEWSLETTER_DB=pg_url,
                        NEWSLETTER_SECRET="t" * 64)  # fmt: skip
    assert result.exit_code == 0, result.output
    assert result.stderr.strip() == (
        f"warning: NEWSLETTER_SECRET is not the secret in {source}.secret, which signed the "
        "links already mailed (unsubscribe, preferences): they stop working unless every host "
        "sets NEWSLETTER_SECRET to that file's contents"
    )
    # copied again under its old name: said where it went, not "no database here"
    again = newsletter(tmp_path, "db", "copy", "--from", str(source), NEWSLETTER_DB=pg_url)
    assert "this list was copied to PostgreSQL (db copy)" in one_error_line(again)
