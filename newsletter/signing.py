"""Optional DKIM signature (dkimpy), added to each message before it goes out."""

from __future__ import annotations

from pathlib import Path

import dkim

from .config import DkimSettings
from .errors import SettingsError

SIGNED_HEADERS = (
    b"from",
    b"to",
    b"subject",
    b"date",
    b"message-id",
    b"list-id",
    b"list-unsubscribe",
    b"list-unsubscribe-post",
    b"mime-version",
    b"content-type",
)


class Signer:
    def __init__(self, settings: DkimSettings):
        path = Path(settings.key_path)
        try:
            self.key = path.read_bytes()
        except OSError as exc:
            raise SettingsError(
                f"cannot read the DKIM key: {exc.strerror}; check NEWSLETTER_DKIM_KEY", path
            ) from None
        if b"PRIVATE KEY" not in self.key:
            raise SettingsError("not a PEM private key; check NEWSLETTER_DKIM_KEY", path)
        self.selector = settings.selector.encode("ascii")
        self.domain = settings.domain.encode("ascii")
        try:  # a key dkimpy cannot use should stop the send before it starts
            self.header(b"From: a@example.org\r\n\r\ncheck\r\n")
        except dkim.DKIMException as exc:
            raise SettingsError(
                f"unusable DKIM key: {exc}; check NEWSLETTER_DKIM_KEY", path
            ) from None

    def header(self, message: bytes) -> bytes:
        """The DKIM-Signature header line(s) for `message`, ending with CRLF."""
        # dkimpy parses the key on each call (~0.1 ms); the body hash differs per recipient
        # anyway, since each message carries its own unsubscribe link.
        signature = dkim.sign(
            message,
            self.selector,
            self.domain,
            self.key,
            include_headers=list(SIGNED_HEADERS),
            linesep=b"\r\n",
        )
        return signature


def signer_for(settings: DkimSettings) -> Signer | None:
    return Signer(settings) if settings.enabled else None
