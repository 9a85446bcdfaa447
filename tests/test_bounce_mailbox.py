"""`bounces fetch` against a real Dovecot on loopback (IMAP, IMAPS, POP3), the reports
delivered by LMTP to the VERP addresses of a real send, as an MTA would deliver them.

Skipped only on a machine without Dovecot and outside CI: under CI=true they must run
(.ci/run installs dovecot-imapd, dovecot-pop3d and dovecot-lmtpd).
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from newsletter.subscribers import Status

from . import bounce_fixtures as fx
from . import dovecot_server
from .conftest import clean_env
from .dovecot_server import Dovecot
from .smtp_server import free_port
from .test_bounces import BOUNCE_DOMAIN, PEOPLE, add, bounce_env, bounces, send_issue, statuses

pytestmark = pytest.mark.skipif(
    not dovecot_server.available() and os.environ.get("CI") != "true",
    reason="needs Debian's dovecot-imapd, dovecot-pop3d, dovecot-lmtpd (CI installs them)",
)

USER = f"bounces@{BOUNCE_DOMAIN}"
PASSWORD = "dovecot-test-password"


@pytest.fixture
def dovecot():
    with Dovecot({USER: PASSWORD}) as server:
        yield server


def mailbox_env(server: Dovecot, scheme: str = "imap", **extra: str) -> dict[str, str]:
    port = {"imap": server.ports.imap, "pop3": server.ports.pop3,
            "imaps": server.ports.imaps, "pop3s": server.ports.pop3s}[scheme]  # fmt: skip
    path = "/INBOX" if scheme.startswith("imap") else ""
    return {
        "NEWSLETTER_BOUNCE_MAILBOX": f"{scheme}://bounces%40{BOUNCE_DOMAIN}@127.0.0.1:{port}{path}",
        "NEWSLETTER_BOUNCE_PASSWORD": PASSWORD,
        **extra,
    }


def deliver_everything(workdir: Path, server: Dovecot) -> dict[str, fx.Sent]:
    """Send the demo issue, then deliver one report of each kind to our mailbox."""
    add(workdir)
    sent, _ = send_issue(workdir)
    anne, marie, alex, bob, carol = (sent[e] for e, _ in PEOPLE)
    mailto = carol.list_unsubscribe.split("<mailto:")[1].split("?")[0]
    reports = [
        (anne.verp, fx.dsn(anne, "5.1.1", "550 5.1.1 <anne@example.org>: Recipient address "
                           "rejected: User unknown in virtual mailbox table")),
        (bob.verp, fx.dsn(bob, "5.2.2", "552 5.2.2 Mailbox full", message_id="<m2@x>")),
        (bob.verp, fx.dsn(bob, "4.4.7", "connection timed out", action="delayed",
                          message_id="<m3@x>")),
        (alex.verp, fx.dsn(alex, "5.1.1", "550 5.1.1 unknown", global_=True,
                           message_id="<m4@x>")),
        (USER, fx.arf(marie)),  # the feedback loop's address: the complainant redacted
        (USER, fx.arf(bob, "auth-failure", message_id="<m6@x>")),
        (USER, fx.auto_reply("news@example.org")),
        (USER, fx.unsubscribe_mail(mailto, "carol@example.com")),
        (USER, fx.junk()),
    ]  # fmt: skip
    for rcpt, raw in reports:
        server.deliver(rcpt, raw)
    return sent


def folders(server: Dovecot) -> dict[str, int]:
    return {
        name or "INBOX": len(server.maildir(USER, name))
        for name in ("", "Processed", "Ignored", "Unrecognised")
    }


EXPECTED_STATUSES = {
    "anne@example.org": Status.BOUNCED,
    "marie@example.org": Status.COMPLAINED,
    "alex@example.net": Status.BOUNCED,
    "bob@example.com": Status.ACTIVE,
    "carol@example.com": Status.UNSUBSCRIBED,
}
COUNTS = (
    "  hard 2, soft 1, blocked 0, complaint 1, unsubscribe request 1, ignored 3, unrecognised 1"
)


def test_fetch_over_imap_records_moves_and_never_counts_twice(workdir: Path, dovecot: Dovecot):
    deliver_everything(workdir, dovecot)
    # Dovecot kept the VERP address (recipient_delimiter = +) where we look for it, in each
    # of the 4 reports sent to one (file names do not sort in delivery order)
    delivered = [p.read_bytes() for p in dovecot.maildir(USER)]
    assert sum(b"Delivered-To: bounces+" in m for m in delivered) == 4

    dry = bounces(workdir, "fetch", "--dry-run", **mailbox_env(dovecot))
    assert dry.exit_code == 0, dry.output
    assert folders(dovecot)["INBOX"] == 9 and set(statuses(workdir).values()) == {Status.ACTIVE}

    result = bounces(workdir, "fetch", **mailbox_env(dovecot))
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == (
        f"mailbox imap://{USER}@127.0.0.1:{dovecot.ports.imap}/INBOX: 9 message(s), 9 recorded"
    )
    assert lines[1] == COUNTS
    assert any("UID 9: not a bounce, complaint or unsubscribe" in line for line in lines)
    assert PASSWORD not in result.output
    assert statuses(workdir) == EXPECTED_STATUSES
    assert folders(dovecot) == {"INBOX": 0, "Processed": 5, "Ignored": 3, "Unrecognised": 1}

    again = bounces(workdir, "fetch", **mailbox_env(dovecot))
    assert again.output.splitlines() == [
        f"mailbox imap://{USER}@127.0.0.1:{dovecot.ports.imap}/INBOX: 0 message(s), 0 recorded"
    ]
    # the same report delivered once more (an MTA that delivered it twice): known by its
    # Message-ID and body, whatever trace headers this delivery added, and not counted
    processed = dovecot.maildir(USER, "Processed")[0].read_bytes()
    dovecot.deliver(USER, processed)
    third = bounces(workdir, "fetch", **mailbox_env(dovecot))
    assert "1 message(s), 0 recorded, 1 already recorded (not counted again)" in third.output
    assert len(_events(workdir)) == 9
    assert folders(dovecot) == {"INBOX": 0, "Processed": 6, "Ignored": 3, "Unrecognised": 1}


def _events(workdir: Path) -> list[tuple[str, str]]:
    conn = sqlite3.connect(workdir / "news.db")
    try:
        return list(conn.execute("SELECT class, fingerprint FROM bounce_events ORDER BY id"))
    finally:
        conn.close()


KILL_AFTER_FIRST_COMMIT = """
import os, signal, sys
from newsletter.bounces import mailbox
from newsletter.cli import main

def die(self, item, outcome):  # the first message is committed; it is never moved
    os.kill(os.getpid(), signal.SIGKILL)

mailbox.{cls}.done = die
sys.exit(main.main(["bounces", "fetch"], prog_name="newsletter", standalone_mode=False))
"""


@pytest.mark.parametrize("scheme", ["imap", "pop3"])
def test_a_sigkill_between_commit_and_move_counts_nothing_twice(
    workdir: Path, dovecot: Dovecot, scheme: str
):
    deliver_everything(workdir, dovecot)
    env = clean_env(**bounce_env(workdir, 1), **mailbox_env(dovecot, scheme))
    code = KILL_AFTER_FIRST_COMMIT.format(cls="ImapBox" if scheme == "imap" else "Pop3Box")
    killed = subprocess.run(
        [sys.executable, "-c", code], cwd=workdir, env=env, capture_output=True, timeout=60
    )
    assert killed.returncode == -9, killed.stderr
    assert len(_events(workdir)) == 1  # the first message, committed
    assert folders(dovecot)["INBOX"] == 9  # and nothing moved or deleted

    result = bounces(workdir, "fetch", **mailbox_env(dovecot, scheme))
    assert result.exit_code == 0, result.output
    assert "9 message(s), 8 recorded, 1 already recorded (not counted again)" in result.output
    assert len(_events(workdir)) == 9  # one event per report, none twice
    assert statuses(workdir) == EXPECTED_STATUSES
    expected = (
        {"INBOX": 0, "Processed": 5, "Ignored": 3, "Unrecognised": 1}
        if scheme == "imap"
        else {"INBOX": 0, "Processed": 0, "Ignored": 0, "Unrecognised": 0}  # POP3 deletes
    )
    assert folders(dovecot) == expected


def test_fetch_over_pop3_deletes_after_recording(workdir: Path, dovecot: Dovecot):
    deliver_everything(workdir, dovecot)
    result = bounces(workdir, "fetch", **mailbox_env(dovecot, "pop3"))
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[1] == COUNTS
    assert "UIDL " in result.output  # the unrecognised one is named by its UIDL
    assert statuses(workdir) == EXPECTED_STATUSES
    assert folders(dovecot)["INBOX"] == 0
    again = bounces(workdir, "fetch", **mailbox_env(dovecot, "pop3"))
    assert "0 message(s)" in again.output
    # (one refused login per server: Dovecot slows down an address that fails twice)
    pop = bounces(workdir, "fetch", **mailbox_env(dovecot, "pop3", NEWSLETTER_BOUNCE_PASSWORD="x"))
    assert pop.exit_code == 2 and "refused the login" in pop.output and pop.output.count("\n") == 1


def test_mailbox_failures_are_one_line_without_the_password(workdir: Path, dovecot: Dovecot):
    add(workdir, PEOPLE[:1])
    wrong = bounces(workdir, "fetch", **mailbox_env(dovecot, NEWSLETTER_BOUNCE_PASSWORD="nope"))
    assert wrong.exit_code == 2
    assert wrong.output == (
        f"error: imap://{USER}@127.0.0.1:{dovecot.ports.imap}/INBOX: the server refused the "
        f"login of user '{USER}'; check NEWSLETTER_BOUNCE_MAILBOX and NEWSLETTER_BOUNCE_PASSWORD\n"
    )
    closed = free_port()
    down = bounces(
        workdir,
        "fetch",
        NEWSLETTER_BOUNCE_MAILBOX=f"imaps://b@127.0.0.1:{closed}/INBOX",
        NEWSLETTER_BOUNCE_PASSWORD=PASSWORD,
    )
    assert down.exit_code == 2
    assert down.output == (
        f"error: imaps://b@127.0.0.1:{closed}/INBOX: cannot connect (connection refused); "
        "check NEWSLETTER_BOUNCE_MAILBOX\n"
    )
    folder = bounces(workdir, "fetch", **mailbox_env(dovecot)
                     | {"NEWSLETTER_BOUNCE_MAILBOX": mailbox_env(dovecot)[
                         "NEWSLETTER_BOUNCE_MAILBOX"].replace("/INBOX", "/Nowhere")})  # fmt: skip
    assert folder.exit_code == 2 and "cannot open folder 'Nowhere'" in folder.output


def test_imaps_verifies_the_certificate(workdir: Path, tmp_path: Path):
    trustme = pytest.importorskip("trustme")
    ca, other = trustme.CA(), trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    other.cert_pem.write_to_path(str(tmp_path / "other.pem"))
    tls = (b"".join(b.bytes() for b in cert.cert_chain_pems), cert.private_key_pem.bytes())
    add(workdir, PEOPLE[:1])
    with Dovecot({USER: PASSWORD}, tls=tls) as server:
        server.deliver(USER, fx.junk())
        for scheme in ("imaps", "pop3s"):
            untrusted = bounces(workdir, "fetch", **mailbox_env(server, scheme))
            assert untrusted.exit_code == 2
            assert "the server's certificate is not trusted" in untrusted.output
            wrong_ca = bounces(workdir, "fetch", **mailbox_env(
                server, scheme, NEWSLETTER_BOUNCE_CA_FILE=str(tmp_path / "other.pem")))  # fmt: skip
            assert wrong_ca.exit_code == 2 and "not trusted" in wrong_ca.output
            assert wrong_ca.output.count("\n") == 1
        good = bounces(workdir, "fetch", **mailbox_env(
            server, "imaps", NEWSLETTER_BOUNCE_CA_FILE=str(tmp_path / "ca.pem")))  # fmt: skip
        assert good.exit_code == 0, good.output
        assert "1 message(s), 1 recorded" in good.output
        # imap:// on loopback takes STARTTLS when the server offers it, and verifies it too
        starttls = bounces(workdir, "fetch", **mailbox_env(server, "imap"))
        assert starttls.exit_code == 2 and "not trusted" in starttls.output


def test_a_message_too_large_for_a_bounce_is_not_downloaded(workdir: Path, dovecot: Dovecot):
    add(workdir, PEOPLE[:1])
    dovecot.deliver(USER, b"Subject: huge\r\nMessage-ID: <huge@example.net>\r\n\r\n"
                    + b"x" * 76 + b"\r\n" * 40_000 + (b"y" * 78 + b"\r\n") * 40_000)  # fmt: skip
    result = bounces(workdir, "fetch", **mailbox_env(dovecot))
    assert result.exit_code == 0, result.output
    assert (
        f"  unrecognised  imap://{USER}@127.0.0.1:{dovecot.ports.imap}/INBOX UID 1: 3.3 MB, "
        "larger than a bounce can be (2 MB); not read" in result.output
    )
    assert folders(dovecot) == {"INBOX": 0, "Processed": 0, "Ignored": 0, "Unrecognised": 1}
