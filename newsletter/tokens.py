"""Signed links for unsubscribing and preferences: the token is the credential, so no login.

A token is base64url(id as 8 bytes + first 16 bytes of HMAC-SHA256(key, label + id)):
32 characters, no padding. 128 bits of MAC cannot be guessed; the id lets us find the row.

The key is the secret bound to the list: HMAC-SHA256(secret, "newsletter/list/v2:" + the
random id the database was given, see schema.py). Two lists sharing NEWSLETTER_SECRET thus
never accept each other's links, although their subscriber ids overlap. Links mailed before
lists had an id were signed with the bare secret; those stay valid for a while after the
upgrade (ListIdentity.legacy_until), for the subscribers who existed then.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import os
import secrets
import sys
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from .config import Settings
from .errors import SettingsError, StoreError
from .subscribers import ListIdentity, open_store

_LABEL = b"newsletter/subscriber/v1:"  # so a MAC made for another purpose never matches
_LIST_LABEL = b"newsletter/list/v2:"
_ID_BYTES = 8
_MAC_BYTES = 16
TOKEN_LENGTH = 4 * (_ID_BYTES + _MAC_BYTES) // 3  # 32; (8 + 16) % 3 == 0, so no padding


def _mac(secret: bytes, id_bytes: bytes) -> bytes:
    # a copy of the keyed state: half the time of hmac.digest(), which sets up the key
    # (and, with OpenSSL 3, looks up the algorithm) for every reader
    mac = _keyed(secret).copy()
    mac.update(id_bytes)
    return mac.digest()[:_MAC_BYTES]


@functools.lru_cache(maxsize=16)
def _keyed(secret: bytes) -> hmac.HMAC:
    return hmac.new(secret, _LABEL, "sha256")


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


def list_key(secret: bytes, list_uid: str) -> bytes:
    """The key that signs one list's links: the secret, bound to the list's own id."""
    return hmac.new(secret, _LIST_LABEL + list_uid.encode("ascii"), hashlib.sha256).digest()


def key_check(key: bytes) -> str:
    """Which key signs a send's links, as a send records it (a fingerprint, not the key)."""
    return hmac.new(key, b"newsletter/key-check", hashlib.sha256).hexdigest()[:16]


@dataclass(frozen=True)
class LinkKeys:
    """What signs a list's links now, and what signed them before lists had an id."""

    key: bytes = field(repr=False)
    legacy_key: bytes = field(repr=False)  # the bare secret
    legacy_until: datetime
    legacy_max_id: int

    def make(self, subscriber_id: int) -> str:
        return make_token(self.key, subscriber_id)

    def read(self, token: str, now: datetime) -> int | None:
        """The subscriber id in a token of this list; None for anything else. A token from
        before list ids counts until `legacy_until`, for an id that existed then."""
        subscriber_id = read_token(self.key, token)
        if subscriber_id is None and now < self.legacy_until:
            subscriber_id = read_token(self.legacy_key, token)
            if subscriber_id is not None and subscriber_id > self.legacy_max_id:
                return None
        return subscriber_id


def link_keys(secret: bytes, identity: ListIdentity) -> LinkKeys:
    return LinkKeys(
        list_key(secret, identity.uid), secret, identity.legacy_until, identity.legacy_max_id
    )


def signing_key(settings: Settings, create: bool = True) -> bytes:
    """The key that signs the links `send` puts in messages: the secret bound to the list in
    NEWSLETTER_DB (creating both, as a first send does, unless not `create`: reading what
    came back about a send needs that send's own database and secret)."""
    with open_store(settings, create=create) as store:
        uid = store.list_identity().uid
    return list_key(resolve_secret(settings, create), uid)


def secret_path(settings: Settings) -> Path:
    return settings.db_path.with_name(settings.db_path.name + ".secret")


def resolve_secret(settings: Settings, create: bool = True) -> bytes:
    """NEWSLETTER_SECRET, or else a random secret kept beside the database (made on first use
    unless not `create`), so that links already mailed keep working across restarts."""
    if settings.secret:
        return settings.secret.encode("utf-8")
    if not isinstance(settings.db_path, Path):
        # no file beside a server, and every sending host and web app must sign alike
        raise SettingsError(
            "NEWSLETTER_SECRET is needed with a PostgreSQL NEWSLETTER_DB: set the same value on "
            "every host (after 'newsletter db copy', the contents of the old NAME.db.secret "
            "file, so that links already mailed keep working)"
        )
    path = secret_path(settings)
    if path.exists():
        return _read_secret(path)
    if not create:
        raise StoreError(
            "no signing secret here: the first send makes it beside the database; links "
            "already mailed need this very file back, or NEWSLETTER_SECRET set as for send",
            path,
        )
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
