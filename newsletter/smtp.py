"""A small SMTP client (RFC 5321) that knows, for every failure, which phase it happened in.

smtplib hides what the ledger must know: a garbled reply comes back as code -1, a reply lost
after the final dot looks like any other dropped connection. Here each read either returns
a well-formed `Reply` or raises `Garbled` or `Lost`, and the caller, who knows whether the
end-of-data dot has been written, decides what that means.
"""

from __future__ import annotations

import base64
import contextlib
import re
import socket
import ssl
import struct
from typing import NamedTuple

MAX_LINE = 4096  # RFC 5321 allows 512 octets a reply line; be generous, not unbounded
_REPLY_LINE = re.compile(rb"([2-5][0-9][0-9])([ -])(.*)", re.DOTALL)
_CODES = frozenset(b"%d" % n for n in range(200, 600))


class Reply(NamedTuple):  # not a frozen dataclass: three of these a message, built faster
    code: int
    lines: tuple[str, ...]

    @property
    def text(self) -> str:
        return " ".join(line for line in self.lines if line)

    def __str__(self) -> str:
        lines = self.lines
        text = lines[0] if len(lines) == 1 else self.text  # one line, as most are
        return f"{self.code} {text}".strip()

    @property
    def ok(self) -> bool:
        return 200 <= self.code < 400

    @property
    def temporary(self) -> bool:
        return 400 <= self.code < 500


class Lost(Exception):
    """The connection closed, reset or timed out: no (complete) reply."""


class Garbled(Exception):
    """The server answered something that is not an SMTP reply."""


class Client:
    """One connection to one server; commands and replies, nothing else."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.buffer = b""
        self.extensions: dict[str, str] = {}

    @classmethod
    def open(
        cls, host: str, port: int, timeout: float, context: ssl.SSLContext | None = None
    ) -> Client:
        """Connect (with implicit TLS when `context` is given); raises OSError or ssl errors."""
        sock = socket.create_connection((host, port), timeout=timeout)
        try:
            if context is not None:
                sock = context.wrap_socket(sock, server_hostname=host)
        except BaseException:
            sock.close()
            raise
        return cls(sock)

    # --- replies -------------------------------------------------------------------------

    def _line(self) -> bytes:
        while b"\n" not in self.buffer:
            if len(self.buffer) > MAX_LINE:
                raise Garbled(f"reply line longer than {MAX_LINE} bytes")
            try:
                chunk = self.sock.recv(65536)
            except (OSError, ssl.SSLError) as exc:  # TimeoutError is an OSError
                raise Lost(_why(exc)) from None
            if not chunk:
                raise Lost("connection closed by the server")
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line.rstrip(b"\r")

    def reply(self) -> Reply:
        """Read one (possibly multi-line) reply."""
        buffer = self.buffer
        end = buffer.find(b"\n")
        if end > 3 and buffer[3:4] == b" " and buffer[:3] in _CODES:
            # a one-line reply already read in whole, as most are: no call, no pattern
            self.buffer = buffer[end + 1 :]
            text = buffer[4:end].rstrip(b"\r").decode("utf-8", "replace").strip()
            return Reply(int(buffer[:3]), (text,))
        line = self._line()
        if line[3:4] == b" " and line[:3] in _CODES:  # one line, as most are: no pattern
            return Reply(int(line[:3]), (line[4:].decode("utf-8", "replace").strip(),))
        texts: list[str] = []
        code = None
        while True:
            if texts:
                line = self._line()
            match = _REPLY_LINE.fullmatch(line)
            if match is None or (code is not None and int(match.group(1)) != code):
                shown = line[:80].decode("utf-8", "replace")
                raise Garbled(f"unreadable reply {shown!r}")
            code = int(match.group(1))
            texts.append(match.group(3).decode("utf-8", "replace").strip())
            if match.group(2) == b" ":
                return Reply(code, tuple(texts))

    # --- commands ------------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        try:
            self.sock.sendall(data)
        except (OSError, ssl.SSLError) as exc:
            raise Lost(_why(exc)) from None

    def write_parts(self, parts: list[bytes]) -> None:
        """Write several buffers as one, without joining them (a message is ~100 KB: each
        copy made to join it costs more than the system call)."""
        if not hasattr(self.sock, "sendmsg") or isinstance(self.sock, ssl.SSLSocket):
            self.write(b"".join(parts))
            return
        try:
            if len(parts) <= 1024:  # IOV_MAX
                sent = self.sock.sendmsg(parts)
                if sent == sum(map(len, parts)):  # as it nearly always is: all of it at once
                    return
                parts = _after(parts, sent)
            views = [memoryview(p) for p in parts if p]
            while views:
                sent = self.sock.sendmsg(views[:1024])  # IOV_MAX
                while sent and views:
                    if sent >= len(views[0]):
                        sent -= len(views[0])
                        views.pop(0)
                    else:
                        views[0] = views[0][sent:]
                        sent = 0
        except (OSError, ssl.SSLError) as exc:
            raise Lost(_why(exc)) from None

    def command(self, line: str) -> Reply:
        self.write(line.encode("utf-8") + b"\r\n")
        return self.reply()

    def ehlo(self, name: str) -> Reply:
        """EHLO, then HELO if the server does not know EHLO; fills `extensions`."""
        self.extensions = {}
        reply = self.command(f"EHLO {name}")
        if reply.code == 250:
            for line in reply.lines[1:]:  # the first line names the server
                keyword, _, params = line.partition(" ")
                self.extensions[keyword.upper()] = params
            return reply
        if 500 <= reply.code < 505:
            return self.command(f"HELO {name}")
        return reply

    def kernel_timeouts(self) -> None:
        """Have the kernel keep the socket's timeout, on a plain TCP connection: Python's own
        polls before every read and write, two more system calls for each message."""
        timeout = self.sock.gettimeout()
        if isinstance(self.sock, ssl.SSLSocket) or not timeout:
            return
        seconds, fraction = divmod(timeout, 1.0)
        timeval = struct.pack("ll", int(seconds), int(fraction * 1e6))
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, timeval)
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, timeval)
        except OSError:
            return  # not here: Python's timeout stays
        self.sock.settimeout(None)

    def starttls(self, context: ssl.SSLContext, host: str) -> None:
        self.sock = context.wrap_socket(self.sock, server_hostname=host)
        self.buffer = b""

    def auth_plain(self, user: str, password: str) -> Reply:
        token = base64.b64encode(f"\0{user}\0{password}".encode()).decode("ascii")
        return self.command(f"AUTH PLAIN {token}")

    def auth_login(self, user: str, password: str) -> Reply:
        reply = self.command("AUTH LOGIN")
        for value in (user, password):
            if reply.code != 334:
                return reply
            reply = self.command(base64.b64encode(value.encode()).decode("ascii"))
        return reply

    def quit(self) -> None:
        with contextlib.suppress(Lost):
            self.write(b"QUIT\r\n")
        self.close()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


def _after(parts: list[bytes], sent: int) -> list[bytes]:
    """What is left of `parts` once their first `sent` bytes have been written."""
    for n, part in enumerate(parts):
        if sent < len(part):
            return [memoryview(part)[sent:], *parts[n + 1 :]]  # type: ignore[list-item]
        sent -= len(part)
    return []


def _why(exc: BaseException) -> str:
    # BlockingIOError: a kernel timeout ran out (see kernel_timeouts)
    if isinstance(exc, TimeoutError | socket.timeout | BlockingIOError):
        return "timed out waiting for the server"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return str(exc) or type(exc).__name__
