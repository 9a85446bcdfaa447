"""What the signup tests share: settings with a real SMTP server, the app under uvicorn, a
controlled clock, and reading the form and the confirmation e-mail as a person would."""

from __future__ import annotations

import datetime as dt
import html
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.client import HTTPConnection
from pathlib import Path
from urllib.parse import urlencode, urlsplit

from newsletter.config import Settings, load_settings
from newsletter.signup.stamps import make_stamp
from newsletter.subscribers import SqliteStore
from newsletter.tokens import resolve_secret

from ..smtp_server import Server as SmtpServer
from ..test_web import Reply

START = dt.datetime(2025, 3, 3, 9, 0, tzinfo=dt.UTC)  # a Monday morning
SECRET = "test-secret-with-enough-entropy-0123456789"


def signup_settings(tmp_path: Path, smtp_port: int | None, **extra: str) -> Settings:
    environ = {
        "NEWSLETTER_DB": str(tmp_path / "data" / "newsletter.db"),
        "NEWSLETTER_SECRET": SECRET,
        "NEWSLETTER_BASE_URL": "https://news.example.org",
        "NEWSLETTER_OUTBOX": str(tmp_path / "outbox"),
        **{f"NEWSLETTER_{k}": v for k, v in extra.items()},
    }
    if smtp_port is not None:
        environ |= {
            "NEWSLETTER_SMTP_HOST": "127.0.0.1",
            "NEWSLETTER_SMTP_PORT": str(smtp_port),
            "NEWSLETTER_SMTP_SECURITY": "none",
        }
    settings = load_settings(None, environ=environ)
    # serve never makes the database (a deployment has one from its first import or send)
    SqliteStore(settings.db_path).close()
    return settings


def wait_until(condition: Callable[[], bool], what: str, ceiling: float = 10) -> None:
    """Poll until `condition` holds; the ceiling only stops a hung test."""
    deadline = time.monotonic() + ceiling
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def field(page: str, name: str) -> str:
    match = re.search(rf'name="{name}" value="([^"]*)"', page)
    assert match, f"no {name} field"
    return html.unescape(match.group(1))


def http(
    url: str,
    method: str = "GET",
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> Reply:
    """One request, redirects not followed (a 303 is an answer worth checking)."""
    parts = urlsplit(url)
    conn = HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        conn.request(method, parts.path, body=body, headers=headers or {})
        resp = conn.getresponse()
        data = resp.read().decode("utf-8")
        return Reply(resp.status, {k.lower(): v for k, v in resp.getheaders()}, data)
    finally:
        conn.close()


def post_form(url: str, fields: dict[str, str], headers: dict[str, str] | None = None) -> Reply:
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    return http(url, "POST", urlencode(fields).encode("utf-8"), form | (headers or {}))


def stamp(settings: Settings, age_s: float = 5) -> str:
    """A genuine form stamp, as if the form had been served `age_s` seconds ago."""
    when = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=age_s)
    return make_stamp(resolve_secret(settings), when)


def fill(settings: Settings, email: str, **fields: str) -> dict[str, str]:
    """The fields a person sends: their address, a language, the box ticked."""
    return {"stamp": stamp(settings), "email": email, "language": "en", "consent": "yes"} | fields


@dataclass
class Mail:
    rcpt: str
    subject: str
    text: str
    html: str
    headers: dict[str, str]

    def link(self, kind: str) -> str:
        """The path of the confirm, cancel or preferences link in the text part."""
        match = re.search(rf"https://news\.example\.org(/{kind}/[A-Za-z0-9_=-]+)", self.text)
        assert match, f"no {kind} link in {self.text!r}"
        return match.group(1)


def mails(server: SmtpServer) -> list[Mail]:
    out = []
    with server.handler.lock:
        received = list(server.handler.received)
    for r in received:
        msg = r.message
        out.append(
            Mail(
                rcpt=r.rcpt,
                subject=str(msg["Subject"]),
                text=msg.get_body(("plain",)).get_content(),
                html=msg.get_body(("html",)).get_content(),
                headers={k: str(v) for k, v in msg.items()},
            )
        )
    return out


def wait_for_mails(server: SmtpServer, count: int) -> list[Mail]:
    wait_until(lambda: len(server.handler.received) >= count, f"{count} message(s)")
    return mails(server)
