"""The findings of the security review of issue #14, each reproduced with its exact input.

Each test first feeds what the review fed (a hostile setting, name, request or brief) and
then checks the fixed behaviour. Findings of the same shape share a table.
"""

from __future__ import annotations

import dataclasses
import email
import signal
import socket
import sqlite3
import ssl
import subprocess
import sys
import threading
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from email import policy
from email.header import decode_header, make_header
from email.headerregistry import HeaderRegistry, UniqueAddressHeader
from pathlib import Path

import pytest
import uvicorn
from click.testing import CliRunner

from newsletter import db, web
from newsletter.build import build_issue
from newsletter.cli import main
from newsletter.config import load_settings
from newsletter.fastmime import compile_edition
from newsletter.hosts import allowed_hosts, check_name
from newsletter.message import Recipient, build_message
from newsletter.preview import Preview
from newsletter.preview import create_app as preview_app
from newsletter.render import Templates
from newsletter.schema import LIST_IDENTITY, MIGRATIONS
from newsletter.signup.stamps import make_stamp
from newsletter.subscribers import SqliteStore, Status
from newsletter.tokens import link_keys, make_token, resolve_secret, signing_key
from newsletter.webguard import HEADERS

from .conftest import DEMO_ISSUE, ROOT, clean_env
from .smtp_server import Handler, Server
from .test_web import ONE_CLICK, Reply, post, request
from .test_web import Server as WebServer

INJECTION = "\r\nBcc: victim@example.com"


def newsletter(workdir: Path, *args: str, **env: str):
    """The CLI in-process, with only the settings given (a developer's .env is not read)."""
    env_file = workdir / "test.env"
    env_file.touch()
    return CliRunner().invoke(main, ["--env-file", str(env_file), *args], env=env)


def one_error_line(result) -> str:
    assert result.exit_code == 2, result.output
    (line,) = result.stderr.strip().splitlines()
    assert "Traceback" not in result.output
    return line


# --- 1, 9: settings that reach a header, or weaken the transport, are checked at load ---

DKIM = {"NEWSLETTER_DKIM_KEY": "dkim.pem", "NEWSLETTER_DKIM_SELECTOR": "news2017",
        "NEWSLETTER_DKIM_DOMAIN": "example.org"}  # fmt: skip
CLEARTEXT = {"NEWSLETTER_SMTP_HOST": "mail.example.org", "NEWSLETTER_SMTP_SECURITY": "none",
             "NEWSLETTER_SMTP_USER": "news", "NEWSLETTER_SMTP_PASSWORD": "hunter2"}  # fmt: skip

BAD_SETTINGS = {
    "1: CR/LF in the DKIM selector": (
        {**DKIM, "NEWSLETTER_DKIM_SELECTOR": "sel" + INJECTION},
        "error: NEWSLETTER_DKIM_SELECTOR='sel\\r\\nBcc: victim@example.com': must be a DNS "
        "name in ASCII",
    ),
    "1: CR/LF in the DKIM domain": (
        {**DKIM, "NEWSLETTER_DKIM_DOMAIN": "example.org" + INJECTION},
        "error: NEWSLETTER_DKIM_DOMAIN='example.org\\r\\nBcc: victim@example.com': must be a "
        "DNS name in ASCII",
    ),
    "1: a DKIM domain not in its ASCII form": (
        {**DKIM, "NEWSLETTER_DKIM_DOMAIN": "brèves.example.org"},
        "error: NEWSLETTER_DKIM_DOMAIN='brèves.example.org': must be written in ASCII, as DNS "
        "has it: xn--brves-5ra.example.org",
    ),
    "1: a bounce domain not in its ASCII form": (
        {"NEWSLETTER_BOUNCE_DOMAIN": "rebonds.brèves.example.org"},
        "error: NEWSLETTER_BOUNCE_DOMAIN='rebonds.brèves.example.org': must be written in "
        "ASCII, as DNS has it: rebonds.xn--brves-5ra.example.org",
    ),
    "1: a sender address with nothing after the @": (
        {"NEWSLETTER_FROM_EN": "news@"},
        "error: NEWSLETTER_FROM_EN='news@': must be a plain address, e.g. news@example.org",
    ),
    "1: half a DKIM setup would send unsigned": (
        {**DKIM, "NEWSLETTER_DKIM_SELECTOR": ""},
        "error: NEWSLETTER_DKIM_KEY is set but NEWSLETTER_DKIM_SELECTOR is empty: DKIM signing "
        "needs NEWSLETTER_DKIM_KEY, ",
    ),
    "1: a line break in the sender name": (
        {"NEWSLETTER_FROM_NAME_EN": "News" + INJECTION},
        "error: NEWSLETTER_FROM_NAME_EN='News\\r\\nBcc: victim@example.com': must be one line",
    ),
    "1: a control character in the reply-to address": (
        {"NEWSLETTER_REPLY_TO": "editors\x1c@example.org"},
        "error: NEWSLETTER_REPLY_TO='editors\\x1c@example.org': must be a plain address",
    ),
    "1: a sender address that needs SMTPUTF8": (
        {"NEWSLETTER_FROM_FR": "brèves@example.org"},
        "error: NEWSLETTER_FROM_FR='brèves@example.org': the part before the @ must be ASCII "
        "(anything else needs SMTPUTF8, which this newsletter does not use)",
    ),
    "1: a reply-to domain with no ASCII form": (
        {"NEWSLETTER_REPLY_TO": "editors@☃.example.org"},
        "error: NEWSLETTER_REPLY_TO='editors@☃.example.org': ☃.example.org is not a domain "
        "name that can be written in ASCII (IDNA)",
    ),
    "1: a sender address with nothing before the @": (
        {"NEWSLETTER_FROM_EN": "@example.org"},
        "error: NEWSLETTER_FROM_EN='@example.org': must be a plain address, e.g. news@example.org",
    ),
    "1: a control character in the title": (
        {"NEWSLETTER_TITLE_FR": "Brè\x1cves"},
        "error: NEWSLETTER_TITLE_FR='Brè\\x1cves': must be one line of text, with no control",
    ),
    "1: a sender name longer than a header should carry": (
        {"NEWSLETTER_FROM_NAME_FR": "B" * 999},
        "error: NEWSLETTER_FROM_NAME_FR='BBBB",
    ),
    "9: a password in clear to a name that is not this machine": (
        CLEARTEXT,
        "error: NEWSLETTER_SMTP_SECURITY='none': would send the password of "
        "NEWSLETTER_SMTP_USER to mail.example.org unencrypted; use starttls or ssl",
    ),
    "9: a loopback alias is a name like any other": (
        {**CLEARTEXT, "NEWSLETTER_SMTP_HOST": "localhost.example.org"},
        "error: NEWSLETTER_SMTP_SECURITY='none': would send the password of "
        "NEWSLETTER_SMTP_USER to localhost.example.org unencrypted",
    ),
    "9: allowing it takes true or false": (
        {**CLEARTEXT, "NEWSLETTER_SMTP_ALLOW_CLEARTEXT_LOGIN": "sure"},
        "error: NEWSLETTER_SMTP_ALLOW_CLEARTEXT_LOGIN='sure': must be true or false",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_SETTINGS))
def test_a_hostile_setting_is_one_line_naming_it(case: str, workdir: Path) -> None:
    env, expected = BAD_SETTINGS[case]
    result = newsletter(workdir, "build", f"issues/{DEMO_ISSUE}", **env)
    line = one_error_line(result)
    assert line.startswith(expected), line
    assert "hunter2" not in result.output
    assert not (workdir / "build").exists()


def test_an_empty_outbox_setting_is_the_default_folder_not_the_current_one(
    workdir: Path,
) -> None:
    # NEWSLETTER_OUTBOX= (a line left empty) used to write the messages, each with its
    # reader's unsubscribe link, into whatever folder the command ran in
    test = ("send", f"issues/{DEMO_ISSUE}", "--test", "ann@example.org")
    assert newsletter(workdir, *test, NEWSLETTER_OUTBOX="").exit_code == 0
    assert list(workdir.glob("*.eml")) == [] and list(workdir.glob(f"{DEMO_ISSUE}*")) == []
    assert list((workdir / "outbox" / DEMO_ISSUE).glob("*.eml"))


def _dkim_key(path: Path) -> Path:
    subprocess.run(["openssl", "genrsa", "-out", str(path), "1024"], check=True,
                   capture_output=True)  # fmt: skip
    return path


def test_a_signed_message_has_one_signature_and_no_other_new_header(workdir: Path) -> None:
    test = ("send", f"issues/{DEMO_ISSUE}", "--test", "ann@example.org")
    assert newsletter(workdir, *test, NEWSLETTER_OUTBOX="plain").exit_code == 0
    key = _dkim_key(workdir / "dkim.pem")
    signed_env = {**DKIM, "NEWSLETTER_DKIM_KEY": str(key), "NEWSLETTER_OUTBOX": "signed"}
    assert newsletter(workdir, *test, **signed_env).exit_code == 0
    hostile = {**signed_env, "NEWSLETTER_DKIM_SELECTOR": "sel" + INJECTION}
    one_error_line(newsletter(workdir, *test, **hostile))  # the review's input: refused
    for plain_file in sorted((workdir / "plain" / DEMO_ISSUE).glob("*.eml")):
        signed_file = workdir / "signed" / DEMO_ISSUE / plain_file.name
        plain = email.message_from_bytes(plain_file.read_bytes(), policy=policy.default)
        signed = email.message_from_bytes(signed_file.read_bytes(), policy=policy.default)
        # (the outbox puts the envelope sender first, as a mail server does on delivery)
        assert plain.keys()[0] == "Return-Path"
        assert signed.keys() == ["Return-Path", "DKIM-Signature", *plain.keys()[1:]]
        assert "Bcc" not in signed and "s=news2017;" in signed["DKIM-Signature"]


def test_a_dkim_domain_written_with_its_final_dot_signs_for_the_same_name() -> None:
    env = {**DKIM, "NEWSLETTER_DKIM_DOMAIN": "example.org."}
    assert load_settings(None, environ=env).dkim.domain == "example.org"


# --- 2: List-Id is built by the stdlib, whatever the sender's name holds ------------------

HOSTILE_NAMES = [
    'O\'Brien, "Pat" <x@example.com>',  # a comma and quotes made two addresses of it
    "Brèves du Comité, « Québec »",
    "a\\b (not a comment); c: d",
    "Long " * 39 + "Long",
]


@pytest.fixture(scope="module")
def built():
    settings = load_settings(None, environ={})
    return settings, build_issue(ROOT / "issues" / DEMO_ISSUE, settings.identity, Templates())


@pytest.mark.parametrize(
    ("base_url", "sender", "expected"),
    [
        ("https://News.Example.org/list", "news@example.org", "news.example.org"),
        ("http://127.0.0.1:8000", "news@example.org", "news.example.org"),
        ("http://[::1]:8000", "Comite_News@example.net", "comite-news.example.net"),
        ("http://[::1]:8000", "news+list@exämple.net", "news-list.xn--exmple-cua.net"),
        ("http://localhost:8000", "bulletin@example.com", "bulletin.example.com"),
    ],
)
def test_the_list_id_is_a_domain_name_the_list_holds(base_url, sender, expected) -> None:
    # from the base URL's host when it is a domain name; else under the sender's domain,
    # never an IP address, `localhost`, or a domain nobody here holds
    env = {"NEWSLETTER_BASE_URL": base_url, "NEWSLETTER_FROM_EN": sender}
    assert load_settings(None, environ=env).identity.list_id == expected


def _headers(raw: bytes) -> list[tuple[str, str]]:
    """Each header's name and value as they travel, unfolded: no parsing of our own."""
    head = raw.partition(b"\r\n\r\n")[0].decode("ascii")
    fields = head.replace("\r\n ", " ").replace("\r\n\t", "\t").split("\r\n")
    return [(name, value.strip()) for name, _, value in (f.partition(":") for f in fields)]


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_list_id_round_trips_through_the_stdlib_header_parser(built, name: str) -> None:
    settings, build = built
    edition = build.rendered.edition("en")
    edition = dataclasses.replace(edition, view=dataclasses.replace(edition.view, from_name=name))
    recipient = Recipient(
        "ann@example.org", "Ann", "https://e.example.org/u", "https://e.example.org/p"
    )
    raw = build_message(edition, recipient, settings.identity).as_bytes()
    fast = compile_edition(edition, settings.identity).render(recipient, "<i@example.org>")
    for message in (raw, fast):
        (value,) = [v for n, v in _headers(message) if n == "List-Id"]
        # RFC 2919: a phrase and an id in angle brackets, which an address parser reads
        registry = HeaderRegistry()
        registry.map_to_type("list-id", UniqueAddressHeader)
        (address,) = registry("List-Id", value).addresses
        assert address.display_name == name
        assert (address.username, address.domain) == ("news.example.org", "")


# --- 3: a name as long as anyone types ----------------------------------------------------

LONG_NAME = "x" * 1200  # the review's: past RFC 5322's 998 characters a line


def test_an_import_refuses_a_name_longer_than_the_web_app_allows(tmp_path: Path) -> None:
    csv = tmp_path / "people.csv"
    csv.write_text(f"email,name\nann@example.org,Ann\nbob@example.org,{LONG_NAME}\n")
    env_file = tmp_path / "test.env"
    env_file.touch()
    result = CliRunner().invoke(
        main, ["--env-file", str(env_file), "subscribers", "import", str(csv)],
        env={"NEWSLETTER_DB": str(tmp_path / "n.db")},
    )  # fmt: skip
    assert result.exit_code == 1, result.output
    assert f"{csv}:3: the name is 1200 characters long; keep it to 200" in result.output
    with SqliteStore(tmp_path / "n.db") as store:
        assert [s.email for s in store.iter()] == ["ann@example.org"]
        with pytest.raises(Exception, match="keep it to 200"):
            store.add("bob@example.org", name=LONG_NAME, language="en", source="test")


def test_no_header_line_passes_998_octets_whatever_name_a_store_holds(built, workdir) -> None:
    settings, build = built
    recipient = Recipient(
        "ann@example.org", LONG_NAME, "https://e.example.org/u", "https://e.example.org/p"
    )
    for edition in build.rendered.editions:
        reference = build_message(edition, recipient, settings.identity).as_bytes()
        fast = compile_edition(edition, settings.identity).render(recipient, "<i@example.org>")
        for raw in (reference, fast):
            head = raw.partition(b"\r\n\r\n")[0]
            assert max(len(line) for line in head.split(b"\r\n")) <= 998
            # RFC 2047: the space between two encoded words is no part of the text (the
            # address parser of Python 3.11 keeps it; decode_header follows the RFC)
            (to,) = [value for name, value in _headers(raw) if name == "To"]
            assert str(make_header(decode_header(to))) == "x" * 199 + "… <ann@example.org>"
    # The same through a real send, with a name written before names were limited.
    with SqliteStore(workdir / "n.db") as store:
        ann = store.add("ann@example.org", name="Ann", language="both", source="test").id
    with sqlite3.connect(workdir / "n.db") as conn:
        conn.execute("UPDATE subscribers SET name = ? WHERE id = ?", (LONG_NAME, ann))
    result = newsletter(workdir, "send", f"issues/{DEMO_ISSUE}", "--yes",
                        NEWSLETTER_DB=str(workdir / "n.db"))  # fmt: skip
    assert result.exit_code == 0, result.output
    (sent,) = (workdir / "outbox" / DEMO_ISSUE).glob("*.eml")
    head = sent.read_bytes().partition(b"\r\n\r\n")[0]
    assert max(len(line) for line in head.split(b"\r\n")) <= 998


# --- 9: weak transport settings are said once; a password in clear is refused (above) ------


def test_a_password_in_clear_allowed_by_hand_is_warned_about_once(workdir: Path) -> None:
    allowed = {**CLEARTEXT, "NEWSLETTER_SMTP_ALLOW_CLEARTEXT_LOGIN": "true"}
    SqliteStore(workdir / "newsletter.db").close()  # an empty list: a dry run reads one
    # a dry run connects to nothing: mail.example.org is only named
    result = newsletter(workdir, "send", f"issues/{DEMO_ISSUE}", "--dry-run", **allowed)
    assert result.exit_code == 0, result.output
    assert [line for line in result.stderr.splitlines() if "warning" in line] == [
        "warning: the password for mail.example.org goes unencrypted "
        "(NEWSLETTER_SMTP_SECURITY=none, NEWSLETTER_SMTP_ALLOW_CLEARTEXT_LOGIN=true); "
        "use starttls or ssl"
    ]
    assert "hunter2" not in result.output
    near = {**CLEARTEXT, "NEWSLETTER_SMTP_HOST": "127.0.0.2"}  # nothing crosses a network
    result = newsletter(workdir, "send", f"issues/{DEMO_ISSUE}", "--dry-run", **near)
    assert result.exit_code == 0 and "warning" not in result.stderr


def test_an_unverified_certificate_is_warned_about_once_per_send(workdir: Path) -> None:
    trustme = pytest.importorskip("trustme")
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    trustme.CA().issue_cert("127.0.0.1").configure_cert(server_context)  # trusted by no one
    with SqliteStore(workdir / "n.db") as store:
        for i in range(6):
            store.add(f"p{i}@example.org", language="en", source="test")
    with Server(Handler(), tls_context=server_context, require_starttls=True) as server:
        result = newsletter(
            workdir, "send", f"issues/{DEMO_ISSUE}", "--yes", "--concurrency", "3",
            NEWSLETTER_DB=str(workdir / "n.db"), NEWSLETTER_SMTP_HOST="127.0.0.1",
            NEWSLETTER_SMTP_PORT=str(server.port), NEWSLETTER_SMTP_VERIFY="false",
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        assert len(server.handler.received) == 6
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert warnings == [
        "warning: NEWSLETTER_SMTP_VERIFY=false: the certificate of 127.0.0.1 is not checked, "
        "so anyone on the way can pose as it and read the password and every message; "
        "use NEWSLETTER_SMTP_CA_FILE for a private certificate instead"
    ]


# --- 10: a character the templates cannot carry is named where it is, or made a space -----

BRIEF = "issues/briefs/da-nang-apec-summit.en.md"
MANIFEST = f"issues/{DEMO_ISSUE}/issue.toml"
AT = "Leaders of the"  # line 8 of BRIEF; "of" starts at column 9


def _put(path: str, old: str, new: str):
    def edit(workdir: Path) -> None:
        file = workdir / path
        text = file.read_text("utf-8")
        assert old in text
        file.write_text(text.replace(old, new, 1), "utf-8")

    return edit


# (the edit, then the one-line error; None where the character is replaced by a space)
CONTROL_CHARACTERS = {
    "U+000B, Word's line break, in a brief: a space": (_put(BRIEF, AT, "Leaders\vof the"), None),
    "U+000C, a page break, in a brief: a space": (_put(BRIEF, AT, "Leaders\fof the"), None),
    "U+0008 in a brief": (
        _put(BRIEF, AT, "Leaders\bof the"),
        f"{BRIEF}:8: invisible control character U+0008 at column 8; delete it",
    ),
    "U+001C in a brief": (
        _put(BRIEF, AT, "Leaders \x1cof the"),
        f"{BRIEF}:8: invisible control character U+001C at column 9; delete it",
    ),
    "U+FFFE in a brief": (
        _put(BRIEF, AT, "Leaders \ufffeof the"),
        f"{BRIEF}:8: U+FFFE at column 9 is no character (a stray byte-order mark?); delete it",
    ),
    "U+0092, a Windows apostrophe read as Latin-1, in a brief": (
        _put(BRIEF, AT, "Leader\x92s of the"),
        f"{BRIEF}:8: invisible control character U+0092 at column 7, often a Windows quote",
    ),
    "an escaped U+001C in a front matter title": (
        _put(BRIEF, "title: APEC Leaders", 'title: "APEC\\x1c" #'),
        f"{BRIEF}:2: 'title' holds invisible control character U+001C; delete it",
    ),
    "an escaped U+001C as the subject": (
        _put(MANIFEST, 'subject = "News / Brèves No. 1:', 'subject = "\\u001c" #'),
        f"{MANIFEST}:16: [en] subject holds invisible control character U+001C; delete it",
    ),
    "an escaped U+000B in a preheader: a space": (
        _put(MANIFEST, 'preheader = "A joint call', 'preheader = "A\\u000bjoint call'),
        None,
    ),
    "an escaped U+FFFF in the bilingual subject": (
        _put(MANIFEST, 'subject = "News / Brèves No. 1 —', 'subject = "\\uffff" #'),
        f"{MANIFEST}:35: [bilingual] subject holds U+FFFF is no character",
    ),
}


@pytest.mark.parametrize("case", sorted(CONTROL_CHARACTERS))
def test_a_control_character_is_named_in_its_file_and_line(case: str, workdir: Path) -> None:
    edit, expected = CONTROL_CHARACTERS[case]
    edit(workdir)
    result = newsletter(workdir, "build", f"issues/{DEMO_ISSUE}")
    if expected is None:
        assert result.exit_code == 0, result.output
        for html in (workdir / "build" / DEMO_ISSUE).glob("*.html"):
            text = html.read_text("utf-8")
            assert not any(c in text for c in "\v\f")
        assert "Leaders of the" in (workdir / "build" / DEMO_ISSUE / "en.html").read_text()
        return
    line = one_error_line(result)
    assert line.startswith(f"error: {expected}"), line
    assert "mjml" not in line.lower()
    assert not (workdir / "build").exists()


# --- 4, 5, 6, 8, 11: hostile requests to the web app -------------------------------------

SECURITY_HEADERS = {name.decode(): value.decode() for name, value in HEADERS}
WEB_ENV = {"NEWSLETTER_SECRET": "one-secret-shared-by-two-lists-0123456789"}


def _web_settings(db_path: Path):
    return load_settings(None, environ={**WEB_ENV, "NEWSLETTER_DB": str(db_path)})


@pytest.fixture
def site(tmp_path: Path):
    """A list with one subscriber, served: (settings, store, server, that person's token)."""
    settings = _web_settings(tmp_path / "data" / "list-a.db")
    with SqliteStore(settings.db_path) as store:
        ann = store.add("ann@example.org", language="fr", source="test").id
        with WebServer(settings) as server:
            yield settings, store, server, make_token(signing_key(settings), ann)


def raw_http(
    port: int, head: str, body: bytes = b"", address: str = "127.0.0.1"
) -> tuple[int, dict[str, str], bytes]:
    """One request over a plain socket, so that a body can be declared and not sent, and
    `Host:` say anything."""
    with socket.create_connection((address, port), timeout=10) as sock:
        sock.sendall(head.replace("\n", "\r\n").encode("ascii") + b"\r\n" + body)
        reply = b""
        while b"\r\n\r\n" not in reply:
            chunk = sock.recv(65536)
            assert chunk, "the server closed without answering"
            reply += chunk
    status_line, *lines = reply.partition(b"\r\n\r\n")[0].decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    return int(status_line.split()[1]), headers, reply.partition(b"\r\n\r\n")[2]


def _moved_away(settings, store, server, token, tmp_path, caplog) -> Reply:
    # finding 4: the file moved away while serving; the next click must not make a new one
    for path in settings.db_path.parent.iterdir():
        path.rename(tmp_path / path.name)
    reply = post(server.url(f"/unsubscribe/{token}"), ONE_CLICK)
    assert not settings.db_path.exists() and not any(settings.db_path.parent.iterdir())
    assert "Réessayez plus tard" in reply.body and '<html lang="en-CA">' in reply.body
    (logged,) = [r for r in caplog.records if r.name == "newsletter.web"]
    assert (
        logged.getMessage()
        == f"answering 503: {settings.db_path}: no database here; check NEWSLETTER_DB"
    )
    return reply


def _moved_away_then_a_signup(settings, store, server, token, tmp_path, caplog) -> Reply:
    # finding 4 on the signup form, which came with another change: no new database either
    when = datetime.now(UTC) - timedelta(seconds=5)
    stamp = make_stamp(resolve_secret(settings), when)
    fields = {"stamp": stamp, "email": "zed@example.org", "language": "en", "consent": "yes"}
    for path in settings.db_path.parent.iterdir():
        path.rename(tmp_path / path.name)
    reply = post(server.url("/subscribe"), fields)
    assert not settings.db_path.exists() and not any(settings.db_path.parent.iterdir())
    assert "Réessayez plus tard" in reply.body
    (logged,) = [r for r in caplog.records if r.name == "newsletter.web"]
    assert logged.getMessage().endswith("no database here; check NEWSLETTER_DB")
    return reply


def _damaged(settings, store, server, token, tmp_path, caplog) -> Reply:
    # finding 5: a database that cannot answer (here: its table is gone) makes a 500
    store.conn.execute("ALTER TABLE subscribers RENAME TO lost")
    reply = post(server.url(f"/unsubscribe/{token}"), ONE_CLICK)
    assert "Une erreur s’est produite" in reply.body and "Traceback" not in reply.body
    return reply


def _declared_20_mb(settings, store, server, token, tmp_path, caplog) -> Reply:
    # finding 6: refused on the length it declares, before one byte of it is sent
    status, headers, body = raw_http(server.port, (
        f"POST /unsubscribe/{token} HTTP/1.1\nHost: 127.0.0.1\n"
        f"Content-Type: application/x-www-form-urlencoded\nContent-Length: {20 * 2**20}\n"
    ))  # fmt: skip
    return Reply(status, headers, body.decode())


def _chunked_past_the_limit(settings, store, server, token, tmp_path, caplog) -> Reply:
    # finding 6: with no length declared, refused once the limit is passed: the 20 MB the
    # client meant to send are not waited for
    chunk = b"List-Unsubscribe=One-Click&" + b"x" * web.MAX_BODY
    status, headers, body = raw_http(server.port, (
        f"POST /unsubscribe/{token} HTTP/1.1\nHost: 127.0.0.1\n"
        "Content-Type: application/x-www-form-urlencoded\nTransfer-Encoding: chunked\n"
    ), f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")  # fmt: skip
    return Reply(status, headers, body.decode())


def _token_of_another_list(settings, store, server, token, tmp_path, caplog) -> Reply:
    # finding 8: same secret, same subscriber id, another database: not this list's link
    other = _web_settings(tmp_path / "list-b.db")
    with SqliteStore(other.db_path) as b:
        assert b.add("bob@example.org", language="en", source="test").id == store.get(1).id
    foreign = make_token(signing_key(other), 1)
    assert foreign != token
    assert request(server.url(f"/unsubscribe/{token}")).status == 200  # the list's own
    return post(server.url(f"/unsubscribe/{foreign}"), ONE_CLICK)


def _options(settings, store, server, token, tmp_path, caplog) -> Reply:
    # finding 11: the methods of the path, POST included
    reply = request(server.url(f"/unsubscribe/{token}"), method="OPTIONS")
    assert reply.headers["allow"] == "GET, HEAD, OPTIONS, POST"
    put = request(server.url(f"/preferences/{token}"), method="PUT")
    assert (put.status, set(put.headers["allow"].split(", "))) == (
        405,
        {*["GET", "HEAD", "OPTIONS", "POST"]},
    )
    # the signup pages too, which came with another change
    for path in ("/subscribe", "/abonnement", "/confirm/x", "/cancel/x"):
        assert request(server.url(path), method="OPTIONS").headers["allow"] == (
            "GET, HEAD, OPTIONS, POST"
        ), path
        put = request(server.url(path), method="PUT")
        assert (put.status, set(put.headers["allow"].split(", "))) == (
            405,
            {"GET", "HEAD", "OPTIONS", "POST"},
        ), path
    resubscribe = request(server.url(f"/preferences/{token}/resubscribe"), method="OPTIONS")
    assert resubscribe.headers["allow"] == "OPTIONS, POST"
    return reply


HOSTILE_REQUESTS = {
    "4: the database moved away": (_moved_away, 503),
    "4: the database moved away, then a signup": (_moved_away_then_a_signup, 503),
    "5: an unexpected error": (_damaged, 500),
    "6: a 20 MB body, declared": (_declared_20_mb, 413),
    "6: a body past the limit, in chunks": (_chunked_past_the_limit, 413),
    "8: a link of another list sharing the secret": (_token_of_another_list, 404),
    "11: OPTIONS": (_options, 204),
}


@pytest.mark.parametrize("case", sorted(HOSTILE_REQUESTS))
def test_a_hostile_request_gets_its_status_and_every_security_header(
    case: str, site, tmp_path: Path, caplog
) -> None:
    settings, store, server, token = site
    attack, status = HOSTILE_REQUESTS[case]
    reply = attack(settings, store, server, token, tmp_path, caplog)
    assert reply.status == status, reply.body
    headers = {name.lower(): value for name, value in reply.headers.items()}
    for name, value in SECURITY_HEADERS.items():
        assert headers.get(name) == value, name
    if settings.db_path.exists() and status != 500:
        assert store.get(1).status is Status.ACTIVE  # nothing was done on Ann's behalf


def test_serve_makes_neither_a_database_nor_a_secret(tmp_path: Path) -> None:
    # finding 4, at start: a wrong NEWSLETTER_DB would otherwise serve an empty list
    db_path = tmp_path / "data" / "n.db"
    result = newsletter(tmp_path, "serve", **WEB_ENV, NEWSLETTER_DB=str(db_path))
    assert one_error_line(result) == f"error: {db_path}: no database here; check NEWSLETTER_DB"
    assert not (tmp_path / "data").exists()
    SqliteStore(db_path).close()
    # a database without the secret its links were signed with: a new one would void them
    result = newsletter(tmp_path, "serve", NEWSLETTER_DB=str(db_path))
    assert one_error_line(result).startswith(f"error: {db_path}.secret: no signing secret here")
    assert sorted(p.name for p in db_path.parent.iterdir() if "secret" in p.name) == []


def test_serve_on_a_port_in_use_is_one_line_before_it_says_serving(tmp_path: Path) -> None:
    import socket

    db_path = tmp_path / "n.db"
    SqliteStore(db_path).close()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = newsletter(tmp_path, "serve", "--port", str(port), **WEB_ENV,
                            NEWSLETTER_DB=str(db_path))  # fmt: skip
    assert one_error_line(result) == (
        f"error: port {port} is in use on 127.0.0.1; pick another with --port, or --port 0 for "
        "a free one"
    )


def test_links_mailed_before_lists_had_an_id_work_for_a_while(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # finding 8: the window that keeps links already in inboxes working after the upgrade
    settings = _web_settings(tmp_path / "old.db")
    with monkeypatch.context() as old_version:  # a database as the version before wrote it
        old_version.setattr(db, "MIGRATIONS", MIGRATIONS[: MIGRATIONS.index(LIST_IDENTITY)])
        with SqliteStore(settings.db_path) as store:
            for who in ("ann", "bob"):
                store.add(f"{who}@example.org", language="en", source="test")
    secret = settings.secret.encode()
    mailed = make_token(secret, 1)  # what messages sent before the upgrade carry
    with SqliteStore(settings.db_path) as store:  # the upgrade
        identity = store.list_identity()
        assert identity.legacy_max_id == 2
        left = identity.legacy_until - datetime.now(UTC)
        assert timedelta(days=89) < left <= timedelta(days=90)
        cy = store.add("cy@example.org", language="en", source="test").id
    with WebServer(settings) as server:
        assert request(server.url(f"/unsubscribe/{mailed}")).status == 200
        # cy never had a link signed the old way: one made so is forged
        assert request(server.url(f"/unsubscribe/{make_token(secret, cy)}")).status == 404
        assert (
            request(server.url(f"/unsubscribe/{make_token(signing_key(settings), cy)}")).status
            == 200
        )
    keys = link_keys(secret, identity)
    second = timedelta(seconds=1)
    assert keys.read(mailed, identity.legacy_until - second) == 1
    assert keys.read(mailed, identity.legacy_until) is None  # the window has closed
    assert keys.read(keys.make(1), identity.legacy_until + 1000 * second) == 1


def test_a_new_list_accepts_no_link_signed_the_old_way(tmp_path: Path) -> None:
    settings = _web_settings(tmp_path / "new.db")
    with SqliteStore(settings.db_path) as store:
        ann = store.add("ann@example.org", language="en", source="test").id
        keys = link_keys(settings.secret.encode(), store.list_identity())
    assert keys.legacy_max_id == 0
    assert keys.read(make_token(settings.secret.encode(), ann), datetime.now(UTC)) is None
    assert keys.read(keys.make(ann), datetime.now(UTC)) == ann


# --- 7, 11: the preview answers its own names and addresses, whatever it listens on -------


@pytest.fixture
def preview_on_any_address(workdir: Path):
    """The preview app as `preview --host 0.0.0.0 --allow-host preview.example.org` serves
    it, here on 127.0.0.1 (a test listens on loopback only)."""
    names = allowed_hosts("0.0.0.0", [check_name("Preview.Example.org")])
    state = Preview(workdir / "issues" / DEMO_ISSUE, workdir / "test.env")
    config = uvicorn.Config(preview_app(state, names), host="127.0.0.1", port=0,
                            log_level="warning", lifespan="off")  # fmt: skip
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:  # a condition, not a delay
        assert thread.is_alive()
        time.sleep(0.01)
    yield server.servers[0].sockets[0].getsockname()[1]
    server.should_exit = True
    thread.join(10)


REBINDING = {
    "a rebound name": ("evil.example.com", 400),
    "a rebound name with the port": ("evil.example.com:{port}", 400),
    "a name that ends like ours": ("preview.example.org.evil.example.com", 400),
    "no name at all": ("", 400),
    "the address it listens on": ("0.0.0.0:{port}", 200),
    "localhost": ("LocalHost:{port}", 200),
    "another loopback address (finding 11)": ("127.0.0.2:{port}", 200),
    "an IPv6 address": ("[::1]:{port}", 200),
    "an address of the network": ("192.0.2.7:{port}", 200),
    "a name given with --allow-host": ("preview.example.org:{port}", 200),
}


@pytest.mark.parametrize("case", sorted(REBINDING))
def test_a_preview_on_every_address_still_refuses_rebound_names(
    case: str, preview_on_any_address: int
) -> None:
    host, status = REBINDING[case]
    port = preview_on_any_address
    head = f"GET /state.json HTTP/1.1\nHost: {host.format(port=port)}\nConnection: close\n"
    if not host:
        head = "GET /state.json HTTP/1.0\n"
    assert raw_http(port, head)[0] == status


def test_preview_on_another_loopback_address_answers_the_url_it_prints(workdir: Path) -> None:
    # finding 11: `--host 127.0.0.2` printed a URL that answered 400
    process = subprocess.Popen(
        [sys.executable, "-m", "newsletter", "--env-file", "test.env", "preview",
         f"issues/{DEMO_ISSUE}", "--host", "127.0.0.2", "--port", "0", "--no-open",
         "--allow-host", "preview.example.org"],
        cwd=workdir, env={**clean_env(), "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        printed = [process.stdout.readline()]
        while not printed[-1].startswith("preview at ") and len(printed) < 5:
            printed.append(process.stdout.readline())
        url = printed[-1].split()[2]
        assert url.startswith("http://127.0.0.2:")
        with urllib.request.urlopen(url + "state.json", timeout=10) as answer:
            assert answer.status == 200
        port = int(url.rstrip("/").rsplit(":", 1)[1])
        allowed = f"GET / HTTP/1.1\nHost: preview.example.org:{port}\nConnection: close\n"
        rebound = f"GET / HTTP/1.1\nHost: evil.example.com:{port}\nConnection: close\n"
        assert raw_http(port, allowed, address="127.0.0.2")[0] == 200
        assert raw_http(port, rebound, address="127.0.0.2")[0] == 400
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=20)
    assert not any("warning" in line for line in printed)  # loopback: nothing exposed


def test_allow_host_takes_names_not_patterns(workdir: Path) -> None:
    result = newsletter(workdir, "preview", f"issues/{DEMO_ISSUE}", "--allow-host", "*")
    assert result.exit_code == 2
    assert "'*' is not a host name" in result.output


@pytest.mark.parametrize(
    "flag, value, expected",
    [
        ("--rate", "1e-9", "0 (no limit) or at least 0.001 messages a second"),  # decades
        ("--rate", "nan", "must be a finite number"),  # it meant no limit, kept as NaN
        ("--rate", "inf", "must be a finite number"),
        ("--lease", "nan", "must be a finite number"),
    ],
)
def test_a_send_flag_that_cannot_work_is_refused_before_anything(
    workdir: Path, flag: str, value: str, expected: str
) -> None:
    result = newsletter(workdir, "send", f"issues/{DEMO_ISSUE}", "--yes", flag, value)
    assert result.exit_code == 2, result.output
    assert f"Invalid value for '{flag}': {expected}" in result.output
    assert not (workdir / "outbox").exists() and not list(workdir.glob("*.db"))
