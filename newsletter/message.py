"""RenderedEdition + Recipient -> email.message.EmailMessage (stdlib, policy.SMTP).

This is the straightforward construction; sending uses a faster path (fastmime.py)
that is tested to produce the same message.
"""

from __future__ import annotations

import datetime as dt
import re
from email import policy
from email.headerregistry import Address, HeaderRegistry, UniqueAddressHeader
from email.message import EmailMessage
from email.utils import format_datetime, formataddr, make_msgid
from typing import TYPE_CHECKING, NamedTuple

from .config import Identity
from .editions import PREFERENCES_SENTINEL, UNSUBSCRIBE_SENTINEL
from .normalise import MAX_NAME

if TYPE_CHECKING:  # (the renderer is not loaded by the processes that only send)
    from .render import RenderedEdition

SAMPLE_EMAIL = "reader@example.org"
SAMPLE_NAME = "Sample Reader"
_LINE_BREAKS = re.compile(r"[\r\n\v\f\x85\u2028\u2029]+")

# List-Id (RFC 2919) is a display name and an id in angle brackets: an address header but for
# the @. Parsed as one, its name is quoted or encoded by the stdlib as From's is, whatever
# commas, quotes or accents it holds.
_HEADER_TYPES = HeaderRegistry()
_HEADER_TYPES.map_to_type("list-id", UniqueAddressHeader)
POLICY = policy.SMTP.clone(header_factory=_HEADER_TYPES)


class Recipient(NamedTuple):  # one a message: made in a third of a frozen dataclass's time
    email: str
    name: str
    unsubscribe_url: str
    preferences_url: str
    # With NEWSLETTER_BOUNCE_DOMAIN: the person's List-Unsubscribe mailto, and this message's
    # envelope sender (VERP) and DSN envelope id. Empty: the edition's defaults.
    unsubscribe_mailto: str = ""
    envelope_from: str = ""
    envid: str = ""


def sample_recipient(identity: Identity) -> Recipient:
    return Recipient(
        email=SAMPLE_EMAIL,
        name=SAMPLE_NAME,
        unsubscribe_url=f"{identity.base_url}/unsubscribe/SAMPLE-TOKEN",
        preferences_url=f"{identity.base_url}/preferences/SAMPLE-TOKEN",
    )


def one_line(value: str) -> str:
    """Header text from content: a CR or LF must never start a new header."""
    return _LINE_BREAKS.sub(" ", value).strip()


def display_name(name: str) -> str:
    """A subscriber's name as the To header shows it: one line, and no longer than the web
    app and an import allow, so that a word the stdlib cannot fold (it folds at spaces, and
    encodes only non-ASCII words) keeps the line far below RFC 5322's 998 characters. Longer
    names come only from stores written before that limit."""
    name = one_line(name)
    return name if len(name) <= MAX_NAME else name[: MAX_NAME - 1].rstrip() + "…"


def list_id(name: str, identity: Identity) -> str:
    """The List-Id value: the sender's name quoted or encoded as an address's would be."""
    return formataddr((one_line(name), identity.list_id))


def html_escape_url(url: str) -> str:
    return url.replace("&", "&amp;").replace('"', "&quot;")


def personalise_html(html: str, recipient: Recipient) -> str:
    return html.replace(UNSUBSCRIBE_SENTINEL, html_escape_url(recipient.unsubscribe_url)).replace(
        PREFERENCES_SENTINEL, html_escape_url(recipient.preferences_url)
    )


def personalise_text(text: str, recipient: Recipient) -> str:
    return text.replace(UNSUBSCRIBE_SENTINEL, recipient.unsubscribe_url).replace(
        PREFERENCES_SENTINEL, recipient.preferences_url
    )


def list_unsubscribe(edition: RenderedEdition, recipient: Recipient) -> str:
    mailto = recipient.unsubscribe_mailto or f"mailto:{edition.view.from_addr}?subject=unsubscribe"
    return f"<{recipient.unsubscribe_url}>, <{mailto}>"


def build_message(
    edition: RenderedEdition,
    recipient: Recipient,
    identity: Identity,
    *,
    message_id: str | None = None,
    date: dt.datetime | None = None,
    subject_prefix: str = "",
) -> EmailMessage:
    """The complete message for one recipient: multipart/alternative, text then HTML."""
    view = edition.view
    msg = EmailMessage(policy=POLICY)
    local, _, domain = view.from_addr.partition("@")
    msg["From"] = Address(one_line(view.from_name), local, domain)
    to_local, _, to_domain = recipient.email.partition("@")
    msg["To"] = Address(display_name(recipient.name), to_local, to_domain)
    if identity.reply_to:
        msg["Reply-To"] = identity.reply_to
    msg["Subject"] = one_line(subject_prefix + view.subject)
    msg["Date"] = format_datetime(date or dt.datetime.now(dt.UTC))
    msg["Message-ID"] = message_id or make_msgid(domain=domain)
    msg["List-Id"] = list_id(view.from_name, identity)
    msg["List-Unsubscribe"] = list_unsubscribe(edition, recipient)
    msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    msg.set_content(personalise_text(edition.text, recipient), cte="quoted-printable")
    msg.add_alternative(
        personalise_html(edition.html, recipient), subtype="html", cte="quoted-printable"
    )
    # after the parts: set_content() drops Content-* headers set before it
    msg["Content-Language"] = "en-CA, fr-CA" if view.name == "bilingual" else view.html_lang
    return msg


def html_part_size(msg: EmailMessage) -> int:
    """Bytes of the HTML part's body as it travels (quoted-printable, CRLF line ends)."""
    part = msg.get_body(("html",))
    assert part is not None
    payload = part.get_payload()
    assert isinstance(payload, str)
    return len(payload.replace("\r\n", "\n").replace("\n", "\r\n").encode("ascii"))
