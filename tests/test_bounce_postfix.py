"""The production shape in miniature: `newsletter send` to a private Postfix on 127.0.0.1,
which relays to a "provider" (aiosmtpd on loopback) that refuses some readers; Postfix's own
DSNs go by LMTP to Dovecot, and `bounces fetch` takes off exactly the readers refused for
good, while a provider's policy block takes nobody off.

Skipped only on a machine without Postfix and Dovecot (or not root) and outside CI.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from newsletter.cli import main
from newsletter.subscribers import Status

from . import dovecot_server, postfix_server
from .conftest import DEMO_ISSUE
from .dovecot_server import Dovecot
from .postfix_server import Postfix
from .smtp_server import Handler, Server
from .test_bounce_mailbox import PASSWORD, USER, mailbox_env
from .test_bounces import BOUNCE_DOMAIN, add, bounce_env, statuses

pytestmark = pytest.mark.skipif(
    not (postfix_server.available() and dovecot_server.available())
    and os.environ.get("CI") != "true",
    reason="needs Debian's postfix and dovecot, as root (CI has them)",
)

READERS = [
    ("anne@example.org", "en"),
    ("dead@example.com", "fr"),  # the provider: 550 5.1.1
    ("gone@example.com", "both"),  # the provider: 550 5.1.1
    ("carol@example.net", "en"),  # the provider: 550 5.7.1, a policy block
    ("dave@example.org", "en"),
]


def test_postfix_dsns_reach_dovecot_and_fetch_takes_off_exactly_the_refused(workdir: Path):
    add(workdir, READERS)
    provider = Handler(
        script={
            "dead@example.com": ["550"],
            "gone@example.com": ["550"],
            "carol@example.net": ["550 5.7.1 Message rejected by policy: sender reputation"],
        }
    )
    with Server(provider) as relay_to, Dovecot({USER: PASSWORD}) as dovecot:
        with Postfix(relay_to.port, dovecot.ports.lmtp, BOUNCE_DOMAIN) as postfix:
            env = bounce_env(workdir, postfix.port)
            sent = CliRunner().invoke(main, ["send", f"issues/{DEMO_ISSUE}", "--yes"], env=env)
            assert sent.exit_code == 0, sent.output
            # the relay took every message: "sent" here means accepted by it, and says so
            status = CliRunner().invoke(main, ["status", f"issues/{DEMO_ISSUE}"], env=env)
            assert "sent = accepted by the relay 127.0.0.1" in status.output
            deadline = time.monotonic() + 60
            while len(dovecot.maildir(USER)) < 3 and time.monotonic() < deadline:
                time.sleep(0.2)
            assert len(dovecot.maildir(USER)) == 3, postfix.log()
        assert sorted(r.rcpt for r in provider.received) == ["anne@example.org",
                                                             "dave@example.org"]  # fmt: skip
        dsn = dovecot.maildir(USER)[0].read_text()
        assert "Delivered-To: bounces+" in dsn  # VERP, kept by Dovecot
        assert "Original-Envelope-Id: " in dsn  # Postfix offered DSN: our ENVID came back

        result = CliRunner().invoke(main, ["bounces", "fetch"], env={**env,
                                    **mailbox_env(dovecot)})  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "3 message(s), 3 recorded" in result.output
    assert "hard 2, soft 0, blocked 1," in result.output
    assert "warning: example.net refused our mail for policy or reputation (5.7.1" in (
        result.output
    )
    assert statuses(workdir) == {
        "anne@example.org": Status.ACTIVE,
        "dead@example.com": Status.BOUNCED,
        "gone@example.com": Status.BOUNCED,
        "carol@example.net": Status.ACTIVE,  # the sender was refused, not her address
        "dave@example.org": Status.ACTIVE,
    }
    listed = CliRunner().invoke(main, ["bounces", "list", "--class", "hard"], env=env).output
    assert listed.count("[verp] -> bounced") == 2
    assert "550 5.1.1 No such mailbox" in listed
