"""Per-recipient messages without per-recipient MIME encoding.

`EmailMessage.as_bytes()` costs ~3.5 ms a message, mostly quoted-printable encoding of a
body that is the same for everyone. Here the stdlib builds one template message per
edition; its headers and part structure are kept byte for byte, and each body is
quoted-printable encoded once, in segments split at the per-recipient sentinels. QP allows
a soft line break (`=` CRLF) anywhere, so each recipient's own parts (their links) are
encoded on their own and spliced between soft breaks. Decoded, the result is exactly what
`message.build_message` produces (tests/test_fastmime.py checks it).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import re
import time
from email import quoprimime
from email.charset import Charset
from email.policy import SMTP
from email.utils import format_datetime, formataddr
from typing import TYPE_CHECKING

from .config import Identity
from .editions import PREFERENCES_SENTINEL, UNSUBSCRIBE_SENTINEL
from .message import Recipient, build_message, display_name, html_escape_url

if TYPE_CHECKING:  # (the renderer is not loaded by the processes that only send)
    from .render import RenderedEdition

_TEXT_MARK = "NL-TEXT-BODY-MARK"
_HTML_MARK = "NL-HTML-BODY-MARK"
_TO_MARK = "nl-to-mark@sentinel.invalid"
_ID_MARK = "<nl-id-mark@sentinel.invalid>"
_SLOT_HEADERS = (b"to", b"date", b"message-id", b"list-unsubscribe")
_QP_SAFE = re.compile(rb"[A-Za-z0-9/:._~%?&;#+,@!$*()\[\]-]{1,72}")
_CRLF = b"\r\n"
_SOFT = b"=\r\n"
_UTF8 = Charset("utf-8")  # what formataddr makes of "utf-8" for each call, made once
_LINE_BREAKS = re.compile(r"[\r\n\v\f\x85\u2028\u2029]")
_SPECIALS = re.compile(r'[][\\()<>@,:;".]')  # a name with one of these, formataddr quotes

# Slot kinds, in the order a recipient's pieces are produced.
TO, DATE, MESSAGE_ID, LIST_UNSUB = "to", "date", "message-id", "list-unsubscribe"
TEXT_UNSUB, TEXT_PREFS, HTML_UNSUB, HTML_PREFS = "tu", "tp", "hu", "hp"


def _qp(data: bytes, maxlinelen: int = 75) -> bytes:
    """Quoted-printable with CRLF line ends; 75 leaves room for a soft break's `=`."""
    return quoprimime.body_encode(data.decode("latin-1"), maxlinelen, "\r\n").encode("ascii")


def _qp_piece(value: bytes) -> bytes:
    """One recipient's link, between two soft line breaks."""
    if not _QP_SAFE.fullmatch(value):
        value = _qp(value)
    return _SOFT + value + _SOFT


def _html_piece(url: str, text_piece: bytes) -> bytes:
    """A link as the HTML part has it: the text part's piece, unless escaping changes it."""
    escaped = html_escape_url(url)
    return text_piece if escaped == url else _qp_piece(escaped.encode("ascii"))


def dot_stuff(chunk: bytes) -> bytes:
    """SMTP transparency (RFC 5321 4.5.2); every chunk here starts at a line start."""
    chunk = chunk.replace(b"\r\n.", b"\r\n..")
    return b"." + chunk if chunk.startswith(b".") else chunk


def _body_slots(content: str, kinds: tuple[str, str]) -> list[bytes | str]:
    """Split a part's content at the sentinels into encoded constant chunks and slot kinds."""
    # Normalised as the email package does for set_content(): bytes lines, one final LF.
    raw = b"\n".join(content.encode("utf-8").splitlines()) + b"\n"
    unsub, prefs = kinds
    out: list[bytes | str] = []
    pattern = re.compile(
        re.escape(UNSUBSCRIBE_SENTINEL.encode()) + b"|" + re.escape(PREFERENCES_SENTINEL.encode())
    )
    pos = 0
    for match in pattern.finditer(raw):
        out.append(_qp(raw[pos : match.start()]))
        out.append(unsub if match.group() == UNSUBSCRIBE_SENTINEL.encode() else prefs)
        pos = match.end()
    out.append(_qp(raw[pos:]))
    return out


@dataclasses.dataclass(frozen=True)
class CompiledEdition:
    """One edition, ready to be personalised: constant chunks and slots, in order.

    It is what a send freezes (`to_json`): a resume or a retry days later sends these
    bytes, whatever has changed in the briefs or templates since.
    """

    name: str
    pieces: tuple[bytes | str, ...]  # bytes are constant; str names a slot
    from_addr: str
    mailto: str
    stuffed: tuple[bytes | str, ...] = ()  # the same, dot-stuffed for SMTP DATA
    # where each slot goes: (index, kind) pairs, filled into a copy of the constant pieces
    _slots: tuple[tuple[int, str], ...] = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.stuffed:
            stuffed = tuple(p if isinstance(p, str) else dot_stuff(p) for p in self.pieces)
            object.__setattr__(self, "stuffed", stuffed)
        slots = tuple((n, p) for n, p in enumerate(self.pieces) if isinstance(p, str))
        object.__setattr__(self, "_slots", slots)

    def to_json(self) -> str:
        pieces = [{"slot": p} if isinstance(p, str) else p.decode("latin-1") for p in self.pieces]
        data = {"name": self.name, "from": self.from_addr, "mailto": self.mailto, "pieces": pieces}
        return json.dumps(data, ensure_ascii=True)

    @classmethod
    def from_json(cls, text: str) -> CompiledEdition:
        data = json.loads(text)
        pieces = tuple(
            p["slot"] if isinstance(p, dict) else p.encode("latin-1") for p in data["pieces"]
        )
        return cls(data["name"], pieces, data["from"], data["mailto"])

    def _values(self, recipient: Recipient, message_id: str, date: str) -> dict[str, bytes]:
        to = _address(display_name(recipient.name), recipient.email)
        to_line = (
            b"To: " + to.encode("ascii") + _CRLF
            if to.isascii() and len(to) < 70
            else (SMTP.fold_binary("To", to))
        )
        unsub = recipient.unsubscribe_url.encode("ascii")
        prefs = recipient.preferences_url.encode("ascii")
        text_unsub, text_prefs = _qp_piece(unsub), _qp_piece(prefs)
        return {
            TO: to_line,
            DATE: b"Date: " + date.encode("ascii") + _CRLF,
            MESSAGE_ID: b"Message-ID: " + message_id.encode("ascii") + _CRLF,
            LIST_UNSUB: b"List-Unsubscribe: <"
            + unsub
            + b">,\r\n <"
            + (recipient.unsubscribe_mailto or self.mailto).encode("ascii")
            + b">\r\n",
            TEXT_UNSUB: text_unsub,
            TEXT_PREFS: text_prefs,
            HTML_UNSUB: _html_piece(recipient.unsubscribe_url, text_unsub),
            HTML_PREFS: _html_piece(recipient.preferences_url, text_prefs),
        }

    def render(self, recipient: Recipient, message_id: str, date: str | None = None) -> bytes:
        """The whole message as bytes (CRLF line ends), as it would be stored."""
        return b"".join(self.render_parts(recipient, message_id, date))

    def render_parts(
        self, recipient: Recipient, message_id: str, date: str | None = None
    ) -> list[bytes]:
        """The message in pieces, to be written as they are: joined, `render`."""
        return self._placed(self._values(recipient, message_id, date or now_header()))

    def _placed(self, values: dict[str, bytes]) -> list[bytes]:
        return self._filled(self.pieces, values)

    def _filled(self, pieces: tuple[bytes | str, ...], values: dict[str, bytes]) -> list[bytes]:
        out = list(pieces)  # (half the time of testing every piece for a slot)
        for n, kind in self._slots:
            out[n] = values[kind]
        return out  # type: ignore[return-value]

    def smtp_parts(
        self, recipient: Recipient, message_id: str, date: str | None = None
    ) -> list[bytes]:
        """The message dot-stuffed and terminated, ready to follow the DATA command."""
        return self._stuffed(self._values(recipient, message_id, date or now_header()))

    def _stuffed(self, values: dict[str, bytes]) -> list[bytes]:
        parts = self._filled(self.stuffed, {k: dot_stuff(v) for k, v in values.items()})
        parts.append(b".\r\n")
        return parts

    def both_parts(
        self, recipient: Recipient, message_id: str, date: str
    ) -> tuple[list[bytes], list[bytes]]:
        """`render_parts` and `smtp_parts` of one message (a signed one: the signature is
        made over the first, the second is sent), its values made once."""
        values = self._values(recipient, message_id, date)
        return self._placed(values), self._stuffed(values)

    def smtp_payload(self, recipient: Recipient, message_id: str, date: str | None = None) -> bytes:
        return b"".join(self.smtp_parts(recipient, message_id, date))


def _address(name: str, email: str) -> str:
    """formataddr((name, email)), byte for byte, without its work for a plain ASCII name."""
    if name.isascii() and email.isascii() and not _SPECIALS.search(name):
        return f"{name} <{email}>" if name else email
    return formataddr((name, email), _UTF8)


def compile_edition(
    edition: RenderedEdition, identity: Identity, subject_prefix: str = ""
) -> CompiledEdition:
    """Build the template message once and cut it into constant chunks and slots."""
    marked = dataclasses.replace(edition, html=_HTML_MARK, text=_TEXT_MARK)
    template = build_message(
        marked,
        Recipient(_TO_MARK, "", UNSUBSCRIBE_SENTINEL, PREFERENCES_SENTINEL),
        identity,
        message_id=_ID_MARK,
        date=dt.datetime(2000, 1, 1, tzinfo=dt.UTC),
        subject_prefix=subject_prefix,
    )
    raw = template.as_bytes()
    head, sep, body = raw.partition(b"\r\n\r\n")
    pieces: list[bytes | str] = []
    for field in re.split(rb"\r\n(?![ \t])", head):
        name = field.split(b":", 1)[0].strip().lower()
        if name in _SLOT_HEADERS:
            pieces.append(name.decode())
        else:
            pieces.append(field + _CRLF)
    pieces.append(_CRLF)
    text_mark = _TEXT_MARK.encode() + _CRLF
    html_mark = _HTML_MARK.encode() + _CRLF
    before_text, _, rest = body.partition(text_mark)
    between, _, after_html = rest.partition(html_mark)
    if not after_html:
        raise AssertionError("template message lost its body markers")
    pieces.append(before_text)
    pieces.extend(_body_slots(edition.text, (TEXT_UNSUB, TEXT_PREFS)))
    pieces.append(between)
    pieces.extend(_body_slots(edition.html, (HTML_UNSUB, HTML_PREFS)))
    pieces.append(after_html)
    from_addr = edition.view.from_addr
    return CompiledEdition(
        name=edition.name,
        pieces=tuple(_merge(pieces)),
        from_addr=from_addr,
        mailto=f"mailto:{from_addr}?subject=unsubscribe",
    )


def _merge(pieces: list[bytes | str]) -> list[bytes | str]:
    """Join neighbouring constant chunks, so a recipient costs one join of few pieces."""
    out: list[bytes | str] = []
    for piece in pieces:
        if isinstance(piece, bytes) and out and isinstance(out[-1], bytes):
            out[-1] += piece
        else:
            out.append(piece)
    return out


_date_cache: tuple[int, str] = (0, "")


def now_header() -> str:
    """The Date header for now; formatted once a second."""
    global _date_cache
    second = int(time.time())
    if _date_cache[0] != second:
        _date_cache = (second, format_datetime(dt.datetime.fromtimestamp(second, dt.UTC)))
    return _date_cache[1]
