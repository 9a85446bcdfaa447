"""One raw message -> what it says: a delivery status notification (RFC 3464, and its
`message/global-delivery-status` form, RFC 6533), a feedback report (ARF, RFC 5965), an
auto-reply, a mailto unsubscribe, or nothing we know.

Only the stdlib `email` package, with the compat32 policy: it never raises on a malformed
header, and a report is read field by field, as the RFCs lay it out. Besides what the report
says, it collects what can tie it to one of our deliveries: our tokens (in the addresses the
report was delivered to, or in the returned headers), the DSN envelope id and the returned
Message-ID.
"""

from __future__ import annotations

import contextlib
import email
import email.parser
import email.policy
import re
from dataclasses import dataclass, field
from email.errors import HeaderParseError
from email.header import decode_header, make_header
from email.message import Message
from enum import StrEnum

from .tokens import TOKEN_ADDRESS

MAX_BYTES = 2 * 1024 * 1024  # a bounce with RET=HDRS is a few KB; RET=FULL of an issue ~100 KB

# Headers that say where a message was delivered: an MTA's own, then the visible ones.
ENVELOPE_HEADERS = ("delivered-to", "x-original-to", "envelope-to", "x-envelope-to", "to", "cc")
_STATUS = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")
_BASIC = re.compile(r"\b([245])\d\d\b")
_OUT_OF_OFFICE = re.compile(
    r"^\s*(out of (the )?office|automatic reply|auto(matic)?[- ]?re(ply|sponse)|absence|"
    r"r[ée]ponse automatique|abwesenheit|vacation|away from)",
    re.IGNORECASE,
)


class Kind(StrEnum):
    DSN = "dsn"
    ARF = "arf"
    AUTOREPLY = "autoreply"
    MAILTO = "mailto"  # sent to unsubscribe+TOKEN@
    OTHER = "other"


@dataclass(frozen=True)
class RecipientStatus:
    """One per-recipient block of a DSN."""

    recipient: str  # Final-Recipient (or Original-Recipient), the address only
    action: str  # failed | delayed | delivered | relayed | expanded
    status: str  # the RFC 3463 code, e.g. 5.1.1
    diagnostic: str  # the server's own words
    remote_mta: str


@dataclass(frozen=True)
class Found:
    """A token of ours in the message, and where: `envelope` (it was delivered to that
    address) or `returned` (in the headers of our message that came back)."""

    local: str  # bounces | unsubscribe
    token: str
    where: str


@dataclass(frozen=True)
class Parsed:
    kind: Kind
    subject: str = ""
    sender: str = ""
    recipients: tuple[RecipientStatus, ...] = ()
    feedback_type: str = ""  # ARF: abuse, fraud, auth-failure, not-spam, virus, other
    envid: str = ""  # DSN Original-Envelope-Id
    returned_message_id: str = ""
    returned_to: str = ""  # the To of our returned message (often redacted in ARF)
    tokens: tuple[Found, ...] = ()
    problem: str = ""  # why it could not be read as what it claims to be
    extra: dict[str, str] = field(default_factory=dict)

    def envelope_tokens(self, local: str) -> list[str]:
        return [f.token for f in self.tokens if f.local == local and f.where == "envelope"]

    def returned_tokens(self, local: str) -> list[str]:
        return [f.token for f in self.tokens if f.local == local and f.where == "returned"]


def parse(raw: bytes) -> Parsed:
    """What `raw` is; never raises for bad input (the problem is in `problem`)."""
    try:
        return _parse(raw)
    except Exception as exc:  # noqa: BLE001 - any input at all must give one line, no traceback
        return Parsed(Kind.OTHER, problem=f"not a readable message ({type(exc).__name__}: {exc})")


def _parse(raw: bytes) -> Parsed:
    msg = email.message_from_bytes(raw, policy=email.policy.compat32)
    subject = header_text(msg.get("subject", ""))
    sender = header_text(msg.get("from", ""))
    tokens = _envelope_tokens(msg)
    content_type = msg.get_content_type()
    report_type = _clean(msg.get_param("report-type") or "").lower() if msg.is_multipart() else ""
    if content_type == "multipart/report" and report_type in (
        "delivery-status",
        "global-delivery-status",
    ):
        return _dsn(msg, subject, sender, tokens)
    if content_type == "multipart/report" and report_type == "feedback-report":
        return _arf(msg, subject, sender, tokens)
    if _auto_reply(msg, subject):
        return Parsed(Kind.AUTOREPLY, subject, sender, tokens=tuple(tokens))
    if any(f.local == "unsubscribe" for f in tokens):
        return Parsed(Kind.MAILTO, subject, sender, tokens=tuple(tokens))
    problem = ""
    if not msg.keys():
        problem = "no headers: not an email message"
    return Parsed(Kind.OTHER, subject, sender, tokens=tuple(tokens), problem=problem)


# --- DSN ---------------------------------------------------------------------------------


def _dsn(msg: Message, subject: str, sender: str, tokens: list[Found]) -> Parsed:
    status_part = _find_part(msg, ("message/delivery-status", "message/global-delivery-status"))
    if status_part is None:
        return Parsed(
            Kind.DSN, subject, sender, tokens=tuple(tokens), problem="a DSN with no status part"
        )
    blocks = _field_blocks(status_part)
    if not blocks:
        return Parsed(
            Kind.DSN, subject, sender, tokens=tuple(tokens), problem="an empty status part"
        )
    per_message, per_recipient = blocks[0], blocks[1:]
    envid = _clean(per_message.get("original-envelope-id", ""))
    if not per_recipient and per_message.get("final-recipient"):
        per_message, per_recipient = Message(), blocks  # no per-message block at all
    recipients = []
    for block in per_recipient:
        recipient = _address(block.get("final-recipient") or block.get("original-recipient"))
        action = _clean(block.get("action", "")).lower()
        diagnostic = _clean(block.get("diagnostic-code", ""))
        diagnostic = diagnostic.split(";", 1)[1].strip() if ";" in diagnostic else diagnostic
        recipients.append(
            RecipientStatus(
                recipient=recipient,
                action=action,
                status=status_code(block.get("status", ""), diagnostic),
                diagnostic=diagnostic[:500],
                remote_mta=_clean(block.get("remote-mta", "")).split(";")[-1].strip(),
            )
        )
    returned = _returned(msg, tokens)
    return Parsed(
        Kind.DSN,
        subject,
        sender,
        recipients=tuple(recipients),
        envid=envid,
        returned_message_id=returned[0],
        returned_to=returned[1],
        tokens=tuple(tokens),
        problem="" if recipients else "a DSN with no recipient in it",
    )


def status_code(status: str, diagnostic: str = "") -> str:
    """The RFC 3463 code in a Status field, else in the server's words, else from the basic
    reply code (5xx -> 5.0.0); '' if none."""
    for text in (status, diagnostic):
        match = _STATUS.search(_clean(text or ""))
        if match:
            return ".".join(match.groups())
    basic = _BASIC.search(diagnostic or "")
    return f"{basic.group(1)}.0.0" if basic else ""


# --- ARF ---------------------------------------------------------------------------------


def _arf(msg: Message, subject: str, sender: str, tokens: list[Found]) -> Parsed:
    report = _find_part(msg, ("message/feedback-report",))
    if report is None:
        return Parsed(
            Kind.ARF, subject, sender, tokens=tuple(tokens), problem="an ARF report with no report"
        )
    blocks = _field_blocks(report)
    fields = blocks[0] if blocks else Message()
    returned = _returned(msg, tokens)
    extra = {
        name: _clean(fields.get(name, ""))
        for name in ("user-agent", "source-ip", "original-rcpt-to", "reported-domain")
        if fields.get(name)
    }
    return Parsed(
        Kind.ARF,
        subject,
        sender,
        feedback_type=_clean(fields.get("feedback-type", "")).lower(),
        returned_message_id=returned[0],
        returned_to=returned[1],
        tokens=tuple(tokens),
        problem="" if fields.get("feedback-type") else "an ARF report with no Feedback-Type",
        extra=extra,
    )


# --- the parts ---------------------------------------------------------------------------


def _find_part(msg: Message, types: tuple[str, ...]) -> Message | None:
    for part in msg.walk():
        if part.get_content_type() in types:
            return part
    return None


def _field_blocks(part: Message) -> list[Message]:
    """The header-like blocks of a status or feedback part, as messages of fields.

    The stdlib splits `message/delivery-status` into blocks itself and reads a
    `message/feedback-report` as one embedded message; a `message/global-delivery-status`
    (UTF-8, RFC 6533) it leaves as text, split here on blank lines."""
    payload = part.get_payload(decode=False)
    if isinstance(payload, list) and part.get_content_type() == "message/delivery-status":
        return [p for p in payload if isinstance(p, Message)]
    if isinstance(payload, list):  # read as an embedded message: its text is the blocks
        raw = b"".join(p.as_bytes() for p in payload if isinstance(p, Message))
    else:
        raw = part.get_payload(decode=True) or b""
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    text = text.replace("\r\n", "\n")
    parser = email.parser.HeaderParser(policy=email.policy.compat32)
    return [parser.parsestr(block + "\n") for block in re.split(r"\n\s*\n", text) if block.strip()]


def _returned(msg: Message, tokens: list[Found]) -> tuple[str, str]:
    """The Message-ID and To of our message that came back inside the report (headers only
    or whole), adding the tokens found in its headers to `tokens`."""
    for part in msg.walk():
        ctype = part.get_content_type()
        if ctype in ("message/rfc822", "message/global"):
            payload = part.get_payload()
            inner = payload[0] if isinstance(payload, list) and payload else None
            if isinstance(inner, Message):
                return _returned_headers(inner, tokens)
        if ctype in ("text/rfc822-headers", "message/global-headers"):
            raw = part.get_payload(decode=True) or b""
            text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
            headers = email.parser.HeaderParser(policy=email.policy.compat32).parsestr(text)
            return _returned_headers(headers, tokens)
    return "", ""


def _returned_headers(headers: Message, tokens: list[Found]) -> tuple[str, str]:
    for name in ("return-path", "list-unsubscribe", "sender", "errors-to"):
        for value in headers.get_all(name) or []:
            _tokens_in(str(value), "returned", tokens)
    message_id = _clean(headers.get("message-id", ""))
    match = re.search(r"<[^<>\s]+>", message_id)
    return (match.group(0) if match else ""), _address(headers.get("to", ""))


def _envelope_tokens(msg: Message) -> list[Found]:
    found: list[Found] = []
    for name in ENVELOPE_HEADERS:
        for value in msg.get_all(name) or []:
            _tokens_in(str(value), "envelope", found)
    return found


def _tokens_in(text: str, where: str, found: list[Found]) -> None:
    for match in TOKEN_ADDRESS.finditer(text):
        item = Found(match.group(1).lower(), match.group(2).lower(), where)
        if item not in found:
            found.append(item)


def _auto_reply(msg: Message, subject: str) -> bool:
    auto = _clean(msg.get("auto-submitted", "")).lower()
    if auto and auto != "no":
        return True
    if any(msg.get(h) for h in ("x-autoreply", "x-autorespond", "x-autoresponder")):
        return True
    if _clean(msg.get("precedence", "")).lower() in ("auto_reply", "auto-reply"):
        return True
    return bool(_OUT_OF_OFFICE.match(subject))


def header_text(value: object) -> str:
    """A header as one line of text: RFC 2047 words decoded, bytes that are not UTF-8 shown
    as replacement characters rather than failing."""
    text = str(value) if not isinstance(value, str) else value
    with contextlib.suppress(UnicodeError, LookupError, ValueError, HeaderParseError):
        text = str(make_header(decode_header(text)))
    return _clean(text)


def _clean(value: object) -> str:
    text = str(value) if value is not None else ""
    text = text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return " ".join(text.split())


def _address(value: object) -> str:
    """The address in `rfc822; ann@example.org` or `Ann <ann@example.org>`."""
    text = _clean(value)
    if ";" in text:
        text = text.split(";", 1)[1].strip()
    match = re.search(r"<([^<>\s]+@[^<>\s]+)>", text) or re.search(r"([^\s<>;,]+@[^\s<>;,]+)", text)
    return match.group(1) if match else ""
