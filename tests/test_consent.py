"""Proof of consent at the command line: import with a basis, implied consent lapsing,
`subscribers show`, `export --consent`, `list --status pending`."""

from __future__ import annotations

import csv
import datetime as dt
import io
from pathlib import Path

import pytest
import time_machine
from click.testing import CliRunner

from newsletter.cli import main
from newsletter.consent import Basis, Consent, ConsentText
from newsletter.signup.requests import ADDRESS_LIMITS, Admitted, Confirmed
from newsletter.subscribers import SqliteStore, Status, edition_for

NOW = dt.datetime(2025, 3, 3, 12, 0, tzinfo=dt.UTC)
WORDS = ConsentText("3", "fr", "Oui, je veux recevoir «\u202fBrèves\u202f» par courriel.")


def cli(workdir: Path, *args: str, **env: str):
    env_file = workdir / "empty.env"  # so a developer's own .env is not read
    env_file.touch()
    settings = {"NEWSLETTER_DB": str(workdir / "news.db"), "NEWSLETTER_SECRET": "s" * 32}
    return CliRunner().invoke(
        main, ["--env-file", str(env_file), *args], env={**settings, **env}, catch_exceptions=False
    )


@pytest.fixture
def clock():
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


@pytest.fixture
def members(workdir: Path) -> Path:
    path = workdir / "members.csv"
    path.write_text("email,name,language\nold@example.org,Old,en\nnew@example.org,New,fr\n")
    return path


def test_import_records_the_basis_and_date_of_consent(workdir, members, clock):
    result = cli(workdir, "subscribers", "import", str(members), "--consent", "implied",
                 "--consent-date", "2024-06-01", "--note", "members at the 2024 AGM")  # fmt: skip
    assert result.exit_code == 0, result.output
    with SqliteStore(workdir / "news.db") as store:
        old = store.find("old@example.org")
        (record,) = store.consents(old.id)
    c = record.consent
    assert (c.basis, c.method, c.consent_date) == (
        Basis.IMPLIED,
        "import:members.csv",
        "2024-06-01",
    )
    assert c.note == "members at the 2024 AGM" and record.recorded_at.startswith("2025-03-03T12")
    assert "warning" not in result.output  # not lapsed yet


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--consent", "implied"], "--consent implied needs --consent-date"),
        (["--consent-date", "2024-01-01"], "--consent-date goes with --consent"),
        (["--consent", "express", "--consent-date", "2025-03-04"], "is in the future"),
        (["--consent", "signed up at the AGM"], "'signed up at the AGM' is not one of"),
        (["--consent", "express", "--consent-date", "01/02/2024"], "does not match the format"),
    ],
)
def test_a_consent_that_proves_nothing_is_refused(workdir, members, clock, args, message):
    result = cli(workdir, "subscribers", "import", str(members), *args)
    assert result.exit_code == 2
    assert message in result.output
    with SqliteStore(workdir / "news.db") as store:
        assert store.counts() == {}  # nothing imported


def test_implied_consent_lapses_after_two_years_express_does_not(workdir):
    with SqliteStore(workdir / "news.db") as store:
        implied = store.add(
            "implied@example.org", language="en", source="import:x.csv",
            consent=Consent(Basis.IMPLIED, "import:x.csv", "2023-03-03"),
        )  # fmt: skip
        express = store.add(
            "express@example.org", language="fr", source="cli",
            consent=Consent(Basis.EXPRESS, "cli", "2019-01-01"),
        )  # fmt: skip
        unknown = store.add("unknown@example.org", language="both", source="cli")

        def mailable(today: str) -> list[str]:
            people = [s.email for s in store.mailable(today=today)]
            # what a send fixes its list from: the same people, each with their edition
            assert [tuple(r) for r in store.conn.execute(*store.recipients_query(today=today))] == [
                (s.id, s.email, s.name, edition_for(s)) for s in store.mailable(today=today)
            ]
            return people

        assert mailable("2025-03-02") == [implied.email, express.email, unknown.email]
        assert mailable("2025-03-03") == [express.email, unknown.email]
        assert store.lapsed_counts("2025-03-03") == {"en": 1}
        assert [s.email for s in store.lapsed("2025-03-03")] == [implied.email]
        assert len(list(store.mailable(include_lapsed=True, today="2025-03-03"))) == 3
        query = store.recipients_query(include_lapsed=True, today="2025-03-03")
        assert len(store.conn.execute(*query).fetchall()) == 3
        # Confirming by the web form later gives express consent: mailed again.
        store.record_consent(implied.id, Consent(Basis.EXPRESS, "web:comeback"))
        assert mailable("2025-03-03") == [implied.email, express.email, unknown.email]
        store.unsubscribe(express.id, "test")
        assert mailable("2025-03-03") == [implied.email, unknown.email]


def _confirmed_by_web(store: SqliteStore, email: str, clock) -> int:
    """What the web form and the link in the e-mail leave in the store: asked at NOW,
    confirmed two minutes later, the clock left there."""
    admitted = store.request_signup(
        email=email, name="Zoé", language="fr", page_language="fr", method="web:signup",
        form_url="https://news.example.org/abonnement", text=WORDS,
        limit_keys={"address:x": ADDRESS_LIMITS}, now=NOW, ip="127.0.0.1", user_agent="Firefox",
    )  # fmt: skip
    assert admitted.kind is Admitted.CONFIRM
    store.signup_mailed(admitted.request.id, NOW + dt.timedelta(seconds=3))
    clock.move_to(NOW + dt.timedelta(minutes=2))
    confirmed = store.confirm_signup(
        admitted.request.id, now=dt.datetime.now(dt.UTC), automatic=False,
        guard=dt.timedelta(minutes=5), ip="127.0.0.2", user_agent="Safari",
    )  # fmt: skip
    assert confirmed.outcome is Confirmed.CONFIRMED
    return confirmed.subscriber.id


def test_show_gives_the_consent_evidence_and_every_change(workdir, clock):
    with SqliteStore(workdir / "news.db") as store:
        zoe = _confirmed_by_web(store, "zoe@example.org", clock)
        store.set_language(zoe, "both", "web:preferences")
        store.set_name(zoe, "Zoé B.", "web:preferences")
        store.unsubscribe(zoe, "web:one-click")
    result = cli(workdir, "subscribers", "show", "zoe@EXAMPLE.org")
    assert result.exit_code == 0
    assert result.output.split("\n\n") == [
        "zoe@example.org\n"
        "  status      unsubscribed since 2025-03-03T12:02:00+00:00 (web:one-click)\n"
        "  language    both\n"
        "  name        Zoé B.\n"
        "  note        confirmed by e-mail (web:signup)",
        "consent\n"
        "  2025-03-03T12:02:00+00:00  express, web:signup\n"
        "      asked      2025-03-03T12:00:00+00:00 on https://news.example.org/abonnement\n"
        "      confirmed  2025-03-03T12:02:00+00:00 by the link in the e-mail\n"
        f"      words      version 3, {WORDS.hash}, in fr\n"
        "                 Oui, je veux recevoir «\u202fBrèves\u202f» par courriel.\n"
        "      ip         127.0.0.1 (asked), 127.0.0.2 (confirmed)\n"
        "      agent      Firefox (asked), Safari (confirmed)",
        "history\n"
        "  2025-03-03T12:02:00+00:00  joined        web:signup\n"
        "  2025-03-03T12:02:00+00:00  language      web:preferences  both\n"
        "  2025-03-03T12:02:00+00:00  name changed  web:preferences\n"
        "  2025-03-03T12:02:00+00:00  unsubscribed  web:one-click\n",
    ]


def test_show_a_removed_address_and_a_pending_one(workdir, clock):
    with SqliteStore(workdir / "news.db") as store:
        _confirmed_by_web(store, "zoe@example.org", clock)
        store.remove("zoe@example.org")
        store.request_signup(
            email="yan@example.org", name="", language="en", page_language="en",
            method="web:signup", form_url="https://news.example.org/subscribe", text=WORDS,
            limit_keys={}, now=NOW,
        )  # fmt: skip
    removed = cli(workdir, "subscribers", "show", "zoe@example.org").output
    assert removed.startswith("zoe@example.org\n  status      removed on 2025-03-03T12:02:00")
    assert "express, web:signup" in removed  # the proof outlives the record
    pending = cli(workdir, "subscribers", "show", "yan@example.org").output
    assert "pending\n  2025-03-03T12:00:00+00:00  asked by web:signup (en), not mailed yet" in (
        pending
    )
    assert "consent\n  none yet: the signup request waits for its confirmation" in pending
    missing = cli(workdir, "subscribers", "show", "nobody@example.org")
    assert missing.exit_code == 2
    assert missing.output == (
        "error: nobody@example.org is not on the list and has no history; check the spelling\n"
    )


def test_pending_requests_are_listed_apart_and_counted_nowhere_else(workdir, clock):
    with SqliteStore(workdir / "news.db") as store:
        store.add("ann@example.org", language="en", source="cli")
        store.request_signup(
            email="yan@example.org", name="Yan", language="fr", page_language="fr",
            method="web:signup", form_url="https://news.example.org/abonnement", text=WORDS,
            limit_keys={}, now=NOW,
        )  # fmt: skip
    pending = cli(workdir, "subscribers", "list", "--status", "pending")
    assert pending.output == (
        "yan@example.org\tfr\tpending\tYan\t2025-03-03T12:00:00+00:00\t2025-03-10T12:00:00+00:00\n"
    )
    assert cli(workdir, "subscribers", "list").output == "ann@example.org\ten\tactive\t\n"
    assert cli(workdir, "subscribers", "count").output.splitlines()[-1].split() == [
        "total",
        "1",
        "0",
        "0",
        "1",
    ]
    clock.shift(dt.timedelta(days=7))
    assert cli(workdir, "subscribers", "list", "--status", "pending").output == ""


def test_export_consent_gives_an_auditor_every_record(workdir, clock, members):
    cli(workdir, "subscribers", "import", str(members), "--consent", "express",
        "--consent-date", "2025-01-15", "--note", "=HYPERLINK(\"x\")")  # fmt: skip
    with SqliteStore(workdir / "news.db") as store:
        _confirmed_by_web(store, "zoe@example.org", clock)
        store.set_status(store.find("old@example.org").id, Status.BOUNCED, "bounce:5.1.1")
        store.unsubscribe(store.find("zoe@example.org").id, "web:one-click")
    out = workdir / "consent.csv"
    result = cli(workdir, "subscribers", "export", "--consent", str(out))
    assert result.exit_code == 0
    rows = list(csv.DictReader(io.StringIO(out.read_text("utf-8-sig"))))
    events = [(r["email"], r["event"], r["how"]) for r in rows]
    assert events == [
        ("new@example.org", "consent", "import:members.csv"),
        ("new@example.org", "joined", "import:members.csv"),
        ("old@example.org", "consent", "import:members.csv"),
        ("old@example.org", "joined", "import:members.csv"),
        ("old@example.org", "bounced", "bounce:5.1.1"),
        ("zoe@example.org", "consent", "web:signup"),
        ("zoe@example.org", "joined", "web:signup"),
        ("zoe@example.org", "unsubscribed", "web:one-click"),
        ("", "consent text", ""),
    ]
    web = rows[5]
    assert (web["basis"], web["requested_at"], web["confirmed_at"]) == (
        "express", "2025-03-03T12:00:00+00:00", "2025-03-03T12:02:00+00:00",
    )  # fmt: skip
    assert (web["text_version"], web["text_hash"], web["language"]) == ("3", WORDS.hash, "fr")
    assert (web["request_ip"], web["confirm_user_agent"]) == ("127.0.0.1", "Safari")
    assert rows[0]["note"] == '\'=HYPERLINK("x")'  # no formula in a spreadsheet
    assert (rows[-1]["text_hash"], rows[-1]["note"]) == (WORDS.hash, WORDS.text)
    assert "exported 9 consent rows" in result.output
