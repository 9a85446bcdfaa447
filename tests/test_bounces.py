"""Bounces, complaints and mailto unsubscribes, end to end without a mailbox: a real send to
aiosmtpd on 127.0.0.1 with a bounce domain, then the reports about those very messages read
with `bounces read`, in-process, against the real SQLite file."""

from __future__ import annotations

import shutil
import sqlite3
import time
from pathlib import Path

import pytest
import time_machine
from click.testing import CliRunner

from newsletter import campaign
from newsletter.bounces.classify import Class, classify_status
from newsletter.bounces.tokens import (
    BOUNCE_LOCAL,
    bounce_token,
    issue_tag,
    read_bounce_token,
    read_unsubscribe_token,
    unsubscribe_token,
)
from newsletter.cli import main
from newsletter.config import load_settings
from newsletter.consent import Basis, Consent
from newsletter.delivery import SendOptions
from newsletter.ledger import Ledger
from newsletter.store import stamp as store_stamp
from newsletter.subscribers import SqliteStore, Status
from newsletter.tokens import signing_key

from . import bounce_fixtures as fx
from .conftest import DEMO_ISSUE
from .scripted_smtp import Script, ScriptedServer
from .smtp_server import Handler, Server
from .test_send import SECRET, env_for

BOUNCE_DOMAIN = "bounce.example.org"
PEOPLE = [
    ("anne@example.org", "en"),
    ("marie@example.org", "fr"),
    ("alex@example.net", "both"),
    ("bob@example.com", "en"),
    ("carol@example.com", "en"),
]


def bounce_env(workdir: Path, port: int, **extra: str) -> dict[str, str]:
    return env_for(workdir, port, **{"NEWSLETTER_BOUNCE_DOMAIN": BOUNCE_DOMAIN, **extra})


def key(workdir: Path) -> bytes:
    """What signs the tokens of this list: the secret bound to the list, as for the links."""
    return signing_key(load_settings(None, environ=bounce_env(workdir, 1)))


def add(workdir: Path, people=PEOPLE) -> dict[str, int]:
    with SqliteStore(workdir / "news.db") as store:
        return {
            email: store.add(email, language=lang, source="test", consent_note="form").id
            for email, lang in people
        }


def send_issue(workdir: Path, issue: str = DEMO_ISSUE, handler: Handler | None = None):
    """Send an issue as `send` does, in-process; returns {rcpt: fx.Sent} and the passes."""
    handler = handler or Handler()
    with Server(handler) as server:
        settings = load_settings(None, environ=bounce_env(workdir, server.port))
        prepared = campaign.prepare(settings, workdir / "issues" / issue)
        ledger = Ledger(settings.db_path, issue)
        try:
            with SqliteStore(settings.db_path) as store:
                campaign.start(store, ledger, prepared, {})
            passes = campaign.run(prepared, ledger, SendOptions(concurrency=2))
        finally:
            ledger.close()
    sent = {
        r.rcpt: fx.Sent(r.mail_from, r.rcpt, r.message["Message-ID"], r.message["List-Unsubscribe"])
        for r in handler.received[-len(handler.received) :]
        if r.message["Message-ID"].startswith(f"<{issue}.")
    }
    return sent, passes


def bounces(workdir: Path, *args: str, input: bytes | None = None, **extra: str):
    env = bounce_env(workdir, 1, **extra)
    return CliRunner().invoke(main, ["bounces", *args], env=env, input=input)


def cli(workdir: Path, *args: str):
    return CliRunner().invoke(main, list(args), env=bounce_env(workdir, 1))


def statuses(workdir: Path) -> dict[str, Status]:
    with SqliteStore(workdir / "news.db") as store:
        return {s.email: s.status for s in store.iter()}


def write(workdir: Path, name: str, data: bytes) -> str:
    path = workdir / "reports" / name
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(data)
    return str(path)


# -- tokens and the envelope -----------------------------------------------------------------


def test_tokens_name_the_delivery_survive_a_change_of_case_and_refuse_any_other_change():
    secret = SECRET.encode()
    token = bounce_token(secret, 123_456, "2017-11", 20_400)
    assert len(f"{BOUNCE_LOCAL}+{token}") <= 64
    found = read_bounce_token(secret, token)
    assert (found.subscriber_id, found.issue_tag, found.day) == (
        123_456,
        issue_tag("2017-11"),
        20_400,
    )
    assert read_bounce_token(secret, token.upper()) == found  # a relay may change the case
    assert read_bounce_token(b"another secret of enough length", token) is None
    for i in range(len(token)):
        changed = token[:i] + ("a" if token[i] != "a" else "b") + token[i + 1 :]
        assert read_bounce_token(secret, changed) is None
    mailto = unsubscribe_token(secret, 42)
    assert read_unsubscribe_token(secret, mailto) == 42
    assert read_unsubscribe_token(secret, token) is None  # one kind never passes for another
    assert read_bounce_token(secret, mailto) is None


def test_each_message_has_its_own_envelope_sender_and_mailto(workdir: Path):
    ids = add(workdir)
    sent, _ = send_issue(workdir)
    assert sorted(sent) == sorted(email for email, _ in PEOPLE)
    envelopes = {s.verp for s in sent.values()}
    assert len(envelopes) == len(PEOPLE)
    for email, s in sent.items():
        local, _, domain = s.verp.partition("@")
        assert domain == BOUNCE_DOMAIN and local.startswith("bounces+") and len(local) <= 64
        token = read_bounce_token(key(workdir), s.envid)
        assert (token.subscriber_id, token.issue_tag) == (ids[email], issue_tag(DEMO_ISSUE))
        mailto = s.list_unsubscribe.split("<mailto:")[1].split("?")[0]
        assert mailto.endswith(f"@{BOUNCE_DOMAIN}") and mailto.startswith("unsubscribe+")
        assert read_unsubscribe_token(key(workdir), mailto[12:].split("@")[0]) == ids[email]


@pytest.mark.parametrize("offered", [True, False])
def test_envid_and_ret_hdrs_go_only_to_a_server_that_offers_dsn(workdir: Path, offered: bool):
    add(workdir, PEOPLE[:1])
    extensions = ("PIPELINING", "DSN") if offered else ("PIPELINING",)
    with ScriptedServer(Script(extensions=extensions)) as server:
        settings = load_settings(None, environ=bounce_env(workdir, server.port))
        prepared = campaign.prepare(settings, workdir / "issues" / DEMO_ISSUE)
        ledger = Ledger(settings.db_path, DEMO_ISSUE)
        with SqliteStore(settings.db_path) as store:
            campaign.start(store, ledger, prepared, {})
        campaign.run(prepared, ledger, SendOptions(concurrency=1))
        ledger.close()
        mail = [line for line in server.lines if line.upper().startswith("MAIL")]
    assert len(mail) == 1
    verp = mail[0].partition("<")[2].partition(">")[0]
    assert verp.startswith("bounces+") and verp.endswith(f"@{BOUNCE_DOMAIN}")
    params = mail[0].partition(">")[2].split()
    token = verp[len("bounces+") :].partition("@")[0]
    assert params == (["RET=HDRS", f"ENVID={token}"] if offered else [])


# -- classification ------------------------------------------------------------------------

CLASSES = {
    ("5.1.1", "failed"): Class.HARD,
    ("5.1.10", "failed"): Class.HARD,
    ("5.2.2", "failed"): Class.SOFT,  # mailbox full, even as a 5
    ("4.2.2", "failed"): Class.SOFT,
    ("4.4.7", "failed"): Class.SOFT,  # the relay gave up after retrying
    ("4.4.7", "delayed"): Class.IGNORED,
    ("5.7.1", "failed"): Class.BLOCKED,
    ("5.7.26", "failed"): Class.BLOCKED,  # DMARC: the sender, not the address
    ("5.4.4", "failed"): Class.SOFT,
    ("5.0.0", "failed"): Class.SOFT,  # a bare 550: not enough to take anyone off
    ("", "failed"): Class.SOFT,
    ("2.0.0", "delivered"): Class.IGNORED,
    ("2.0.0", "relayed"): Class.IGNORED,
}


def test_classification_by_status_code():
    for (status, action), expected in CLASSES.items():
        assert classify_status(status, action) is expected, (status, action)


# -- the reports -----------------------------------------------------------------------------


def test_each_kind_of_report_does_what_the_readme_says(workdir: Path):
    add(workdir)
    sent, _ = send_issue(workdir)
    anne, marie, alex, bob, carol = (sent[e] for e, _ in PEOPLE)
    mailto = carol.list_unsubscribe.split("<mailto:")[1].split("?")[0]
    files = [
        write(workdir, "01-hard.eml", fx.dsn(anne, "5.1.1", "550 5.1.1 <anne@example.org>: "
              "Recipient address rejected: User unknown in virtual mailbox table")),
        write(workdir, "02-full.eml", fx.dsn(bob, "5.2.2", "552 5.2.2 Mailbox full")),
        write(workdir, "03-delayed.eml", fx.dsn(bob, "4.4.7", "timed out", action="delayed")),
        write(workdir, "04-global.eml", fx.dsn(alex, "5.1.1", "550 5.1.1 Unknown user",
              global_=True, message_id="<global@example.net>")),
        write(workdir, "05-abuse.eml", fx.arf(marie)),
        write(workdir, "06-auth.eml", fx.arf(bob, "auth-failure", message_id="<a2@x.example>")),
        write(workdir, "07-ooo.eml", fx.auto_reply("news@example.org")),
        write(workdir, "08-unsubscribe.eml", fx.unsubscribe_mail(mailto, "carol@example.com")),
        write(workdir, "09-junk.eml", fx.junk()),
        write(workdir, "10-policy.eml", fx.dsn(bob, "5.7.1", "550 5.7.1 Service unavailable; "
              "client host blocked using a reputation list", message_id="<p@x.example>")),
    ]  # fmt: skip
    result = bounces(workdir, "read", *files)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "10 file(s): 10 message(s), 10 recorded"
    assert lines[1] == (
        "  hard 2, soft 1, blocked 1, complaint 1, unsubscribe request 1, ignored 3, unrecognised 1"
    )
    assert (
        "  hard          anne@example.org issue 2017-11: 5.1.1 '550 5.1.1 <anne@example.org>: "
        "Recipient address rejected: User unknown in virtual mailbox table' -> taken off the "
        "list (bounced) (matched by verp)" in lines
    )
    assert any(
        line.startswith("  complaint     marie@example.org issue 2017-11:")
        and "(matched by message-id)" in line
        for line in lines
    )
    assert any(line.startswith("  unrecognised  ") and "09-junk.eml" in line for line in lines)
    assert "warning: example.com refused our mail for policy or reputation (5.7.1" in lines[-1]
    assert statuses(workdir) == {
        "anne@example.org": Status.BOUNCED,
        "marie@example.org": Status.COMPLAINED,  # redacted, found by its Message-ID
        "alex@example.net": Status.BOUNCED,  # the global DSN
        "bob@example.com": Status.ACTIVE,  # soft once, blocked, delayed: all survive
        "carol@example.com": Status.UNSUBSCRIBED,
    }
    with SqliteStore(workdir / "news.db") as store:
        carol_events = store.events(store.find("carol@example.com").id)
    assert carol_events[-1]["kind"] == "unsubscribe" and carol_events[-1]["route"] == "mailto"

    # the next send leaves them out and says how many, per status
    result = cli(workdir, "send", f"issues/{DEMO_ISSUE}", "--dry-run")
    assert "left out: 2 bounced, 1 complained, 1 unsubscribed" in result.output

    # a second reading records nothing again
    again = bounces(workdir, "read", *files)
    assert again.output.splitlines()[0] == (
        "10 file(s): 10 message(s), 0 recorded, 10 already recorded (not counted again)"
    )
    listed = bounces(workdir, "list", "--class", "hard").output.splitlines()
    assert len(listed) == 2 and all(" hard " in line for line in listed)
    assert "[verp] -> bounced" in listed[0]


def test_a_forged_or_expired_token_acts_on_nobody(workdir: Path):
    ids = add(workdir)
    sent, _ = send_issue(workdir)
    anne = sent["anne@example.org"]
    # a token of the right shape, signed with another secret, for Anne's id and this issue
    forged_token = bounce_token(b"not our secret at all, but long", ids["anne@example.org"],
                                DEMO_ISSUE, int(__import__("time").time() // 86400))  # fmt: skip
    forged = fx.Sent(f"bounces+{forged_token}@{BOUNCE_DOMAIN}", anne.rcpt, "<x@example.net>",
                     "<https://news.example.org/unsubscribe/x>")  # fmt: skip
    # the same, with her real Message-ID in the returned headers: still nothing
    forged_with_id = fx.Sent(forged.verp, anne.rcpt, anne.message_id, forged.list_unsubscribe)
    # no token at all: only her address in Final-Recipient
    address_only = fx.Sent("news@example.org", anne.rcpt, "<x3@example.net>", "<x>")
    files = [
        write(workdir, "forged.eml", fx.dsn(forged, "5.1.1", "550 5.1.1 gone")),
        write(workdir, "forged-id.eml", fx.dsn(forged_with_id, "5.1.1", "550 5.1.1 gone",
                                               message_id="<f2@x.example>")),  # fmt: skip
        write(workdir, "address-only.eml", fx.dsn(address_only, "5.1.1", "550 5.1.1 gone",
                                                  envid=False, message_id="<f3@x.example>")),
    ]  # fmt: skip
    result = bounces(workdir, "read", *files)
    assert result.exit_code == 0
    assert "unrecognised 3" in result.output
    assert "a forged or damaged token (verp)" in result.output
    assert "names anne@example.org, a subscriber, but carries no token of ours" in result.output
    assert statuses(workdir)["anne@example.org"] is Status.ACTIVE

    # a genuine one, 31 days later, is too old to act on
    late = write(workdir, "late.eml", fx.dsn(anne, "5.1.1", "550 5.1.1 gone", message_id="<l@x>"))
    with time_machine.travel(time.time() + 31 * 86400):
        result = bounces(workdir, "read", late)
    assert "an expired token: about a message sent 31 days ago" in result.output
    assert statuses(workdir)["anne@example.org"] is Status.ACTIVE


def test_a_mailto_unsubscribe_without_a_valid_token_is_reported_not_acted_on(workdir: Path):
    add(workdir)
    send_issue(workdir)
    fake = f"unsubscribe+{'a' * 24}@{BOUNCE_DOMAIN}"
    result = bounces(workdir, "read", "-", input=fx.unsubscribe_mail(fake, "anne@example.org"))
    assert result.exit_code == 0
    assert "unsubscribe request without a valid token of ours: not acted on" in result.output
    assert set(statuses(workdir).values()) == {Status.ACTIVE}


def _copy_issue(workdir: Path, issue_id: str) -> None:
    shutil.copytree(workdir / "issues" / DEMO_ISSUE, workdir / "issues" / issue_id)


def test_soft_bounces_take_someone_off_after_three_issues_in_a_row(workdir: Path):
    add(workdir, PEOPLE[:2])
    for n, issue in enumerate(["2017-11", "2017-12", "2018-01", "2018-02", "2018-03"]):
        if issue != DEMO_ISSUE:
            _copy_issue(workdir, issue)
        sent, _ = send_issue(workdir, issue)
        marie = sent["marie@example.org"]
        # Anne: full three times running, then nothing goes to her.
        # Marie: full, full, a clean issue, full, full: she stays.
        assert ("anne@example.org" in sent) == (n < 3)
        if n < 3:
            anne = sent["anne@example.org"]
            raw = fx.dsn(anne, "5.2.2", "552 5.2.2 Mailbox full", message_id=f"<a{n}@x.example>")
            bounces(workdir, "read", write(workdir, f"anne-{n}.eml", raw))
            expected = Status.BOUNCED if n == 2 else Status.ACTIVE
            assert statuses(workdir)["anne@example.org"] is expected, issue
        if n != 2:
            raw = fx.dsn(marie, "4.2.2", "452 4.2.2 Over quota", message_id=f"<m{n}@x.example>")
            bounces(workdir, "read", write(workdir, f"marie-{n}.eml", raw))
        assert statuses(workdir)["marie@example.org"] is Status.ACTIVE, issue
    listed = bounces(workdir, "list", "--class", "soft").output
    assert "[verp] -> bounced" in listed and listed.count("marie@example.org") == 4


def test_a_late_report_about_mail_sent_before_someone_came_back_does_not_undo_it(
    workdir: Path,
):
    # Marie complained, then gave her consent again. Reports about the old issue still come
    # (a feedback loop repeats itself, a bounce is late): recorded, not acted on. A report
    # about mail sent after her return acts as always.
    add(workdir)
    sent, _ = send_issue(workdir)
    marie = sent["marie@example.org"]
    bounces(workdir, "read", write(workdir, "first.eml", fx.arf(marie)))
    assert statuses(workdir)["marie@example.org"] is Status.COMPLAINED
    later = time.time() + 3600
    with time_machine.travel(later, tick=False), SqliteStore(workdir / "news.db") as store:
        store.add("marie@example.org", language="fr", source="cli", resubscribe=True,
                  consent=Consent(Basis.EXPRESS, "cli"))  # fmt: skip
    with time_machine.travel(later + 60, tick=False):
        # a resumed send restamps rows it finds in flight (turned uncertain): what counts is
        # when that send began, not when its row last changed
        with sqlite3.connect(workdir / "news.db") as raw:
            raw.execute("UPDATE deliveries SET updated_at = ?", (store_stamp(),))
        raw.close()
        again = fx.arf(marie, message_id="<arf.2@fbl.example.net>")
        bounce = fx.dsn(marie, "5.1.1", "550 5.1.1 Unknown user", message_id="<late@x.example>")
        result = bounces(workdir, "read", write(workdir, "again.eml", again),
                         write(workdir, "late.eml", bounce))  # fmt: skip
        assert result.exit_code == 0, result.output
        assert statuses(workdir)["marie@example.org"] is Status.ACTIVE
        lines = [line for line in result.output.splitlines() if "marie@" in line]
        assert len(lines) == 2 and all(
            line.endswith("-> recorded, not acted on: they came back after that mail went"
                          f" (matched by {how})")
            for line, how in zip(lines, ("message-id", "verp"), strict=True)
        ), lines  # fmt: skip
        listed = bounces(workdir, "list", "--class", "complaint").output.splitlines()
        assert "(about mail sent before they came back: not acted on)" in listed[-1]
        assert " -> " not in listed[-1]
        _copy_issue(workdir, "2017-12")
        sent, _ = send_issue(workdir, "2017-12")
        fresh = fx.arf(sent["marie@example.org"], message_id="<arf.3@fbl.example.net>")
        bounces(workdir, "read", write(workdir, "fresh.eml", fresh))
        assert statuses(workdir)["marie@example.org"] is Status.COMPLAINED


def test_refusals_during_a_send_go_into_the_same_history(workdir: Path):
    add(workdir)
    handler = Handler(script={"anne@example.org": ["550"]})
    _, passes = send_issue(workdir, handler=handler)
    assert [e.action for r in passes.refusals for e in r.events] == ["bounced"]
    assert statuses(workdir)["anne@example.org"] is Status.BOUNCED
    listed = bounces(workdir, "list").output.splitlines()
    assert len(listed) == 1
    assert "hard" in listed[0] and "550 5.1.1 No such mailbox" in listed[0]
    assert "[send] -> bounced  (send of issue 2017-11)" in listed[0]
    # the refusal is not recorded twice by a later fetch or read
    result = bounces(workdir, "read", write(workdir, "junk.eml", fx.junk()))
    assert "hard" not in result.output.splitlines()[1].replace("hard 0", "")


def test_malformed_large_and_undecodable_messages_are_one_line_each(workdir: Path):
    add(workdir, PEOPLE[:1])
    send_issue(workdir)
    files = [
        write(workdir, "binary.eml", bytes(range(256)) * 40),
        write(workdir, "huge.eml", b"Subject: big\r\n\r\n" + b"x" * (10 * 1024 * 1024)),
        write(
            workdir,
            "latin1.eml",
            b"Subject: r\xe9ponse \xff\r\nFrom: \xe9@example.com\r\n"
            b"Content-Type: multipart/report; report-type=delivery-status; boundary=Q\r\n\r\n"
            b"--Q\r\nContent-Type: message/delivery-status\r\n\r\n",
        ),  # fmt: skip
        write(workdir, "empty.eml", b""),
    ]
    result = bounces(workdir, "read", *files)
    assert result.exit_code == 0, result.output
    assert result.exception is None
    unrecognised = [line for line in result.output.splitlines() if "unrecognised  " in line]
    assert len(unrecognised) == 4
    assert any("huge.eml: 10.5 MB, larger than a bounce can be (2 MB)" in line
               for line in unrecognised)  # fmt: skip
    missing = bounces(workdir, "read", str(workdir / "nope.eml"))
    assert missing.exit_code == 2
    nope = workdir / "nope.eml"
    assert missing.output == f"error: {nope}: cannot read it: No such file or directory\n"


def test_bounce_settings_are_checked_and_the_password_never_shown(workdir: Path):
    cases = {
        "NEWSLETTER_BOUNCE_MAILBOX": ("ftp://x@mail.example.org", "must start with imaps://"),
        "NEWSLETTER_BOUNCE_DOMAIN": (
            "not a domain",
            "must be a DNS name in ASCII: labels of letters, digits and hyphens between dots",
        ),
    }
    for name, (value, problem) in cases.items():
        result = bounces(workdir, "list", **{name: value})
        assert result.exit_code == 2 and problem in result.output, result.output
    result = bounces(
        workdir,
        "fetch",
        NEWSLETTER_BOUNCE_MAILBOX="imaps://b:hunter2@mail.example.org",
        NEWSLETTER_BOUNCE_PASSWORD="hunter2",
    )
    assert result.exit_code == 2 and "hunter2" not in result.output
    assert "put the password in NEWSLETTER_BOUNCE_PASSWORD" in result.output
    result = bounces(workdir, "fetch")
    assert result.exit_code == 2 and "NEWSLETTER_BOUNCE_MAILBOX is not set" in result.output


@pytest.mark.parametrize(
    "url",
    [
        "imaps://b:p@hunter2@mail.example.org/INBOX",  # an @ in the password
        "imaps://b:hun/ter2@mail.example.org/INBOX",  # a / in it: urlsplit stops the host there
        "imaps://b:hunter2?x@mail.example.org/INBOX",
        "imaps://b:hunter2@mail.example.org:notaport/INBOX",
        "pop3s://b:hunter2@mail.example.org/folder@x",
    ],
)
def test_a_password_typed_into_the_mailbox_url_is_never_shown(workdir: Path, url: str):
    result = bounces(workdir, "list", NEWSLETTER_BOUNCE_MAILBOX=url)
    assert result.exit_code == 2, result.output
    assert "hunter2" not in result.output and "ter2" not in result.output, result.output
    assert result.output.startswith("error: NEWSLETTER_BOUNCE_MAILBOX='")
    assert "b:***@" in result.output


def test_show_set_and_reactivate_keep_one_history(workdir: Path):
    add(workdir)
    send_issue(workdir, handler=Handler(script={"anne@example.org": ["550"]}))
    shown = cli(workdir, "subscribers", "show", "Anne@Example.org")
    assert shown.exit_code == 0, shown.output
    sections = {block.split("\n", 1)[0]: block for block in shown.output.split("\n\n")}
    assert "status      bounced since " in sections["anne@example.org"]
    assert sections["anne@example.org"].split("\n")[1].endswith("(bounce:5.1.1)")
    history = sections["history"].splitlines()
    assert [line.split()[1] for line in history[1:]] == ["joined", "bounced"]
    mail = sections["sends and reports"].splitlines()
    assert mail[1].endswith("failed        issue 2017-11  en edition: 550 5.1.1 No such mailbox")
    assert mail[2].endswith(
        "hard          smtp, issue 2017-11  5.1.1 '550 5.1.1 No such mailbox' (matched by send)"
        " -> bounced"
    )

    assert cli(workdir, "subscribers", "reactivate", "anne@example.org").exit_code == 2
    result = cli(workdir, "subscribers", "reactivate", "anne@example.org", "--reason",
                 "she fixed her mailbox, said so by phone")  # fmt: skip
    assert result.output == (
        "reactivated anne@example.org (she fixed her mailbox, said so by phone)\n"
    )
    assert statuses(workdir)["anne@example.org"] is Status.ACTIVE
    result = cli(workdir, "subscribers", "set", "anne@example.org", "--language", "FR",
                 "--name", "Anne Smith")  # fmt: skip
    assert result.output == "anne@example.org: language fr, name 'Anne Smith'\n"
    assert cli(workdir, "subscribers", "set", "anne@example.org").exit_code == 2
    history = cli(workdir, "subscribers", "show", "anne@example.org").output
    assert "came back     cli:reactivate  she fixed her mailbox, said so by phone" in history
    assert "language      cli  fr" in history

    cli(workdir, "subscribers", "unsubscribe", "bob@example.com")
    refused = cli(workdir, "subscribers", "reactivate", "bob@example.com", "--reason", "x")
    assert refused.exit_code == 2
    assert refused.output == (
        "error: bob@example.com unsubscribed (cli); only their new consent brings them back: "
        "subscribers add --resubscribe --consent express --note ...\n"
    )


def test_no_damage_to_a_report_makes_reading_it_fail(workdir: Path):
    """Truncations and byte flips of every kind of report: each is read (recorded, or
    reported as unrecognised), none raises."""
    import random

    from newsletter.bounces.book import Book

    add(workdir, PEOPLE[:2])
    sent, _ = send_issue(workdir)
    anne, marie = sent["anne@example.org"], sent["marie@example.org"]
    samples = [
        fx.dsn(anne, "5.1.1", "550 5.1.1 gone"),
        fx.dsn(anne, "5.1.1", "550 5.1.1 gone", global_=True),
        fx.arf(marie),
        fx.unsubscribe_mail(f"unsubscribe+{'b' * 24}@{BOUNCE_DOMAIN}", "x@example.com"),
    ]
    rng = random.Random(9)
    with SqliteStore(workdir / "news.db") as store:
        book = Book(store, key(workdir))
        for n in range(400):
            raw = bytearray(rng.choice(samples))
            for _ in range(rng.randint(1, 8)):
                at = rng.randrange(len(raw))
                if rng.random() < 0.3:
                    del raw[at:]
                    raw += b"\r\n"
                else:
                    raw[at] = rng.choice(b"\x00\xff\r\n;:=<>@\"'\\ -.5")
            recorded = book.read(bytes(raw), f"sample {n}", dry_run=True)
            assert recorded.events, n


def test_read_from_a_pipe_asks_the_mta_to_retry_when_it_cannot_record(workdir: Path):
    (workdir / "not-a-database").mkdir()
    env = {"NEWSLETTER_DB": str(workdir / "not-a-database")}
    result = bounces(workdir, "read", "-", input=fx.junk(), **env)
    assert result.exit_code == 75  # EX_TEMPFAIL: Postfix keeps the message and tries later
    assert result.output.startswith("error: ") and result.output.count("\n") == 1
    assert "the message was not recorded (try again later)" in result.output
    files = bounces(workdir, "read", write(workdir, "junk.eml", fx.junk()), **env)
    assert files.exit_code == 2  # a person at a terminal: the usual bad-input status


def test_reading_reports_never_makes_a_database_or_a_secret(workdir: Path):
    """A pipe or a timer started in the wrong folder (a relative NEWSLETTER_DB) must not file
    every report away as unrecognised in a new, empty database: it stops, and a pipe's MTA
    keeps the message for later."""
    report = write(workdir, "junk.eml", fx.junk())
    env = {"NEWSLETTER_DB": "elsewhere/news.db", "NEWSLETTER_SECRET": ""}
    from_file = bounces(workdir, "read", report, **env)
    assert from_file.exit_code == 2
    assert from_file.output == "error: elsewhere/news.db: no database here; check NEWSLETTER_DB\n"
    piped = bounces(workdir, "read", "-", input=fx.junk(), **env)
    assert piped.exit_code == 75
    assert "the message was not recorded (try again later)" in piped.output
    assert bounces(workdir, "list", **env).exit_code == 2
    fetched = bounces(workdir, "fetch", **env, NEWSLETTER_BOUNCE_PASSWORD="x",
                      NEWSLETTER_BOUNCE_MAILBOX="imap://b@127.0.0.1:1/INBOX")  # fmt: skip
    assert fetched.exit_code == 2 and "no database here" in fetched.output
    assert not (workdir / "elsewhere").exists()
    # the database without its secret file: one line, and no new secret either
    (workdir / "elsewhere").mkdir()
    SqliteStore(workdir / "elsewhere" / "news.db").close()
    no_secret = bounces(workdir, "read", report, **env)
    assert no_secret.exit_code == 2 and "no signing secret here" in no_secret.output
    assert sorted(p.name for p in (workdir / "elsewhere").iterdir() if "secret" in p.name) == []
