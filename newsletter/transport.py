"""Where messages go: an SMTP server, or a local outbox folder. One small interface.

What the ledger records depends on where a send failed, so every failure says so:

- `ConnectFailure` (connect, greeting, EHLO, STARTTLS, AUTH): nothing was offered to the
  server for anyone; `temporary` says whether trying again later can help.
- `Halt`: nothing can be sent to anyone (the server refused our sender address, the outbox
  cannot be written): the send stops, and the message in hand was never accepted.
- From `Connection.send`: `Deferred` (a 4xx, or a network error before the end-of-data dot
  was written: the server cannot have accepted the message), `Refused` (a 5xx to RCPT,
  DATA or the message), `Uncertain` (the whole message was written and no reply, a timeout,
  a reset or an unreadable reply came back: it may have been delivered).
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import ssl
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple, Protocol

from .config import SmtpSettings
from .errors import DeliveryError
from .smtp import Client, Garbled, Lost, Reply


class Outgoing(NamedTuple):  # one a message: not a frozen dataclass (three times the time)
    """One message to one address; rendered only when the transport needs it."""

    mail_from: str
    rcpt: str
    filename: str  # a name for the outbox
    # The message, CRLF line ends, in pieces: written as they are (one system call for all,
    # see smtp.Client.write_parts), never joined into one ~100 KB copy per reader.
    data: Callable[[], Sequence[bytes]]
    smtp_data: Callable[[], Sequence[bytes]]  # the same, dot-stuffed and ended with CRLF.CRLF
    envid: str = ""  # DSN envelope id (RFC 3461), sent with RET=HDRS where the server has DSN


class SendFailure(Exception):
    def __init__(self, reply: str, connection_lost: bool = False):
        super().__init__(reply)
        self.reply = reply
        self.connection_lost = connection_lost


class Deferred(SendFailure):
    """Not accepted this time: a 4xx, or the connection failed before the message was whole."""


class Refused(SendFailure):
    """A 5xx: this address will not take this message."""


class Uncertain(SendFailure):
    """The whole message was sent and no usable reply came back: it may have arrived."""


class ConnectFailure(DeliveryError):
    """No session: nothing was offered to the server. Temporary ones are retried."""

    def __init__(self, message: str, temporary: bool):
        super().__init__(message)
        self.temporary = temporary


class Halt(DeliveryError):
    """Nobody can be sent anything: the send stops; the message in hand did not go."""


class Connection(Protocol):
    def send(self, message: Outgoing) -> str: ...

    def close(self) -> None: ...


class Transport(Protocol):
    description: str

    def connect(self) -> Connection: ...


# --- outbox ----------------------------------------------------------------------------


class OutboxConnection:
    def __init__(self, folder: Path):
        self.folder = folder

    def send(self, message: Outgoing) -> str:
        path = self.folder / message.filename
        # write then rename, so a mail client never opens half a message
        try:
            fd, tmp = tempfile.mkstemp(dir=self.folder, prefix=".tmp-")
        except OSError as exc:
            raise Halt(f"cannot write to the outbox: {exc.strerror}", self.folder) from None
        try:
            with os.fdopen(fd, "wb") as fh:
                # as a mail server does on delivery: the envelope sender (with a bounce
                # domain, the VERP address) can be seen in the file
                fh.write(b"Return-Path: <" + message.mail_from.encode("ascii") + b">\r\n")
                fh.writelines(message.data())
            os.replace(tmp, path)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise Halt(f"cannot write to the outbox: {exc.strerror}", self.folder) from None
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        return f"250 written to {path}"

    def close(self) -> None:
        pass


class OutboxTransport:
    """Each message becomes an .eml file in a folder: the default with no SMTP host."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.description = f"outbox folder {self.folder}/"

    def connect(self) -> OutboxConnection:
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConnectFailure(
                f"{self.folder}: cannot create the outbox folder: {exc.strerror}; "
                "check NEWSLETTER_OUTBOX",
                temporary=False,
            ) from None
        return OutboxConnection(self.folder)


# --- SMTP ------------------------------------------------------------------------------

_UNSAFE_ADDRESS = re.compile(r"[\s<>]")
_OK = {"MAIL": (250,), "RCPT": (250, 251), "DATA": (354,), "BDAT": (250,)}  # a phase's yes


class SmtpConnection:
    """One session. Each message costs one round trip where the server allows it: with
    CHUNKING (RFC 3030) the envelope and the whole message go in one write as `BDAT n LAST`,
    no dot-stuffing needed; with PIPELINING only (RFC 2920), MAIL, RCPT and DATA go in one
    write and the next message's envelope follows the end-of-data dot at once."""

    def __init__(self, client: Client):
        self.client = client
        self.pipelining = "PIPELINING" in client.extensions
        self.chunking = "CHUNKING" in client.extensions
        self.closed = False
        self.owed: Outgoing | None = None  # a message whose envelope was written ahead
        self.lost = ""  # why the connection was lost while reading pipelined replies

    @property
    def takes_following(self) -> bool:
        """Whether `send` can write the next message's envelope ahead (DATA + PIPELINING)."""
        return self.pipelining and not self.chunking

    @property
    def takes_turns(self) -> bool:
        """Whether a message can be sent in two halves, `begin` and `end` (BDAT pipelined):
        one thread then keeps a message in flight on each of several connections."""
        return self.pipelining and self.chunking

    def _before_dot(self, reply: Reply, phase: str) -> SendFailure:
        """The failure for a refusal before the message went: the server has nothing."""
        if reply.code == 421:
            self.close()
            return Deferred(str(reply), connection_lost=True)
        lost = self.closed or not self._reset()
        if reply.temporary:
            return Deferred(str(reply), connection_lost=lost)
        if phase == "MAIL":
            # our own address is refused: every other message would be refused alike
            self.close()
            raise Halt(f"the server refused the sender address: {reply}")
        return Refused(str(reply), connection_lost=lost)

    def _reset(self) -> bool:
        """RSET after a refused transaction; False (and closed) if the connection is gone."""
        try:
            if self.client.command("RSET").code == 250:
                return True
        except (Lost, Garbled):
            pass
        self.close()
        return False

    def _envelope(self, message: Outgoing) -> bytes:
        mail = f"MAIL FROM:<{message.mail_from}>"
        if message.envid and "DSN" in self.client.extensions:
            # a bounce then carries our id and only the headers, not the whole issue back
            mail += f" RET=HDRS ENVID={message.envid}"
        return f"{mail}\r\nRCPT TO:<{message.rcpt}>\r\n".encode()

    def _refusal(self, replies: list[Reply], phases: tuple[str, ...]) -> SendFailure | None:
        """The first refusal among the envelope's replies, as the failure to raise."""
        for reply, phase in zip(replies, phases, strict=False):
            if reply.code not in _OK[phase]:
                if self.closed:
                    if reply.temporary or reply.code == 421:
                        return Deferred(str(reply), connection_lost=True)
                    if phase == "MAIL":
                        raise Halt(f"the server refused the sender address: {reply}")
                    return Refused(str(reply), connection_lost=True)
                return self._before_dot(reply, phase)
        return None

    def _replies(self, count: int) -> list[Reply]:
        """Up to `count` pipelined replies, stopping at a 421. A connection lost meanwhile:
        the replies so far, the connection closed (the caller decides what it means)."""
        replies: list[Reply] = []
        try:
            while len(replies) < count and (not replies or replies[-1].code != 421):
                replies.append(self.client.reply())
        except (Lost, Garbled) as exc:
            self.close()
            self.lost = str(exc)
        if replies and replies[-1].code == 421:
            self.close()
        return replies

    def send(self, message: Outgoing, following: Outgoing | None = None) -> str:
        """Send `message`; with `following` (see takes_following), write that message's
        envelope ahead: the next call must then be `send(following, ...)`, or close()."""
        if self.takes_turns:  # (no envelope is ever written ahead on this path)
            self.begin(message)
            return self.end()
        if _UNSAFE_ADDRESS.search(message.rcpt) or _UNSAFE_ADDRESS.search(message.mail_from):
            raise Refused("address contains spaces or angle brackets")
        if following is not None and (
            _UNSAFE_ADDRESS.search(following.rcpt) or _UNSAFE_ADDRESS.search(following.mail_from)
        ):
            following = None  # it will be refused on its own turn
        if self.owed is not None and self.owed is not message:
            self.close()  # an envelope is waiting for another message: this session is spent
            raise Deferred("connection reset before the message was sent", True)
        if self.chunking:
            return self._send_bdat(message)
        return self._send_data(message, following if self.takes_following else None)

    def begin(self, message: Outgoing) -> None:
        """The first half of a message (see takes_turns): the envelope, `BDAT n LAST` and the
        whole message, in one write, no reply read. `end` must come next on this session."""
        if _UNSAFE_ADDRESS.search(message.rcpt) or _UNSAFE_ADDRESS.search(message.mail_from):
            raise Refused("address contains spaces or angle brackets")
        self.lost = ""
        data = message.data()
        head = self._envelope(message) + b"BDAT %d LAST\r\n" % sum(map(len, data))
        try:
            self.client.write_parts([head, *data])
        except Lost as exc:  # the last chunk never arrived whole
            self.close()
            raise Deferred(f"connection lost while sending the message: {exc}", True) from None

    def end(self) -> str:
        """The second half: the replies to MAIL, RCPT and BDAT, and what they mean."""
        replies = self._replies(3)
        if len(replies) == 3:  # as nearly always: all three taken, said without the phases
            mail, rcpt, message = replies
            if mail.code == 250 and rcpt.code in _OK["RCPT"] and 200 <= message.code < 300:
                return str(message)
        return self._settle(replies)

    def _settle(self, replies: list[Reply]) -> str:
        """What the replies to a BDAT transaction say (MAIL, RCPT, then the message's)."""
        refusal = self._refusal(replies[:2], ("MAIL", "RCPT"))
        if refusal is not None:
            raise refusal
        if len(replies) < 3:
            # the whole message was written; the server may have taken it, then gone
            raise Uncertain(f"no usable reply after the message: {self.lost}", True)
        return self._verdict(replies[2])

    def _send_data(self, message: Outgoing, following: Outgoing | None) -> str:
        client = self.client
        self.lost = ""
        phases = ("MAIL", "RCPT", "DATA")
        try:
            if self.owed is message:
                self.owed = None
                replies = self._replies(3)
            elif self.pipelining:
                client.write(self._envelope(message) + b"DATA\r\n")
                replies = self._replies(3)
            else:
                mail, _, rcpt = self._envelope(message).rstrip(b"\r\n").partition(b"\r\n")
                replies = [client.command(mail.decode())]
                if replies[0].code == 250:
                    replies.append(client.command(rcpt.decode()))
                    if replies[1].code in (250, 251):
                        replies.append(client.command("DATA"))
        except (Lost, Garbled) as exc:
            self.close()
            raise Deferred(f"connection lost before the message was sent: {exc}", True) from None
        if (
            len(replies) == 3
            and replies[2].code == 354
            and any(r.code not in ok for r, ok in zip(replies, ((250,), (250, 251)), strict=False))
        ):
            # DATA was accepted although the envelope was not: end it with nothing
            try:
                client.write(b".\r\n")
                client.reply()
            except (Lost, Garbled):
                self.close()
        refusal = self._refusal(replies, phases)
        if refusal is not None:
            raise refusal
        if self.closed or len(replies) < 3:
            raise Deferred(f"connection lost before the message was sent: {self.lost}", True)
        ahead = b""
        if following is not None:
            ahead = self._envelope(following) + b"DATA\r\n"
        try:
            client.write_parts([*message.smtp_data(), ahead])
        except Lost as exc:
            self.close()  # the final dot never arrived: the server drops the message
            raise Deferred(f"connection lost while sending the message: {exc}", True) from None
        if following is not None:
            self.owed = following
        return self._after_dot()

    def _send_bdat(self, message: Outgoing) -> str:
        """BDAT without PIPELINING: MAIL and RCPT each wait for their reply."""
        client = self.client
        self.lost = ""
        data = message.data()
        bdat = b"BDAT %d LAST\r\n" % sum(map(len, data))
        try:
            mail, _, rcpt = self._envelope(message).rstrip(b"\r\n").partition(b"\r\n")
            replies = [client.command(mail.decode())]
            if replies[0].code == 250:
                replies.append(client.command(rcpt.decode()))
            refusal = self._refusal(replies, ("MAIL", "RCPT"))
            if refusal is not None:
                raise refusal
            client.write_parts([bdat, *data])
            replies.extend(self._replies(1))
        except Lost as exc:  # while writing: the last chunk never arrived whole
            self.close()
            raise Deferred(f"connection lost while sending the message: {exc}", True) from None
        except Garbled as exc:  # to MAIL or RCPT, before the message went
            self.close()
            raise Deferred(f"connection lost before the message was sent: {exc}", True) from None
        return self._settle(replies)

    def _after_dot(self) -> str:
        try:
            reply = self.client.reply()
        except (Lost, Garbled) as exc:
            self.close()
            raise Uncertain(f"no usable reply after the message: {exc}", True) from None
        return self._verdict(reply)

    def _verdict(self, reply: Reply) -> str:
        """The server's word on a whole message."""
        if 200 <= reply.code < 300:
            return str(reply)
        if reply.code == 421:
            self.close()
            raise Deferred(str(reply), connection_lost=True)
        if reply.temporary:
            raise Deferred(str(reply), connection_lost=self.closed)
        raise Refused(str(reply), connection_lost=self.closed)

    def close(self) -> None:
        self.owed = None
        if not self.closed:
            self.closed = True
            self.client.close()


class SmtpTransport:
    """SMTP with STARTTLS, implicit TLS or none; certificates verified unless told not to."""

    def __init__(self, settings: SmtpSettings):
        self.settings = settings
        self.where = f"{settings.host}:{settings.port}"
        self.description = f"SMTP server {self.where} ({settings.security})"

    def _context(self) -> ssl.SSLContext:
        s = self.settings
        try:
            context = ssl.create_default_context(cafile=s.ca_file or None)
        except (OSError, ssl.SSLError) as exc:
            raise DeliveryError(
                f"cannot read NEWSLETTER_SMTP_CA_FILE: {exc}", s.ca_file or None
            ) from None
        if not s.verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    def _fail(self, what: str, reply: Reply | str, hint: str = "") -> ConnectFailure:
        temporary = not isinstance(reply, Reply) or reply.code < 500
        hint = f"; {hint}" if hint and not temporary else ""
        return ConnectFailure(f"{self.where} {what}: {reply}{hint}", temporary)

    def connect(self) -> SmtpConnection:
        s = self.settings
        context = self._context() if s.security in ("ssl", "starttls") else None
        try:
            implicit = context if s.security == "ssl" else None
            client = Client.open(s.host, s.port, s.timeout, implicit)
        except socket.gaierror:
            raise ConnectFailure(
                f"cannot find the SMTP host '{s.host}'; check NEWSLETTER_SMTP_HOST", False
            ) from None
        except ssl.SSLError as exc:
            raise self._tls_failure(exc) from None
        except OSError as exc:
            reason = exc.strerror or str(exc) or type(exc).__name__
            if isinstance(exc, TimeoutError):
                reason = "timed out"
            raise ConnectFailure(
                f"cannot connect to {self.where}: {reason}; check NEWSLETTER_SMTP_HOST and "
                "NEWSLETTER_SMTP_PORT",
                temporary=True,
            ) from None
        try:
            self._session(client, context)
        except BaseException:
            client.close()
            raise
        client.kernel_timeouts()
        return SmtpConnection(client)

    def _session(self, client: Client, context: ssl.SSLContext | None) -> None:
        s = self.settings
        try:
            greeting = client.reply()
            if greeting.code != 220:
                raise self._fail("refused the connection", greeting)
            name = _helo_name(client)
            reply = client.ehlo(name)
            if reply.code != 250:
                raise self._fail("refused EHLO", reply)
            if s.security == "starttls":
                if "STARTTLS" not in client.extensions:
                    raise ConnectFailure(
                        f"{self.where} does not offer STARTTLS; check NEWSLETTER_SMTP_SECURITY",
                        False,
                    )
                reply = client.command("STARTTLS")
                if reply.code != 220:
                    raise self._fail("refused STARTTLS", reply, "check NEWSLETTER_SMTP_SECURITY")
                assert context is not None
                try:
                    client.starttls(context, s.host)
                except ssl.SSLError as exc:
                    raise self._tls_failure(exc) from None
                reply = client.ehlo(name)
                if reply.code != 250:
                    raise self._fail("refused EHLO", reply)
            if s.user:
                self._login(client)
        except (Lost, Garbled) as exc:
            raise ConnectFailure(f"{self.where} failed before sending: {exc}", True) from None
        except OSError as exc:  # e.g. a reset during the TLS handshake
            raise ConnectFailure(f"{self.where} failed before sending: {exc}", True) from None

    def _login(self, client: Client) -> None:
        s = self.settings
        offered = client.extensions.get("AUTH", "").upper().split()
        if "PLAIN" in offered:
            reply = client.auth_plain(s.user, s.password)
        elif "LOGIN" in offered:
            reply = client.auth_login(s.user, s.password)
        else:
            raise ConnectFailure(
                f"{self.where} offers no login (AUTH PLAIN or LOGIN) here; check "
                "NEWSLETTER_SMTP_SECURITY, or leave NEWSLETTER_SMTP_USER empty",
                False,
            )
        if reply.code == 235:
            return
        if reply.temporary:
            raise self._fail("could not log in now", reply)
        raise ConnectFailure(
            f"{self.where} refused the login of user '{s.user}': {reply}; "
            "check NEWSLETTER_SMTP_USER and NEWSLETTER_SMTP_PASSWORD",
            False,
        )

    def _tls_failure(self, exc: ssl.SSLError) -> ConnectFailure:
        reason = getattr(exc, "verify_message", None) or exc.reason or str(exc)
        return ConnectFailure(
            f"TLS with {self.where} failed: {reason}; check NEWSLETTER_SMTP_SECURITY, "
            "NEWSLETTER_SMTP_PORT and NEWSLETTER_SMTP_CA_FILE",
            False,
        )


def _helo_name(client: Client) -> str:
    """This host's name if it has a dotted one, else its address literal (RFC 5321 4.1.3)."""
    name = socket.gethostname()
    if "." in name and name.isascii():
        return name
    address = client.sock.getsockname()[0]
    return f"[IPv6:{address}]" if ":" in address else f"[{address}]"


def transport_for(smtp: SmtpSettings, outbox: Path) -> Transport:
    return SmtpTransport(smtp) if smtp.host else OutboxTransport(outbox)
