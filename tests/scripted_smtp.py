"""A loopback SMTP server that answers each phase of a session as a test tells it to.

aiosmtpd (tests/smtp_server.py) is the well-behaved server; this one misbehaves on purpose,
at a precise phase: the greeting, EHLO, STARTTLS, AUTH, MAIL, RCPT, the DATA command, the
middle of the message, or the reply after the final dot. Each phase has a script: a list of
what to do the next times it is reached (the last entry stays), so "421 then 220" is
`greeting=["421 4.3.2 busy", "220 ok"]`.

After-dot actions: a reply such as "250 2.0.0 queued" or "451 4.3.0 later"; "garbled"
(store the message, answer `2x0 garbled`); "drop" (store it, close without a reply);
"lose" (close without storing); "stall" (store it, then say nothing until the client
gives up). Body action "stall-mid-body": stop reading halfway through the message, so that the
client's write of the rest times out.
"""

from __future__ import annotations

import socket
import threading
from dataclasses import dataclass, field


@dataclass
class Script:
    greeting: list[str] = field(default_factory=lambda: ["220 scripted.example.org ESMTP"])
    ehlo: list[str] = field(default_factory=lambda: ["250"])
    starttls: list[str] = field(default_factory=lambda: ["454 4.7.0 TLS not available now"])
    auth: list[str] = field(default_factory=lambda: ["235 2.7.0 ok"])
    mail: list[str] = field(default_factory=lambda: ["250 2.1.0 ok"])
    rcpt: dict[str, list[str]] = field(default_factory=dict)  # by address; else 250
    data: list[str] = field(default_factory=lambda: ["354 go ahead"])
    body: list[str] = field(default_factory=lambda: ["whole"])
    after_dot: list[str] = field(default_factory=lambda: ["250 2.0.0 queued"])
    extensions: tuple[str, ...] = ("PIPELINING", "AUTH PLAIN LOGIN")
    pause: float = 0.0  # seconds taken over each whole message, before its verdict


def _next(actions: list[str]) -> str:
    return actions.pop(0) if len(actions) > 1 else actions[0]


class ScriptedServer:
    def __init__(self, script: Script):
        self.script = script
        self.lock = threading.Lock()
        self.stored: list[tuple[str, bytes]] = []
        self.sessions = 0
        self.commands: list[str] = []
        self.lines: list[str] = []  # every command line but AUTH, whole
        self.listener = socket.socket()
        # a small window, so that a server that stops reading makes the client's write wait
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.port = self.listener.getsockname()[1]
        self.closing = threading.Event()
        self.thread = threading.Thread(target=self._accept, daemon=True)

    def __enter__(self) -> ScriptedServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.closing.set()
        self.listener.close()

    def copies(self, rcpt: str) -> int:
        with self.lock:
            return sum(1 for r, _ in self.stored if r == rcpt)

    def _accept(self) -> None:
        while not self.closing.is_set():
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._session, args=(conn,), daemon=True).start()

    def _take(self, actions: list[str]) -> str:
        with self.lock:
            return _next(actions)

    def _session(self, conn: socket.socket) -> None:
        with self.lock:
            self.sessions += 1
        reader = conn.makefile("rb")
        try:
            self._talk(conn, reader)
        except OSError:
            pass
        finally:
            reader.close()
            conn.close()

    def _talk(self, conn: socket.socket, reader) -> None:
        s = self.script

        def say(line: str) -> None:
            conn.sendall(line.encode() + b"\r\n")

        greeting = self._take(s.greeting)
        say(greeting)
        if not greeting.startswith("220"):
            return
        rcpts: list[str] = []
        mail_ok = False
        bdat = b""
        while not self.closing.is_set():
            raw = reader.readline()
            if not raw:
                return
            line = raw.decode("utf-8", "replace").strip()
            verb = line.split(" ", 1)[0].upper()
            with self.lock:
                self.commands.append(verb)
                if verb != "AUTH":
                    self.lines.append(line)
            if verb == "EHLO":
                reply = self._take(s.ehlo)
                if reply == "250":
                    lines = ["scripted.example.org", *s.extensions]
                    for n, text in enumerate(lines):
                        say(f"250{'-' if n < len(lines) - 1 else ' '}{text}")
                else:
                    say(reply)
            elif verb == "STARTTLS":
                say(self._take(s.starttls))
            elif verb == "AUTH":
                reply = self._take(s.auth)
                say(reply)
            elif verb == "MAIL":
                rcpts = []
                reply = self._take(s.mail)
                mail_ok = reply.startswith("250")
                say(reply)
            elif verb == "RCPT" and not mail_ok:
                say("503 5.5.1 MAIL first")
            elif verb == "RCPT":
                address = line.partition("<")[2].partition(">")[0]
                with self.lock:
                    reply = _next(s.rcpt[address]) if address in s.rcpt else "250 2.1.5 ok"
                if reply == "drop":
                    return
                if reply.startswith("250"):
                    rcpts.append(address)
                say(reply)
                if reply.startswith("421"):
                    return
            elif verb == "BDAT":
                size = int(line.split()[1])
                chunk = reader.read(size)
                if len(chunk) < size:
                    return
                bdat += chunk
                if not line.upper().endswith("LAST"):
                    say("250 2.0.0 chunk taken")
                    continue
                data, bdat = bdat, b""
                if not rcpts:
                    say("554 5.5.1 no valid recipients")
                elif not self._verdict(data, rcpts, say):
                    return
            elif verb == "DATA" and not rcpts:
                say("554 5.5.1 no valid recipients")
            elif verb == "DATA":
                reply = self._take(s.data)
                say(reply)
                if not reply.startswith("354"):
                    continue
                if not self._message(conn, reader, rcpts, say):
                    return
            elif verb == "RSET":
                rcpts, mail_ok = [], False
                say("250 2.0.0 reset")
            elif verb == "QUIT":
                say("221 2.0.0 bye")
                return
            else:
                say("502 5.5.2 not here")

    def _message(self, conn, reader, rcpts: list[str], say) -> bool:
        """Read the message up to the dot and act; False when the connection is to end."""
        body_action = self._take(self.script.body)
        data = b""
        while True:
            raw = reader.readline()
            if not raw:
                return False
            if raw == b".\r\n":
                break
            data += raw[1:] if raw.startswith(b"..") else raw
            if body_action == "stall-mid-body" and len(data) > 2000:
                self.closing.wait(30)  # read no more: the client's write times out
                return False
        if not rcpts:
            say("554 5.5.1 no valid recipients")
            return True
        return self._verdict(data, rcpts, say)

    def _verdict(self, data: bytes, rcpts: list[str], say) -> bool:
        """Answer a whole message as scripted; False when the connection is to end."""
        if self.script.pause:
            self.closing.wait(self.script.pause)
        action = self._take(self.script.after_dot)
        if action in ("garbled", "drop", "stall") or action.startswith("25"):
            with self.lock:
                self.stored.extend((r, data) for r in rcpts)
        if action == "garbled":
            say("2x0 garbled")
        elif action in ("drop", "lose"):
            return False
        elif action == "stall":
            self.closing.wait(30)
            return False
        else:
            say(action)
        return True
