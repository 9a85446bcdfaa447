"""`send` skips people whose implied consent has lapsed (CASL: two years), and says so.

The rule is the store's (SqliteStore.mailable, lapsed_counts); this is where the send fixes
its recipient list with it."""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine

from newsletter.consent import Basis, Consent
from newsletter.subscribers import SqliteStore

from .conftest import DEMO_ISSUE
from .smtp_server import Handler, Server
from .test_consent import cli

NOW = dt.datetime(2025, 3, 3, 12, 0, tzinfo=dt.UTC)


@pytest.fixture
def clock():
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


def test_send_skips_lapsed_implied_consent_and_says_so(workdir, clock):
    with SqliteStore(workdir / "news.db") as store:
        for email, date in (
            ("lapsed@example.org", "2022-12-31"),
            ("fresh@example.org", "2024-12-31"),
        ):
            store.add(email, language="en", source="import:m.csv",
                      consent=Consent(Basis.IMPLIED, "import:m.csv", date))  # fmt: skip
    listed = cli(workdir, "subscribers", "list", "--lapsed")
    assert listed.output == "lapsed@example.org\ten\tactive\t\n"
    counted = cli(workdir, "subscribers", "count").output.splitlines()
    assert counted[1].split() == ["active", "2", "0", "0", "2"]
    assert counted[-1].split()[:4] == ["1", "0", "0", "1"]
    assert counted[-1].endswith("of the active: implied consent lapsed, not mailed")

    dry = cli(workdir, "send", f"issues/{DEMO_ISSUE}", "--dry-run")
    assert "en                1 subscriber(s)" in dry.output
    assert "warning: skipping 1 subscriber(s) whose implied consent is over two years old" in (
        dry.output
    )
    dry_all = cli(workdir, "send", f"issues/{DEMO_ISSUE}", "--dry-run", "--include-lapsed")
    assert "en                2 subscriber(s)" in dry_all.output
    assert "warning: including 1 subscriber(s) whose implied consent has lapsed" in dry_all.output

    with Server(Handler()) as smtp:
        result = cli(workdir, "send", f"issues/{DEMO_ISSUE}", "--yes",
                     NEWSLETTER_SMTP_HOST="127.0.0.1", NEWSLETTER_SMTP_PORT=str(smtp.port),
                     NEWSLETTER_SMTP_SECURITY="none")  # fmt: skip
        assert result.exit_code == 0, result.output
        assert "recipient list fixed: 1 subscribers" in result.output
        assert [r.rcpt for r in smtp.handler.received] == ["fresh@example.org"]


def test_scheduling_a_send_says_who_it_will_skip(workdir, clock):
    # the skip happens when the send starts, from a timer, where nobody reads a warning
    with SqliteStore(workdir / "news.db") as store:
        store.add("lapsed@example.org", language="en", source="import:m.csv",
                  consent=Consent(Basis.IMPLIED, "import:m.csv", "2022-12-31"))  # fmt: skip
        store.add("fresh@example.org", language="en", source="test")
    result = cli(workdir, "send", f"issues/{DEMO_ISSUE}", "--at", "2025-03-10 07:00")
    assert result.exit_code == 0, result.output
    assert "warning: skipping 1 subscriber(s) whose implied consent is over two years old" in (
        result.output
    )
    assert "today that is en 1, fr 0, bilingual 0 (1 in all)" in result.output


def test_a_lapsed_consent_can_be_renewed_by_hand_or_by_import(workdir, clock):
    with SqliteStore(workdir / "news.db") as store:
        for email in ("ann@example.org", "bob@example.org"):
            store.add(email, language="en", source="import:m.csv",
                      consent=Consent(Basis.IMPLIED, "import:m.csv", "2022-12-31"))  # fmt: skip
    assert cli(workdir, "subscribers", "list", "--lapsed").output.count("\n") == 2
    renewed = cli(workdir, "subscribers", "add", "ann@example.org", "--consent", "express",
                  "--note", "said yes on the phone")  # fmt: skip
    assert (renewed.exit_code, renewed.output) == (
        0,
        "consent renewed: ann@example.org (express); their implied consent had lapsed, and "
        "issues reach them again\n",
    )
    sheet = workdir / "members.csv"
    sheet.write_text("email\nbob@example.org\n", "utf-8")
    imported = cli(workdir, "subscribers", "import", str(sheet), "--consent", "implied",
                   "--consent-date", "2025-01-15")  # fmt: skip
    assert "1 consent(s) renewed: their implied consent had lapsed" in imported.output
    assert cli(workdir, "subscribers", "list", "--lapsed").output == ""
    # someone whose consent stands is still "already subscribed"
    again = cli(workdir, "subscribers", "add", "ann@example.org", "--consent", "express",
                "--note", "twice")  # fmt: skip
    assert again.exit_code == 2 and "already subscribed" in again.output
