"""Signed local parts for the mail that comes back.

- `bounces+TOKEN@<bounce domain>`: the envelope sender (VERP) of one message. The token names
  the delivery: the subscriber, the issue (4 bytes of its hash: the ledger has the rest) and
  the day it was sent, so that a report months later about a message we no longer stand by
  is not acted on. Also the DSN ENVID of that message.
- `unsubscribe+TOKEN@<bounce domain>`: the List-Unsubscribe mailto of one person; it never
  expires (an unsubscribe link must work for at least 60 days, and harms nobody after).

Tokens are lower-case base32 under an HMAC of the same secret as the web links, each kind
with its own label, so that a MAC made for one purpose never passes for another. Base32
because mail systems are free to change the case of a local part; the whole address stays
well under the 64 octets a local part may have.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from dataclasses import dataclass

BOUNCE_LOCAL = "bounces"
UNSUBSCRIBE_LOCAL = "unsubscribe"
MAX_AGE_DAYS = 30  # a bounce about a message older than this is reported, never acted on

_BOUNCE_LABEL = b"newsletter/verp/v1:"
_UNSUBSCRIBE_LABEL = b"newsletter/mailto-unsubscribe/v1:"
_ID_BYTES, _ISSUE_BYTES, _DAY_BYTES, _MAC_BYTES = 5, 4, 2, 10
BOUNCE_TOKEN_LENGTH = 34  # 21 bytes of base32, padding dropped
UNSUBSCRIBE_TOKEN_LENGTH = 24  # 15 bytes, no padding needed

# Where a token can stand: a local part of ours, any domain (the MAC is what counts).
TOKEN_ADDRESS = re.compile(
    r"\b(bounces|unsubscribe)\+([a-z2-7]{24,40})@([a-z0-9.-]+)", re.IGNORECASE
)


@dataclass(frozen=True)
class BounceToken:
    subscriber_id: int
    issue_tag: bytes
    day: int  # days since 1970-01-01 (UTC) when the message was sent


def issue_tag(issue_id: str) -> bytes:
    return hashlib.sha256(issue_id.encode("utf-8")).digest()[:_ISSUE_BYTES]


def _mac(secret: bytes, label: bytes, payload: bytes) -> bytes:
    return hmac.digest(secret, label + payload, "sha256")[:_MAC_BYTES]  # one C call


def _encode(raw: bytes) -> str:
    return base64.b32encode(raw).decode("ascii").rstrip("=").lower()


def _decode(token: str) -> bytes | None:
    if not token.isascii():
        return None
    text = token.upper()
    try:
        raw = base64.b32decode(text + "=" * (-len(text) % 8))
    except (binascii.Error, ValueError):
        return None
    return raw if _encode(raw) == token.lower() else None  # one spelling per token


def bounce_token(secret: bytes, subscriber_id: int, issue_id: str, day: int) -> str:
    payload = (
        subscriber_id.to_bytes(_ID_BYTES, "big")
        + issue_tag(issue_id)
        + (day % 65536).to_bytes(_DAY_BYTES, "big")
    )
    return _encode(payload + _mac(secret, _BOUNCE_LABEL, payload))


def read_bounce_token(secret: bytes, token: str) -> BounceToken | None:
    """What a genuine bounce token names; None for anything forged or damaged."""
    raw = _decode(token) if len(token) == BOUNCE_TOKEN_LENGTH else None
    if raw is None:
        return None
    payload, mac = raw[:-_MAC_BYTES], raw[-_MAC_BYTES:]
    if not hmac.compare_digest(mac, _mac(secret, _BOUNCE_LABEL, payload)):
        return None
    subscriber_id = int.from_bytes(payload[:_ID_BYTES], "big")
    tag = payload[_ID_BYTES : _ID_BYTES + _ISSUE_BYTES]
    day = int.from_bytes(payload[-_DAY_BYTES:], "big")
    return BounceToken(subscriber_id, tag, day) if subscriber_id > 0 else None


def unsubscribe_token(secret: bytes, subscriber_id: int) -> str:
    payload = subscriber_id.to_bytes(_ID_BYTES, "big")
    return _encode(payload + _mac(secret, _UNSUBSCRIBE_LABEL, payload))


def read_unsubscribe_token(secret: bytes, token: str) -> int | None:
    raw = _decode(token) if len(token) == UNSUBSCRIBE_TOKEN_LENGTH else None
    if raw is None:
        return None
    payload, mac = raw[:_ID_BYTES], raw[_ID_BYTES:]
    if not hmac.compare_digest(mac, _mac(secret, _UNSUBSCRIBE_LABEL, payload)):
        return None
    subscriber_id = int.from_bytes(payload, "big")
    return subscriber_id or None


def bounce_address(secret: bytes, domain: str, subscriber_id: int, issue_id: str, day: int) -> str:
    return f"{BOUNCE_LOCAL}+{bounce_token(secret, subscriber_id, issue_id, day)}@{domain}"


def unsubscribe_mailto(secret: bytes, domain: str, subscriber_id: int) -> str:
    token = unsubscribe_token(secret, subscriber_id)
    return f"mailto:{UNSUBSCRIBE_LOCAL}+{token}@{domain}?subject=unsubscribe"


def day_of(timestamp: float) -> int:
    return int(timestamp // 86400)
