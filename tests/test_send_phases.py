"""What the ledger records for a failure at each phase of an SMTP session (the README's
table), against a scripted server on 127.0.0.1: a message is `uncertain` only when the
whole of it was written and no usable reply came back; a session that could not be opened
costs no reader an attempt."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
from click.testing import CliRunner

from newsletter import campaign
from newsletter.cli import main
from newsletter.config import load_settings
from newsletter.delivery import SendOptions
from newsletter.ledger import Ledger, State
from newsletter.subscribers import SqliteStore
from newsletter.transport import Deferred, Outgoing, SmtpTransport

from .conftest import DEMO_ISSUE
from .scripted_smtp import Script, ScriptedServer
from .test_send import add_people, env_for, ledger_rows, many

READER = "reader0@example.org"


def _settings(workdir: Path, port: int, **extra: str):
    return load_settings(
        None, environ=env_for(workdir, port, NEWSLETTER_SMTP_TIMEOUT="0.5", **extra)
    )


def _send(workdir: Path, port: int, n: int = 1, **options) -> campaign.Passes:
    """Start a send of the demo issue to `n` readers and run one pass, as `send` does."""
    add_people(workdir, many(n))
    settings = _settings(workdir, port)
    prepared = campaign.prepare(settings, workdir / "issues" / DEMO_ISSUE)
    ledger = Ledger(settings.db_path, DEMO_ISSUE)
    try:
        with SqliteStore(settings.db_path) as store:
            campaign.start(store, ledger, prepared, {})
        options.setdefault("concurrency", 1)
        return campaign.run(prepared, ledger, SendOptions(**options))
    finally:
        ledger.close()


# Each row: the script, then what the reader's row must say (state, attempts, reply start).
PHASES = {
    "RCPT 4xx: deferred": (
        Script(rcpt={READER: ["451 4.3.0 greylisted, come back later"]}),
        (State.DEFERRED, 1, "451 4.3.0 greylisted"),
    ),
    "RCPT 452: deferred": (
        Script(rcpt={READER: ["452 4.5.3 too many recipients"]}),
        (State.DEFERRED, 1, "452 4.5.3"),
    ),
    "RCPT 421: deferred": (
        Script(rcpt={READER: ["421 4.7.0 slow down"]}),
        (State.DEFERRED, 1, "421 4.7.0 slow down"),
    ),
    "RCPT 5xx: failed": (
        Script(rcpt={READER: ["550 5.1.1 no such user"]}),
        (State.FAILED, 1, "550 5.1.1 no such user"),
    ),
    "RCPT dropped: deferred": (
        Script(rcpt={READER: ["drop"]}),
        (State.DEFERRED, 1, "connection lost before the message was sent"),
    ),
    "MAIL 4xx: deferred": (
        Script(mail=["451 4.3.0 try later"]),
        (State.DEFERRED, 1, "451 4.3.0 try later"),
    ),
    "DATA 4xx: deferred": (
        Script(data=["451 4.3.0 no room now"]),
        (State.DEFERRED, 1, "451 4.3.0 no room now"),
    ),
    "DATA 5xx: failed": (
        Script(data=["554 5.6.0 not from you"]),
        (State.FAILED, 1, "554 5.6.0 not from you"),
    ),
    "after the dot, 2xx: sent": (
        Script(after_dot=["250 2.0.0 queued as 42"]),
        (State.SENT, 1, "250 2.0.0 queued as 42"),
    ),
    "after the dot, 4xx: deferred": (
        Script(after_dot=["451 4.7.1 rate limited"]),
        (State.DEFERRED, 1, "451 4.7.1 rate limited"),
    ),
    "after the dot, 5xx: failed": (
        Script(after_dot=["554 5.7.1 spam"]),
        (State.FAILED, 1, "554 5.7.1 spam"),
    ),
    "after the dot, dropped: uncertain": (
        Script(after_dot=["drop"]),
        (State.UNCERTAIN, 1, "no usable reply after the message: connection closed"),
    ),
    "after the dot, garbled: uncertain": (
        Script(after_dot=["garbled"]),
        (State.UNCERTAIN, 1, "no usable reply after the message: unreadable reply '2x0"),
    ),
    "after the dot, no reply in time: uncertain": (
        Script(after_dot=["stall"]),
        (State.UNCERTAIN, 1, "no usable reply after the message: timed out"),
    ),
}


@pytest.mark.parametrize("script, expected", PHASES.values(), ids=PHASES.keys())
def test_each_phase_ends_in_its_own_state(workdir: Path, script: Script, expected) -> None:
    with ScriptedServer(script) as server:
        _send(workdir, server.port)
        state, attempts, reply = ledger_rows(workdir)[READER]
        assert (state, attempts) == expected[:2]
        assert reply.startswith(expected[2]), reply
        # the server holds a copy exactly when the client could not know: sent or uncertain
        stored_by_script = script.after_dot[0] in ("garbled", "drop", "stall")
        assert server.copies(READER) == (1 if state is State.SENT or stored_by_script else 0)


# BDAT pipelined has no DATA command, and a connection lost at RCPT has had the whole
# message written behind it: it may have been taken
IN_TURNS = {name: row for name, row in PHASES.items() if not name.startswith("DATA")}
IN_TURNS["RCPT dropped: uncertain"] = (
    IN_TURNS.pop("RCPT dropped: deferred")[0],
    (State.UNCERTAIN, 1, "no usable reply after the message: connection "),  # closed, reset
)


@pytest.mark.parametrize("script, expected", IN_TURNS.values(), ids=IN_TURNS.keys())
def test_in_turns_each_phase_ends_in_its_own_state(workdir: Path, script: Script, expected):
    """Three connections driven by one thread (the server takes BDAT pipelined), each
    with a message: the reader's row says what the table says, the others' are theirs."""
    script = copy.deepcopy(script)  # (a script's lists are used up as it goes)
    script.extensions += ("CHUNKING",)
    with ScriptedServer(script) as server:
        _send(workdir, server.port, 3, concurrency=3)
        rows = ledger_rows(workdir)
        state, attempts, reply = rows[READER]
        assert (state, attempts) == expected[:2]
        assert reply.startswith(expected[2]), reply
        stored_by_script = script.after_dot[0] in ("garbled", "drop", "stall")
        assert server.copies(READER) == (1 if state is State.SENT or stored_by_script else 0)
        for address, (state, _, _) in rows.items():
            assert server.copies(address) <= 1, address
            if state is not State.UNCERTAIN:
                assert server.copies(address) == (state is State.SENT), address


def test_a_write_that_fails_before_the_dot_is_deferred(workdir: Path) -> None:
    """The server stops reading mid-message: the rest cannot be written, so the message
    (8 MB here, more than the sockets can buffer) never ended and cannot have been taken."""
    with ScriptedServer(Script(body=["stall-mid-body"])) as server:
        transport = SmtpTransport(_settings(workdir, server.port).smtp)
        conn = transport.connect()
        line = b"x" * 998 + b"\r\n"
        message = Outgoing(
            mail_from="news@example.org",
            rcpt=READER,
            filename="big.eml",
            data=lambda: [],
            smtp_data=lambda: [b"Subject: big\r\n\r\n", line * 8000, b".\r\n"],
        )
        with pytest.raises(Deferred, match="while sending the message: timed out") as caught:
            conn.send(message)
        assert caught.value.connection_lost
        assert server.copies(READER) == 0


def test_an_uncertain_message_is_never_retried_without_being_asked(workdir: Path) -> None:
    script = Script(after_dot=["garbled", "250 2.0.0 ok"])
    with ScriptedServer(script) as server:
        _send(workdir, server.port, 3)
        env = env_for(workdir, server.port)
        again = CliRunner().invoke(main, ["send", f"issues/{DEMO_ISSUE}", "--yes"], env=env)
        # the garbled reply stored one copy; nothing sends it again
        assert server.copies(READER) == 1
        assert server.copies("reader1@example.org") == 1
        assert "1 uncertain message(s)" in again.output
        assert ledger_rows(workdir)[READER][0] is State.UNCERTAIN


def test_greeting_refusals_cost_no_attempt_and_the_send_goes_on(workdir: Path) -> None:
    script = Script(greeting=["421 4.3.2 busy", "421 4.3.2 busy", "220 ok"])
    with ScriptedServer(script) as server:
        passes = _send(workdir, server.port, 3)
        assert passes.paused is None
        rows = ledger_rows(workdir)
        assert {r[0] for r in rows.values()} == {State.SENT}
        assert {r[1] for r in rows.values()} == {1}  # the refused sessions counted nothing
        assert server.sessions == 3


@pytest.mark.parametrize(
    "script, words",
    [
        (Script(greeting=["421 4.3.2 busy"]), "refused the connection: 421 4.3.2 busy"),
        (Script(starttls=["454 4.7.0 TLS not available"]), "refused STARTTLS: 454"),
        (Script(auth=["454 4.7.0 temporary authentication failure"]), "could not log in now"),
    ],
    ids=["greeting 421", "STARTTLS 454", "AUTH 454"],
)
def test_a_server_that_keeps_refusing_sessions_pauses_the_send_with_nobody_touched(
    workdir: Path, script: Script, words: str
) -> None:
    script.extensions += ("STARTTLS",)
    extra = {"NEWSLETTER_SMTP_USER": "news", "NEWSLETTER_SMTP_PASSWORD": "secret-pw"}
    if "STARTTLS" in words:
        extra["NEWSLETTER_SMTP_SECURITY"] = "starttls"
    add_people(workdir, many(2))
    with ScriptedServer(script) as server:
        settings = _settings(workdir, server.port, **extra)
        prepared = campaign.prepare(settings, workdir / "issues" / DEMO_ISSUE)
        ledger = Ledger(settings.db_path, DEMO_ISSUE)
        with SqliteStore(settings.db_path) as store:
            campaign.start(store, ledger, prepared, {})
        passes = campaign.run(prepared, ledger, SendOptions(concurrency=2, connect_patience=1.0))
        ledger.close()
        assert passes.paused is not None and words in passes.paused
        assert "nothing was lost" in passes.paused
        assert "secret-pw" not in passes.paused
        assert {r[:2] for r in ledger_rows(workdir).values()} == {(State.PENDING, 0)}
        assert "MAIL" not in server.commands


def test_auth_454_then_success_delivers_everyone_once(workdir: Path) -> None:
    script = Script(auth=["235 2.7.0 ok", "454 4.7.0 try again", "235 2.7.0 ok"])
    add_people(workdir, many(3))
    with ScriptedServer(script) as server:
        env = env_for(
            workdir,
            server.port,
            NEWSLETTER_SMTP_USER="news",
            NEWSLETTER_SMTP_PASSWORD="secret-pw",
        )
        # the first session is the check before anything is fixed; the second is refused
        result = CliRunner().invoke(main, ["send", f"issues/{DEMO_ISSUE}", "--yes"], env=env)
        assert result.exit_code == 0, result.output
        assert {server.copies(f"reader{i}@example.org") for i in range(3)} == {1}
        assert {r[:2] for r in ledger_rows(workdir).values()} == {(State.SENT, 1)}


@pytest.mark.parametrize(
    "script, words",
    [
        (Script(auth=["235 2.7.0 ok", "535 5.7.8 bad credentials"]), "refused the login of user"),
        (Script(greeting=["220 ok", "554 5.7.1 go away"]), "refused the connection: 554"),
        (Script(mail=["553 5.7.1 sender not allowed"]), "refused the sender address: 553"),
    ],
    ids=["AUTH 535", "greeting 554", "MAIL 553"],
)
@pytest.mark.parametrize("turns", [False, True], ids=["", "in turns"])
def test_a_permanent_session_refusal_mid_send_stops_with_one_line_and_nothing_uncertain(
    workdir: Path, script: Script, words: str, turns: bool
) -> None:
    script = copy.deepcopy(script)  # (a script's lists are used up as it goes)
    concurrency = []
    if turns:  # three connections driven by one thread: each is refused, nobody is lost
        script.extensions += ("CHUNKING",)
        concurrency = ["--concurrency", "3"]
    add_people(workdir, many(3))
    with ScriptedServer(script) as server:
        env = env_for(
            workdir,
            server.port,
            NEWSLETTER_SMTP_USER="news",
            NEWSLETTER_SMTP_PASSWORD="secret-pw",
        )
        result = CliRunner().invoke(
            main, ["send", f"issues/{DEMO_ISSUE}", "--yes", *concurrency], env=env
        )
        assert result.exit_code == 2, result.output
        errors = [line for line in result.output.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and words in errors[0], result.output
        assert "secret-pw" not in result.output
        assert server.stored == []
        # nothing reached the server for anyone: nobody is in flight, uncertain or charged
        assert {r[:2] for r in ledger_rows(workdir).values()} == {(State.PENDING, 0)}
        status = CliRunner().invoke(main, ["status", f"issues/{DEMO_ISSUE}"], env=env)
        listed = [line.split()[0] for line in status.output.splitlines()[5:]]
        assert "uncertain" not in listed and "in flight" not in status.output
        assert status.output.splitlines()[2].split()[1:] == ["0", "1", "0", "0", "0", "0"]


def test_outcomes_whose_recording_failed_are_recorded_by_the_last_flush(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The database refuses one batch of outcomes (locked): they stay in memory and the end
    of the pass records them, instead of leaving delivered messages `sending` (uncertain)."""
    import sqlite3

    from newsletter import delivery

    monkeypatch.setattr(delivery, "FLUSH_EVERY", -1.0)  # every outcome is a batch of its own
    real_mark, calls = Ledger.mark, []

    def mark_locked_once(self, worker, outcomes):
        calls.append(len(outcomes))
        if len(calls) == 1:
            raise sqlite3.OperationalError("database is locked")
        return real_mark(self, worker, outcomes)

    monkeypatch.setattr(Ledger, "mark", mark_locked_once)
    with ScriptedServer(Script()) as server:
        with pytest.raises(sqlite3.OperationalError):
            _send(workdir, server.port, 3)
        delivered = {r for r in (f"reader{i}@example.org" for i in range(3)) if server.copies(r)}
    rows = ledger_rows(workdir)
    assert delivered and {email for email in delivered if rows[email][0] is State.SENT} == delivered
    assert not [e for e, (state, _, _) in rows.items() if state is State.SENDING]
