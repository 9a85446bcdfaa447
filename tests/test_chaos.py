"""A hostile server on 127.0.0.1 (aiosmtpd): random 421/451/452/454, logins refused for a
while, connections dropped before and after the final dot, replies that never come. After
`send --wait`, every reader holds exactly one copy, except those whose message the server
took and then left unanswered: those, and only those, are reported uncertain."""

from __future__ import annotations

import asyncio
import random
import threading
from pathlib import Path

from aiosmtpd.smtp import AuthResult

from newsletter import campaign
from newsletter.config import load_settings
from newsletter.delivery import SendOptions
from newsletter.ledger import Ledger, State
from newsletter.subscribers import SqliteStore

from .conftest import DEMO_ISSUE
from .smtp_server import Received, Server
from .test_send import add_people, env_for, many


class Chaos:
    def __init__(self, seed: int):
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.received: list[Received] = []
        self.ambiguous: set[str] = set()  # took the message, then gave no usable reply
        self.events: dict[str, int] = {}
        self.gate = threading.Event()  # Server sets it when it stops

    def _roll(self) -> float:
        with self.lock:
            return self.rng.random()

    def _count(self, event: str) -> None:
        with self.lock:
            self.events[event] = self.events.get(event, 0) + 1

    def copies(self, rcpt: str) -> int:
        with self.lock:
            return sum(1 for r in self.received if r.rcpt == rcpt)

    def authenticate(self, server, session, envelope, mechanism, auth_data):
        if self._roll() < 0.1:
            self._count("auth 454")
            return AuthResult(success=False, handled=False, message="454 4.7.0 try again")
        return AuthResult(success=True)

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        roll = self._roll()
        for limit, reply in (
            (0.05, "421 4.7.0 too busy, closing"),
            (0.11, "451 4.3.0 greylisted"),
            (0.15, "452 4.5.3 too many recipients"),
            (0.19, "454 4.7.1 relay access refused for now"),
        ):
            if roll < limit:
                self._count(reply[:3])
                if reply.startswith("421"):
                    server.transport.close()
                return reply
        if roll < 0.23:
            self._count("drop before the dot")
            server.transport.close()
            return "421 closing"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        roll = self._roll()
        (rcpt,) = envelope.rcpt_tos
        if roll < 0.04:
            self._count("451 after the dot")
            return "451 4.3.0 could not queue"
        if roll < 0.07:
            self._count("dropped after the dot, not kept")
            with self.lock:
                self.ambiguous.add(rcpt)
            server.transport.close()
            return "250 never read"
        self._store(envelope)
        if roll < 0.10:
            self._count("dropped after the dot, kept")
            with self.lock:
                self.ambiguous.add(rcpt)
            server.transport.close()
        elif roll < 0.13:
            self._count("stalled after the dot, kept")
            with self.lock:
                self.ambiguous.add(rcpt)
            await asyncio.sleep(1.5)  # past the client's 0.5 s timeout
        return "250 2.0.0 queued"

    def _store(self, envelope) -> None:
        with self.lock:
            for rcpt in envelope.rcpt_tos:
                self.received.append(Received(rcpt, envelope.original_content or b""))


def test_send_wait_against_a_hostile_server_gives_everyone_exactly_one_copy(workdir: Path):
    people = many(320)
    add_people(workdir, people)
    chaos = Chaos(seed=20261207)
    with Server(chaos, authenticator=chaos.authenticate, auth_require_tls=False) as server:
        env = env_for(
            workdir,
            server.port,
            NEWSLETTER_SMTP_TIMEOUT="0.5",
            NEWSLETTER_SMTP_USER="news",
            NEWSLETTER_SMTP_PASSWORD="any",
        )
        settings = load_settings(None, environ=env)
        prepared = campaign.prepare(settings, workdir / "issues" / DEMO_ISSUE)
        ledger = Ledger(settings.db_path, DEMO_ISSUE)
        with SqliteStore(settings.db_path) as store:
            campaign.start(store, ledger, prepared, {})
        options = SendOptions(concurrency=4, retry_backoff=0.02)
        passes = campaign.run(prepared, ledger, options, wait=True)
        states = {d.email: d.state for d in ledger.in_state(*State)}
        ledger.close()
    assert passes.paused is None and not passes.interrupted
    # the server really was hostile, in every way the test claims
    for event in ("421", "451", "452", "454", "auth 454", "drop before the dot"):
        assert chaos.events.get(event, 0) >= 3, (event, chaos.events)
    for event in ("dropped after the dot, kept", "dropped after the dot, not kept"):
        assert chaos.events.get(event, 0) >= 3, (event, chaos.events)
    assert set(states.values()) <= {State.SENT, State.UNCERTAIN}
    uncertain = {a for a, s in states.items() if s is State.UNCERTAIN}
    assert uncertain == chaos.ambiguous
    for address, _, _ in people:
        copies = chaos.copies(address)
        if address in uncertain:
            assert copies <= 1, address
        else:
            assert copies == 1, (address, states[address])
