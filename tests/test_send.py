"""Sending against a real SMTP server on 127.0.0.1 (aiosmtpd): editions, headers, retries,
permanent failures, crashes and resume, TLS, login, DKIM."""

from __future__ import annotations

import os
import re
import select
import signal
import ssl
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from newsletter import campaign
from newsletter.config import load_settings
from newsletter.delivery import SendOptions, SendRun
from newsletter.ledger import Ledger, SendState, State
from newsletter.subscribers import SqliteStore
from newsletter.tokens import key_check, read_token, signing_key

from .conftest import DEMO_ISSUE, clean_env, run_cli
from .smtp_server import Handler, Server, accept_only

SECRET = "test-secret-for-links"
PEOPLE = [
    ("anne@example.org", "Anne Smith", "en"),
    ("marie@example.org", "Marie Côté", "fr"),
    ("alex@example.net", "Alex Tremblay", "both"),
    ("gone@example.com", "Gone Away", "en"),
]


def env_for(workdir: Path, port: int, **extra: str) -> dict[str, str]:
    settings = {
        "NEWSLETTER_DB": str(workdir / "news.db"),
        "NEWSLETTER_SECRET": SECRET,
        "NEWSLETTER_SMTP_HOST": "127.0.0.1",
        "NEWSLETTER_SMTP_PORT": str(port),
        "NEWSLETTER_SMTP_SECURITY": "none",
        "NEWSLETTER_SMTP_TIMEOUT": "10",
    }
    return clean_env(**{**settings, **extra})


def add_people(workdir: Path, people=PEOPLE) -> dict[str, int]:
    with SqliteStore(workdir / "news.db") as store:
        ids = {}
        for email_, name, language in people:
            ids[email_] = store.add(email_, name=name, language=language, source="test").id
        if any(p[0] == "gone@example.com" for p in people):
            store.unsubscribe(ids["gone@example.com"], "test")
    return ids


def many(n: int) -> list[tuple[str, str, str]]:
    return [
        (f"reader{i}@example.org", f"Reader {i}", ("en", "fr", "both")[i % 3]) for i in range(n)
    ]


def send(workdir: Path, port: int, *args: str, input: str | None = None, **extra: str):
    return run_cli(
        "send", f"issues/{DEMO_ISSUE}", *args, cwd=workdir, env=env_for(workdir, port, **extra),
        input=input,
    )  # fmt: skip


def ledger_rows(workdir: Path) -> dict[str, tuple[State, int, str]]:
    """Each reader's (state, attempts, last reply) in the demo issue's ledger."""
    ledger = Ledger(workdir / "news.db", DEMO_ISSUE)
    try:
        return {d.email: (d.state, d.attempts, d.last_reply) for d in ledger.in_state(*State)}
    finally:
        ledger.close()


def ledger_states(workdir: Path) -> dict[str, State]:
    ledger = Ledger(workdir / "news.db", DEMO_ISSUE)
    try:
        return {d.email: d.state for d in ledger.in_state(*State)}
    finally:
        ledger.close()


def _started(workdir: Path, port: int) -> tuple[Any, campaign.Prepared, Ledger]:
    """The settings, the prepared issue and its ledger of a send started in this process, as
    `send --yes` starts one, for the campaign's functions to run."""
    settings = load_settings(None, environ=env_for(workdir, port))
    prepared = campaign.prepare(settings, workdir / "issues" / DEMO_ISSUE)
    ledger = Ledger(settings.db_path, DEMO_ISSUE)
    with SqliteStore(settings.db_path) as store:
        campaign.start(store, ledger, prepared, {})
    return settings, prepared, ledger


@pytest.mark.parametrize("pipelining", [False, True])
def test_each_subscriber_gets_the_edition_of_their_language(workdir: Path, pipelining) -> None:
    ids = add_people(workdir)
    with Server(Handler(pipelining=pipelining)) as server:
        result = send(workdir, server.port, "--yes")
        assert result.returncode == 0, result.stderr
        got = {r.rcpt: r.message for r in server.handler.received}
        assert sorted(got) == ["alex@example.net", "anne@example.org", "marie@example.org"]
        expected = {
            "anne@example.org": ("en-CA", "Committee News", "News / Brèves No. 1:"),
            "marie@example.org": ("fr-CA", "Brèves du Comité", "News / Brèves no 1\u00a0:"),
            "alex@example.net": ("en-CA, fr-CA", "Committee News / Brèves du Comité", "News /"),
        }
        for rcpt, (lang, sender, subject) in expected.items():
            msg = got[rcpt]
            assert msg["Content-Language"] == lang
            assert msg["From"].addresses[0].display_name == sender
            assert msg["Subject"].startswith(subject)
            assert msg["To"].addresses[0].addr_spec == rcpt
            # (the stdlib may fold a long List-Id right after the colon)
            assert msg["List-Id"].strip() == f"{sender} <news.example.org>"
            assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
            assert msg["Message-ID"].endswith("@example.org>")
            assert msg.get_content_type() == "multipart/alternative"
            html = msg.get_body(("html",)).get_content()
            text = msg.get_body(("plain",)).get_content()
            # the personal link works against `newsletter serve`: same base URL and secret
            unsub = msg["List-Unsubscribe"].split(",")[0].strip("<> ")
            assert unsub.startswith("https://news.example.org/unsubscribe/")
            token = unsub.rsplit("/", 1)[1]
            key = signing_key(load_settings(None, environ=env_for(workdir, 1)))  # as serve's
            assert read_token(key, token) == ids[rcpt]
            assert unsub in html and unsub in text
            assert f"https://news.example.org/preferences/{token}" in html
            assert "mailto:" in msg["List-Unsubscribe"]
        assert got["marie@example.org"]["To"].addresses[0].display_name == "Marie Côté"
        # a second run sends nothing: the ledger says everyone has it
        again = send(workdir, server.port, "--yes")
        assert again.returncode == 0
        assert "nothing left to send" in again.stdout
        assert len(server.handler.received) == 3
    status = run_cli("status", f"issues/{DEMO_ISSUE}", cwd=workdir, env=env_for(workdir, 1))
    assert "bilingual            1          0" in status.stdout


def test_test_send_and_dry_run_record_nothing(workdir: Path) -> None:
    add_people(workdir)
    with Server(Handler()) as server:
        dry = send(workdir, server.port, "--dry-run")
        assert dry.returncode == 0, dry.stderr
        assert "bilingual         1 subscriber(s)" in dry.stdout
        assert server.handler.received == []
        test = send(workdir, server.port, "--test", "editor@example.com", "ed@exämple.org",
                    NEWSLETTER_FROM_FR="breves@brèves.example.org")  # fmt: skip
        assert test.returncode == 0, test.stderr
        subjects = sorted(r.message["Subject"] for r in server.handler.received)
        assert len(subjects) == 6 and all(s.startswith("[TEST] ") for s in subjects)
        # so does the sender's: the French edition's From
        senders = {r.message["From"].addresses[0].addr_spec for r in server.handler.received}
        assert "breves@xn--brves-5ra.example.org" in senders, senders
        # a non-ASCII domain travels in its ASCII (IDNA) form
        assert {r.rcpt for r in server.handler.received} == {
            "editor@example.com",
            "ed@xn--exmple-cua.org",
        }
    assert ledger_states(workdir) == {}


def test_temporary_failures_and_dropped_connections_end_with_everyone_once(workdir) -> None:
    people = many(24)
    add_people(workdir, people)
    handler = Handler(
        script={
            "reader1@example.org": ["421"],
            "reader2@example.org": ["451", "451"],
            "reader5@example.org": ["drop"],
            "reader9@example.org": ["drop", "421"],
            "reader13@example.org": ["451"],
        }
    )
    with Server(handler) as server:
        settings, prepared, ledger = _started(workdir, server.port)
        options = SendOptions(concurrency=3, retry_backoff=0.05)
        result = campaign.run(prepared, ledger, options, wait=True)
        assert result.paused is None
        for address, _, _ in people:
            assert handler.copies(address) == 1, address
        assert handler.rcpt_attempts["reader2@example.org"] == 3
        assert result.progress.sent == 24 and result.progress.deferred == 7
        assert set(ledger_states(workdir).values()) == {State.SENT}
        ledger.close()


def test_permanent_failure_is_recorded_once(workdir: Path) -> None:
    add_people(workdir, many(3))
    handler = Handler(script={"reader1@example.org": ["550"]})
    with Server(handler) as server:
        result = send(workdir, server.port, "--yes")
        assert result.returncode == 1  # finished, with a failure to look at
        assert "failed: reader1@example.org: 550 5.1.1 No such mailbox" in result.stderr
        assert handler.rcpt_attempts["reader1@example.org"] == 1
        assert handler.copies("reader0@example.org") == 1
        again = send(workdir, server.port, "--yes")
        assert handler.rcpt_attempts["reader1@example.org"] == 1
        assert "nothing left to send" in again.stdout
        assert again.returncode == 1  # still says a delivery failed
    states = ledger_states(workdir)
    assert states["reader1@example.org"] is State.FAILED
    status = run_cli("status", f"issues/{DEMO_ISSUE}", cwd=workdir, env=env_for(workdir, 1))
    assert "failed     reader1@example.org: 550 5.1.1 No such mailbox" in status.stdout


def test_a_send_pauses_after_too_many_failures_and_resumes(workdir: Path) -> None:
    add_people(workdir, many(30))
    handler = Handler(script={f"reader{i}@example.org": ["550"] for i in range(25)})
    with Server(handler) as server:
        first = send(workdir, server.port, "--yes", "--concurrency", "1")
        assert first.returncode == 3
        assert "paused after 20 failures in a row (last: 550 5.1.1" in first.stderr
        assert "run send again to resume" in first.stderr
        assert len(handler.received) == 0
        states = ledger_states(workdir)
        assert sum(s is State.FAILED for s in states.values()) == 20
        status = run_cli("status", f"issues/{DEMO_ISSUE}", cwd=workdir, env=env_for(workdir, 1))
        [worker] = [line for line in status.stdout.splitlines() if " process " in line]
        assert worker.endswith("; paused (failures in a row, or no session with the server)")
        held = status.stdout.strip().splitlines()[-1]  # not "stopped by Ctrl-C" alone
        assert held.startswith("held: stopped by Ctrl-C or paused (see the workers above), 10 left")
        # resumed: the five other refusals are recorded, then the rest is delivered
        second = send(workdir, server.port, "--yes", "--concurrency", "1")
        assert second.returncode == 1, second.stderr
        assert {handler.copies(f"reader{i}@example.org") for i in range(25, 30)} == {1}
        assert len(handler.received) == 5
        assert set(handler.rcpt_attempts.values()) == {1}  # 550s are never retried


def test_a_send_resumes_only_with_the_secret_it_started_with(workdir: Path) -> None:
    """Links signed with another secret would not work: not one message goes with them."""
    add_people(workdir, many(24))
    handler = Handler(script={f"reader{i}@example.org": ["550"] for i in range(20)})
    with Server(handler) as server:
        first = send(workdir, server.port, "--yes", "--concurrency", "1")
        assert first.returncode == 3 and len(handler.received) == 0  # paused: 20 refusals
        other = send(workdir, server.port, "--yes", NEWSLETTER_SECRET="another-" + SECRET)
        assert other.returncode == 2, other.stdout
        assert other.stderr.strip().splitlines()[-1] == (
            f"error: issue {DEMO_ISSUE}: its send started with another signing secret, so the "
            "unsubscribe and preferences links sent from here would not work; set "
            "NEWSLETTER_SECRET to the value the host that started it has"
        )
        assert len(handler.received) == 0 and len(handler.rcpt_attempts) == 20
        again = send(workdir, server.port, "--yes", "--concurrency", "2")  # options rewritten
        assert again.returncode == 1, again.stderr  # (the 20 refused)
        assert len(handler.received) == 4
    settings = load_settings(None, environ=env_for(workdir, 1))
    ledger = Ledger(workdir / "news.db", DEMO_ISSUE)
    try:  # what the next host to resume or join is checked against is still there
        kept = ledger.info().options
        assert kept["concurrency"] == 2 and kept["key_check"] == key_check(signing_key(settings))
    finally:
        ledger.close()


def test_a_send_begun_without_a_key_check_gets_one_when_resumed(workdir: Path) -> None:
    add_people(workdir, many(24))
    handler = Handler(script={f"reader{i}@example.org": ["550"] for i in range(20)})
    ledger = Ledger(workdir / "news.db", DEMO_ISSUE)
    try:
        with Server(handler) as server:
            assert send(workdir, server.port, "--yes", "--concurrency", "1").returncode == 3
            ledger.set_options({"concurrency": 1})  # as a send begun by an earlier version
            assert send(workdir, server.port, "--yes").returncode == 1
        settings = load_settings(None, environ=env_for(workdir, 1))
        assert ledger.info().options["key_check"] == key_check(signing_key(settings))
    finally:
        ledger.close()


def _read_until(proc: subprocess.Popen, wanted: bytes, timeout: float) -> bytes:
    """What `proc` wrote on stdout until `wanted` appeared, or until `timeout` seconds."""
    seen, deadline = b"", time.monotonic() + timeout
    fd = proc.stdout.fileno()  # type: ignore[union-attr]
    while wanted not in seen and time.monotonic() < deadline:
        if select.select([fd], [], [], 0.1)[0]:
            chunk = os.read(fd, 4096)
            if not chunk:
                break
            seen += chunk
    return seen


def _spawn_send(workdir: Path, port: int, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "newsletter", "send", f"issues/{DEMO_ISSUE}", "--yes", *args],
        cwd=workdir,
        env=env_for(workdir, port),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


@pytest.mark.parametrize("hold", ["hold-discard", "hold-keep"])
def test_sigkill_mid_send_then_resume_gives_everyone_exactly_one_copy(workdir, hold) -> None:
    people = many(12)
    add_people(workdir, people)
    victim = "reader6@example.org"
    handler = Handler(script={victim: [hold]})
    with Server(handler) as server:
        proc = _spawn_send(workdir, server.port, "--concurrency", "1", "--batch", "4")
        assert handler.holding.wait(60), "the send never reached the held message"
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        handler.gate.set()  # the server finishes with the dead connection
        time.sleep(0.1)
        assert handler.copies(victim) == (1 if hold == "hold-keep" else 0)
        resumed = send(workdir, server.port, "--yes")
        # a worker holds up to k rows (in flight, pipelined, next in line; --batch 4 here, of
        # 12 readers): after a kill they are uncertain, the held message among them
        line = next(x for x in resumed.stdout.splitlines() if "were claimed by the last" in x)
        claimed = int(line.split()[0])
        assert 1 <= claimed <= 4
        assert victim in resumed.stdout  # reported as uncertain
        states = ledger_states(workdir)
        uncertain = {a for a, s in states.items() if s is State.UNCERTAIN}
        assert victim in uncertain and len(uncertain) == claimed
        if hold == "hold-discard":
            # asked to resend them, the editor says no at the prompt: nothing changes
            declined = run_cli(
                "send", f"issues/{DEMO_ISSUE}", "--resend-uncertain", cwd=workdir,
                env=env_for(workdir, server.port), input="n\n",
            )  # fmt: skip
            assert declined.returncode == 1 and declined.stderr.endswith("nothing sent\n")
            assert f"{claimed} message(s) left, {claimed} of them uncertain (sent again)" in (
                declined.stdout
            )
            assert ledger_states(workdir)[victim] is State.UNCERTAIN
            # the editor chooses to send them again: a second copy can only ever reach
            # someone the tool named as uncertain
            final = send(workdir, server.port, "--yes", "--resend-uncertain")
            assert final.returncode == 0, final.stderr
            for address, _, _ in people:
                assert handler.copies(address) >= 1, address
                if handler.copies(address) > 1:
                    assert address in uncertain, address
            assert handler.copies(victim) == 1  # the held one was discarded by the server
            return
        for address, _, _ in people:
            if address in uncertain:
                assert handler.copies(address) <= 1, address
            else:
                assert handler.copies(address) == 1, address


def test_sigkill_at_a_random_moment_never_sends_twice(workdir: Path) -> None:
    people = many(150)
    add_people(workdir, people)
    with Server(Handler()) as server:
        proc = _spawn_send(workdir, server.port, "--concurrency", "4")
        deadline = time.monotonic() + 60
        while len(server.handler.received) < 40 and time.monotonic() < deadline:
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        resumed = send(workdir, server.port, "--yes")
        assert resumed.returncode in (0, 1), resumed.stderr
        states = ledger_states(workdir)
        uncertain = [a for a, s in states.items() if s is State.UNCERTAIN]
        assert len(uncertain) <= SendOptions(concurrency=4).k  # a worker holds at most k rows
        for address, _, _ in people:
            copies = server.handler.copies(address)
            if address in uncertain:
                assert copies <= 1
            else:
                assert states[address] is State.SENT and copies == 1, address


def test_unsubscribing_during_a_send_stops_their_message(workdir: Path) -> None:
    ids = add_people(workdir, many(40))
    with Server(Handler()) as server:
        settings = load_settings(None, environ=env_for(workdir, server.port))
        prepared = campaign.prepare(settings, workdir / "issues" / DEMO_ISSUE)
        ledger = Ledger(settings.db_path, DEMO_ISSUE)
        store = SqliteStore(settings.db_path)
        campaign.start(store, ledger, prepared, {})
        leaver = ids["reader30@example.org"]  # past the first claim (20 rows)

        def personalise(delivery):
            if delivery.email == "reader3@example.org":
                store.unsubscribe(leaver, "web")  # while the send runs
            return prepared.personalise(delivery)

        options = SendOptions(concurrency=1)
        SendRun(ledger, prepared.transport, prepared.editions, personalise, options).run()
        assert server.handler.copies("reader30@example.org") == 0
        assert server.handler.copies("reader31@example.org") == 1
        assert ledger_states(workdir)["reader30@example.org"] is State.SKIPPED
        store.close()
        ledger.close()


def test_a_worker_counts_only_the_outcomes_the_ledger_took(workdir: Path) -> None:
    # its rows are reaped under it (as when it froze past its lease): it still sends what it
    # holds, but the ledger keeps those uncertain, and its counts, which the summary and
    # status show, are of what it recorded
    add_people(workdir, many(40))
    with Server(Handler()) as server:
        settings = load_settings(None, environ=env_for(workdir, server.port))
        prepared = campaign.prepare(settings, workdir / "issues" / DEMO_ISSUE)
        ledger, reaper = Ledger(settings.db_path, DEMO_ISSUE), Ledger(settings.db_path, DEMO_ISSUE)
        with SqliteStore(settings.db_path) as store:
            campaign.start(store, ledger, prepared, {})
        reaped = []

        def personalise(delivery):
            if delivery.email == "reader3@example.org":  # in the first claim, of 20 rows
                reaped.append(reaper.reap(now=time.time() + 3600))
            return prepared.personalise(delivery)

        options = SendOptions(concurrency=1)
        result = SendRun(ledger, prepared.transport, prepared.editions, personalise, options).run()
        states = ledger_states(workdir)
        ledger.close()
        reaper.close()
    assert len(server.handler.received) == 40  # (the lease had not run out by its own clock)
    uncertain = sum(s is State.UNCERTAIN for s in states.values())
    assert reaped and uncertain == reaped[0] > 0
    sent = sum(s is State.SENT for s in states.values())
    assert sent == 40 - uncertain
    assert (result.progress.sent, result.progress.uncertain) == (sent, 0)


def test_a_worker_told_to_start_midway_sends_from_there_then_the_first_ones(workdir: Path):
    ids = add_people(workdir, many(12))
    with Server(Handler()) as server:
        settings, prepared, ledger = _started(workdir, server.port)
        options = SendOptions(concurrency=1, start=0.5)  # as workers.share gives worker 1 of 2
        SendRun(ledger, prepared.transport, prepared.editions, prepared.personalise, options).run()
        ledger.close()
        by_id = sorted(ids, key=ids.get)
        assert [r.rcpt for r in server.handler.received] == by_id[6:] + by_id[:6]
        assert set(ledger_states(workdir).values()) == {State.SENT}


def test_no_header_can_be_forged_from_content(workdir: Path) -> None:
    add_people(workdir, [("eve@example.org", "Eve\r\nBcc: victim@example.com", "en")])
    manifest = workdir / "issues" / DEMO_ISSUE / "issue.toml"
    text = manifest.read_text()
    manifest.write_text(
        text.replace(
            'subject = "News / Brèves No. 1:',
            'subject = "Hi\\r\\nBcc: victim@example.com\\nX: 1',
            1,
        )
    )
    with Server(Handler()) as server:
        result = send(workdir, server.port, "--yes")
        assert result.returncode == 0, result.stderr
        (received,) = server.handler.received
        msg = received.message
        assert received.rcpt == "eve@example.org"
        assert msg["Bcc"] is None and msg["X"] is None
        # (the stdlib folds this subject right after "Subject:"; unfolded it reads the same)
        assert msg["Subject"].strip().startswith("Hi Bcc: victim@example.com X: 1")
        assert msg["To"].addresses[0].addr_spec == "eve@example.org"


# --- bad input: one line, non-zero exit, ledger intact --------------------------------


def _one_line(result) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


def test_no_subscribers(workdir: Path) -> None:
    SqliteStore(workdir / "news.db").close()  # a list, empty (no list at all: test_newuser)
    with Server(Handler()) as server:
        result = send(workdir, server.port, "--yes")
    assert result.returncode == 2
    assert _one_line(result).startswith("error: no active subscribers to send to")


def test_an_issue_that_does_not_build(workdir: Path) -> None:
    add_people(workdir)
    (workdir / "issues/briefs/putin-trump-syria-statement.en.md").write_text("no front matter")
    with Server(Handler()) as server:
        result = send(workdir, server.port, "--yes")
        assert server.handler.received == []
    assert result.returncode == 2
    assert _one_line(result).startswith("error: issues/briefs/putin-trump-syria-statement.en.md:1")
    assert ledger_states(workdir) == {}


def test_wrong_port(workdir: Path) -> None:
    add_people(workdir)
    from .smtp_server import free_port

    result = send(workdir, free_port(), "--yes")
    assert result.returncode == 2
    line = _one_line(result)
    assert line.startswith("error: cannot connect to 127.0.0.1:")
    assert "Connection refused" in line
    assert ledger_states(workdir) == {}


def test_login_refused_says_so_once_without_the_password(workdir: Path) -> None:
    add_people(workdir)
    handler = Handler()
    with Server(handler, authenticator=accept_only("news", "right"), auth_require_tls=False) as s:
        result = send(
            workdir,
            s.port,
            "--yes",
            NEWSLETTER_SMTP_USER="news",
            NEWSLETTER_SMTP_PASSWORD="hunter2-wrong",
        )
        assert result.returncode == 2
        line = _one_line(result)
        assert "refused the login of user 'news': 535" in line
        assert "hunter2" not in result.stdout + result.stderr
        assert ledger_states(workdir) == {}
        good = send(
            workdir, s.port, "--yes", NEWSLETTER_SMTP_USER="news", NEWSLETTER_SMTP_PASSWORD="right"
        )
        assert good.returncode == 0, good.stderr
        assert len(handler.received) == 3


def test_a_password_with_accents_logs_in_as_utf8(workdir: Path) -> None:
    add_people(workdir)
    handler = Handler()
    with Server(
        handler, authenticator=accept_only("rédaction", "pässwörd"), auth_require_tls=False
    ) as s:
        env = {"NEWSLETTER_SMTP_USER": "rédaction"}
        wrong = send(workdir, s.port, "--yes", NEWSLETTER_SMTP_PASSWORD="pässwort", **env)
        assert wrong.returncode == 2
        assert "refused the login of user 'rédaction': 535" in _one_line(wrong)
        assert "pässwort" not in wrong.stdout + wrong.stderr
        good = send(workdir, s.port, "--yes", NEWSLETTER_SMTP_PASSWORD="pässwörd", **env)
        assert good.returncode == 0, good.stderr
        assert len(handler.received) == 3


def test_starttls_with_a_verified_certificate(workdir: Path, tmp_path: Path) -> None:
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(server_context)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    add_people(workdir)
    handler = Handler()
    with Server(handler, tls_context=server_context, require_starttls=True) as server:
        refused = send(workdir, server.port, "--yes", NEWSLETTER_SMTP_SECURITY="starttls")
        assert refused.returncode == 2
        line = _one_line(refused)
        assert line.startswith("error: TLS with 127.0.0.1:") and "issuer certificate" in line
        assert ledger_states(workdir) == {}
        ok = send(
            workdir,
            server.port,
            "--yes",
            NEWSLETTER_SMTP_SECURITY="starttls",
            NEWSLETTER_SMTP_CA_FILE=str(ca_file),
        )
        assert ok.returncode == 0, ok.stderr
        assert len(handler.received) == 3


def _dkim_key(tmp_path: Path, kind: str) -> tuple[Path, bytes]:
    """A private key file and the DNS record that publishes its public half."""
    import base64

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

    key = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        if kind == "rsa"
        else ed25519.Ed25519PrivateKey.generate()
    )
    path = tmp_path / f"dkim-{kind}.pem"
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    if kind == "rsa":
        public = key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    else:  # RFC 8463: the raw 32 bytes
        public = key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
    return path, b"v=DKIM1; k=" + kind.encode() + b"; p=" + base64.b64encode(public)


@pytest.mark.parametrize("kind", ["rsa", "ed25519"])
def test_dkim_signature_verifies(workdir: Path, tmp_path: Path, kind: str) -> None:
    dkim = pytest.importorskip("dkim")
    if kind == "ed25519":
        pytest.importorskip("nacl")  # dkimpy verifies Ed25519 with PyNaCl
    key, record = _dkim_key(tmp_path, kind)
    add_people(workdir)
    with Server(Handler(pipelining=True)) as server:
        result = send(
            workdir,
            server.port,
            "--yes",
            NEWSLETTER_DKIM_KEY=str(key),
            NEWSLETTER_DKIM_SELECTOR="news2017",
            NEWSLETTER_DKIM_DOMAIN="example.org",
        )
        assert result.returncode == 0, result.stderr
        assert len(server.handler.received) == 3
        for received in server.handler.received:
            assert received.data.startswith(b"DKIM-Signature: v=1; a=" + kind.encode())
            looked_up: list[bytes] = []

            def dns(name, timeout=5, looked_up=looked_up):
                looked_up.append(name)
                return record if name == b"news2017._domainkey.example.org." else None

            assert dkim.verify(received.data, dnsfunc=dns)
            assert looked_up == [b"news2017._domainkey.example.org."]
            header_changed = received.data.replace(b"Message-ID: <", b"Message-ID: <x", 1)
            body_changed = received.data.replace(b"Syri", b"Siri", 1)
            assert header_changed != received.data and body_changed != received.data
            assert not dkim.verify(header_changed, dnsfunc=dns)
            assert not dkim.verify(body_changed, dnsfunc=dns)


def test_a_dkim_domain_dmarc_would_not_align_with_from_is_warned_of(workdir, tmp_path) -> None:
    key, _ = _dkim_key(tmp_path, "ed25519")
    add_people(workdir)
    dkim = {"NEWSLETTER_DKIM_KEY": str(key), "NEWSLETTER_DKIM_SELECTOR": "news2017"}
    addresses = {"NEWSLETTER_FROM_EN": "news@example.org",
                 "NEWSLETTER_FROM_FR": "nouvelles@lists.example.org"}  # fmt: skip

    def warnings(domain: str, **more: str) -> list[str]:
        result = send(workdir, 1, "--dry-run", **{**dkim, **addresses, **more},
                      NEWSLETTER_DKIM_DOMAIN=domain)  # fmt: skip
        assert result.returncode == 0, result.stderr
        return [line for line in result.stderr.splitlines() if line.startswith("warning:")]

    # relaxed alignment: the same registered domain, whichever name under it signs
    assert warnings("example.org") == warnings("mail.example.org") == []
    assert warnings("example.com") == [
        "warning: NEWSLETTER_DKIM_DOMAIN=example.com does not match the From addresses "
        "news@example.org (NEWSLETTER_FROM_EN) and nouvelles@lists.example.org "
        "(NEWSLETTER_FROM_FR): receivers that check DMARC do not count a signature of another "
        "domain, and may refuse these messages or file them as spam; set "
        "NEWSLETTER_DKIM_DOMAIN=example.org (or a name under it, such as mail.example.org) "
        "and publish the key's DNS record there"
    ]
    # the fix named is the From domain itself, never a shorter name (co.uk is nobody's)
    (uk,) = warnings("example.com", NEWSLETTER_FROM_EN="news@example.co.uk",
                     NEWSLETTER_FROM_FR="breves@example.co.uk")  # fmt: skip
    assert "set NEWSLETTER_DKIM_DOMAIN=example.co.uk (or a name under it, such as " in uk
    # From addresses under two domains: the one not signed for is named, with its fix
    (only,) = warnings("example.org", NEWSLETTER_FROM_FR="nouvelles@example.net")
    assert only == (
        "warning: the From address nouvelles@example.net (NEWSLETTER_FROM_FR) is not under "
        "the domain messages are signed for (NEWSLETTER_DKIM_DOMAIN=example.org): receivers "
        "that check DMARC do not count a signature of another domain, and may refuse these "
        "messages or file them as spam; set NEWSLETTER_FROM_FR to an address under "
        "example.org, or set NEWSLETTER_DKIM_DOMAIN=example.net (publishing the key's DNS "
        "record there) and NEWSLETTER_FROM_EN to an address under it"
    )
    (neither,) = warnings("example.com", NEWSLETTER_FROM_FR="nouvelles@example.net")
    assert neither.startswith("warning: NEWSLETTER_DKIM_DOMAIN=example.com matches none of ")
    assert neither.endswith("; put the From addresses under one domain and set "
                            "NEWSLETTER_DKIM_DOMAIN to it")  # fmt: skip
    # names compared as DNS has them: case, IDNA 2008 (straße stays straße, not strasse),
    # and ASCII names IDNA 2008 would refuse (my--shop.com) still compared
    assert warnings("Mail.EXAMPLE.org", NEWSLETTER_FROM_EN="News@Example.ORG") == []
    assert warnings("xn--strae-oqa.example", NEWSLETTER_FROM_EN="news@straße.example",
                    NEWSLETTER_FROM_FR="nouvelles@mail.straße.example") == []  # fmt: skip
    (ss,) = warnings("strasse.example", NEWSLETTER_FROM_EN="news@straße.example",
                     NEWSLETTER_FROM_FR="nouvelles@straße.example")  # fmt: skip
    assert "NEWSLETTER_DKIM_DOMAIN=xn--strae-oqa.example (or" in ss, ss
    (shop,) = warnings("example.com", NEWSLETTER_FROM_EN="news@my--shop.com",
                       NEWSLETTER_FROM_FR="breves@my--shop.com")  # fmt: skip
    assert "set NEWSLETTER_DKIM_DOMAIN=my--shop.com (or" in shop


def test_messages_sharing_pieces_are_each_signed_as_their_own(
    tmp_path: Path,
) -> None:
    # Readers' messages share bytes objects (a compiled edition's pieces): each signature
    # must still be the reader's own, whole, and the same in one piece or in several.
    dkim = pytest.importorskip("dkim")
    pytest.importorskip("nacl")
    from newsletter.config import DkimSettings
    from newsletter.signing import Signer

    key, record = _dkim_key(tmp_path, "ed25519")
    signer = Signer(DkimSettings(str(key), "news2017", "example.org"))
    # the blank line straddles two pieces: the headers' last CRLF, the opening's first
    opening = b"\r\nThe same opening for every reader.\r\n" * 200
    other = opening.replace(b"every", b"each", 1)  # as long, another object, other bytes
    signed = []
    for n, first in enumerate([opening, opening, other, opening]):
        parts = [
            b"From: news@example.org\r\nTo: r%d@example.org\r\nSubject: News\r\n" % n,
            first,
            b"Your own link: https://example.org/u/%d\r\n" % n,
            b"The end.\r\n",
        ]
        data = signer.header(parts) + b"".join(parts)
        assert dkim.verify(data, dnsfunc=lambda name, timeout=5: record), n
        signed.append(data)
    changed = signed[1].replace(b"u/1", b"u/2", 1)
    assert not dkim.verify(changed, dnsfunc=lambda name, timeout=5: record)
    # the same message, whole in one piece, has the same body hash
    bh = re.compile(rb"bh=([^;]+);")
    whole = signed[3][signed[3].index(b"From: ") :]
    assert bh.search(signer.header([whole]))[1] == bh.search(signed[3])[1]
    assert bh.search(signed[2])[1] != bh.search(signed[0])[1]


@pytest.mark.parametrize(
    "value",
    [
        b" Anne Smith <anne@example.org>",  # as most are: only the leading space goes
        b" Anne  Smith <anne@example.org>  ",
        b"\tNews\t from\t the committee\t",
        b" <https://example.org/u/abc>,\r\n <mailto:news@example.org?subject=unsubscribe>",
        b" =?utf-8?q?Br=C3=A8ves?=\r\n\t=?utf-8?q?du_comit=C3=A9?= ",
        b"",
    ],
)
def test_relaxed_header_canonicalisation_is_dkimpys(value: bytes) -> None:
    canonicalization = pytest.importorskip("dkim.canonicalization")
    from newsletter.signing import _relax

    [(name, theirs)] = canonicalization.Relaxed.canonicalize_headers([(b"To", value + b"\r\n")])
    assert _relax(b"To", value) == name + b":" + theirs


@pytest.mark.parametrize(
    "content, message",
    [
        (b"not a key", "not a PEM private key; check NEWSLETTER_DKIM_KEY"),
        (
            b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
            "unusable DKIM key: ",
        ),
    ],
    ids=["not PEM", "broken PEM"],
)
def test_an_unusable_dkim_key_is_one_line(workdir: Path, content: bytes, message: str) -> None:
    add_people(workdir)
    (workdir / "dkim.pem").write_bytes(content)
    result = send(
        workdir,
        1,
        "--dry-run",
        NEWSLETTER_DKIM_KEY=str(workdir / "dkim.pem"),
        NEWSLETTER_DKIM_SELECTOR="news2017",
        NEWSLETTER_DKIM_DOMAIN="example.org",
    )
    assert result.returncode == 2
    assert message in _one_line(result)


def test_outbox_is_the_default_with_no_smtp_host(workdir: Path) -> None:
    add_people(workdir)
    env = clean_env(NEWSLETTER_DB=str(workdir / "news.db"), NEWSLETTER_SECRET=SECRET)
    result = run_cli("send", f"issues/{DEMO_ISSUE}", "--yes", cwd=workdir, env=env)
    assert result.returncode == 0, result.stderr
    files = sorted((workdir / "outbox" / DEMO_ISSUE).glob("*.eml"))
    assert len(files) == 3
    import email
    from email import policy

    langs = sorted(
        email.message_from_bytes(f.read_bytes(), policy=policy.default)["Content-Language"]
        for f in files
    )
    assert langs == ["en-CA", "en-CA, fr-CA", "fr-CA"]
    assert not list((workdir / "outbox" / DEMO_ISSUE).glob(".tmp-*"))


def test_ctrl_c_finishes_the_message_in_flight_and_resume_completes(workdir: Path) -> None:
    people = many(10)
    add_people(workdir, people)
    victim = "reader4@example.org"
    handler = Handler(script={victim: ["hold-keep"]})
    with Server(handler) as server:
        proc = _spawn_send(workdir, server.port, "--concurrency", "1")
        assert handler.holding.wait(60)
        proc.send_signal(signal.SIGINT)
        time.sleep(0.3)
        assert proc.poll() is None  # still waiting for the server's reply
        handler.gate.set()
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 130
        assert b"Run send again to resume" in err
        assert b"Traceback" not in err
        states = ledger_states(workdir)
        assert states[victim] is State.SENT  # finished and recorded, not uncertain
        assert State.UNCERTAIN not in states.values()
        assert State.PENDING in states.values()
        resumed = send(workdir, server.port, "--yes")
        assert resumed.returncode == 0, resumed.stderr
        for address, _, _ in people:
            assert handler.copies(address) == 1, address


def test_a_deferred_message_waits_for_the_next_send_or_for_wait(workdir):
    add_people(workdir, many(3))
    handler = Handler(script={"reader2@example.org": ["451", "451"]})
    backoff = {"NEWSLETTER_RETRY_BACKOFF": "0.3s"}
    with Server(handler) as server:
        # the first pass does not sit waiting: it says when the retry is due, exit 4
        first = send(workdir, server.port, "--yes", "--concurrency", "1", **backoff)
        assert first.returncode == 4, first.stdout + first.stderr
        assert "1 message(s) deferred by the server (temporary refusals)" in first.stderr
        assert "run send again then, or let 'newsletter due' retry them" in first.stderr
        assert ledger_states(workdir)["reader2@example.org"] is State.DEFERRED
        status = run_cli("status", f"issues/{DEMO_ISSUE}", cwd=workdir, env=env_for(workdir, 1))
        assert "deferred   reader2@example.org (attempt 1, next " in status.stdout
        assert "451 4.3.0 Try again later" in status.stdout
        # --wait stays until the retries are done
        time.sleep(0.3)
        final = send(workdir, server.port, "--yes", "--wait", **backoff)
        assert final.returncode == 0, final.stdout + final.stderr
        assert "waiting (--wait)" in final.stdout
        # its rate is of the time it sent, not of the time it slept until the retries
        took, waited = map(float, re.search(
            r"^1 sent in ([\d.]+) s \(([\d.]+) s of it waiting for retries; [\d,]+/s while"
            r" sending\)", final.stdout, re.M).groups())  # type: ignore[union-attr]  # fmt: skip
        assert 0.2 < waited <= took, final.stdout
        assert handler.rcpt_attempts["reader2@example.org"] == 3
        assert handler.copies("reader2@example.org") == 1
    assert set(ledger_states(workdir).values()) == {State.SENT}


def test_ctrl_c_while_waiting_for_retries_leaves_them_to_due(workdir: Path) -> None:
    add_people(workdir, many(3))
    handler = Handler(script={"reader2@example.org": ["451"]})
    with Server(handler) as server:
        proc = subprocess.Popen(
            [sys.executable, "-m", "newsletter", "send", f"issues/{DEMO_ISSUE}", "--yes",
             "--wait"],
            cwd=workdir, env=env_for(workdir, server.port, NEWSLETTER_RETRY_BACKOFF="1h"),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        seen = ""
        while "waiting (--wait)" not in seen and proc.poll() is None:
            seen += proc.stdout.readline()  # type: ignore[union-attr]
        assert "waiting (--wait)" in seen, seen
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
        # as if sent without --wait: exit 4 (deferred), the send not held, nothing lost
        assert proc.returncode == 4, err
        assert "stopped waiting (Ctrl-C); nothing is lost" in err
        assert "let 'newsletter due' retry them" in err
        assert "Traceback" not in err
        ledger = Ledger(workdir / "news.db", DEMO_ISSUE)
        info = ledger.info()
        ledger.close()
        assert info is not None and info.state is SendState.ACTIVE
        assert ledger_states(workdir)["reader2@example.org"] is State.DEFERRED
        # its hour is up: the timer's `due` retries it
        db = __import__("sqlite3").connect(workdir / "news.db")
        with db:
            db.execute("UPDATE deliveries SET next_attempt = 0 WHERE state = 'deferred'")
        db.close()
        due = run_cli("due", cwd=workdir, env=env_for(workdir, server.port))
        assert due.returncode == 0, due.stdout + due.stderr
        assert handler.copies("reader2@example.org") == 1
        for n in (0, 1):
            assert handler.copies(f"reader{n}@example.org") == 1
    assert set(ledger_states(workdir).values()) == {State.SENT}


def _ctrl_c() -> None:
    """Ctrl-C, as the terminal sends it: SIGINT to this process, taken up in the main thread
    at once (before the next line of Python runs)."""
    os.kill(os.getpid(), signal.SIGINT)


def _run_taking_ctrl_c(*args: Any, **kwargs: Any) -> campaign.Passes:
    try:
        return campaign.run(*args, **kwargs)
    except KeyboardInterrupt:  # (a failure of this test, not the end of the whole session)
        pytest.fail("Ctrl-C escaped the send: it would end with exit 130 and no report")


def test_ctrl_c_as_a_wait_is_announced_or_between_passes_is_taken_up(workdir: Path) -> None:
    # the windows are exact here, not a race: SIGINT arrives inside each stretch
    add_people(workdir, many(3))
    with Server(Handler(script={"reader2@example.org": ["451"] * 3})) as server:
        settings, prepared, ledger = _started(workdir, server.port)
        options = SendOptions(concurrency=1, retry_backoff=3600)
        # while --wait announces its wait: only the waiting stops, the send is not held
        passes = _run_taking_ctrl_c(
            prepared, ledger, options, wait=True, on_wait=lambda *_: _ctrl_c()
        )
        assert passes.stopped_waiting and not passes.held and not passes.interrupted
        assert ledger.info().state is SendState.ACTIVE  # type: ignore[union-attr]
        # while it looks for the next retry (a database call): the same
        next_retry = ledger.next_retry
        ledger.next_retry = lambda: (_ctrl_c(), next_retry())[1]  # type: ignore[method-assign]
        db = __import__("sqlite3").connect(settings.db_path)
        with db:
            db.execute("UPDATE deliveries SET next_attempt = 0 WHERE state = 'deferred'")
        passes = _run_taking_ctrl_c(prepared, ledger, options, wait=True)
        assert passes.stopped_waiting and not passes.held
        ledger.next_retry = next_retry  # type: ignore[method-assign]
        # before a pass claims anything: it stops, held, nothing sent nor claimed
        with db:
            db.execute("UPDATE deliveries SET next_attempt = 0 WHERE state = 'deferred'")
        attempts = server.handler.rcpt_attempts["reader2@example.org"]
        count_due = ledger.count_due
        ledger.count_due = lambda *a: (_ctrl_c(), count_due(*a))[1]  # type: ignore[method-assign]
        passes = _run_taking_ctrl_c(prepared, ledger, options, wait=True)
        ledger.count_due = count_due  # type: ignore[method-assign]
        assert passes.interrupted and passes.held and not passes.stopped_waiting
        assert server.handler.rcpt_attempts["reader2@example.org"] == attempts
        assert ledger.info().state is SendState.HELD  # type: ignore[union-attr]
        assert ledger_states(workdir)["reader2@example.org"] is State.DEFERRED
        # as a pass starts its threads: taken up once they all run, so they all wind down
        with db:
            db.execute("UPDATE deliveries SET next_attempt = 0 WHERE state = 'deferred'")
        join = ledger.join
        ledger.join = lambda *a: (_ctrl_c(), join(*a))[1]  # type: ignore[method-assign]
        passes = _run_taking_ctrl_c(prepared, ledger, options, wait=True)
        ledger.join = join  # type: ignore[method-assign]
        assert passes.interrupted and passes.held
        assert State.SENDING not in ledger_states(workdir).values()
        db.close()
        ledger.close()
    assert {server.handler.copies(f"reader{n}@example.org") for n in (0, 1)} == {1}


def test_an_address_the_server_cannot_take_fails_alone(workdir: Path) -> None:
    add_people(workdir, many(2))
    db_conn = __import__("sqlite3").connect(workdir / "news.db")
    with db_conn:  # an address stored before addresses were checked for SMTPUTF8
        db_conn.execute("UPDATE subscribers SET email = 'josé@example.org' WHERE id = 1")
    db_conn.close()
    with Server(Handler()) as server:
        result = send(workdir, server.port, "--yes", "--concurrency", "1")
        assert result.returncode == 1
        assert "Traceback" not in result.stderr
        assert "failed: josé@example.org: cannot send to this address" in result.stderr
        assert server.handler.copies("reader1@example.org") == 1


def test_send_refuses_an_issue_whose_checks_have_errors(workdir: Path) -> None:
    add_people(workdir)
    briefs = workdir / "issues" / "briefs"
    slugs = []
    for n in range(14):  # far past Gmail's clipping limit in the bilingual edition
        for lang in ("en", "fr"):
            text = (briefs / f"da-nang-apec-summit.{lang}.md").read_text()
            (briefs / f"copy-{n}.{lang}.md").write_text(text)
        slugs.append(f'"copy-{n}"')
    manifest = workdir / "issues" / DEMO_ISSUE / "issue.toml"
    text = manifest.read_text()
    manifest.write_text(text.replace("briefs = [", f"briefs = [{', '.join(slugs)},", 1))
    with Server(Handler()) as server:
        result = send(workdir, server.port, "--yes")
        assert server.handler.received == []
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1].startswith(
        "error: refusing to send: 1 problem(s), first: bilingual: HTML part is"
    )
    assert ledger_states(workdir) == {}


def test_rate_limit_spaces_messages(workdir: Path) -> None:
    add_people(workdir, many(6))
    handler = Handler()
    stamps = handler.stamps
    with Server(handler) as server:
        result = send(workdir, server.port, "--yes", "--rate", "10")
        assert result.returncode == 0, result.stderr
    assert len(stamps) == 6
    # a lower bound only: the limiter may never let six messages through faster than this
    assert stamps[-1] - stamps[0] >= 0.45


def test_hourly_cap_holds_the_rest_back_until_resumed(workdir: Path) -> None:
    add_people(workdir, many(5))
    with Server(Handler()) as server:
        proc = _spawn_send(
            workdir, server.port, "--hourly-cap", "3", "--concurrency", "2", "--lease", "2"
        )
        # in a log (no terminal), it says when the cap begins to hold it back (once)
        held = _read_until(proc, b"hourly cap of 3 is reached", 60).decode()
        assert re.search(r"^the hourly cap of 3 is reached: the next message may go in about "
                         r"(5[89] min|1 h)$", held, re.M), held  # fmt: skip
        deadline = time.monotonic() + 60
        while len(server.handler.received) < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.5)  # give a wrongly uncapped sender the time to send more
        assert len(server.handler.received) == 3
        # while the cap holds the rest, what went is recorded (a crash now would not make
        # those three uncertain): the lease's renewal records outcomes that waited
        while sum(s is State.SENT for s in ledger_states(workdir).values()) < 3:
            assert time.monotonic() < deadline, ledger_states(workdir)
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 130, err
        assert (held + out.decode()).count("hourly cap") == 1, held + out.decode()
        states = ledger_states(workdir)
        assert sum(s is State.SENT for s in states.values()) == 3
        assert sum(s is State.PENDING for s in states.values()) == 2
        # resumed within the hour: it says at once that, and for how long, nothing can go
        proc = _spawn_send(workdir, server.port, "--hourly-cap", "3")
        seen = _read_until(proc, b"hourly cap of 3 is reached", 30)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
        said = (seen + out).decode()
        assert re.search(
            r"^the hourly cap of 3 is reached: the next message may go in about 5[89] min$",
            said, re.M
        ), said  # fmt: skip
        assert len(server.handler.received) == 3


def test_the_one_click_link_in_a_delivered_message_works_against_serve(workdir: Path) -> None:
    """send and serve share NEWSLETTER_BASE_URL and NEWSLETTER_SECRET: the List-Unsubscribe
    URL a mail client POSTs to (RFC 8058) unsubscribes that very subscriber."""
    import urllib.request

    from .smtp_server import free_port

    ids = add_people(workdir)
    web_port = free_port()
    base = f"http://127.0.0.1:{web_port}"
    with Server(Handler()) as server:
        assert send(workdir, server.port, "--yes", NEWSLETTER_BASE_URL=base).returncode == 0
        marie = next(r.message for r in server.handler.received if r.rcpt == "marie@example.org")
    url = marie["List-Unsubscribe"].split(",")[0].strip(" <>")
    assert url.startswith(f"{base}/unsubscribe/")
    web = subprocess.Popen(
        [sys.executable, "-m", "newsletter", "serve", "--port", str(web_port)],
        cwd=workdir, env=env_for(workdir, 1, NEWSLETTER_BASE_URL=base),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        request = urllib.request.Request(
            url, data=b"List-Unsubscribe=One-Click", method="POST",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while True:  # wait for the server to listen, not for a fixed time
            try:
                with urllib.request.urlopen(request, timeout=10) as response:
                    assert response.status == 200
                    page = response.read().decode()
                break
            except ConnectionRefusedError:
                assert time.monotonic() < deadline
                time.sleep(0.05)
            except urllib.error.URLError as exc:
                if not isinstance(exc.reason, ConnectionRefusedError):
                    raise
                assert time.monotonic() < deadline
                time.sleep(0.05)
        assert 'lang="fr-CA"' in page
    finally:
        web.terminate()
        web.wait(10)
    with SqliteStore(workdir / "news.db") as store:
        assert store.get(ids["marie@example.org"]).status == "unsubscribed"
        assert store.get(ids["anne@example.org"]).status == "active"


def test_removing_someone_leaves_no_name_in_the_ledger(workdir: Path) -> None:
    add_people(workdir, many(2))
    with Server(Handler()) as server:
        assert send(workdir, server.port, "--yes").returncode == 0
    with SqliteStore(workdir / "news.db") as store:
        assert store.remove("reader1@example.org")
        rows = store.conn.execute("SELECT email, name FROM deliveries ORDER BY email").fetchall()
    assert [tuple(r) for r in rows] == [
        ("reader0@example.org", "Reader 0"),
        ("reader1@example.org", ""),
    ]


def test_send_shows_the_checks_and_placeholders_stop_a_real_send(workdir: Path) -> None:
    add_people(workdir)
    made = run_cli("new", "brief", "fresh-news", "--lang", "en", cwd=workdir, env=clean_env())
    assert made.returncode == 0, made.stderr
    manifest = workdir / "issues" / DEMO_ISSUE / "issue.toml"
    manifest.write_text(manifest.read_text().replace("briefs = [", 'briefs = ["fresh-news", ', 1))
    with Server(Handler()) as server:
        real = send(workdir, server.port, input="y\n")
        assert real.returncode == 1
        assert (
            "error: en: brief 'fresh-news' still has the placeholder text of "
            "'newsletter new brief'" in real.stderr
        )
        assert "error: refusing to send: 3 problem(s), first: en: brief 'fresh-news'" in (
            real.stderr
        )
        # the bilingual edition names which of its two texts (here the English one only)
        assert (
            "error: bilingual: brief 'fresh-news' (en) still has the placeholder text of "
            "'newsletter new brief'" in real.stderr.splitlines()
        )
        assert len(real.stderr.splitlines()) == len(set(real.stderr.splitlines()))
        # the warnings came too, and nothing was asked, fixed or sent
        assert "warning: fr: brief 'fresh-news' has no fr version" in real.stdout
        assert "Send it now?" not in real.stdout
        assert server.handler.received == [] and ledger_states(workdir) == {}
        dry = send(workdir, server.port, "--dry-run")
        assert dry.returncode == 1 and "still has the placeholder text" in dry.stderr
        # an editor may still mail it to themselves to look at it
        test = send(workdir, server.port, "--test", "editor@example.com")
        assert test.returncode == 0, test.stderr
        assert "sending a test although a real send would refuse it" in test.stderr
        assert len(server.handler.received) == 3
        strict = send(workdir, server.port, "--yes", "--strict")
        assert strict.returncode == 2
        assert "has no French version (--strict)" in _one_line(strict)


def test_warnings_are_shown_before_the_question(workdir: Path) -> None:
    add_people(workdir)
    with Server(Handler()) as server:
        result = send(workdir, server.port, input="n\n")
    assert result.returncode == 1 and server.handler.received == []
    out = result.stdout
    warning = out.index("warning: fr: brief 'iter-fusion-milestone' has no fr version")
    assert warning < out.index("Send it now?")


def test_a_send_paused_on_failures_waits_for_a_person_not_for_due(workdir: Path) -> None:
    add_people(workdir, many(30))
    handler = Handler(script={f"reader{i}@example.org": ["550"] for i in range(25)})
    with Server(handler) as server:
        first = send(workdir, server.port, "--yes", "--concurrency", "1")
        assert first.returncode == 3
        due = run_cli("due", cwd=workdir, env=env_for(workdir, server.port))
        assert due.returncode == 0 and due.stdout == ""
        assert len(handler.received) == 0  # due left it alone
        assert send(workdir, server.port, "--yes").returncode == 1
        assert len(handler.received) == 5


def test_a_test_send_in_an_empty_folder_makes_no_database(workdir: Path) -> None:
    with Server(Handler()) as server:
        result = send(workdir, server.port, "--test", "editor@example.com")
        assert result.returncode == 0, result.stderr
        assert len(server.handler.received) == 3
    assert not (workdir / "news.db").exists()
    assert not (workdir / "news.db.secret").exists()


def test_an_outbox_file_shows_the_envelope_sender(workdir: Path) -> None:
    add_people(workdir, many(1))
    env = clean_env(
        NEWSLETTER_DB=str(workdir / "news.db"),
        NEWSLETTER_SECRET=SECRET,
        NEWSLETTER_BOUNCE_DOMAIN="bounce.example.org",
    )
    result = run_cli("send", f"issues/{DEMO_ISSUE}", "--yes", cwd=workdir, env=env)
    assert result.returncode == 0, result.stderr
    (eml,) = (workdir / "outbox" / DEMO_ISSUE).glob("*.eml")
    first = eml.read_bytes().split(b"\r\n", 1)[0]
    assert first.startswith(b"Return-Path: <bounces+") and first.endswith(b"@bounce.example.org>")


def test_the_overview_shows_claimed_rows_apart_from_those_never_tried(workdir: Path) -> None:
    """Rows a send that stopped still holds may have arrived: never counted as pending."""
    ids = add_people(workdir, many(5))
    ledger = Ledger(workdir / "news.db", DEMO_ISSUE)
    try:
        people = [(n, email, "", "en") for email, n in ids.items()]
        assert ledger.start(people, "example.org") == 5
        assert len(ledger.claim("gone-worker", 2, 60.0).rows) == 2  # then the process died
    finally:
        ledger.close()
    result = run_cli("status", cwd=workdir, env=env_for(workdir, 1))
    assert result.returncode == 0, result.stderr
    header, row = result.stdout.splitlines()[:2]
    cells = dict(zip(header.split()[-6:], row.split()[-6:], strict=True))
    assert cells == {"sent": "0", "pending": "3", "sending": "2", "deferred": "0",
                     "failed": "0", "uncertain": "0"}  # fmt: skip


def test_the_cap_watch_says_a_long_hold_once_and_the_caps_pace_never(monkeypatch) -> None:
    from newsletter.delivery import Progress

    monkeypatch.setattr(campaign, "_HOLD_STEADY", 0.0)  # (3 s in a send: see the tests above)
    said: list[str] = []
    seen: list[Progress] = []
    watch = campaign._CapWatch(seen.append, said.append, 100)
    now = time.time()
    for _ in range(5):  # the cap's pace after an hour: each message held a moment
        watch(Progress(sent=1, held_until=now + 2))
        watch(Progress(sent=1))
    assert said == [] and len(seen) == 10  # (the progress itself always passed on)
    for _ in range(5):  # held for most of an hour, reported five times a second
        watch(Progress(held_until=now + 3000))
    assert said == ["the hourly cap of 100 is reached: the next message may go in about 49 min"]
    watch(Progress())
    watch(Progress(held_until=now + 3000))  # let go, then held again: a new line
    assert len(said) == 2
