"""Settings: read once from the environment and `.env`, checked once, then frozen.

Every name is prefixed ``NEWSLETTER_``; the environment wins over `.env`. Defaults live
here and nowhere else, chosen so that the demo builds and sends (to a local outbox) with
no `.env` at all. `.env.example` lists and explains each name.
"""

from __future__ import annotations

import difflib
import ipaddress
import math
import os
import re
import zoneinfo
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

from dotenv import dotenv_values
from dotenv.parser import parse_stream

from .errors import SettingsError
from .store.target import PgUrl, parse_db

_HERE = Path(__file__).resolve().parent
# The templates that come with the tool: inside the package once installed from a wheel,
# at the top of the project in a checkout or an editable install.
SHIPPED_TEMPLATES = next(
    (d for d in (_HERE / "templates", _HERE.parent / "templates") if d.is_dir()),
    _HERE.parent / "templates",
)

PREFIX = "NEWSLETTER_"
# never printed, not even when wrong
SECRET_NAMES = frozenset({"SECRET", "SMTP_PASSWORD", "BOUNCE_PASSWORD"})
MAX_CONCURRENCY = 64
MIN_RATE = 0.001  # messages a second: about one every 17 minutes
MAX_SMTP_TIMEOUT = 3600  # seconds a reply may take; more is a typo (and overflows the clock)
LANGUAGES = ("en", "fr")
SUBSCRIBER_LANGUAGES = ("en", "fr", "both")
MAX_TEXT = 200  # characters of a sender name, title or organisation: one line of a page
# A DNS name in its ASCII form: what a DKIM selector and domain are (RFC 6376 3.1, 3.5).
DNS_NAME = re.compile(r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*"
                       r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")  # fmt: skip
# Control characters (C0 but tab, DEL, C1) and the line separators: in a header they would
# start a new line, in the templates MJML refuses them.
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029]")
_TRUE, _FALSE = ("true", "1", "yes"), ("false", "0", "no")

DEFAULTS: dict[str, str] = {
    "BASE_URL": "https://news.example.org",
    "TITLE_EN": "News",
    "TITLE_FR": "Brèves",
    "ORG_EN": "Committee for the Republic of Canada",
    "ORG_FR": "Comité pour la République du Canada",
    "FROM_NAME_EN": "Committee News",
    "FROM_NAME_FR": "Brèves du Comité",
    "FROM_EN": "news@example.org",
    "FROM_FR": "breves@example.org",
    "REPLY_TO": "",
    "POSTAL_ADDRESS": "PO Box 1234, Station B, Ottawa ON  K1P 0A1, Canada",
    "POSTAL_ADDRESS_FR": "",
    "CONTACT": "",
    "LIST_ID": "",
    "DB": "newsletter.db",
    "SECRET": "",
    "DEFAULT_LANGUAGE": "both",
    "OUTBOX": "outbox",
    "SMTP_HOST": "",
    "SMTP_PORT": "",
    "SMTP_SECURITY": "starttls",
    "SMTP_USER": "",
    "SMTP_PASSWORD": "",
    "SMTP_TIMEOUT": "30",
    "SMTP_VERIFY": "true",
    "SMTP_CA_FILE": "",
    "SMTP_ALLOW_CLEARTEXT_LOGIN": "false",
    "CONCURRENCY": "4",
    "RATE": "0",
    "HOURLY_CAP": "0",
    "RETRY_BACKOFF": "60s",
    "RETRY_FOR": "2d",
    "TIMEZONE": "America/Toronto",
    "DKIM_KEY": "",
    "DKIM_SELECTOR": "",
    "DKIM_DOMAIN": "",
    "TEMPLATES": "",
    "ARCHIVE_DIR": "site",
    "SIGNUP_GUARD": "300",
    "RECORD_CONSENT_IP": "false",
    "BOUNCE_DOMAIN": "",
    "BOUNCE_MAILBOX": "",
    "BOUNCE_PASSWORD": "",
    "BOUNCE_CA_FILE": "",
}


@dataclass(frozen=True)
class Identity:
    """Who the newsletter is from: what the templates and message headers show."""

    base_url: str
    title: Mapping[str, str]
    org: Mapping[str, str]
    from_name: Mapping[str, str]
    from_addr: Mapping[str, str]
    reply_to: str
    postal_address: str
    list_id: str
    # The sender's identification in each language (CASL): a mailing address, and a contact
    # (an e-mail address, a phone number or a web address).
    postal: Mapping[str, str]
    contact: Mapping[str, str]


@dataclass(frozen=True)
class SmtpSettings:
    host: str
    port: int
    security: str  # starttls | ssl | none
    user: str
    password: str = field(repr=False)
    timeout: float
    verify: bool
    ca_file: str
    allow_cleartext_login: bool = False

    @property
    def warnings(self) -> tuple[str, ...]:
        """What is weak in these settings, one line each, for `send` to say before it starts."""
        found = []
        if self.host and self.security != "none" and not self.verify:
            found.append(
                f"NEWSLETTER_SMTP_VERIFY=false: the certificate of {self.host} is not checked, "
                "so anyone on the way can pose as it and read the password and every message; "
                "use NEWSLETTER_SMTP_CA_FILE for a private certificate instead"
            )
        if self.host and self.user and self.security == "none" and not is_loopback(self.host):
            found.append(
                f"the password for {self.host} goes unencrypted "
                "(NEWSLETTER_SMTP_SECURITY=none, NEWSLETTER_SMTP_ALLOW_CLEARTEXT_LOGIN=true); "
                "use starttls or ssl"
            )
        return tuple(found)


@dataclass(frozen=True)
class DkimSettings:
    key_path: str
    selector: str
    domain: str

    @property
    def enabled(self) -> bool:
        return bool(self.key_path and self.selector and self.domain)


@dataclass(frozen=True)
class SignupSettings:
    guard_s: int  # after the confirmation mail, seconds during which only a click confirms
    record_ip: bool  # keep the IP address and user agent in the consent record


@dataclass(frozen=True)
class Mailbox:
    """Where bounces, complaints and mailto unsubscribes arrive (NEWSLETTER_BOUNCE_MAILBOX)."""

    scheme: str  # imap (STARTTLS) | imaps | pop3 (STLS) | pop3s
    host: str
    port: int
    user: str
    folder: str  # IMAP only; POP3 has just the one
    password: str = field(repr=False)
    ca_file: str = ""

    @property
    def imap(self) -> bool:
        return self.scheme.startswith("imap")

    def __str__(self) -> str:  # never the password
        folder = f"/{self.folder}" if self.imap else ""
        return f"{self.scheme}://{self.user}@{self.host}:{self.port}{folder}"


@dataclass(frozen=True)
class BounceSettings:
    domain: str  # the envelope sender's domain: bounces+TOKEN@domain, unsubscribe+TOKEN@domain
    mailbox: Mailbox | None


@dataclass(frozen=True)
class Settings:
    identity: Identity
    smtp: SmtpSettings
    dkim: DkimSettings
    db_path: Path | PgUrl  # a SQLite file, or a PostgreSQL URL (see store/target.py)
    secret: str = field(repr=False)
    default_language: str
    outbox: Path
    concurrency: int
    rate: float
    hourly_cap: int
    retry_backoff: float  # seconds before the first retry of a deferred message; doubles
    retry_for: float  # seconds after its first attempt that a deferred message expires
    timezone: str  # where `send --at` times are read; checked when a send is scheduled
    templates_dir: Path | None  # None: the templates/ folder shipped with the package
    archive_dir: Path  # the public archive's static site: written by `archive`, served by `serve`
    signup: SignupSettings
    bounces: BounceSettings = BounceSettings("", None)
    unknown: tuple[str, ...] = ()  # "where: NAME is not a setting...", for the CLI to warn

    @property
    def warnings(self) -> tuple[str, ...]:
        """What is weak in these settings for sending, one line each: said before a send."""
        return self.smtp.warnings + _unaligned(self.dkim, self.identity.from_addr)


def _unaligned(dkim: DkimSettings, from_addr: Mapping[str, str]) -> tuple[str, ...]:
    """A DKIM domain that DMARC will not take for the From addresses' (RFC 7489 3.1.1).

    Relaxed alignment wants both under the same registered domain, which only the Public
    Suffix List knows; two domains whose last two labels differ are under different ones
    whatever it says, so this never warns wrongly (it says nothing of a.co.uk and b.co.uk).
    The fix it names is the From addresses' own domain (their common part), never a
    shorter name that could be a public suffix (co.uk)."""
    signer = _last_two(dkim.domain) if dkim.enabled else None
    if signer is None:  # not signing
        return ()
    froms = {f"{PREFIX}FROM_{lang.upper()}": addr for lang, addr in from_addr.items()}
    domains = {name: _ascii_domain(addr.rpartition("@")[2]) for name, addr in froms.items()}
    off = [name for name, domain in domains.items() if _last_two(domain) not in (signer, None)]
    if not off:
        return ()
    harm = (
        "receivers that check DMARC do not count a signature of another domain, and may "
        "refuse these messages or file them as spam"
    )
    shown = " and ".join(f"{froms[name]} ({name})" for name in off)
    groups = {_last_two(domain) for domain in domains.values()} - {None}
    if len(groups) == 1:  # every From address under one domain: sign for it
        common = _common_suffix(domains.values())
        return (
            f"{PREFIX}DKIM_DOMAIN={dkim.domain} does not match the From address"
            f"{'es' if len(off) > 1 else ''} {shown}: {harm}; set {PREFIX}DKIM_DOMAIN={common} "
            f"(or a name under it, such as mail.{common}) and publish the key's DNS record there",
        )
    if len(off) < len(froms):  # the DKIM domain is the others' own: either may move
        kept = _common_suffix(d for name, d in domains.items() if name not in off)
        moved = _common_suffix(domains[name] for name in off)
        others = " and ".join(name for name in froms if name not in off)
        return (
            f"the From address {shown} is not under the domain messages are signed for "
            f"({PREFIX}DKIM_DOMAIN={dkim.domain}): {harm}; set {' and '.join(off)} to an "
            f"address under {kept}, or set {PREFIX}DKIM_DOMAIN={moved} (publishing the key's "
            f"DNS record there) and {others} to an address under it",
        )
    return (
        f"{PREFIX}DKIM_DOMAIN={dkim.domain} matches none of the From addresses {shown}, "
        f"which are under different domains: {harm}; put the From addresses under one "
        f"domain and set {PREFIX}DKIM_DOMAIN to it",
    )


def _last_two(domain: str) -> str | None:
    """The last two labels of a domain, lowercase ASCII; None for an IP address or a name
    that has no ASCII form."""
    ascii_domain = _ascii_domain(domain.strip("[]"))
    if not ascii_domain or ascii_domain.replace(".", "").isdigit() or ":" in ascii_domain:
        return None
    return ".".join(ascii_domain.split(".")[-2:])


def _common_suffix(domains: Iterable[str]) -> str:
    """The labels the domains end with in common: lists.example.org, example.org ->
    example.org."""
    labels = [domain.split(".")[::-1] for domain in domains]
    common = []
    for parts in zip(*labels, strict=False):
        if len(set(parts)) > 1:
            break
        common.append(parts[0])
    return ".".join(common[::-1])


def load_settings(
    env_file: Path | str | None = ".env",
    environ: Mapping[str, str] | None = None,
    required: bool = False,
) -> Settings:
    """Read settings from `env_file` and the environment, the environment winning.

    A missing `env_file` is fine (the defaults apply) unless `required`: a file the user
    named on the command line must exist."""
    environ = os.environ if environ is None else environ
    file_values: dict[str, str] = {}
    miscased: list[str] = []
    lines: dict[str, int] = {}
    env_path = Path(env_file) if env_file else None
    if required and env_path is not None and not env_path.is_file():
        raise SettingsError("no such settings file; check --env-file", env_path)
    if env_path is not None and env_path.is_file():
        try:
            lines = _env_lines(env_path)
            raw = dotenv_values(env_path, encoding="utf-8")
        except UnicodeDecodeError:
            raise SettingsError("not valid UTF-8; save it as UTF-8", env_path) from None
        file_values = {k: v or "" for k, v in raw.items() if k.startswith(PREFIX)}
        # newsletter_title_en=...: read as nothing (names are case-sensitive), so said.
        miscased = [k for k in raw if not k.startswith(PREFIX) and k.upper().startswith(PREFIX)]

    def get(name: str) -> str:
        key = PREFIX + name
        if key in environ:
            return environ[key].strip()
        if key in file_values:
            return file_values[key].strip()
        return DEFAULTS[name]

    def where(name: str) -> tuple[Path | None, int | None]:
        key = PREFIX + name
        if key in environ or env_path is None or key not in file_values:
            return None, None
        return env_path, lines.get(key)

    def fail(name: str, problem: str) -> SettingsError:
        path, line = where(name)
        shown = "(value hidden)" if name in SECRET_NAMES else repr(get(name))
        if name == "BOUNCE_MAILBOX":  # a password typed into the URL is not shown either
            shown = repr(_hide_password(get(name)))
        return SettingsError(f"{PREFIX}{name}={shown}: {problem}", path, line)

    def integer(name: str, low: int = 0) -> int:
        if not re.fullmatch(r"[+-]?[0-9]+", get(name)):  # int() would take 8_025, or ٨٠
            raise fail(name, "must be a whole number")
        value = int(get(name))
        if value < low:
            raise fail(name, f"must be at least {low}")
        return value

    def boolean(name: str) -> bool:
        value = get(name).lower()
        if value not in _TRUE + _FALSE:
            raise fail(name, "must be true or false")
        return value in _TRUE

    def text(name: str, limit: int = MAX_TEXT) -> None:
        value = get(name)
        if _CONTROL.search(value):
            raise fail(name, "must be one line of text, with no control characters")
        if len(value) > limit:
            raise fail(name, f"is {len(value)} characters long; keep it to {limit}")

    def number(name: str) -> float:
        try:
            value = float(get(name))
        except ValueError:
            raise fail(name, "must be a number, e.g. 10 or 0.5") from None
        if not math.isfinite(value) or value < 0:
            raise fail(name, "must be a positive number, e.g. 10 or 0.5")
        return value

    base_url = get("BASE_URL").rstrip("/")
    if not _plain_base_url(base_url):
        raise fail(
            "BASE_URL",
            "must be an absolute http(s) URL with no query, spaces or user, e.g. "
            "https://news.example.org (a non-ASCII domain in its xn-- form)",
        )
    parts = urlsplit(base_url)

    default_language = get("DEFAULT_LANGUAGE").lower()
    if default_language not in SUBSCRIBER_LANGUAGES:
        raise fail("DEFAULT_LANGUAGE", "must be en, fr or both")

    security = get("SMTP_SECURITY").lower()
    if security not in ("starttls", "ssl", "none"):
        raise fail("SMTP_SECURITY", "must be starttls, ssl or none")
    if get("SMTP_PORT"):
        port = integer("SMTP_PORT", 1)
        if port > 65535:
            raise fail("SMTP_PORT", "must be a port number, 1 to 65535")
    else:
        port = {"starttls": 587, "ssl": 465, "none": 25}[security]
    verify = boolean("SMTP_VERIFY")
    allow_cleartext_login = boolean("SMTP_ALLOW_CLEARTEXT_LOGIN")
    smtp_host, smtp_user = get("SMTP_HOST"), get("SMTP_USER")
    if smtp_host.count(":") == 1:
        raise fail(
            "SMTP_HOST",
            "is a host and a port; put the host alone here (e.g. smtp.example.org) and the "
            "port in NEWSLETTER_SMTP_PORT",
        )
    if re.search(r"[\s/@\\]", smtp_host):
        raise fail("SMTP_HOST", "must be a host name or an IP address, e.g. smtp.example.org")
    if get("SMTP_PASSWORD") and not smtp_user:  # else it would go unused, without a word
        raise fail(
            "SMTP_PASSWORD",
            "is set but NEWSLETTER_SMTP_USER is not; set the user to log in, or empty both",
        )
    if (
        smtp_host
        and smtp_user
        and security == "none"
        and not is_loopback(smtp_host)
        and not allow_cleartext_login
    ):
        raise fail(
            "SMTP_SECURITY",
            f"would send the password of NEWSLETTER_SMTP_USER to {smtp_host} unencrypted; "
            "use starttls or ssl (or, on a network you trust, set "
            "NEWSLETTER_SMTP_ALLOW_CLEARTEXT_LOGIN=true)",
        )

    # Headers and SMTP take ASCII: a non-ASCII domain is written in its IDNA form, as a
    # reader's is; a non-ASCII local part would need SMTPUTF8, which this newsletter lacks
    address: dict[str, str] = {}
    for name, example in (("FROM_EN", "news"), ("FROM_FR", "breves"), ("REPLY_TO", "editors")):
        if name == "REPLY_TO" and not get(name):
            continue
        local, _, domain = get(name).rpartition("@")
        if not _plain_address(get(name)) or not local or not domain.strip("."):
            raise fail(name, f"must be a plain address, e.g. {example}@example.org")
        try:
            address[name] = _ascii_address(get(name))
        except ValueError as exc:
            raise fail(name, str(exc)) from None
    # Shown in headers (From, List-Id) or in every page of the message: one line of text.
    for name in ("FROM_NAME", "TITLE", "ORG"):
        for lang in LANGUAGES:
            text(f"{name}_{lang.upper()}")
    text("POSTAL_ADDRESS", 400)

    if get("LIST_ID") and not DNS_NAME.fullmatch(get("LIST_ID")):
        raise fail("LIST_ID", "must look like a domain name, e.g. news.example.org")
    dkim = {name: get(f"DKIM_{name}") for name in ("KEY", "SELECTOR", "DOMAIN")}
    dkim["DOMAIN"] = dkim["DOMAIN"].rstrip(".")  # (the same name: d= takes it without)
    if any(dkim.values()):
        missing = [name for name, value in dkim.items() if not value]
        if missing:  # else messages would go unsigned without a word
            given = next(name for name, value in dkim.items() if value)
            raise SettingsError(  # where the one set is: that is where the fix goes
                f"{PREFIX}DKIM_{given} is set but {PREFIX}DKIM_{missing[0]} is empty: DKIM "
                "signing needs NEWSLETTER_DKIM_KEY, NEWSLETTER_DKIM_SELECTOR and "
                "NEWSLETTER_DKIM_DOMAIN together (else messages go unsigned); set the missing "
                "one too, or empty all three",
                *where(f"DKIM_{given}"),
            )
        for name, example in (("SELECTOR", "news2017"), ("DOMAIN", "example.org")):
            if not DNS_NAME.fullmatch(dkim[name]) or len(dkim[name]) > 253:
                raise fail(f"DKIM_{name}", _dns_name_problem(dkim[name], example))
    if get("SECRET") and len(get("SECRET")) < 16:
        raise fail("SECRET", "is too short to sign links safely; use 32 random characters")

    concurrency = integer("CONCURRENCY", 1)
    if concurrency > MAX_CONCURRENCY:
        raise fail("CONCURRENCY", f"must be at most {MAX_CONCURRENCY} connections")
    rate = number("RATE")
    if rate_problem(rate):
        raise fail("RATE", f"must be {rate_problem(rate)}")

    def duration(name: str) -> float:
        try:
            return parse_duration(get(name))
        except ValueError as exc:
            raise fail(name, str(exc)) from None

    try:  # checked here, not when the first send is scheduled
        zoneinfo.ZoneInfo(get("TIMEZONE"))
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise fail(
            "TIMEZONE", "is not a time zone; write one such as America/Toronto or America/Vancouver"
        ) from None
    retry_backoff = duration("RETRY_BACKOFF")
    retry_for = duration("RETRY_FOR")
    timeout = number("SMTP_TIMEOUT")
    record_ip = get("RECORD_CONSENT_IP").lower()
    if record_ip not in ("true", "false", "1", "0", "yes", "no"):
        raise fail("RECORD_CONSENT_IP", "must be true or false")
    contact = get("CONTACT") or get("REPLY_TO")
    if any(c in contact for c in "\r\n<>"):
        raise fail("CONTACT", "must be one line: an e-mail address, a phone number or a URL")
    if timeout == 0:
        raise fail("SMTP_TIMEOUT", "must be more than 0 seconds, e.g. 30")
    if timeout > MAX_SMTP_TIMEOUT:
        raise fail("SMTP_TIMEOUT", f"must be at most {MAX_SMTP_TIMEOUT} seconds (an hour), e.g. 30")

    templates = get("TEMPLATES")
    if templates and not Path(templates).is_dir():
        raise fail("TEMPLATES", "no such templates folder; give one, or empty it (the shipped)")
    try:
        db_path = parse_db(get("DB"))
    except SettingsError as exc:  # said with the line of .env it came from
        raise SettingsError(exc.message, *where("DB")) from None
    if isinstance(db_path, PgUrl):  # and so is a server that cannot be reached, later
        db_path.origin = where("DB")

    bounce_domain = get("BOUNCE_DOMAIN").lower().rstrip(".")
    if bounce_domain and not re.fullmatch(
        r"(?=.{1,200}$)([a-z0-9]([a-z0-9-]*[a-z0-9])?\.)+[a-z0-9-]{2,}", bounce_domain
    ):
        raise fail("BOUNCE_DOMAIN", _dns_name_problem(bounce_domain, "bounces.example.org"))
    mailbox = None
    if get("BOUNCE_MAILBOX"):
        try:
            mailbox = parse_mailbox(
                get("BOUNCE_MAILBOX"), get("BOUNCE_PASSWORD"), get("BOUNCE_CA_FILE")
            )
        except ValueError as exc:
            raise fail("BOUNCE_MAILBOX", str(exc)) from None

    identity = Identity(
        base_url=base_url,
        title={lang: get(f"TITLE_{lang.upper()}") for lang in LANGUAGES},
        org={lang: get(f"ORG_{lang.upper()}") for lang in LANGUAGES},
        from_name={lang: get(f"FROM_NAME_{lang.upper()}") for lang in LANGUAGES},
        from_addr={lang: address[f"FROM_{lang.upper()}"] for lang in LANGUAGES},
        reply_to=address.get("REPLY_TO", ""),
        postal_address=get("POSTAL_ADDRESS"),
        list_id=get("LIST_ID") or _default_list_id(parts.hostname or "", address["FROM_EN"]),
        postal={
            "en": get("POSTAL_ADDRESS"),
            "fr": get("POSTAL_ADDRESS_FR") or get("POSTAL_ADDRESS"),
        },
        # (shown to readers: as typed, not in its IDNA form)
        contact={lang: contact or get(f"FROM_{lang.upper()}") for lang in LANGUAGES},
    )
    return Settings(
        identity=identity,
        smtp=SmtpSettings(
            host=get("SMTP_HOST"),
            port=port,
            security=security,
            user=get("SMTP_USER"),
            password=get("SMTP_PASSWORD"),
            timeout=timeout,
            verify=verify,
            ca_file=get("SMTP_CA_FILE"),
            allow_cleartext_login=allow_cleartext_login,
        ),
        dkim=DkimSettings(key_path=dkim["KEY"], selector=dkim["SELECTOR"], domain=dkim["DOMAIN"]),
        db_path=db_path,
        secret=get("SECRET"),
        default_language=default_language,
        outbox=Path(get("OUTBOX") or DEFAULTS["OUTBOX"]),  # empty: not the current folder
        concurrency=concurrency,
        rate=rate,
        hourly_cap=integer("HOURLY_CAP"),
        retry_backoff=retry_backoff,
        retry_for=retry_for,
        timezone=get("TIMEZONE"),
        templates_dir=Path(templates) if templates else None,
        archive_dir=Path(get("ARCHIVE_DIR") or DEFAULTS["ARCHIVE_DIR"]),
        signup=SignupSettings(
            guard_s=integer("SIGNUP_GUARD"), record_ip=record_ip in ("true", "1", "yes")
        ),
        bounces=BounceSettings(bounce_domain, mailbox),
        unknown=tuple(
            _unknown(name, env_path if name in lines and name not in environ else None, lines)
            for name in dict.fromkeys([*environ, *file_values])
            if name.startswith(PREFIX) and name.removeprefix(PREFIX) not in DEFAULTS
        )
        + tuple(_unknown(name, env_path, lines) for name in miscased),
    )


_MAILBOX_PORTS = {"imap": 143, "imaps": 993, "pop3": 110, "pop3s": 995}


def parse_mailbox(url: str, password: str, ca_file: str = "") -> Mailbox:
    """imaps://user@host:993/INBOX, imap://... (STARTTLS), pop3s://..., pop3://... (STLS).

    The password comes apart (NEWSLETTER_BOUNCE_PASSWORD), never in the URL, which is shown."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise ValueError(
            "cannot read it; write e.g. imaps://bounces@mail.example.org/INBOX"
        ) from None
    scheme = parts.scheme.lower()
    if scheme not in _MAILBOX_PORTS:
        raise ValueError("must start with imaps://, imap:// (STARTTLS), pop3s:// or pop3:// (STLS)")
    if parts.password is not None:
        raise ValueError("put the password in NEWSLETTER_BOUNCE_PASSWORD, not in the URL")
    if not parts.username or not parts.hostname:
        raise ValueError("needs a user and a host, e.g. imaps://bounces@mail.example.org/INBOX")
    folder = unquote(parts.path.lstrip("/")) or "INBOX"
    if scheme.startswith("pop3") and parts.path.strip("/"):
        raise ValueError("a POP3 mailbox has no folders; leave the path out")
    return Mailbox(
        scheme=scheme,
        host=parts.hostname,
        port=port or _MAILBOX_PORTS[scheme],
        user=unquote(parts.username),
        folder=folder,
        password=password,
        ca_file=ca_file,
    )


_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([smhd]?)", re.IGNORECASE)
_UNIT = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def rate_problem(rate: float) -> str:
    """What is wrong with a rate (messages a second), for NEWSLETTER_RATE and --rate; ''
    when nothing is: one that would take years to send a list is a typo."""
    if 0 < rate < MIN_RATE:
        return f"0 (no limit) or at least {MIN_RATE} messages a second"
    return ""


def parse_duration(text: str) -> float:
    """Seconds in `90`, `90s`, `5m`, `2h`, `2d` (or `0.5s`); ValueError saying how to write it."""
    match = _DURATION.fullmatch(text.strip())
    seconds = float(match.group(1)) * _UNIT[match.group(2).lower()] if match else 0.0
    if not match or not math.isfinite(seconds) or seconds <= 0:
        raise ValueError("must be a duration above 0: seconds, or with a unit: 90s, 5m, 2h, 2d")
    return seconds


def format_duration(seconds: float) -> str:
    """2 d 3 h, 5 h 20 min, 12 min, 40 s: how long, for a person."""
    seconds = int(seconds)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h" if hours else f"{days} d"
    if hours:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    return f"{minutes} min" if minutes else f"{secs} s"


def _hide_password(url: str) -> str:
    """A mailbox URL as it may be shown: anything between the user's colon and the last @
    hidden. A password may hold @, / or ?, which end the userinfo for a URL parser, so this
    goes by the last @ and hides too much rather than too little."""
    start, at = url.find("//"), url.rfind("@")
    if start < 0 or at < start:
        return url
    user, colon, _ = url[start + 2 : at].partition(":")
    return f"{url[: start + 2]}{user}:***{url[at:]}" if colon else url


def _default_list_id(host: str, sender: str) -> str:
    """The base URL's host, when it can be one (a domain name: not an IP address, nor a
    bare `localhost`); else a name under the sender's domain, as news@example.org gives
    news.example.org (RFC 2919: a name in a domain the list's owner holds)."""
    if "." in host and DNS_NAME.fullmatch(host) and not host.replace(".", "").isdigit():
        return host.lower()
    local, _, domain = sender.rpartition("@")
    label = re.sub(r"[^a-z0-9]+", "-", local.lower()).strip("-")[:63]
    named = f"{label}.{domain.lower()}" if label else domain.lower()
    return named if "." in named and DNS_NAME.fullmatch(named) else "newsletter.example.org"


def is_loopback(host: str) -> bool:
    """A name for this machine, where a connection crosses no network. Only what cannot be
    pointed elsewhere: a loopback address written out, or `localhost`."""
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return host.lower().rstrip(".") == "localhost"


def _env_lines(path: Path) -> dict[str, int]:
    """The line each name is set on in a .env file (the last one wins, as in dotenv), or a
    SettingsError for a line dotenv cannot read (it would only log it and go on)."""
    found: dict[str, int] = {}
    with path.open(encoding="utf-8") as stream:
        for binding in parse_stream(stream):
            if binding.error:
                raise SettingsError(
                    "cannot read this line; write NEWSLETTER_NAME=value, with quotes around "
                    "a value holding spaces, # or quotes (and both quotes closed)",
                    path,
                    binding.original.line,
                )
            if binding.key:
                found[binding.key] = binding.original.line
    return found


def _plain_address(address: str) -> bool:
    """An address with nothing a header could take for the end of a line or of an address."""
    return "@" in address and not (_CONTROL.search(address) or any(c in address for c in "<> \t,"))


def _ascii_address(address: str) -> str:
    """The address with its domain in ASCII (IDNA 2008, UTS 46, as a reader's gets), as
    headers and SMTP want it; ValueError saying why when it cannot be."""
    local, _, domain = address.rpartition("@")
    if not local.isascii():
        raise ValueError(
            "the part before the @ must be ASCII (anything else needs SMTPUTF8, which this "
            "newsletter does not use); use another address"
        )
    ascii_domain = _ascii_domain(domain)
    if not ascii_domain:
        raise ValueError(
            f"{domain} is not a domain name that can be written in ASCII (IDNA); check its "
            "spelling, or write its xn-- form"
        )
    return f"{local}@{ascii_domain}"


def _dns_name_problem(value: str, example: str) -> str:
    """Why a name is not a DNS name in ASCII, with the fix: its IDNA form, when it has one."""
    if not value.isascii() and _ascii_domain(value):
        return f"must be written in ASCII, as DNS has it: {_ascii_domain(value)}"
    return (
        "must be a DNS name in ASCII: labels of letters, digits and hyphens between dots, "
        f"e.g. {example}"
    )


def _ascii_domain(domain: str) -> str:
    """A domain name as DNS has it: lowercase ASCII, a non-ASCII one in its IDNA form; ""
    when it has none. ASCII names are kept as given (some that DNS takes, `my--shop.com`,
    IDNA 2008 would refuse)."""
    domain = domain.strip().rstrip(".")
    if domain.isascii():
        return domain.lower()
    import idna  # (email_validator's own; only for a name that needs it)

    try:
        return idna.encode(domain, uts46=True).decode("ascii")
    except (idna.IDNAError, UnicodeError):
        return ""


def _plain_base_url(url: str) -> bool:
    """An http(s) URL that links can be appended to: ASCII, host, no query or fragment."""
    if not url.isascii() or any(c.isspace() or c in '"<>,\\' for c in url):
        return False  # these would break the List-Unsubscribe header, <url>, <url>
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 -- raises ValueError for a port that is not a number
    except ValueError:  # also "Invalid IPv6 URL"
        return False
    return (
        parts.scheme in ("http", "https")
        and bool(parts.hostname)
        and not (parts.query or parts.fragment or parts.username or "?" in url or "#" in url)
    )


def _unknown(name: str, path: Path | None, lines: Mapping[str, int]) -> str:
    """A warning for a NEWSLETTER_ name that no setting has: most often a typo."""
    where = f"{path}:{lines[name]}: " if path else ""
    known = [PREFIX + key for key in DEFAULTS]
    if name.upper() in known:  # only the case is wrong
        return f"{where}{name} is not a setting, ignored: names are upper case, {name.upper()}"
    close = difflib.get_close_matches(name.upper(), known, n=1)
    hint = f"; did you mean {close[0]}?" if close else "; see .env.example for the names"
    return f"{where}{name} is not a setting, ignored{hint}"
