"""NEWSLETTER_DB and `db copy --from` given something that is not a list of ours: one line
each, a non-zero exit, no password shown, and no file made, changed or renamed."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest

from .conftest import ROOT

SAMPLES = ROOT / "samples" / "subscribers.csv"
SECRET = "kvSecret-8d1f"


def _one_line(result, exit_code: int = 2) -> str:
    assert result.returncode == exit_code, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = (result.stdout + result.stderr).strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def _files(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("", "error: NEWSLETTER_DB is empty: give the database file (e.g. newsletter.db)"),
        ("   ", "error: NEWSLETTER_DB is empty:"),
        (
            f"host=/tmp dbname=nl password={SECRET}",
            "error: NEWSLETTER_DB is neither a file path nor a URL this tool reads (libpq's",
        ),
        (f"connect_timeout=5 password={SECRET}", "error: NEWSLETTER_DB is neither a file path"),
        (f"postgresql:/u:{SECRET}@h/db", "error: NEWSLETTER_DB is neither a file path nor"),
        (
            f"postgresql://u:pa/{SECRET}@h/db",
            "error: NEWSLETTER_DB=postgresql://u:***@h/db: cannot read it as a URL; in the user",
        ),
        ("file:y.db", "error: NEWSLETTER_DB: give the SQLite file as a plain path"),
        (f"x.db?password={SECRET}", "error: NEWSLETTER_DB is neither a file path nor a URL"),
        ("x.db?mode=ro", "error: NEWSLETTER_DB: give the SQLite file as a plain path"),
        ("news\n.db", "error: NEWSLETTER_DB holds a line break or another control character"),
    ],
    ids=[
        "empty",
        "blank",
        "libpq keywords",
        "libpq keywords later",
        "one slash",
        "password with a slash",
        "file URI",
        "query with a password",
        "query",
        "line break",
    ],
    # fmt: skip
)
@pytest.mark.parametrize("command", [("status",), ("subscribers", "import", str(SAMPLES))])
def test_a_database_setting_that_cannot_be_a_list_is_refused(
    cli, workdir, value, expected, command
):
    before = _files(workdir)
    line = _one_line(cli(*command, NEWSLETTER_DB=value))
    assert line.startswith(expected), line
    assert SECRET not in line
    assert _files(workdir) == before  # no database, lock or folder made from the value


def test_a_folder_is_not_taken_for_the_database_file(cli, workdir: Path) -> None:
    (workdir / "data").mkdir()
    for command in (("status",), ("subscribers", "import", str(SAMPLES)), ("db", "migrate")):
        line = _one_line(cli(*command, NEWSLETTER_DB="data"))
        assert line == (
            "error: data: is a folder; NEWSLETTER_DB names the database file, "
            "e.g. data/newsletter.db"
        ), line


def test_a_list_copied_away_is_not_started_again_under_its_old_name(cli, workdir: Path) -> None:
    assert cli("subscribers", "import", str(SAMPLES), NEWSLETTER_DB="main.db").returncode == 0
    aside = "main.db.copied-to-postgresql"
    for part in ("main.db", "main.db-wal", "main.db-shm"):
        if (workdir / part).exists():
            (workdir / part).rename(workdir / part.replace("main.db", aside))
    before = _files(workdir)
    for command in (("subscribers", "import", str(SAMPLES)), ("db", "migrate"), ("status",)):
        line = _one_line(cli(*command, NEWSLETTER_DB="main.db"))
        assert "this list was copied to PostgreSQL (db copy)" in line, line
    assert _files(workdir) == before


def _foreign(path: Path) -> bytes:
    with sqlite3.connect(path) as other:
        other.execute("CREATE TABLE subscribers (who TEXT)")  # another program's, same name
        other.execute("INSERT INTO subscribers VALUES ('someone')")
    other.close()
    return path.read_bytes()


def test_another_programs_sqlite_file_is_left_as_it_was(cli, workdir: Path) -> None:
    theirs = workdir / "theirs.db"
    content = _foreign(theirs)
    for command in (("db", "migrate"), ("subscribers", "import", str(SAMPLES))):
        line = _one_line(cli(*command, NEWSLETTER_DB=str(theirs)))
        assert line == (
            f"error: {theirs}: holds tables but not this tool's schema: it was made by another "
            "program; give another file in NEWSLETTER_DB (it was left as it was)"
        )
    assert theirs.read_bytes() == content


def test_db_copy_takes_only_a_list_of_ours_and_never_changes_anything_else(
    cli, workdir: Path
) -> None:
    # the target is never reached (no server there): the source is refused first
    target = f"postgresql://guarded:{SECRET}@/nl?host={workdir / 'nowhere'}"
    foreign = workdir / "theirs.db"
    content = _foreign(foreign)
    (workdir / "empty.db").touch()
    shutil.copy(SAMPLES, workdir / "people.csv")
    cli("subscribers", "import", str(SAMPLES), NEWSLETTER_DB="old.db")
    (workdir / "old.db").rename(workdir / "old.db.copied-to-postgresql")
    cases = {
        "theirs.db": "not a newsletter list (none of this tool's tables)",
        "empty.db": "not a newsletter list (none of this tool's tables)",
        "people.csv": "not a SQLite database; give --from the newsletter.db to copy",
        "old.db.copied-to-postgresql": "already copied to PostgreSQL (its name says so)",
        f"postgresql://u:{SECRET}@/other?host=/tmp": "--from takes the SQLite file to copy",
    }
    before = _files(workdir)
    for source, words in cases.items():
        line = _one_line(cli("db", "copy", "--from", source, NEWSLETTER_DB=target))
        assert words in line and SECRET not in line, line
    assert _files(workdir) == before
    assert foreign.read_bytes() == content and (workdir / "empty.db").stat().st_size == 0


@pytest.mark.parametrize("scheme", ["PostgreSQL", "POSTGRES"])
def test_a_scheme_in_capitals_is_read_and_its_password_never_shown(cli, workdir, scheme) -> None:
    url = f"{scheme}://guarded:{SECRET}@/nl?host={workdir / 'nowhere'}"
    line = _one_line(cli("db", "migrate", NEWSLETTER_DB=url))
    assert SECRET not in line
    assert line.startswith("error: NEWSLETTER_DB=postgres"), line
    assert "cannot reach the server" in line, line


def _open_new(path: str, barrier, results) -> None:
    from newsletter import db
    from newsletter.errors import StoreError

    barrier.wait()
    try:
        db.connect(path).close()
        results.put("ok")
    except StoreError as exc:
        results.put(str(exc))


def test_processes_making_the_same_new_list_at_once_all_open_it(tmp_path: Path) -> None:
    # e.g. `due` from a timer and `serve` started together on a fresh machine: one makes the
    # file, the others wait for it and open it (they were told "made by another program",
    # or "database is locked")
    import multiprocessing

    fork = multiprocessing.get_context("fork")
    for attempt in range(12):
        path = str(tmp_path / f"news{attempt}.db")
        barrier, results = fork.Barrier(4), fork.Queue()
        opening = [fork.Process(target=_open_new, args=(path, barrier, results)) for _ in "abcd"]
        for p in opening:
            p.start()
        for p in opening:
            p.join(60)
        assert [results.get(timeout=5) for _ in opening] == ["ok"] * 4


def test_a_list_restored_from_a_dump_is_named_as_such(cli, workdir: Path) -> None:
    # sqlite3's .dump does not carry the schema version: the tables are ours, the file is
    # not another program's, and the message says how to restore it instead
    assert cli("subscribers", "import", str(SAMPLES), NEWSLETTER_DB="news.db").returncode == 0
    with sqlite3.connect(workdir / "news.db") as source:
        dump = "\n".join(source.iterdump())
    source.close()
    with sqlite3.connect(workdir / "restored.db") as restored:
        restored.executescript(dump)
    restored.close()
    line = _one_line(cli("status", NEWSLETTER_DB="restored.db"))
    assert line == (
        "error: restored.db: has this tool's tables but no schema version (restored from a "
        ".dump?); restore it from the file itself, or from sqlite3's .backup, which keep it"
    )


def test_a_dry_run_import_into_a_list_copied_away_says_so(cli, workdir: Path) -> None:
    (workdir / "main.db.copied-to-postgresql").write_bytes(b"")
    result = cli("subscribers", "import", str(SAMPLES), "--dry-run", NEWSLETTER_DB="main.db")
    assert "this list was copied to PostgreSQL (db copy)" in _one_line(result)


def test_a_folder_gone_is_not_called_read_only(tmp_path: Path) -> None:
    from newsletter.db import describe

    gone = describe(sqlite3.OperationalError("unable to open database file"), tmp_path / "x/n.db")
    assert "check that it and its folder are still there" in str(gone)


def test_db_migrate_says_whether_it_created_upgraded_or_found_the_schema(cli, workdir: Path):
    from newsletter.store.migrate import latest

    now = latest("sqlite")
    said = [_one_line(cli("db", "migrate", NEWSLETTER_DB="list.db"), 0) for _ in range(2)]
    assert said == [
        f"list.db: schema created, version {now}",
        f"list.db: schema at version {now} (up to date)",
    ]
    conn = sqlite3.connect(workdir / "list.db")  # back to version 10, as it left a file
    for column in ("machine", "stopped"):  # (11 and 12 add them)
        conn.execute(f"ALTER TABLE send_workers DROP COLUMN {column}")
    conn.executescript(  # (13 turns this index into partial ones)
        "DROP INDEX deliveries_sending; DROP INDEX deliveries_deferred;"
        " DROP INDEX deliveries_failed; DROP INDEX deliveries_uncertain;"
        " CREATE INDEX deliveries_state ON deliveries (issue_id, state, next_attempt);"
    )
    conn.execute("PRAGMA user_version = 10")
    conn.close()
    line = _one_line(cli("db", "migrate", NEWSLETTER_DB="list.db"), 0)
    assert line == f"list.db: schema upgraded from version 10 to {now}"
