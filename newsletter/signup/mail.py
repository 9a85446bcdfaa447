"""The confirmation e-mail (and the note to an address already subscribed): built with the
stdlib `email` package, sent through the same transport as the issues (SMTP, or the outbox).

Nothing the visitor typed goes into either message, not even their name: a signup form that
mails what it is given is a way to send spam to anyone.
"""

from __future__ import annotations

import datetime as dt
import secrets
from dataclasses import dataclass
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from functools import lru_cache

from jinja2 import BaseLoader, Environment, StrictUndefined

from ..config import Settings
from ..fastmime import dot_stuff
from ..signing import signer_for
from ..transport import Outgoing, transport_for
from ..typography import HTML_LANG, colon
from ..views import contact_href

SUBJECTS = {
    "confirm": {
        "en": "Confirm your subscription to “{title}”",
        "fr": "Confirmez votre abonnement à «\u202f{title}\u202f»",
    },
    "already": {
        "en": "You are already subscribed to “{title}”",
        "fr": "Vous êtes déjà abonné à «\u202f{title}\u202f»",
    },
    "welcome": {
        "en": "Welcome to “{title}”",
        "fr": "Bienvenue à «\u202f{title}\u202f»",
    },
}
CONTACT_LABELS = {"en": "Contact", "fr": "Pour nous joindre"}


@dataclass(frozen=True)
class Links:
    confirm_url: str = ""
    cancel_url: str = ""
    preferences_url: str = ""
    unsubscribe_url: str = ""


def _langs(language: str) -> list[str]:
    return ["en", "fr"] if language == "both" else [language]


def build(
    settings: Settings,
    loader: BaseLoader,
    kind: str,
    to: str,
    language: str,
    links: Links,
    now: dt.datetime | None = None,
    welcome: dict[str, str] | None = None,
) -> EmailMessage:
    """The message of `kind` ("confirm", "already", or "welcome" with its words) to `to`, in
    `language` (en, fr, both)."""
    identity = settings.identity
    langs = _langs(language)
    subject = " / ".join(SUBJECTS[kind][x].format(title=identity.title[x]) for x in langs)
    context = {
        "kind": kind,
        "langs": langs,
        "locales": HTML_LANG,
        "identity": identity,
        "subject": subject,
        "contact_label": {x: CONTACT_LABELS[x] + colon(x) for x in langs},
        "contact_href": {x: contact_href(identity.contact[x]) for x in langs},
        "confirm_url": links.confirm_url,
        "cancel_url": links.cancel_url,
        "preferences_url": links.preferences_url,
        "unsubscribe_url": links.unsubscribe_url,
        "welcome": welcome or {},
    }
    text = _env(loader, False).get_template("signup_email.txt.j2").render(context)
    html = _env(loader, True).get_template("signup_email.html.j2").render(context)

    sender = identity.from_addr[langs[0]]
    msg = EmailMessage(policy=policy.SMTP)
    local, _, domain = sender.partition("@")
    msg["From"] = Address(" / ".join(identity.from_name[x] for x in langs), local, domain)
    msg["To"] = to  # the address alone: no name typed by a stranger in any header
    if identity.reply_to:
        msg["Reply-To"] = identity.reply_to
    msg["Subject"] = subject
    msg["Date"] = format_datetime(now or dt.datetime.now(dt.UTC))
    msg["Message-ID"] = make_msgid(domain=domain)
    # RFC 3834: a message made by a program; vacation responders must not answer it.
    msg["Auto-Submitted"] = "auto-generated"
    if links.unsubscribe_url:  # a message to a subscriber: one-click unsubscribe (RFC 8058)
        msg["List-Unsubscribe"] = f"<{links.unsubscribe_url}>"
        msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    msg.set_content(text, cte="quoted-printable")
    msg.add_alternative(html, subtype="html", cte="quoted-printable")
    msg["Content-Language"] = ", ".join(HTML_LANG[x] for x in langs)
    return msg


def send(settings: Settings, msg: EmailMessage) -> str:
    """Hand one message to the transport (SMTP, or `signup/` in the outbox); the server's
    reply. Raises transport.SendFailure or DeliveryError."""
    data = msg.as_bytes()
    signer = signer_for(settings.dkim)
    if signer is not None:
        data = signer.header([data]) + data
    sender = str(msg["From"].addresses[0].addr_spec)
    rcpt = str(msg["To"].addresses[0].addr_spec)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S")
    outgoing = Outgoing(
        mail_from=sender,
        rcpt=rcpt,
        filename=f"signup-{stamp}-{secrets.token_hex(4)}.eml",
        data=lambda: [data],
        smtp_data=lambda: [dot_stuff(data), b".\r\n"],
    )
    connection = transport_for(settings.smtp, settings.outbox / "signup").connect()
    try:
        return connection.send(outgoing)
    finally:
        connection.close()


@lru_cache(maxsize=8)  # one per app: the templates are compiled once, not per message
def _env(loader: BaseLoader, html: bool) -> Environment:
    return Environment(
        loader=loader,
        autoescape=html,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
