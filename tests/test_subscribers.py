"""The subscriber store on a real SQLite file, signed tokens, and the `subscribers` commands."""

from __future__ import annotations

import csv
import os
import sqlite3
import stat
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from newsletter import db
from newsletter.cli import main
from newsletter.config import load_settings
from newsletter.consent import Basis, Consent
from newsletter.errors import StoreError
from newsletter.schema import MIGRATIONS
from newsletter.subscribers import Row, SqliteStore, Status, edition_for
from newsletter.tokens import (
    make_token,
    preferences_url,
    read_token,
    resolve_secret,
    unsubscribe_url,
)

from .conftest import DEMO_ISSUE, clean_env, run_cli


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "newsletter.db"


@pytest.fixture
def store(db_path: Path):
    with SqliteStore(db_path) as store:
        yield store


ASKED_AGAIN = Consent(Basis.EXPRESS, "cli")  # someone's new consent, given by hand


def _add(store: SqliteStore, email: str, language: str = "en", name: str = "") -> int:
    return store.add(email, name=name, language=language, source="test", consent_note="form").id


# -- the file and its schema ------------------------------------------------------------


def test_connect_creates_a_migrated_wal_database(db_path: Path):
    conn = db.connect(db_path)
    assert db_path.is_file()
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert db.migrate(conn) == len(MIGRATIONS)  # a second run finds nothing to do
    conn.close()


def test_a_non_ascii_domain_stored_by_0_1_0_is_migrated(db_path: Path, tmp_path: Path):
    # A file at schema 2, as 0.1.0 wrote it: the address kept as typed, and this person left.
    db_path.parent.mkdir(parents=True, exist_ok=True)
    raw = sqlite3.connect(db_path, isolation_level=None)
    for script in MIGRATIONS[:2]:
        raw.executescript(script)
    raw.execute("PRAGMA user_version = 2")
    raw.execute(
        "INSERT INTO subscribers (email, email_key, language, status, joined_at, join_source, "
        "updated_at) VALUES ('Ann@Exämple.org', 'Ann@exämple.org', 'fr', 'unsubscribed', "
        "'2026-01-01', 'test', '2026-01-02')"
    )
    raw.execute(
        "INSERT INTO subscriber_events (subscriber_id, email, at, kind, route) "
        "VALUES (1, 'Ann@exämple.org', '2026-01-02', 'unsubscribe', 'web:one-click')"
    )
    raw.close()
    with SqliteStore(db_path) as store:
        ann = store.find("Ann@exämple.org")
        assert (ann.email, ann.status) == ("Ann@xn--exmple-cua.org", Status.UNSUBSCRIBED)
        assert store.find("Ann@xn--exmple-cua.org") == ann
    source = tmp_path / "again.csv"
    source.write_text("email\nAnn@exämple.org\n", "utf-8")
    result = run(db_path, "import", str(source))
    assert "0 added" in result.output and "not resubscribed" in result.output
    assert run(db_path, "count").exit_code == 0
    with SqliteStore(db_path) as store:
        assert len(list(store.iter())) == 1


def test_a_newer_schema_is_refused(db_path: Path):
    db.connect(db_path).close()
    raw = sqlite3.connect(db_path)
    raw.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    raw.close()
    with pytest.raises(StoreError, match="newer than this program knows"):
        db.connect(db_path)


def test_a_file_that_is_not_a_database_is_a_store_error(tmp_path: Path):
    path = tmp_path / "notes.db"
    path.write_text("these are not the droids\n" * 100)
    with pytest.raises(StoreError, match="cannot open the database") as info:
        db.connect(path)
    assert info.value.path == path


def test_the_schema_enforces_languages_and_statuses(store: SqliteStore):
    ann = _add(store, "ann@example.org")
    with pytest.raises(sqlite3.IntegrityError):
        store.conn.execute("UPDATE subscribers SET language = 'de' WHERE id = ?", (ann,))
    with pytest.raises(sqlite3.IntegrityError):
        store.conn.execute("UPDATE subscribers SET status = 'gone' WHERE id = ?", (ann,))


# -- subscribers --------------------------------------------------------------------------


def test_add_and_find_compare_the_whole_address_without_case(store: SqliteStore):
    ann = store.add("Ann@Example.ORG", name="Ann", language="fr", source="cli", consent_note="x")
    assert ann.email == "Ann@Example.ORG"  # kept as given, for sending
    assert store.find("Ann@example.org") == ann
    assert store.find("ann@example.org") == ann  # one mailbox, one person
    with pytest.raises(StoreError, match="already subscribed"):
        store.add("ANN@EXAMPLE.org", language="en", source="cli")
    with pytest.raises(StoreError, match="not a valid address"):
        store.add("ann@", language="en", source="cli")


def test_a_non_ascii_domain_is_stored_in_its_ascii_form(store: SqliteStore):
    user = store.add("user@exämple.org", language="en", source="cli")
    assert user.email == "user@xn--exmple-cua.org"
    assert store.find("user@EXÄMPLE.org") == user
    assert store.find("user@xn--exmple-cua.org") == user
    with pytest.raises(StoreError, match="user@xn--exmple-cua.org is already subscribed"):
        store.add("user@xn--exmple-cua.org", language="en", source="cli")
    store.unsubscribe(user.id, "cli")
    assert store.remove("user@exämple.org")
    with pytest.raises(StoreError, match="record since removed"):
        store.add("user@XN--EXMPLE-CUA.org", language="en", source="cli")
    with pytest.raises(StoreError, match="'é' before the @-sign would need SMTPUTF8"):
        store.add("usér@example.org", language="en", source="cli")
    assert list(store.iter()) == []


def test_ids_are_never_reused(store: SqliteStore):
    first = _add(store, "ann@example.org")
    store.remove("ann@example.org")
    assert _add(store, "bob@example.org") > first


def test_unsubscribe_is_idempotent_and_recorded(store: SqliteStore):
    ann = _add(store, "ann@example.org")
    assert store.unsubscribe(ann, "web:one-click") is True
    left = store.get(ann)
    assert left.status is Status.UNSUBSCRIBED
    assert left.left_how == "web:one-click"
    assert store.unsubscribe(ann, "cli") is False
    assert store.get(ann) == left
    events = store.events(ann)
    assert [(e["kind"], e["route"]) for e in events] == [
        ("join", "test"),
        ("unsubscribe", "web:one-click"),
    ]
    assert list(store.iter(status=Status.ACTIVE)) == []


def test_a_complaint_outranks_an_unsubscribe_and_a_bounce_does_not(store: SqliteStore):
    ann = _add(store, "ann@example.org")
    store.unsubscribe(ann, "cli")
    assert store.set_status(ann, Status.BOUNCED, "smtp") is False
    assert store.set_status(ann, Status.COMPLAINED, "fbl") is True
    assert store.unsubscribe(ann, "web") is False
    assert store.get(ann).status is Status.COMPLAINED


def test_someone_who_left_needs_resubscribe_to_come_back(store: SqliteStore):
    ann = _add(store, "ann@example.org")
    store.unsubscribe(ann, "cli")
    with pytest.raises(StoreError, match="--resubscribe"):
        store.add("ann@example.org", language="fr", source="cli")
    # the store itself asks for their new, express consent (not only the command line)
    with pytest.raises(StoreError, match="only their new, express consent brings them back"):
        store.add("ann@example.org", language="fr", source="cli", resubscribe=True)
    back = store.add("ann@example.org", language="fr", source="cli", resubscribe=True,
                     consent=ASKED_AGAIN)  # fmt: skip
    assert (back.id, back.status, back.language, back.left_at) == (ann, Status.ACTIVE, "fr", None)


def test_removing_someone_who_left_does_not_let_an_import_bring_them_back(store: SqliteStore):
    ann = _add(store, "ann@example.org")
    store.unsubscribe(ann, "web:one-click")
    store.remove("ann@example.org")
    result = store.import_rows(
        [Row("ann@EXAMPLE.org", line=2)], source="import:x.csv", default_language="en"
    )
    assert (result.added, [k.status for k in result.kept]) == (0, [Status.UNSUBSCRIBED])
    assert store.find("ann@example.org") is None
    with pytest.raises(StoreError, match="record since removed"):
        store.add("ann@example.org", language="en", source="cli")
    # Someone removed while on the list (on request to erase their data) is not brought
    # back by an old file either; --resubscribe, on their new request, does.
    _add(store, "bob@example.org")
    store.remove("bob@example.org")
    result = store.import_rows(
        [Row("bob@example.org", line=3)], source="import:x.csv", default_language="en"
    )
    assert (result.added, [k.why() for k in result.kept]) == (
        0,
        [f"bob@example.org was removed from the list on {result.kept[0].left_at}"],
    )
    with pytest.raises(StoreError, match="was removed from the list on .*; add --resubscribe"):
        store.add("bob@example.org", language="en", source="cli")
    assert store.add("bob@example.org", language="en", source="cli", resubscribe=True,
                     consent=ASKED_AGAIN)  # fmt: skip


def test_edition_follows_the_language_preference(store: SqliteStore):
    ann = _add(store, "ann@example.org", "en")
    assert edition_for(store.get(ann)) == "en"
    assert store.set_language(ann, "fr", "test") is True
    assert edition_for(store.get(ann)) == "fr"
    assert store.set_language(ann, "fr", "test") is False
    store.set_language(ann, "both", "test")
    assert edition_for(store.get(ann)) == "bilingual"
    with pytest.raises(StoreError):
        store.set_language(ann, "de", "test")


def test_iter_filters_and_counts(store: SqliteStore):
    _add(store, "a@example.org", "en")
    _add(store, "b@example.org", "fr")
    c = _add(store, "c@example.org", "fr")
    store.unsubscribe(c, "cli")
    assert [s.email for s in store.iter(status="active", language="fr")] == ["b@example.org"]
    assert [s.email for s in store.iter()] == ["a@example.org", "b@example.org", "c@example.org"]
    assert store.counts() == {
        ("en", Status.ACTIVE): 1,
        ("fr", Status.ACTIVE): 1,
        ("fr", Status.UNSUBSCRIBED): 1,
    }


def test_import_adds_updates_and_never_resubscribes_by_default(store: SqliteStore):
    kept = _add(store, "ann@example.org", "en", name="Ann")
    _add(store, "bob@example.org", "en", name="Bob")
    _add(store, "cy@example.org", "fr", name="Cy")
    store.unsubscribe(kept, "web:one-click")
    rows = [
        Row("ann@example.org", "Ann", "fr", line=2),
        Row("bob@example.org", None, None, line=3),  # blanks keep what the store has
        Row("cy@example.org", "Cy", "both", line=4),
        Row("dee@example.net", None, None, line=5),  # a new one gets the default
    ]
    result = store.import_rows(rows, source="import:x.csv", default_language="both")
    assert (result.added, result.updated, result.unchanged) == (1, 1, 1)
    assert [(k.row.line, k.status) for k in result.kept] == [(2, Status.UNSUBSCRIBED)]
    assert store.find("ann@example.org").status is Status.UNSUBSCRIBED
    assert store.find("ann@example.org").language == "en"
    assert store.find("bob@example.org").name == "Bob"
    assert store.find("cy@example.org").language == "both"
    dee = store.find("dee@example.net")
    assert (dee.language, dee.join_source) == ("both", "import:x.csv")

    again = store.import_rows(
        rows, source="import:x.csv", default_language="both", resubscribe=True,
        consent=ASKED_AGAIN,
    )  # fmt: skip
    assert again.resubscribed == 1
    assert [(k.row.line, k.status) for k in again.came_back] == [(2, Status.UNSUBSCRIBED)]
    assert store.find("ann@example.org").status is Status.ACTIVE
    assert store.find("ann@example.org").language == "fr"


def test_import_is_one_transaction(store: SqliteStore):
    rows = [Row("ann@example.org", line=2), Row("bob@example.org", language="de", line=3)]
    with pytest.raises(sqlite3.IntegrityError):
        store.import_rows(rows, source="import:x.csv", default_language="en")
    assert list(store.iter()) == []
    result = store.import_rows(rows[:1], source="t", default_language="en", dry_run=True)
    assert result.added == 1
    assert list(store.iter()) == []


def test_data_survives_reopening(db_path: Path):
    with SqliteStore(db_path) as store:
        ann = _add(store, "ann@example.org", "fr", name="Ann")
        store.unsubscribe(ann, "cli")
    with SqliteStore(db_path) as store:
        again = store.get(ann)
    assert (again.email, again.language, again.status) == (
        "ann@example.org",
        "fr",
        Status.UNSUBSCRIBED,
    )


def test_two_connections_unsubscribing_at_once_change_it_once(db_path: Path):
    with SqliteStore(db_path) as store:
        people = [_add(store, f"p{i}@example.net") for i in range(20)]
    stores = [SqliteStore(db_path), SqliteStore(db_path)]
    results: dict[int, list[bool]] = {person: [] for person in people}
    barrier = threading.Barrier(2)

    def work(store: SqliteStore) -> None:
        for person in people:
            barrier.wait()
            results[person].append(store.unsubscribe(person, "race"))

    threads = [threading.Thread(target=work, args=(s,)) for s in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for s in stores:
        s.close()
    assert all(sorted(changed) == [False, True] for changed in results.values())
    with SqliteStore(db_path) as store:
        for person in people:
            assert [e["kind"] for e in store.events(person)].count("unsubscribe") == 1


# -- tokens ---------------------------------------------------------------------------------


def test_tokens_round_trip_and_refuse_any_change():
    token = make_token(b"k" * 32, 42)
    assert len(token) == 32 and "=" not in token
    assert read_token(b"k" * 32, token) == 42
    assert read_token(b"j" * 32, token) is None
    for i in range(len(token)):
        for c in "AQg_-9":
            if token[i] != c:
                assert read_token(b"k" * 32, token[:i] + c + token[i + 1 :]) is None
    assert read_token(b"k" * 32, token[:-1]) is None
    assert read_token(b"k" * 32, token + "A") is None
    assert read_token(b"k" * 32, "é" * 32) is None
    assert unsubscribe_url("https://news.example.org/", token) == (
        f"https://news.example.org/unsubscribe/{token}"
    )
    assert preferences_url("https://news.example.org", token) == (
        f"https://news.example.org/preferences/{token}"
    )


def test_a_secret_is_generated_once_beside_the_database(tmp_path: Path, capsys):
    settings = load_settings(None, environ={"NEWSLETTER_DB": str(tmp_path / "n.db")})
    secret = resolve_secret(settings)
    path = tmp_path / "n.db.secret"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert capsys.readouterr().err == (
        f"generated a signing secret in {path}; keep it with the database "
        "(or set NEWSLETTER_SECRET)\n"
    )
    assert resolve_secret(settings) == secret
    assert capsys.readouterr().err == ""
    assert secret.decode() not in capsys.readouterr().out
    other = load_settings(
        None, environ={"NEWSLETTER_DB": str(tmp_path / "n.db"), "NEWSLETTER_SECRET": "s" * 40}
    )
    assert resolve_secret(other) == b"s" * 40


def test_a_damaged_secret_file_is_refused(tmp_path: Path):
    (tmp_path / "n.db.secret").write_text("\n")
    settings = load_settings(None, environ={"NEWSLETTER_DB": str(tmp_path / "n.db")})
    with pytest.raises(StoreError, match="restore it from a backup"):
        resolve_secret(settings)


# -- commands -------------------------------------------------------------------------------


def run(db_path: Path, *args: str):
    env_file = db_path.parent / "empty.env"  # so a developer's own .env is not read
    env_file.parent.mkdir(parents=True, exist_ok=True)
    env_file.touch()
    return CliRunner().invoke(
        main,
        ["--env-file", str(env_file), "subscribers", *args],
        env={"NEWSLETTER_DB": str(db_path), "NEWSLETTER_DEFAULT_LANGUAGE": "both"},
    )


def test_cli_add_list_unsubscribe_count(db_path: Path):
    assert run(db_path, "add", "ann@example.org", "--name", "Ann", "--language", "FR").output == (
        "added ann@example.org (fr)\n"
    )
    assert run(db_path, "add", "bob@example.org").output == "added bob@example.org (both)\n"
    result = run(db_path, "unsubscribe", "ann@example.org")
    assert (result.exit_code, result.output) == (0, "unsubscribed ann@example.org\n")
    result = run(db_path, "unsubscribe", "ann@example.org")
    assert result.output == "ann@example.org was already unsubscribed\n"
    assert run(db_path, "list").output == (
        "ann@example.org\tfr\tunsubscribed\tAnn\nbob@example.org\tboth\tactive\t\n"
    )
    assert run(db_path, "list", "--status", "active").output == "bob@example.org\tboth\tactive\t\n"
    assert run(db_path, "count").output.splitlines() == [
        "                  en     fr   both  total",
        "active             0      0      1      1",
        "unsubscribed       0      1      0      1",
        "bounced            0      0      0      0",
        "complained         0      0      0      0",
        "total              0      1      1      2",
    ]


def test_cli_errors_are_one_line_with_exit_2(db_path: Path):
    run(db_path, "add", "ann@example.org")
    cases = {
        ("add", "ann@"): "error: 'ann@' is not a valid address: "
        "There must be something after the @-sign.\n",
        ("add", "ann@example.org"): "error: ann@example.org is already subscribed\n",
        ("remove", "zed@example.org"): "error: zed@example.org is not on the list; "
        "check the spelling with `list`\n",
        ("unsubscribe", "zed@example.org"): "error: zed@example.org is not on the list; "
        "check the spelling with `list`\n",
    }
    for args, message in cases.items():
        result = run(db_path, *args)
        assert (result.exit_code, result.output) == (2, message), args
    assert run(db_path, "add", "x@example.org", "--language", "de").exit_code == 2


def test_cli_add_converts_a_non_ascii_domain_and_refuses_a_non_ascii_local_part(db_path: Path):
    result = run(db_path, "add", "user@exämple.org")
    assert (result.exit_code, result.output) == (0, "added user@xn--exmple-cua.org (both)\n")
    result = run(db_path, "add", "user@xn--exmple-cua.org")
    assert (result.exit_code, result.output) == (
        2,
        "error: user@xn--exmple-cua.org is already subscribed\n",
    )
    result = run(db_path, "add", "usér@example.org")
    assert (result.exit_code, result.output) == (
        2,
        "error: 'usér@example.org' is not a valid address: 'é' before the @-sign would need "
        "SMTPUTF8, which this newsletter does not support; ask for another address\n",
    )
    assert run(db_path, "list").output == "user@xn--exmple-cua.org\tboth\tactive\t\n"


def test_a_subscriber_with_a_non_ascii_domain_can_be_sent_to(workdir: Path):
    db_path = workdir / "news.db"
    assert run(db_path, "add", "user@exämple.org", "--name", "Ü").exit_code == 0
    env = clean_env(NEWSLETTER_DB=str(db_path), NEWSLETTER_SECRET="s" * 40)
    result = run_cli("send", f"issues/{DEMO_ISSUE}", "--dry-run", cwd=workdir, env=env)
    assert result.returncode == 0, result.stderr
    assert "bilingual         1 subscriber(s)" in result.stdout


def test_cli_remove_and_export(db_path: Path, tmp_path: Path):
    run(db_path, "add", "ann@example.org", "--name", "Ann, Jr", "--language", "en")
    run(db_path, "add", "bob@example.org", "--language", "fr")
    assert run(db_path, "remove", "bob@example.org").output == (
        "removed bob@example.org (name, language, status); the audit trail keeps the address\n"
    )
    out = tmp_path / "out.csv"
    result = run(db_path, "export", str(out))
    assert result.exit_code == 0
    # a byte-order mark first: Excel then reads the file as UTF-8 (import skips it)
    assert out.read_bytes().startswith(b"\xef\xbb\xbfemail,")
    lines = out.read_text("utf-8-sig").splitlines()
    assert lines[0] == (
        "email,name,language,status,joined_at,join_source,consent_note,left_at,left_how"
    )
    assert lines[1].startswith('ann@example.org,"Ann, Jr",en,active,')
    assert lines[1].endswith(",cli,added by hand,,")
    assert len(lines) == 2
    # piped, the same rows without the mark (another program reads them)
    assert run(db_path, "export").output.splitlines() == lines
    assert run(db_path, "export", "-").output.splitlines() == lines  # not a file named "-"
    assert not Path("-").exists()
    # What export writes, import reads back without change.
    result = run(db_path, "import", str(out))
    assert result.output.splitlines()[0] == (
        f"imported {out}: 0 added, 0 updated, 1 unchanged, 0 rejected"
    )


def test_names_are_one_line_and_exports_are_formula_safe(tmp_path: Path) -> None:
    db_path = tmp_path / "data" / "news.db"
    source = tmp_path / "people.csv"
    source.write_text(
        'email,name,language\nz@example.org,"Zed\nBcc: evil@example.com",en\n'
        "f@example.org,=HYPERLINK(1),fr\n",
        "utf-8",
    )
    assert run(db_path, "import", str(source)).exit_code == 0
    listed = run(db_path, "list").output
    assert "z@example.org\ten\tactive\tZed Bcc: evil@example.com\n" in listed
    out = tmp_path / "out.csv"
    assert run(db_path, "export", str(out)).exit_code == 0
    rows = list(csv.reader(out.open(encoding="utf-8-sig")))
    assert rows[2][:2] == ["f@example.org", "'=HYPERLINK(1)"]


def test_export_then_import_is_a_round_trip(db_path: Path, tmp_path: Path) -> None:
    for args in (
        ["+x@example.org", "--name", "@home", "--language", "fr"],
        ["--name", "=1+2", "--language", "en", "--", "-y@example.org"],
        ["z@example.org", "--name", "-Zed-"],
    ):
        assert run(db_path, "add", *args).exit_code == 0
    listed = run(db_path, "list").output
    first, second = tmp_path / "first.csv", tmp_path / "second.csv"
    assert run(db_path, "export", str(first)).exit_code == 0
    assert "'+x@example.org,'@home,fr," in first.read_text("utf-8-sig")  # guarded, as before
    result = run(db_path, "import", str(first))
    assert (result.exit_code, result.output) == (
        0,
        f"imported {first}: 0 added, 0 updated, 3 unchanged, 0 rejected\n",
    )
    assert run(db_path, "list").output == listed
    assert run(db_path, "export", str(second)).exit_code == 0
    assert second.read_text("utf-8") == first.read_text("utf-8")


def test_a_database_held_by_another_command_is_one_line(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
):
    import sqlite3

    from newsletter import db

    run(db_path, "add", "ann@example.org")
    monkeypatch.setattr(db, "BUSY_TIMEOUT_MS", 100)  # an import holding the lock for longer
    holder = sqlite3.connect(db_path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        result = run(db_path, "add", "bob@example.org")
    finally:
        holder.rollback()
        holder.close()
    assert (result.exit_code, result.output) == (
        2,
        "error: the database is busy: another newsletter command is writing to it; "
        "run this again when that one ends\n",
    )
    assert run(db_path, "add", "bob@example.org").exit_code == 0


def test_an_import_keeps_what_people_chose_themselves(db_path: Path, tmp_path: Path) -> None:
    sheet = tmp_path / "members.csv"
    sheet.write_text("email,name,language\nann@example.org,Ann,fr\nbob@example.org,Bob,fr\n")
    assert run(db_path, "import", str(sheet)).exit_code == 0
    with SqliteStore(db_path) as store:
        ann = store.find("ann@example.org")
        store.set_language(ann.id, "both", "web:preferences")  # on the preferences page
        store.set_name(ann.id, "Annie", "web:preferences")
        store.set_language(store.find("bob@example.org").id, "en", "cli")  # by the owner
    again = run(db_path, "import", str(sheet))
    TODAY = datetime.now(UTC).date().isoformat()  # noqa: N806 - the stamps are UTC
    assert again.output.splitlines() == [
        f"imported {sheet}: 0 added, 1 updated, 1 unchanged, 0 rejected",
        f"{sheet}:2: ann@example.org keeps the name they chose themselves on "
        f"{TODAY} (Annie); the file is older on that point",
        f"{sheet}:2: ann@example.org keeps the language they chose themselves on "
        f"{TODAY} (both); the file is older on that point",
    ]
    with SqliteStore(db_path) as store:
        ann, bob = store.find("ann@example.org"), store.find("bob@example.org")
        assert (ann.name, ann.language, bob.language) == ("Annie", "both", "fr")
