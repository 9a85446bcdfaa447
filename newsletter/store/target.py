"""Which database NEWSLETTER_DB names: a SQLite file (a path, the default) or a PostgreSQL
server (a postgresql:// URL). The URL is shown only with its password masked."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit

from ..errors import SettingsError

PG_SCHEMES = ("postgresql", "postgres")


class PgUrl(str):
    """A PostgreSQL connection URL. A str, so it travels where a database path does; never
    printed whole: `masked` hides the password (in the user part or in ?password=)."""

    @property
    def masked(self) -> str:
        return mask(self)

    def __repr__(self) -> str:
        return f"PgUrl({self.masked!r})"


def mask(url: str) -> str:
    try:
        parts = urlsplit(url)
    except ValueError:
        return "(an unreadable URL)"
    if not url.partition("://")[1]:
        return "(not a URL)"
    netloc = parts.netloc
    if parts.password is not None:
        user, _, host = netloc.rpartition("@")
        netloc = f"{user.partition(':')[0]}:***@{host}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(k.lower() == "password" for k, _ in pairs):
            query = urlencode([(k, "***" if k.lower() == "password" else v) for k, v in pairs],
                              safe="/*")  # fmt: skip
    # written out, not urlunsplit: that drops the // of a URL with no host (a unix socket)
    shown = f"{parts.scheme}://{netloc}{parts.path}"
    return shown + (f"?{query}" if query else "") + (f"#{parts.fragment}" if parts.fragment else "")


def parse_db(value: str) -> Path | PgUrl:
    """NEWSLETTER_DB as given: a path, or a postgresql:// URL (checked for shape here; whether
    the server answers is for the first command that connects)."""
    if not value.strip():
        raise SettingsError(
            "NEWSLETTER_DB is empty: give the database file (e.g. newsletter.db) or "
            "postgresql://user@host/dbname, or remove the line for newsletter.db"
        )
    if _CONTROL.search(value):
        raise SettingsError(
            "NEWSLETTER_DB holds a line break or another control character; write it on one line"
        )
    scheme, sep, rest = value.partition("://")
    if not sep:
        return _sqlite_path(value)
    if scheme.lower() not in PG_SCHEMES:
        raise SettingsError(
            f"NEWSLETTER_DB={mask(value)}: {scheme}:// is not a database this tool knows; give a "
            "file path (SQLite) or postgresql://user@host/dbname"
        )
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError as exc:
        raise SettingsError(
            f"NEWSLETTER_DB={mask(value)}: cannot read it ({exc}); write e.g. "
            "postgresql://newsletter@db.example.org/newsletter"
        ) from None
    if not parts.path.strip("/"):
        raise SettingsError(
            f"NEWSLETTER_DB={mask(value)}: names no database; end it with /dbname, e.g. "
            "postgresql://newsletter@db.example.org/newsletter"
        )
    return PgUrl(f"{scheme.lower()}://{rest}")  # a scheme is read in any case (RFC 3986)


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# libpq's "host=... dbname=..." form
_KEYWORDS = re.compile(
    r"\s*(?:host|hostaddr|port|dbname|user|password|passfile|service|sslmode|options)\s*="
)


def _sqlite_path(value: str) -> Path:
    if _KEYWORDS.match(value):
        # not echoed: it may hold a password=
        raise SettingsError(
            "NEWSLETTER_DB looks like libpq's key=value form; write it as a URL, "
            "postgresql://user@host/dbname (with ?host=/socket/folder for a unix socket)"
        )
    if value.startswith("file:") or "?" in value:
        raise SettingsError(
            f"NEWSLETTER_DB={value}: give the SQLite file as a plain path (no file: or "
            "?options), e.g. newsletter.db"
        )
    return Path(value)


def shown(where: Path | str) -> str:
    """The database as a message names it."""
    return f"NEWSLETTER_DB={where.masked}" if isinstance(where, PgUrl) else str(where)
