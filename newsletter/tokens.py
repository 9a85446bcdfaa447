"""Signed links for unsubscribing and preferences: the token is the credential, so no login.

A token is base64url(id as 8 bytes + first 16 bytes of HMAC-SHA256(secret, label + id)):
32 characters, no padding. 128 bits of MAC cannot be guessed; the id lets us find the row.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import secrets
import sys
from pathlib import Path

from .config import Settings
from .errors import StoreError

_LABEL = b"newsletter/subscriber/v1:"  # so a MAC made for another purpose never matches
_ID_BYTES = 8
_MAC_BYTES = 16
TOKEN_LENGTH = 4 * (_ID_BYTES + _MAC_BYTES) // 3  # 32; (8 + 16) % 3 == 0, so no padding


def _mac(secret: bytes, id_bytes: bytes) -> bytes:
    return hmac.new(secret, _LABEL + id_bytes, hashlib.sha256).digest()[:_MAC_BYTES]


def make_token(secret: bytes, subscriber_id: int) -> str:
    """The token for one subscriber; the same every time for the same secret and id."""
    if not 0 < subscriber_id < 2 ** (8 * _ID_BYTES - 1):
        raise ValueError(f"subscriber id out of range: {subscriber_id}")
    id_bytes = subscriber_id.to_bytes(_ID_BYTES, "big")
    return base64.urlsafe_b64encode(id_bytes + _mac(secret, id_bytes)).decode("ascii")


def read_token(secret: bytes, token: str) -> int | None:
    """The subscriber id in a genuine token; None for anything forged, truncated or altered."""
    if len(token) != TOKEN_LENGTH or not token.isascii():
        return None
    try:
        raw = base64.urlsafe_b64decode(token.encode("ascii"))
    except (binascii.Error, ValueError):
        return None
    # b64decode ignores stray characters and several strings decode alike: insist on the
    # canonical form so that exactly one spelling of each token works.
    if base64.urlsafe_b64encode(raw).decode("ascii") != token:
        return None
    id_bytes, mac = raw[:_ID_BYTES], raw[_ID_BYTES:]
    if not hmac.compare_digest(mac, _mac(secret, id_bytes)):
        return None
    subscriber_id = int.from_bytes(id_bytes, "big")
    return subscriber_id if subscriber_id > 0 else None


def secret_path(settings: Settings) -> Path:
    return settings.db_path.with_name(settings.db_path.name + ".secret")


def resolve_secret(settings: Settings) -> bytes:
    """NEWSLETTER_SECRET, or else a random secret kept beside the database (made on first use),
    so that links already mailed keep working across restarts."""
    if settings.secret:
        return settings.secret.encode("utf-8")
    path = secret_path(settings)
    if path.exists():
        return _read_secret(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Written whole to a private temporary file, then linked into place: link() fails if
        # the name exists, so when two processes start at once both end up with one secret,
        # and no one ever reads a half-written file.
        temporary = path.with_name(f"{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as file:
            file.write(secrets.token_hex(32) + "\n")
        try:
            os.link(temporary, path)
        except FileExistsError:
            return _read_secret(path)
        finally:
            temporary.unlink()
    except OSError as exc:
        raise StoreError(f"cannot create the signing secret: {exc.strerror}", path) from None
    print(
        f"generated a signing secret in {path}; keep it with the database "
        "(or set NEWSLETTER_SECRET)",
        file=sys.stderr,
    )
    return _read_secret(path)


def _read_secret(path: Path) -> bytes:
    try:
        value = path.read_text("ascii").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise StoreError(f"cannot read the signing secret: {exc}", path) from None
    if len(value) < 32:  # damage, or a hand-made weak key: never use it silently
        raise StoreError(
            "signing secret is empty or too short; restore it from a backup "
            "(links already sent depend on it) or set NEWSLETTER_SECRET",
            path,
        )
    return value.encode("ascii")


def unsubscribe_url(base_url: str, token: str) -> str:
    return f"{base_url.rstrip('/')}/unsubscribe/{token}"


def preferences_url(base_url: str, token: str) -> str:
    return f"{base_url.rstrip('/')}/preferences/{token}"
