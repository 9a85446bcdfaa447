"""A real SMTP server on 127.0.0.1 for tests (aiosmtpd), with scripted misbehaviour."""

from __future__ import annotations

import asyncio
import collections
import email
import socket
import threading
import time
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Received:
    rcpt: str
    data: bytes
    mail_from: str = ""

    @property
    def message(self) -> EmailMessage:
        return email.message_from_bytes(self.data, policy=policy.default)


@dataclass
class Handler:
    """Records what it accepts. `script[rcpt]` lists what to do on the next RCPT TO of that
    address, one action per attempt: "421", "451", "550" (answer that; or a whole reply such
    as "550 5.7.1 blocked"), "drop" (close the
    connection), "hold-discard" / "hold-keep" (at DATA: block until `gate` is set, then
    discard, or keep the message having stored it first)."""

    pipelining: bool = False
    script: dict[str, list[str]] = field(default_factory=dict)
    received: list[Received] = field(default_factory=list)
    stamps: list[float] = field(default_factory=list)  # time.monotonic() of each message kept
    rcpt_attempts: collections.Counter = field(default_factory=collections.Counter)
    holding: threading.Event = field(default_factory=threading.Event)
    gate: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    connected: int = 0  # connections open now
    most_connected: int = 0  # the most open at once

    def copies(self, rcpt: str) -> int:
        with self.lock:
            return sum(1 for r in self.received if r.rcpt == rcpt)

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        if self.pipelining:
            responses.insert(1, "250-PIPELINING")
        return responses

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        self.rcpt_attempts[address] += 1
        actions = self.script.get(address)
        action = actions.pop(0) if actions else ""
        if action in ("421", "451", "550"):
            text = {
                "421": "4.7.0 Too many messages, slow down",
                "451": "4.3.0 Try again later",
                "550": "5.1.1 No such mailbox",
            }[action]
            if action == "421":
                server.transport.close()
            return f"{action} {text}"
        if action[:3].isdigit() and " " in action:  # a whole reply of the test's own
            return action
        if action == "drop":
            server.transport.close()
            return "421 closing"
        if action.startswith("hold"):
            envelope.hold = action
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        hold = getattr(envelope, "hold", "")
        if hold == "hold-keep":
            self._store(envelope)
        if hold:
            self.holding.set()
            while not self.gate.is_set():
                await asyncio.sleep(0.01)
            if hold == "hold-discard":
                return "451 4.3.0 discarded"
            return "250 OK"
        self._store(envelope)
        return "250 2.0.0 OK queued"

    def _store(self, envelope) -> None:
        with self.lock:
            self.stamps.append(time.monotonic())
            for rcpt in envelope.rcpt_tos:
                data = envelope.original_content or envelope.content
                self.received.append(Received(rcpt, data, envelope.mail_from))


class _Counting(SMTP):
    """Counts the connections open at once (a relay's limit is on those), for a Handler
    (other handlers, such as the chaos one, have no such counts)."""

    def _count(self, step: int) -> None:
        handler = self.event_handler
        if isinstance(handler, Handler):
            with handler.lock:
                handler.connected += step
                handler.most_connected = max(handler.most_connected, handler.connected)

    def connection_made(self, transport) -> None:
        self._count(1)
        super().connection_made(transport)

    def connection_lost(self, exc) -> None:
        self._count(-1)
        super().connection_lost(exc)


class _Controller(Controller):
    def factory(self):
        return _Counting(self.handler, **self.SMTP_kwargs)


class Server:
    def __init__(self, handler: Handler, **kwargs):
        self.handler = handler
        self.port = free_port()
        self.controller = _Controller(handler, hostname="127.0.0.1", port=self.port, **kwargs)

    def __enter__(self) -> Server:
        self.controller.start()
        return self

    def __exit__(self, *exc) -> None:
        self.handler.gate.set()
        self.controller.stop()


def accept_only(user: str, password: str):
    def authenticator(server, session, envelope, mechanism, auth_data):
        ok = auth_data.login == user.encode() and auth_data.password == password.encode()
        return AuthResult(success=ok, handled=False)

    return authenticator
