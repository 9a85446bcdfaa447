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
            "error: NEWSLETTER_DB looks like libpq's key=value form; write it as a URL,",
        ),
        ("file:y.db", "error: NEWSLETTER_DB=file:y.db: give the SQLite file as a plain path"),
        ("x.db?mode=ro", "error: NEWSLETTER_DB=x.db?mode=ro: give the SQLite file as a plain"),
        ("news\n.db", "error: NEWSLETTER_DB holds a line break or another control character"),
    ],
    ids=["empty", "blank", "libpq keywords", "file URI", "query", "line break"],
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
