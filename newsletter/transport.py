"""Where messages go: an SMTP server, or a local outbox folder. One small interface.

A connection's `send` either returns the server's reply or raises one of three failures
whose difference matters to the delivery ledger: `TemporaryFailure` (retry later, on a new
connection if `connection_lost`), `PermanentFailure` (record, never retry), and `Uncertain`
(the whole message was handed over but the reply was lost: it may have been delivered).
"""

from __future__ import annotations

import base64
import contextlib
import os
import re
import smtplib
import socket
import ssl
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from .config import SmtpSettings
from .errors import DeliveryError


@dataclass(frozen=True)
class Outgoing:
    """One message to one address; rendered only when the transport needs it."""

    mail_from: str
    rcpt: str
    filename: str  # a name for the outbox
    data: Callable[[], bytes]  # the message, CRLF line ends
    smtp_data: Callable[[], bytes]  # the same, dot-stuffed and ended with CRLF.CRLF


class SendFailure(Exception):
    def __init__(self, reply: str, connection_lost: bool = False):
        super().__init__(reply)
        self.reply = reply
        self.connection_lost = connection_lost


class TemporaryFailure(SendFailure):
    """4xx, a dropped connection or a timeout before the message was complete."""


class PermanentFailure(SendFailure):
    """5xx: this address will not take this message."""


class Uncertain(SendFailure):
    """The connection died after the whole message was sent, before the server replied."""


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
        fd, tmp = tempfile.mkstemp(dir=self.folder, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(message.data())
            os.replace(tmp, path)
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
            raise DeliveryError(
                f"cannot create the outbox folder: {exc.strerror}; check NEWSLETTER_OUTBOX",
                self.folder,
            ) from None
        return OutboxConnection(self.folder)


# --- SMTP ------------------------------------------------------------------------------

_UNSAFE_ADDRESS = re.compile(r"[\s<>]")


def _reply(code: int, text: bytes | str) -> str:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return f"{code} {' '.join(text.split())}".strip()


class SmtpConnection:
    def __init__(self, smtp: smtplib.SMTP):
        self.smtp = smtp
        # RFC 2920: MAIL, RCPT and DATA go in one write when the server allows it
        self.pipelining = smtp.has_extn("pipelining")

    def _check(self, code: int, text: bytes, ok: tuple[int, ...]) -> None:
        if code in ok:
            return
        reply = _reply(code, text)
        if code == 421 or code < 0:
            self.close()
            raise TemporaryFailure(reply, connection_lost=True)
        try:
            self.smtp.rset()
        except (smtplib.SMTPException, OSError):
            self.close()
            raise TemporaryFailure(reply, connection_lost=True) from None
        if 400 <= code < 500:
            raise TemporaryFailure(reply)
        raise PermanentFailure(reply)

    def send(self, message: Outgoing) -> str:
        if _UNSAFE_ADDRESS.search(message.rcpt) or _UNSAFE_ADDRESS.search(message.mail_from):
            raise PermanentFailure("address contains spaces or angle brackets")
        smtp = self.smtp
        try:
            if self.pipelining:
                smtp.send(
                    f"MAIL FROM:<{message.mail_from}>\r\nRCPT TO:<{message.rcpt}>\r\nDATA\r\n"
                )
                replies = [smtp.getreply() for _ in range(3)]
            else:
                replies = [smtp.docmd(f"MAIL FROM:<{message.mail_from}>")]
                if replies[0][0] == 250:
                    replies.append(smtp.docmd(f"RCPT TO:<{message.rcpt}>"))
                if replies[-1][0] in (250, 251):
                    replies.append(smtp.docmd("DATA"))
        except (smtplib.SMTPException, OSError) as exc:
            self.close()
            raise TemporaryFailure(f"connection lost: {exc}", connection_lost=True) from None
        (mail_code, mail_text), *rest = replies
        data_reply = replies[2] if len(replies) == 3 else None
        if (
            data_reply is not None
            and data_reply[0] == 354
            and (mail_code != 250 or rest[0][0] not in (250, 251))
        ):
            # DATA was accepted although the envelope was not: end it with an empty message
            try:
                smtp.send(".\r\n")
                smtp.getreply()
            except (smtplib.SMTPException, OSError):
                self.close()
        self._check(mail_code, mail_text, (250,))
        self._check(*rest[0], (250, 251))
        assert data_reply is not None
        self._check(*data_reply, (354,))
        try:
            smtp.send(message.smtp_data())
        except (smtplib.SMTPException, OSError) as exc:
            self.close()  # the final dot never arrived: the server drops the message
            raise TemporaryFailure(f"connection lost: {exc}", connection_lost=True) from None
        try:
            code, text = smtp.getreply()
        except (smtplib.SMTPException, OSError) as exc:
            self.close()
            raise Uncertain(f"no reply after the message: {exc}", connection_lost=True) from None
        self._check(code, text, (250,))
        return _reply(code, text)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.smtp.close()


class SmtpTransport:
    """SMTP with STARTTLS, implicit TLS or none; certificates verified unless told not to."""

    def __init__(self, settings: SmtpSettings):
        self.settings = settings
        self.description = f"SMTP server {settings.host}:{settings.port} ({settings.security})"

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

    def connect(self) -> SmtpConnection:
        s = self.settings
        where = f"{s.host}:{s.port}"
        smtp: smtplib.SMTP | None = None
        try:
            if s.security == "ssl":
                smtp = smtplib.SMTP_SSL(s.host, s.port, timeout=s.timeout, context=self._context())
            else:
                smtp = smtplib.SMTP(s.host, s.port, timeout=s.timeout)
            smtp.ehlo()
            if s.security == "starttls":
                smtp.starttls(context=self._context())
                smtp.ehlo()
            if s.user:
                _login(smtp, s.user, s.password)
            return SmtpConnection(smtp)
        except smtplib.SMTPAuthenticationError as exc:
            _close(smtp)
            reply = _reply(exc.smtp_code, exc.smtp_error)
            raise DeliveryError(
                f"{where} refused the login of user '{s.user}': {reply}; "
                "check NEWSLETTER_SMTP_USER and NEWSLETTER_SMTP_PASSWORD"
            ) from None
        except smtplib.SMTPNotSupportedError as exc:
            _close(smtp)
            raise DeliveryError(
                f"{where}: {str(exc).rstrip('.')}; check NEWSLETTER_SMTP_SECURITY"
            ) from None
        except ssl.SSLError as exc:
            _close(smtp)
            reason = getattr(exc, "verify_message", None) or exc.reason or str(exc)
            raise DeliveryError(
                f"TLS with {where} failed: {reason}; check NEWSLETTER_SMTP_SECURITY, "
                "NEWSLETTER_SMTP_PORT and NEWSLETTER_SMTP_CA_FILE"
            ) from None
        except socket.gaierror:
            _close(smtp)
            raise DeliveryError(
                f"cannot find the SMTP host '{s.host}'; check NEWSLETTER_SMTP_HOST"
            ) from None
        except (smtplib.SMTPException, OSError) as exc:
            _close(smtp)
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise TransientConnectError(
                f"cannot connect to {where}: {reason or type(exc).__name__}; check "
                "NEWSLETTER_SMTP_HOST and NEWSLETTER_SMTP_PORT"
            ) from None


def _login(smtp: smtplib.SMTP, user: str, password: str) -> None:
    """smtplib's login, which sends credentials as ASCII; other ones go as UTF-8 with AUTH
    PLAIN (RFC 4616), as servers expect them."""
    if (user + password).isascii():
        smtp.login(user, password)
        return
    if "PLAIN" not in smtp.esmtp_features.get("auth", "").upper().split():
        raise smtplib.SMTPNotSupportedError(
            "no AUTH PLAIN, the only way to log in with non-ASCII characters"
        )
    token = base64.b64encode(f"\0{user}\0{password}".encode()).decode("ascii")
    code, reply = smtp.docmd("AUTH", f"PLAIN {token}")
    if code != 235:
        raise smtplib.SMTPAuthenticationError(code, reply)


class TransientConnectError(DeliveryError):
    """Could not reach the server: fatal before a send starts, retried during one."""


def _close(smtp: smtplib.SMTP | None) -> None:
    if smtp is not None:
        with contextlib.suppress(OSError):
            smtp.close()


def transport_for(smtp: SmtpSettings, outbox: Path) -> Transport:
    return SmtpTransport(smtp) if smtp.host else OutboxTransport(outbox)
