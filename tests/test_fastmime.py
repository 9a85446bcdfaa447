"""The fast per-recipient path produces the same message, parsed, as a plain EmailMessage."""

from __future__ import annotations

import email
from email import policy
from pathlib import Path

import pytest

from newsletter.build import build_issue
from newsletter.config import load_settings
from newsletter.fastmime import compile_edition
from newsletter.message import Recipient, build_message
from newsletter.render import Templates

from .conftest import DEMO_ISSUE, ROOT

RECIPIENTS = [
    Recipient(
        "anne@example.org",
        "Anne Smith",
        "https://news.example.org/unsubscribe/AbC-_1",
        "https://news.example.org/preferences/AbC-_1",
    ),
    Recipient(
        "marie@example.org",
        "Marie-Ève Côté",
        "https://news.example.org/unsubscribe/x",
        "https://news.example.org/preferences/x",
    ),
    Recipient(
        "o.brien@example.net",
        'O\'Brien, "Pat" ' + "Long " * 20,
        "https://news.example.org/u/a",
        "https://news.example.org/p/a",
    ),
    # a name longer than a header line may be: both paths cut it alike (stored before the
    # limit of 200 characters)
    Recipient("long@example.org", "x" * 1200, "https://e.example.org/u", "https://e.example.org/p"),
    # a base URL with a query string: '=' and '&' must be encoded, '&' escaped in HTML only
    Recipient(
        "q@example.com", "", "https://example.com/u?t=a&l=fr", "https://example.com/p?t=a&x=1"
    ),
]


@pytest.fixture(scope="module")
def built():
    settings = load_settings(None, environ={})
    return settings, build_issue(ROOT / "issues" / DEMO_ISSUE, settings.identity, Templates())


def parse(data: bytes):
    return email.message_from_bytes(data, policy=policy.default)


@pytest.mark.parametrize("recipient", RECIPIENTS, ids=lambda r: r.email)
def test_fast_path_equals_the_straightforward_message(built, recipient: Recipient) -> None:
    settings, build = built
    for edition in build.rendered.editions:
        compiled = compile_edition(edition, settings.identity)
        date = "Sat, 11 Nov 2017 12:00:00 +0000"
        fast = parse(compiled.render(recipient, "<id.1@example.org>", date))
        plain_msg = build_message(
            edition, recipient, settings.identity, message_id="<id.1@example.org>"
        )
        plain_msg.replace_header("Date", date)
        plain = parse(plain_msg.as_bytes())
        assert fast.keys() == plain.keys()
        for name in plain:
            if name == "Content-Type":
                assert fast.get_content_type() == plain.get_content_type()
                continue
            # the stdlib sometimes folds right after the colon: the same value, unfolded
            assert str(fast[name]).strip() == str(plain[name]).strip(), name
        for kind in ("plain", "html"):
            a, b = fast.get_body((kind,)), plain.get_body((kind,))
            assert a["Content-Type"] == b["Content-Type"]
            assert a["Content-Transfer-Encoding"] == b["Content-Transfer-Encoding"]
            assert a.get_content() == b.get_content()
        html = fast.get_body(("html",)).get_content()
        assert recipient.unsubscribe_url.replace("&", "&amp;") in html
        text = fast.get_body(("plain",)).get_content()
        assert recipient.unsubscribe_url in text


@pytest.mark.parametrize(
    "name",
    ["Anne Smith", "", "O'Brien", "Dr. Who", 'Pat "the" Cat', "a\\b", "Smith, Anne", "Zoë"],
)
def test_the_to_address_is_formataddrs_byte_for_byte(name: str) -> None:
    from email.charset import Charset
    from email.utils import formataddr

    from newsletter.fastmime import _address

    expected = formataddr((name, "reader@example.org"), Charset("utf-8"))
    assert _address(name, "reader@example.org") == expected


def test_lines_stay_within_the_limits_and_smtp_payload_is_dot_stuffed(built) -> None:
    settings, build = built
    recipient = RECIPIENTS[1]
    for edition in build.rendered.editions:
        compiled = compile_edition(edition, settings.identity)
        data = compiled.render(recipient, "<id.2@example.org>", "Sat, 11 Nov 2017 12:00:00 +0000")
        head, _, body = data.partition(b"\r\n\r\n")
        assert all(len(line) <= 78 for line in head.split(b"\r\n"))
        assert all(len(line) <= 76 for line in body.split(b"\r\n"))
        assert b"\n" not in data.replace(b"\r\n", b"")
        payload = compiled.smtp_payload(
            recipient, "<id.2@example.org>", "Sat, 11 Nov 2017 12:00:00 +0000"
        )
        assert payload.endswith(b"\r\n.\r\n")
        unstuffed = payload[: -len(b".\r\n")].replace(b"\r\n..", b"\r\n.")
        assert unstuffed == data


def test_a_line_starting_with_a_dot_is_stuffed(built, tmp_path: Path) -> None:
    import dataclasses

    settings, build = built
    edition = build.rendered.edition("en")
    edition = dataclasses.replace(edition, text=".hidden line\n" + edition.text)
    compiled = compile_edition(edition, settings.identity)
    recipient = RECIPIENTS[0]
    date = "Sat, 11 Nov 2017 12:00:00 +0000"
    assert b"\r\n.hidden" in compiled.render(recipient, "<i@example.org>", date)
    assert b"\r\n..hidden" in compiled.smtp_payload(recipient, "<i@example.org>", date)


def test_a_signature_made_from_the_editions_shape_is_the_general_ones_byte_for_byte(
    built, tmp_path: Path
) -> None:
    """Given the compiled edition's pieces, the signer works out once what its messages
    share (their constant headers canonicalised, the hash of the body's opening) and looks
    only at each reader's own pieces: the same DKIM-Signature, byte for byte, as reading the
    whole message (Ed25519 and RSA PKCS#1 v1.5 signatures are deterministic), verified."""
    dkim = pytest.importorskip("dkim")
    pytest.importorskip("nacl")
    from newsletter.config import DkimSettings
    from newsletter.signing import Signer

    from .test_send import _dkim_key

    settings, build = built
    for kind in ("ed25519", "rsa"):
        key, record = _dkim_key(tmp_path, kind)
        signer = Signer(DkimSettings(str(key), "news2017", "example.org"))
        for edition in build.rendered.editions:
            compiled = compile_edition(edition, settings.identity)
            for n, recipient in enumerate(RECIPIENTS):
                parts = compiled.render_parts(recipient, f"<id.{n}@example.org>")
                shaped = signer.header(parts, compiled.pieces)
                assert shaped == signer.header(parts), (kind, edition.name, recipient.email)
                data = shaped + b"".join(parts)
                assert dkim.verify(data, dnsfunc=lambda name, timeout=5, record=record: record)
            # the shortcut was taken (not the general way, as for a shape it cannot use)
            assert signer._shape(compiled.pieces, parts) is not None


def test_a_shape_the_shortcut_cannot_use_is_signed_the_general_way(tmp_path: Path) -> None:
    dkim = pytest.importorskip("dkim")
    pytest.importorskip("nacl")
    from newsletter.config import DkimSettings
    from newsletter.signing import Signer

    from .test_send import _dkim_key

    key, record = _dkim_key(tmp_path, "ed25519")
    signer = Signer(DkimSettings(str(key), "news2017", "example.org"))
    head = b"From: news@example.org\r\nSubject: News\r\n"
    shapes = {
        # the reader's own piece ends the headers and begins the body
        "own blank line": ((head, "own", b"The end.\r\n"), b"To: r1@example.org\r\n\r\nHi\r\n"),
        # the body ends with it, without its CRLF
        "own end": ((head + b"\r\nHello\r\n", "own"), b"r1"),
        # several fields in the reader's own piece
        "own fields": (
            (b"From: news@example.org\r\n", "own", b"\r\nHi\r\n"),
            b"To: r1@example.org\r\nSubject: News\r\n",
        ),
        # a field cut over two pieces
        "cut field": ((b"From: news@", "own", b"\r\n\r\nHi\r\n"), b"example.org"),
        # blank lines at the end, which simple canonicalisation removes
        "blank end": ((head + b"\r\nHello ", "own", b"\r\n\r\n\r\n"), b"r1"),
    }
    for name, (shape, own) in shapes.items():
        parts = [own if isinstance(piece, str) else piece for piece in shape]
        assert signer._shape(shape, parts) is None, name
        data = signer.header(parts, shape) + b"".join(parts)
        assert dkim.verify(data, dnsfunc=lambda name, timeout=5: record), name
