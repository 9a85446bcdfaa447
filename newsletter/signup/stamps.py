"""Signed values for signup: the confirmation link's token, and the form's timestamp.

Both are base64url(payload + HMAC-SHA256 prefix), 32 characters, no padding, with a label
of their own in the MAC so that neither can pass for the other nor for a subscriber's
link (tokens.py).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import hmac
from dataclasses import dataclass
from enum import IntEnum

_REQUEST = b"newsletter/signup-request/v1:"
_FORM = b"newsletter/signup-form/v1:"
_KEY = b"newsletter/signup-limit/v1:"


def _mac(secret: bytes, label: bytes, data: bytes, size: int) -> bytes:
    return hmac.new(secret, label + data, hashlib.sha256).digest()[:size]


def _decode(value: str, size: int) -> bytes | None:
    """The bytes of a canonical base64url string of `size` bytes, or None."""
    if len(value) != 4 * size // 3 or not value.isascii():
        return None
    try:
        raw = base64.urlsafe_b64decode(value.encode("ascii"))
    except (binascii.Error, ValueError):
        return None
    # several strings decode alike: exactly one spelling of each value works
    if base64.urlsafe_b64encode(raw).decode("ascii") != value:
        return None
    return raw


# -- the confirmation link ----------------------------------------------------------------
# The id finds the request; the MAC covers a random nonce stored with it, so a link is
# worth nothing without the database row it was made for.


def request_token(secret: bytes, request_id: int, nonce: str) -> str:
    id_bytes = request_id.to_bytes(8, "big")
    mac = _mac(secret, _REQUEST, id_bytes + nonce.encode("ascii"), 16)
    return base64.urlsafe_b64encode(id_bytes + mac).decode("ascii")


def request_id(token: str) -> int | None:
    """The request id a token names (not yet verified: see request_token_matches)."""
    raw = _decode(token, 24)
    if raw is None:
        return None
    request = int.from_bytes(raw[:8], "big")
    return request if 0 < request < 2**63 else None


def request_token_matches(secret: bytes, token: str, request_id: int, nonce: str) -> bool:
    expected = request_token(secret, request_id, nonce).encode("ascii")
    return token.isascii() and hmac.compare_digest(token.encode("ascii"), expected)


# -- the form's timestamp -------------------------------------------------------------------


class StampKind(IntEnum):
    FORM = 1  # our page, stamped when served: a submission within seconds is a bot
    EMBED = 2  # the snippet for another site, stamped when printed: its age means nothing


@dataclass(frozen=True)
class Stamp:
    issued: dt.datetime
    kind: StampKind


def make_stamp(secret: bytes, now: dt.datetime, kind: StampKind = StampKind.FORM) -> str:
    millis = int(now.timestamp() * 1000)
    payload = millis.to_bytes(8, "big") + bytes([kind])
    return base64.urlsafe_b64encode(payload + _mac(secret, _FORM, payload, 15)).decode("ascii")


def read_stamp(secret: bytes, value: str) -> Stamp | None:
    """The stamp's time and kind, or None for anything forged, altered or truncated."""
    raw = _decode(value, 24)
    if raw is None:
        return None
    payload, mac = raw[:9], raw[9:]
    if not hmac.compare_digest(mac, _mac(secret, _FORM, payload, 15)):
        return None
    try:
        kind = StampKind(payload[8])
    except ValueError:
        return None
    issued = dt.datetime.fromtimestamp(int.from_bytes(payload[:8], "big") / 1000, dt.UTC)
    return Stamp(issued, kind)


# -- the keys of the limits -----------------------------------------------------------------


def limit_key(secret: bytes, what: str, value: str) -> str:
    """An opaque key for counting requests by IP address or by address: the same value
    gives the same key, and the table of limits keeps neither in clear."""
    return f"{what}:" + _mac(secret, _KEY, f"{what}:{value}".encode(), 16).hex()
