"""A worker's lease by its own clock: once it has run out with rows in hand, neither a
renewal nor another claim gives it back (the rows may have been reaped and made uncertain
meanwhile); and every message written in a turn is ended, even when recording fails.

A frozen process is played by moving time.monotonic on by 100 s (the lease is 60 s) while
another worker's reaper turns our rows uncertain, inside the personalisation of a message:
after the check that lets it begin, before any other."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from newsletter import campaign, transport
from newsletter.config import load_settings
from newsletter.delivery import SendOptions, SendRun
from newsletter.errors import StoreError
from newsletter.ledger import Delivery, Ledger, State
from newsletter.subscribers import SqliteStore

from .conftest import DEMO_ISSUE
from .scripted_smtp import Script, ScriptedServer
from .test_send import add_people, env_for, many

FROZEN_FOR = 100.0  # seconds, past the default lease (60)


def _readers(workdir: Path, n: int) -> list[str]:
    ids = add_people(workdir, many(n))
    return sorted(ids, key=ids.get)  # in the order they are claimed


def _send(
    workdir: Path,
    server: ScriptedServer,
    options: SendOptions,
    personalise: Callable[[Delivery, Callable[[Delivery], object]], object],
    on_run: Callable[[SendRun], None] = lambda run: None,
    results: list | None = None,
) -> dict[str, State]:
    """One pass over the demo issue; `personalise(delivery, ours)` wraps the real one.
    Returns each reader's state in the ledger afterwards."""
    settings = load_settings(None, environ=env_for(workdir, server.port))
    prepared = campaign.prepare(settings, workdir / "issues" / DEMO_ISSUE)
    ledger = Ledger(settings.db_path, DEMO_ISSUE)
    try:
        with SqliteStore(settings.db_path) as store:
            campaign.start(store, ledger, prepared, {})
        run = SendRun(
            ledger,
            prepared.transport,
            prepared.editions,
            lambda d: personalise(d, prepared.personalise),
            options,
        )
        on_run(run)
        result = run.run()
        if results is not None:
            results.append(result)
        return {d.email: d.state for d in ledger.in_state(*State)}
    finally:
        ledger.close()


class Freezer:
    """Moves this process's monotonic clock on, as a freeze would, and reaps meanwhile."""

    def __init__(self, workdir: Path, monkeypatch: pytest.MonkeyPatch):
        self.offset = 0.0
        self.real = time.monotonic
        monkeypatch.setattr(time, "monotonic", lambda: self.real() + self.offset)
        self.reaper = Ledger(workdir / "news.db", DEMO_ISSUE)

    def freeze(self) -> None:
        self.offset += FROZEN_FOR
        assert self.reaper.reap(now=time.time() + 3600) > 0  # another worker's claim did

    def close(self) -> None:
        self.reaper.close()


@pytest.mark.parametrize("renewal_first", [False, True], ids=["turn first", "renewal first"])
def test_a_worker_woken_past_its_lease_begins_nothing_more_whoever_runs_first(
    workdir: Path, monkeypatch: pytest.MonkeyPatch, renewal_first: bool
) -> None:
    # Turns on 2 connections; frozen while the third message is being made. On waking, the
    # lease thread (every 2 s) may run before the turn thread: its renewal finds our rows
    # reaped and must not make the lease good again.
    order = _readers(workdir, 12)
    clock = Freezer(workdir, monkeypatch)

    def personalise(delivery: Delivery, ours):
        if delivery.email == order[2]:
            clock.freeze()
            if renewal_first:
                time.sleep(2.5)
        return ours(delivery)

    results: list = []
    try:
        with ScriptedServer(Script(extensions=("PIPELINING", "CHUNKING"))) as server:
            states = _send(
                workdir, server, SendOptions(concurrency=2), personalise, results=results
            )
            stored = sorted(rcpt for rcpt, _ in server.stored)
    finally:
        clock.close()
    assert results[0].lapsed  # said: the pass is paused if what was left was not sent
    assert stored == sorted(order[:3])  # the third was past its check: it goes, no other
    assert states[order[2]] is State.UNCERTAIN  # reaped under it: its outcome is refused
    assert {states[r] for r in order[3:]} <= {State.PENDING, State.UNCERTAIN}


def test_a_claim_by_one_thread_does_not_renew_the_lapsed_lease_of_a_row_another_holds(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A thread a connection (PIPELINING, no CHUNKING), claims of 3. Thread A has made row F,
    # whose envelope follows its message; frozen then. On waking, thread B (holding
    # nothing) claims a new batch before A checks its lease: that claim leases its own
    # rows, not F, which was reaped; A must not send F.
    order = _readers(workdir, 40)
    clock = Freezer(workdir, monkeypatch)
    monkeypatch.setattr(SendRun, "_renew", lambda self: self.all_done.wait())  # (not it)
    runs: list[SendRun] = []
    frozen: list[str] = []

    def personalise(delivery: Delivery, ours):
        caller = sys._getframe(3)  # SendRun._thread, making `following`, or a message
        ahead = caller.f_code.co_name == "_thread" and caller.f_locals.get("following") is delivery
        if ahead and not frozen and delivery.email not in order[:4]:
            frozen.append(delivery.email)
            clock.freeze()
            woke, run = clock.real(), runs[0]
            while clock.real() - woke < 3 and not run.stop.is_set():
                if run.lease_until > time.monotonic():
                    break  # the other thread's claim has made the lease good again
                time.sleep(0.01)  # (or found it lapsed, and stopped the worker)
        return ours(delivery)

    try:
        with ScriptedServer(Script(extensions=("PIPELINING",))) as server:
            states = _send(
                workdir, server, SendOptions(concurrency=2, batch=3), personalise, runs.append
            )
            copies = server.copies(frozen[0]) if frozen else None
    finally:
        clock.close()
    assert frozen, "no message was made ahead"
    assert copies == 0
    assert states[frozen[0]] is State.UNCERTAIN


def test_every_message_begun_in_a_turn_is_ended_and_recorded_when_a_mark_fails(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Three messages begun in a turn; replies slow (0.6 s each, past the flush interval),
    # so each outcome is recorded on its own. Recording fails twice (the database busy),
    # then works: the send stops on the error, and the other messages of the turn are
    # still read and recorded (the failed outcomes too, in the last flush).
    order = _readers(workdir, 9)[:4]  # the first turn's one message, the second's three
    real_end = transport.SmtpConnection.end

    def slow_end(self):
        time.sleep(0.6)
        return real_end(self)

    monkeypatch.setattr(transport.SmtpConnection, "end", slow_end)
    calls: list[int] = []

    def failing_marks(run: SendRun) -> None:
        real_mark = run.ledger.mark

        def mark(worker, outcomes):
            calls.append(len(outcomes))
            if len(calls) in (2, 3):
                raise StoreError("database is locked")
            return real_mark(worker, outcomes)

        monkeypatch.setattr(run.ledger, "mark", mark)

    with ScriptedServer(Script(extensions=("PIPELINING", "CHUNKING"))) as server:
        with pytest.raises(StoreError):
            _send(workdir, server, SendOptions(concurrency=3), lambda d, ours: ours(d),
                  failing_marks)  # fmt: skip
        stored = sorted(rcpt for rcpt, _ in server.stored)
    ledger = Ledger(workdir / "news.db", DEMO_ISSUE)
    try:
        states = {d.email: d.state for d in ledger.in_state(*State)}
    finally:
        ledger.close()
    assert stored == sorted(order)
    assert {r: states[r] for r in order} == dict.fromkeys(order, State.SENT), calls


def test_recover_leaves_running_workers_their_rows_and_takes_the_dead_ones(workdir) -> None:
    """`send` killed outright leaves its workers finishing their messages in flight: a
    `status` or `send` run meanwhile must not call those rows uncertain (they were being
    delivered, or were about to be given back), only a gone worker's, or a lapsed lease's."""
    import os
    import socket
    import subprocess

    ids = add_people(workdir, many(6))
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # a pid no process has now
    ledger = Ledger(workdir / "news.db", DEMO_ISSUE)
    try:
        ledger.start([(n, email, "", "en") for email, n in ids.items()], "example.org")
        host = socket.gethostname()
        ledger.join("alive", host, os.getpid())
        ledger.join("dead", host, gone.pid)
        ledger.join("frozen", host, os.getpid())
        alive = ledger.claim("alive", 2, 60.0).rows
        dead = ledger.claim("dead", 2, 60.0).rows
        frozen = ledger.claim("frozen", 2, 60.0, now=time.time() - 120).rows  # lapsed
        assert ledger.recover() == 4
        states = {d.subscriber_id: d.state for d in ledger.in_state(*State)}
        assert {states[d.subscriber_id] for d in alive} == {State.SENDING}
        assert {states[d.subscriber_id] for d in dead + frozen} == {State.UNCERTAIN}
    finally:
        ledger.close()
