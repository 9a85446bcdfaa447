"""One round trip a message: BDAT (RFC 3030) where the server has CHUNKING, else DATA with
the next envelope pipelined behind the final dot (RFC 2920). Each path delivers the same
bytes as plain DATA, and a failure in the middle of a pipeline loses or doubles nobody."""

from __future__ import annotations

import re
import shutil
import threading
from pathlib import Path

import pytest

from newsletter import campaign
from newsletter.config import load_settings
from newsletter.delivery import SendOptions, SendRun
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


def _send(db: Path, workdir: Path, port: int, concurrency: int = 1) -> campaign.Passes:
    settings = load_settings(
        None, environ=env_for(workdir, port, NEWSLETTER_DB=str(db), NEWSLETTER_SMTP_TIMEOUT="2")
    )
    prepared = campaign.prepare(settings, workdir / "issues" / DEMO_ISSUE)
    ledger = Ledger(settings.db_path, DEMO_ISSUE)
    try:
        with SqliteStore(settings.db_path) as store:
            campaign.start(store, ledger, prepared, {})
        return campaign.run(prepared, ledger, SendOptions(concurrency=concurrency))
    finally:
        ledger.close()


def _states(db: Path) -> dict[str, State]:
    ledger = Ledger(db, DEMO_ISSUE)
    try:
        return {d.email: d.state for d in ledger.in_state(*State)}
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


def test_one_thread_drives_every_connection_in_turn_where_the_server_takes_bdat(
    workdir, monkeypatch
) -> None:
    """BDAT pipelined: a worker's connections are driven by one thread (a message written
    on each, then each one's replies read). Otherwise a thread a connection, as before."""
    people = many(9)
    add_people(workdir, people)
    writers: set[str] = set()
    real_parts = Client.write_parts

    def noted(self, parts: list[bytes]) -> None:
        writers.add(threading.current_thread().name)
        real_parts(self, parts)

    monkeypatch.setattr(Client, "write_parts", noted)
    for extensions, threads in (
        (("PIPELINING", "CHUNKING"), {"send-turns"}),
        (("PIPELINING",), {"send-0", "send-1", "send-2"}),
    ):
        db = workdir / f"{len(extensions)}.db"
        shutil.copy(workdir / "news.db", db)
        writers.clear()
        with ScriptedServer(Script(extensions=extensions)) as server:
            assert _send(db, workdir, server.port, concurrency=3).progress.sent == 9
            assert sorted(r for r, _ in server.stored) == sorted(p[0] for p in people)
        if len(threads) == 1:
            assert writers == threads
            assert server.sessions == 3  # its three connections, each used
        else:
            assert writers and writers <= threads  # (how the rows fell among them may vary)


def test_in_turns_a_failure_on_one_connection_loses_and_doubles_nobody(workdir) -> None:
    people = many(9)
    add_people(workdir, people)
    script = Script(
        extensions=("PIPELINING", "CHUNKING"),
        rcpt={
            "reader4@example.org": ["550 5.1.1 no such user"],
            "reader7@example.org": ["451 4.3.0 later"],
        },  # fmt: skip
        # the third message taken is stored and its connection dropped with no reply
        after_dot=["250 2.0.0 ok", "250 2.0.0 ok", "drop", "250 2.0.0 ok"],
    )
    with ScriptedServer(script) as server:
        passes = _send(workdir / "news.db", workdir, server.port, concurrency=3)
        states = _states(workdir / "news.db")
        uncertain = [a for a, s in states.items() if s is State.UNCERTAIN]
        assert len(uncertain) == 1 and server.copies(uncertain[0]) == 1
        assert states["reader4@example.org"] is State.FAILED
        assert states["reader7@example.org"] is State.DEFERRED
        for address, _, _ in people:
            if address in ("reader4@example.org", "reader7@example.org"):
                assert server.copies(address) == 0, address
            elif address not in uncertain:
                assert states[address] is State.SENT and server.copies(address) == 1, address
        assert (passes.progress.sent, passes.progress.uncertain) == (6, 1)


def test_in_turns_a_session_refused_for_a_while_holds_up_nobody(workdir) -> None:
    """The third session is refused (421) four times: the two others go on sending while
    it waits out its backoff (0.5, 1, 2, then 4 s), and nobody is charged an attempt."""
    people = many(9)
    add_people(workdir, people)
    busy = ["421 4.3.2 busy"] * 4
    script = Script(
        extensions=("PIPELINING", "CHUNKING"), greeting=["220 ok", "220 ok", *busy, "220 ok"]
    )
    with ScriptedServer(script) as server:
        passes = _send(workdir / "news.db", workdir, server.port, concurrency=3)
        assert passes.paused is None
        assert {server.copies(p[0]) for p in people} == {1}
        # waiting for it would have read no reply before its seventh session (7.5 s of
        # backoff); the others sent everyone long before
        assert 3 <= server.sessions < 7
    ledger = Ledger(workdir / "news.db", DEMO_ISSUE)
    rows = ledger.in_state(*State)
    ledger.close()
    assert {(d.state, d.attempts) for d in rows} == {(State.SENT, 1)}


def test_in_turns_nothing_new_starts_once_the_lease_has_run_out(workdir) -> None:
    """A worker past its lease by its own clock (frozen, then woken) begins no message; the
    ones already written on the other connections are finished and recorded."""
    people = many(12)
    ids = add_people(workdir, people)
    order = sorted(ids, key=ids.get)
    with ScriptedServer(Script(extensions=("PIPELINING", "CHUNKING"))) as server:
        settings = load_settings(None, environ=env_for(workdir, server.port))
        prepared = campaign.prepare(settings, workdir / "issues" / DEMO_ISSUE)
        ledger = Ledger(settings.db_path, DEMO_ISSUE)
        with SqliteStore(settings.db_path) as store:
            campaign.start(store, ledger, prepared, {})
        runs: list[SendRun] = []

        def personalise(delivery):
            if delivery.email == order[4]:  # the second turn's second message
                runs[0].lease_until = 0.0  # as if it woke long after its lease
            return prepared.personalise(delivery)

        run = SendRun(ledger, prepared.transport, prepared.editions, personalise,
                      SendOptions(concurrency=3))  # fmt: skip
        runs.append(run)
        result = run.run()
        rows = {d.email: (d.state, d.attempts) for d in ledger.in_state(*State)}
        ledger.close()
        stored = sorted(r for r, _ in server.stored)
    assert stored == sorted(order[:5])  # the first turn, and the second up to its lapse
    assert {rows[a] for a in order[:5]} == {(State.SENT, 1)}
    assert {rows[a] for a in order[5:]} == {(State.PENDING, 0)}  # given back untouched
    assert result.progress.sent == 5 and result.paused is None


def test_in_turns_a_session_is_opened_only_when_no_reply_is_waiting(workdir, monkeypatch):
    # a try to open one (TCP, EHLO, maybe TLS and AUTH) would hold up the replies due
    from newsletter import transport

    people = many(12)
    add_people(workdir, people)
    waiting, seen = [0], []
    real_begin, real_end = transport.SmtpConnection.begin, transport.SmtpConnection.end
    real_connect = transport.SmtpTransport.connect

    def begin(self, message):
        real_begin(self, message)
        waiting[0] += 1

    def end(self):
        waiting[0] -= 1
        return real_end(self)

    def connect(self):
        seen.append(waiting[0])
        return real_connect(self)

    monkeypatch.setattr(transport.SmtpConnection, "begin", begin)
    monkeypatch.setattr(transport.SmtpConnection, "end", end)
    monkeypatch.setattr(transport.SmtpTransport, "connect", connect)
    script = Script(
        extensions=("PIPELINING", "CHUNKING"),
        greeting=["220 ok", "421 4.3.2 busy", "220 ok"],
        # two connections dropped mid-send: each is opened again
        after_dot=["250 2.0.0 ok", "250 2.0.0 ok", "drop", "250 2.0.0 ok", "drop", "250 ok"],
    )
    with ScriptedServer(script) as server:
        passes = _send(workdir / "news.db", workdir, server.port, concurrency=3)
        assert passes.progress.sent == 10 and passes.progress.uncertain == 2
        assert {server.copies(p[0]) for p in people} == {1}
    assert len(seen) >= 3 and set(seen) == {0}, seen  # (the first, the refused, again)


@pytest.mark.parametrize("cut", [1, 3, 4, 13, 20, 31, 45, 60])
def test_replies_read_alike_however_the_bytes_arrive(cut: int) -> None:
    """A reply read whole from what came with the last one (the usual case: MAIL's, RCPT's
    and the message's arrive together) reads as one that came in pieces."""
    import socket

    from newsletter.smtp import Garbled, Reply

    wire = (
        b"250 2.1.0 Ok\r\n250 2.1.5 caf\xc3\xa9  \r\n250-first\r\n250-\r\n250 last\r\n"
        b"452 4.2.2 full\n250 \r\n999 what\r\n"
    )
    ours, theirs = socket.socketpair()
    ours.settimeout(5)
    theirs.sendall(wire[:cut])
    rest = threading.Timer(0.05, theirs.sendall, (wire[cut:],))  # once the reading began
    rest.start()
    try:
        client = Client(ours)
        got = [client.reply() for _ in range(5)]
        assert got == [
            Reply(250, ("2.1.0 Ok",)),
            Reply(250, ("2.1.5 café",)),
            Reply(250, ("first", "", "last")),
            Reply(452, ("4.2.2 full",)),
            Reply(250, ("",)),
        ]
        assert [str(r) for r in got] == [
            "250 2.1.0 Ok", "250 2.1.5 café", "250 first last", "452 4.2.2 full", "250"
        ]  # fmt: skip
        with pytest.raises(Garbled):
            client.reply()
    finally:
        rest.join()
        ours.close()
        theirs.close()
