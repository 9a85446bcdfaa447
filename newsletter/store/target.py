"""Which database NEWSLETTER_DB names: a SQLite file (a path, the default) or a PostgreSQL
server (a postgresql:// URL). The URL is shown only with its password masked."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

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
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def parse_db(value: str) -> Path | PgUrl:
    """NEWSLETTER_DB as given: a path, or a postgresql:// URL (checked for shape here; whether
    the server answers is for the first command that connects)."""
    scheme, sep, _ = value.partition("://")
    if not sep:
        return Path(value)
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
    return PgUrl(value)


def shown(where: Path | str) -> str:
    """The database as a message names it."""
    return f"NEWSLETTER_DB={where.masked}" if isinstance(where, PgUrl) else str(where)
