"""One round trip a message: BDAT (RFC 3030) where the server has CHUNKING, else DATA with
the next envelope pipelined behind the final dot (RFC 2920). Each path delivers the same
bytes as plain DATA, and a failure in the middle of a pipeline loses or doubles nobody."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from newsletter import campaign
from newsletter.config import load_settings
from newsletter.delivery import SendOptions
from newsletter.ledger import Ledger, State
from newsletter.smtp import Client
from newsletter.subscribers import SqliteStore

from .conftest import DEMO_ISSUE
from .scripted_smtp import Script, ScriptedServer
from .test_send import _dkim_key, add_people, env_for, many

PROFILES = {
    "plain DATA": (),
    "DATA, pipelined": ("PIPELINING",),
    "BDAT, pipelined": ("PIPELINING", "CHUNKING"),
    "BDAT alone": ("CHUNKING",),
}


def _send(db: Path, workdir: Path, port: int) -> campaign.Passes:
    settings = load_settings(
        None, environ=env_for(workdir, port, NEWSLETTER_DB=str(db), NEWSLETTER_SMTP_TIMEOUT="2")
    )
    prepared = campaign.prepare(settings, workdir / "issues" / DEMO_ISSUE)
    ledger = Ledger(settings.db_path, DEMO_ISSUE)
    try:
        with SqliteStore(settings.db_path) as store:
            campaign.start(store, ledger, prepared, {})
        return campaign.run(prepared, ledger, SendOptions(concurrency=1))
    finally:
        ledger.close()


def _same(data: bytes) -> bytes:
    """The message without what differs between two builds of it: Date, Message-ID and the
    MIME boundary (the email package draws it at random)."""
    data = re.sub(rb"(?m)^(Date|Message-ID): [^\r\n]*\r?\n", b"", data)
    return re.sub(rb"={15}\d+==", b"BOUNDARY", data)


def test_each_path_delivers_the_same_message_in_one_write_each(workdir, monkeypatch) -> None:
    people = many(6)  # en, fr and bilingual editions, twice each
    add_people(workdir, people)
    writes: list[bytes] = []
    real_write, real_parts = Client.write, Client.write_parts

    def counted(self, data: bytes) -> None:
        writes.append(data)
        real_write(self, data)

    def counted_parts(self, parts: list[bytes]) -> None:
        writes.append(b"".join(parts))  # one system call's worth: one write
        real_parts(self, parts)

    monkeypatch.setattr(Client, "write", counted)
    monkeypatch.setattr(Client, "write_parts", counted_parts)
    received: dict[str, dict[str, bytes]] = {}
    messages_writes: dict[str, int] = {}
    for name, extensions in PROFILES.items():
        db = workdir / f"{name}.db"
        shutil.copy(workdir / "news.db", db)  # the same list, links and all
        writes.clear()
        with ScriptedServer(Script(extensions=extensions)) as server:
            passes = _send(db, workdir, server.port)
            assert passes.progress.sent == 6, name
            received[name] = {rcpt: _same(data) for rcpt, data in server.stored}
        messages_writes[name] = sum(
            1 for w in writes if not w.startswith((b"EHLO", b"QUIT", b"RSET"))
        )
    reference = received["plain DATA"]
    assert sorted(reference) == sorted(p[0] for p in people)
    for name in PROFILES:
        assert received[name] == reference, name
    # plain: MAIL, RCPT, DATA, the message; pipelined: the first envelope, then one write a
    # message (the message, its dot and the next envelope); BDAT: one write a message
    assert messages_writes == {
        "plain DATA": 4 * 6,
        "DATA, pipelined": 6 + 1,
        "BDAT, pipelined": 6,
        "BDAT alone": 3 * 6,
    }


@pytest.mark.parametrize("extensions", [("PIPELINING",), ("PIPELINING", "CHUNKING")])
def test_a_failure_inside_a_pipeline_loses_and_doubles_nobody(workdir, extensions) -> None:
    people = many(5)
    add_people(workdir, people)
    script = Script(
        extensions=extensions,
        rcpt={"reader3@example.org": ["550 5.1.1 no such user"]},
        # reader1: taken, then the connection dropped: the envelope of reader2 that went
        # ahead of it is void, and reader2 goes again on the next session
        after_dot=["250 2.0.0 ok", "drop", "250 2.0.0 ok"],
    )
    with ScriptedServer(script) as server:
        _send(workdir / "news.db", workdir, server.port)
        ledger = Ledger(workdir / "news.db", DEMO_ISSUE)
        states = {d.email: d.state for d in ledger.in_state(*State)}
        ledger.close()
        assert states == {
            "reader0@example.org": State.SENT,
            "reader1@example.org": State.UNCERTAIN,
            "reader2@example.org": State.SENT,
            "reader3@example.org": State.FAILED,
            "reader4@example.org": State.SENT,
        }
        for address in ("reader0@example.org", "reader1@example.org", "reader2@example.org"):
            assert server.copies(address) == 1, address
        assert server.copies("reader3@example.org") == 0
        assert server.copies("reader4@example.org") == 1


@pytest.mark.parametrize("name", list(PROFILES))
def test_a_signed_message_verifies_on_every_path(workdir, tmp_path, name) -> None:
    """The signature is made over the message in pieces (never joined to be signed), and
    DATA dot-stuffs those pieces apart from it: dkimpy still verifies what arrived."""
    dkim = pytest.importorskip("dkim")
    pytest.importorskip("nacl")  # dkimpy verifies Ed25519 with PyNaCl
    key, record = _dkim_key(tmp_path, "ed25519")
    add_people(workdir, many(3))
    with ScriptedServer(Script(extensions=PROFILES[name])) as server:
        environ = env_for(
            workdir,
            server.port,
            NEWSLETTER_DKIM_KEY=str(key),
            NEWSLETTER_DKIM_SELECTOR="news2017",
            NEWSLETTER_DKIM_DOMAIN="example.org",
        )
        settings = load_settings(None, environ=environ)
        prepared = campaign.prepare(settings, workdir / "issues" / DEMO_ISSUE)
        ledger = Ledger(settings.db_path, DEMO_ISSUE)
        try:
            with SqliteStore(settings.db_path) as store:
                campaign.start(store, ledger, prepared, {})
            assert campaign.run(prepared, ledger, SendOptions(concurrency=1)).progress.sent == 3
        finally:
            ledger.close()
        stored = server.stored

    def dns(name, timeout=5):
        return record if name == b"news2017._domainkey.example.org." else None

    assert len(stored) == 3
    for _, data in stored:
        assert data.startswith(b"DKIM-Signature: v=1; a=ed25519-sha256")
        assert dkim.verify(data, dnsfunc=dns)
        assert not dkim.verify(data.replace(b"Syri", b"Siri", 1), dnsfunc=dns)
