"""CSV import: the files spreadsheets really produce, and the ways they go wrong."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from newsletter.cli import main
from newsletter.csvimport import Duplicate, Rejected, read_csv
from newsletter.errors import StoreError
from newsletter.normalise import parse_language
from newsletter.subscribers import Row, SqliteStore, Status

FIXTURES = Path(__file__).parent / "fixtures"


def write(tmp_path: Path, data: str | bytes, name: str = "people.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return path


def run_import(db_path: Path, *args: str):
    env_file = db_path.parent / "empty.env"  # so a developer's own .env is not read
    env_file.touch()
    return CliRunner().invoke(
        main,
        ["--env-file", str(env_file), "subscribers", "import", *args],
        env={"NEWSLETTER_DB": str(db_path), "NEWSLETTER_DEFAULT_LANGUAGE": "both"},
    )


@pytest.mark.parametrize(
    ("text", "language"),
    [
        ("fr", "fr"), ("FR", "fr"), ("fr-CA", "fr"), ("fr_ca", "fr"), ("français", "fr"),
        ("Francais", "fr"), ("French", "fr"), ("English", "en"), ("en-GB", "en"),
        ("anglais", "en"), ("both", "both"), ("Bilingue", "both"), ("EN/FR", "both"),
        ("", None), ("   ", None),
    ],
)  # fmt: skip
def test_language_names(text: str, language: str | None):
    assert parse_language(text) == language


@pytest.mark.parametrize("text", ["de", "es-MX", "fr-en-ca!", "anglish"])
def test_unknown_languages(text: str):
    with pytest.raises(ValueError, match="use en, fr or both"):
        parse_language(text)


def test_spreadsheet_export_with_bom_semicolons_and_crlf():
    parsed = read_csv(FIXTURES / "subscribers-excel-fr.csv")
    assert parsed.rows == [
        Row("ann@example.org", "Ann Lefèvre", "fr", line=2),
        Row("bob@example.com", "Bob", "en", line=3),
        Row("carl@example.net", "Carl; Jr", "fr", line=4),
        Row("dee@example.org", "Dée", "fr", line=6),
    ]
    assert parsed.rejected == []


def test_bad_rows_are_rejected_with_their_line(tmp_path: Path):
    path = write(
        tmp_path,
        "email,name,language\n"
        "ann@example.org,Ann,en\n"
        "bob@,Bob,en\n"
        '"carl@example.net","Carl\nthe second",fr\n'  # a quoted value over two lines
        "dee@example.org,Dee,de\n"
        "eve@example.org,Eve,en,extra\n"
        ",No address,en\n"
        '"fay@example.org"x,Fay,en\n'
        "ann@example.org,Ann B,fr\n",
    )
    parsed = read_csv(path)
    assert [row.email for row in parsed.rows] == ["carl@example.net", "ann@example.org"]
    assert parsed.rows[0].line == 4
    assert parsed.rows[1] == Row("ann@example.org", "Ann B", "fr", line=10)
    assert parsed.rejected == [
        Rejected(3, "'bob@' is not a valid address: There must be something after the @-sign."),
        Rejected(6, "unknown language 'de'; use en, fr or both"),
        Rejected(7, "4 fields but the header has 3; quote values that contain the separator"),
        Rejected(8, "no e-mail address"),
        Rejected(
            9,
            "malformed CSV (',' expected after '\"'); "
            "quote whole values, doubling any quote inside",
        ),
    ]
    assert parsed.duplicates == [Duplicate(10, 2, "ann@example.org")]


def test_header_names_are_case_insensitive_and_other_columns_ignored(tmp_path: Path):
    path = write(tmp_path, "Status, EMAIL ,Language\nactive,ann@example.org,fr\n")
    assert read_csv(path).rows == [Row("ann@example.org", None, "fr", line=2)]


NON_ASCII_LOCAL = (
    "'usér@example.org' is not a valid address: 'é' before the @-sign would need SMTPUTF8, "
    "which this newsletter does not support; ask for another address"
)


def test_non_ascii_domains_become_ascii_and_non_ascii_local_parts_are_rejected(
    tmp_path: Path,
):
    path = write(
        tmp_path,
        "email,name\n"
        "ann@exämple.org,Ann\n"
        "Bob@EXÄMPLE.com,Bob\n"
        "usér@example.org,User\n"
        "ann@xn--exmple-cua.org,Ann B\n",  # the same person as line 2
    )
    parsed = read_csv(path)
    assert parsed.rows == [
        Row("Bob@xn--exmple-cua.com", "Bob", line=3),
        Row("ann@xn--exmple-cua.org", "Ann B", line=5),
    ]
    assert parsed.rejected == [Rejected(4, NON_ASCII_LOCAL)]
    assert parsed.duplicates == [Duplicate(5, 2, "ann@xn--exmple-cua.org")]

    db_path = tmp_path / "n.db"
    result = run_import(db_path, str(path))
    assert (result.exit_code, result.output.splitlines()[:3]) == (
        1,
        [
            f"imported {path}: 2 added, 0 updated, 0 unchanged, 1 rejected",
            f"{path}:4: {NON_ASCII_LOCAL}",
            f"{path}:5: ann@xn--exmple-cua.org also on line 2; this later row wins",
        ],
    )
    with SqliteStore(db_path) as store:
        assert [s.email for s in store.iter()] == [
            "Bob@xn--exmple-cua.com",
            "ann@xn--exmple-cua.org",
        ]
        assert store.find("ann@EXÄMPLE.org").name == "Ann B"


def test_the_export_formula_guard_is_taken_off(tmp_path: Path):
    path = write(
        tmp_path,
        "email,name,language\n"
        "'+x@example.org,'@home,fr\n"
        "'-y@example.org,'=HYPERLINK(1),en\n"
        'z@example.org,"\'\tTabbed",fr\n'
        "o'brien@example.org,'quoted',en\n",  # a ' before anything else is data
    )
    parsed = read_csv(path)
    assert parsed.rows == [
        Row("+x@example.org", "@home", "fr", line=2),
        Row("-y@example.org", "=HYPERLINK(1)", "en", line=3),
        Row("z@example.org", "Tabbed", "fr", line=4),
        Row("o'brien@example.org", "'quoted'", "en", line=5),
    ]
    assert parsed.rejected == []


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "people.csv: the file is empty; the first row must name the columns: "
              "email,name,language"),
        (b"\xef\xbb\xbf\r\n  \n", "people.csv: the file is empty; the first row must name the "
                                 "columns: email,name,language"),
        (b"email,name\n",
         "people.csv: the file has a header but no subscribers; add one per line below it"),
        (b"email\nann@example.org\n\xe9ric@example.org\n",
         "people.csv:3: not UTF-8 (byte 0xE9); save it as 'CSV UTF-8' and try again"),
        (b"who,what\nann@example.org,x\n",
         "people.csv:1: no email column (found 'who', 'what'); the first row must name the "
         "columns: email,name,language"),
        (b'email\n"ann@example.org\nbob@example.org\n',
         "people.csv:2: a quote opened on this line is never closed; close it or remove it"),
        (b"email,Courriel\nann@example.org,x\n",
         "people.csv:1: two columns mean 'email'; keep one"),
    ],
)  # fmt: skip
def test_unreadable_files_raise_one_store_error(tmp_path: Path, data: bytes, message: str):
    path = write(tmp_path, data)
    with pytest.raises(StoreError) as info:
        read_csv(path)
    assert str(info.value) == message.replace("people.csv", str(path))


def test_cli_import_report(tmp_path: Path):
    db_path = tmp_path / "n.db"
    with SqliteStore(db_path) as store:
        left = store.add("gone@example.org", language="en", source="test")
        store.unsubscribe(left.id, "web:one-click")
        store.add("bob@example.com", name="Bob", language="en", source="test")
        store.add("ann@example.org", name="Ann Lefèvre", language="fr", source="test")
    path = write(
        tmp_path,
        "email;name;language\n"
        "ann@example.org;Ann Lefèvre;fr\n"
        "bob@example.com;Bob;fr\n"
        "new@example.net;;\n"
        "gone@example.org;;\n"
        "bad@@example.org;;\n"
        "new@example.net;New;EN\n",
    )
    result = run_import(db_path, str(path), "--note", "signed up at the AGM")
    assert result.exit_code == 1  # the good rows are in, but not every row
    assert result.output.splitlines() == [
        f"imported {path}: 1 added, 1 updated, 1 unchanged, 1 rejected",
        f"{path}:5: gone@example.org is unsubscribed since "
        f"{_left_at(db_path, 'gone@example.org')}; not resubscribed "
        "(use --resubscribe only if they asked to come back)",
        f"{path}:6: 'bad@@example.org' is not a valid address: "
        "The part after the @-sign contains invalid characters: '@'.",
        f"{path}:7: new@example.net also on line 4; this later row wins",
        f"{path}: 1 row rejected, listed above; fix it and import the file again "
        "(rows already in stay unchanged)",
    ]
    with SqliteStore(db_path) as store:
        new = store.find("new@example.net")
        assert (new.name, new.language, new.consent_note) == ("New", "en", "signed up at the AGM")
        assert new.join_source == "import:people.csv"
        assert store.find("gone@example.org").status is Status.UNSUBSCRIBED

    # coming back needs their new consent, with how they gave it
    refused = run_import(db_path, str(path), "--resubscribe")
    assert refused.exit_code == 2 and "--consent express --note" in refused.output
    with SqliteStore(db_path) as store:
        assert store.find("gone@example.org").status is Status.UNSUBSCRIBED
    back = ["--resubscribe", "--consent", "express", "--note", "wrote to us"]
    since = _left_at(db_path, "gone@example.org")
    # a dry run names who would come back, and brings nobody
    tried = run_import(db_path, str(path), *back, "--dry-run")
    assert tried.output.splitlines()[:3] == [
        f"would import {path}: 0 added, 0 updated, 3 unchanged, 1 rejected",
        "1 resubscribed (--resubscribe)",
        f"{path}:5: gone@example.org is unsubscribed since {since}; would come back"
        " (--resubscribe)",
    ]
    with SqliteStore(db_path) as store:
        assert store.find("gone@example.org").status is Status.UNSUBSCRIBED
    result = run_import(db_path, str(path), *back)
    assert result.output.splitlines()[:3] == [
        f"imported {path}: 0 added, 0 updated, 3 unchanged, 1 rejected",
        "1 resubscribed (--resubscribe)",
        f"{path}:5: gone@example.org is unsubscribed since {since}; came back (--resubscribe)",
    ]
    with SqliteStore(db_path) as store:
        assert store.find("gone@example.org").status is Status.ACTIVE


def _left_at(db_path: Path, email: str) -> str:
    with SqliteStore(db_path) as store:
        return store.find(email).left_at


def test_cli_imports_nothing_from_a_file_it_cannot_read(tmp_path: Path):
    db_path = tmp_path / "n.db"
    path = write(tmp_path, b"email,name\nann@example.org,Ann\nbob@example.org,Beno\xeet\n")
    result = run_import(db_path, str(path))
    assert (result.exit_code, result.output) == (
        2,
        f"error: {path}:3: not UTF-8 (byte 0xEE); save it as 'CSV UTF-8' and try again\n",
    )
    with SqliteStore(db_path) as store:
        assert list(store.iter()) == []


def test_cli_import_dry_run_changes_nothing(tmp_path: Path):
    db_path = tmp_path / "n.db"
    path = write(tmp_path, "email\nann@example.org\n")
    result = run_import(db_path, str(path), "--dry-run")
    assert result.output == f"would import {path}: 1 added, 0 updated, 0 unchanged, 0 rejected\n"
    # no database yet: the dry run makes none (nor its secret)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("n.db")) == []
    with SqliteStore(db_path) as store:
        assert list(store.iter()) == []
    result = run_import(db_path, str(path), "--dry-run")  # against the list there now
    assert result.output == f"would import {path}: 1 added, 0 updated, 0 unchanged, 0 rejected\n"


def test_cli_missing_file(tmp_path: Path):
    result = run_import(tmp_path / "n.db", str(tmp_path / "nope.csv"))
    assert (result.exit_code, result.output) == (
        2,
        f"error: {tmp_path / 'nope.csv'}: cannot read: No such file or directory\n",
    )


def test_a_column_that_seems_meant_as_ours_is_pointed_out(tmp_path: Path):
    path = write(tmp_path, "Courriel;Prénom;Langue préférée\nann@example.org;Ann;fr\n")
    result = run_import(tmp_path / "n.db", str(path))
    assert result.exit_code == 0
    assert result.output.splitlines() == [
        f"imported {path}: 1 added, 0 updated, 0 unchanged, 0 rejected",
        f"{path}:1: column 'Prénom' is not read; name it name to import it",
        f"{path}:1: column 'Langue préférée' is not read; name it language to import it",
    ]
    # an export's own columns (status, join_source...) say nothing
    plain = write(
        tmp_path, "email,name,language,status,join_source\nb@example.org,B,en,,\n", "b.csv"
    )
    assert run_import(tmp_path / "n.db", str(plain)).output.count("\n") == 1
