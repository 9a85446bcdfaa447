"""Which database NEWSLETTER_DB names: a SQLite file (a path, the default) or a PostgreSQL
server (a postgresql:// URL). The URL is shown only with its password masked."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote, urlsplit

from ..errors import SettingsError

PG_SCHEMES = ("postgresql", "postgres")


class PgUrl(str):
    """A PostgreSQL connection URL. A str, so it travels where a database path does; never
    printed whole: `masked` hides the password (in the user part or in ?password=)."""

    # the settings file and line it was read from, if any: a server that cannot be reached
    # or refuses the login is reported there, as a setting refused at load is
    origin: tuple[Path | None, int | None] = (None, None)

    @property
    def masked(self) -> str:
        return mask(self)

    def __repr__(self) -> str:
        return f"PgUrl({self.masked!r})"


def mask(url: str) -> str:
    """The URL with its password hidden: the user part runs to the last @ (a password may
    hold / ? # @ unencoded, which end it for a URL parser), so this hides too much rather
    than too little; and ?password= in the query."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return "(not a URL)"
    user, at, after = rest.rpartition("@")
    if at and ":" in user:
        rest = f"{user.partition(':')[0]}:***@{after}"
    return scheme + "://" + _QUERY_PASSWORD.sub(r"\1***", rest)


_QUERY_PASSWORD = re.compile(r"([?&]password=)[^&#]*", re.IGNORECASE)


def without_password(text: str, url: str) -> str:
    """libpq's words about `url` without its password. A URL libpq cannot read comes back
    quoted in part, password and all (`invalid percent-encoded token: "ab%zz..."`, a space
    in it: `unexpected spaces found in "..."`): when the URL holds a password, whatever
    libpq quotes is hidden (first to last quote: a password may hold one), and so is the
    password itself, as written or decoded."""
    user, at, _ = url.partition("://")[2].rpartition("@")
    hidden = [user.partition(":")[2]] if at and ":" in user else []
    hidden += [m.group(0).partition("=")[2] for m in _QUERY_PASSWORD.finditer(url)]
    hidden = [h for h in hidden if h]
    if not hidden:
        return text
    for secret in sorted({*hidden, *map(unquote, hidden)}, key=len, reverse=True):
        if secret:
            text = text.replace(secret, "***")
    first, last = text.find('"'), text.rfind('"')
    return text[:first] + '"***"' + text[last + 1 :] if first < last else text


def looks_like_a_connection(value: str) -> bool:
    """A URL (even with one slash: postgresql:/...) or libpq's key=value form: never to be
    taken for a file name, nor echoed (it may hold a password)."""
    return bool(_SCHEME.match(value) or _KEYWORDS.search(value))


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
        if looks_like_a_connection(value):
            raise SettingsError(
                "NEWSLETTER_DB is neither a file path nor a URL this tool reads (libpq's "
                "key=value form, or a scheme without //); write postgresql://user@host/dbname "
                "(with ?host=/socket/folder for a unix socket)"
            )
        return _sqlite_path(value)
    if scheme.lower() not in PG_SCHEMES:
        raise SettingsError(
            f"NEWSLETTER_DB={mask(value)}: {scheme}:// is not a database this tool knows; give a "
            "file path (SQLite) or postgresql://user@host/dbname"
        )
    authority = re.split(r"[/?#]", rest, maxsplit=1)[0]
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises on a port that is not a number
        if "@" in rest and "@" not in authority:
            raise ValueError("an @ past the host")
    except ValueError:
        # the parser's words are not shown: they may quote part of a password
        raise SettingsError(
            f"NEWSLETTER_DB={mask(value)}: cannot read it as a URL; in the user name or the "
            "password, write / ? # @ : as %2F %3F %23 %40 %3A; e.g. "
            "postgresql://newsletter@db.example.org/newsletter"
        ) from None
    if not parts.path.strip("/"):
        raise SettingsError(
            f"NEWSLETTER_DB={mask(value)}: names no database; end it with /dbname, e.g. "
            "postgresql://newsletter@db.example.org/newsletter"
        )
    return PgUrl(f"{scheme.lower()}://{rest}")  # a scheme is read in any case (RFC 3986)


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_SCHEME = re.compile(r"[A-Za-z][\w+.-]+:/")  # two letters at least: not a drive letter
# libpq's "host=... dbname=..." form, anywhere in the value; any password= at all
_KEYWORDS = re.compile(
    r"(?:^|\s)(?:host|hostaddr|port|dbname|user|passfile|service|sslmode|options"
    r"|connect_timeout|application_name)\s*=|password\s*=",
    re.IGNORECASE,
)


def _sqlite_path(value: str) -> Path:
    if value.startswith("file:") or "?" in value:
        raise SettingsError(  # not echoed: a query may hold a password
            "NEWSLETTER_DB: give the SQLite file as a plain path (no file: and no ?options), "
            "e.g. newsletter.db"
        )
    return Path(value)


def shown(where: Path | str) -> str:
    """The database as a message names it."""
    return f"NEWSLETTER_DB={where.masked}" if isinstance(where, PgUrl) else str(where)
