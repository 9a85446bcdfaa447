"""The signup form: what it shows (SignupForm), and reading and checking what comes back.

Only what a field must be; what the answer says and does is pages.py's.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request

from ..config import SUBSCRIBER_LANGUAGES
from ..normalise import MAX_NAME, check_email, printable
from .stamps import StampKind, make_stamp
from .texts import Wording

PATHS = {"en": "/subscribe", "fr": "/abonnement"}
HONEYPOT = "website"  # a name bots fill in; people never see the field
MIN_FILL = dt.timedelta(seconds=2)  # no person fills the form in less
MAX_FILL = dt.timedelta(days=1)  # a page left open longer gets a fresh one
MAX_EMAIL = 254  # RFC 5321's limit on a path, less the angle brackets
MAX_BODY = 16 * 1024  # a form of a few short fields
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


@dataclass(frozen=True)
class SignupForm:
    """What the form fragment (_signup_form.html.j2) shows: empty, or sent back with errors."""

    lang: str  # en | fr: the page's language
    action: str
    stamp: str
    consent: str  # the words by the box
    text_hash: str
    email: str = ""
    name: str = ""
    language: str = ""  # en, fr or both; "" selects the page's language
    consented: bool = False  # only ever what the visitor ticked themselves
    errors: dict[str, str] = field(default_factory=dict)  # field -> problem
    honeypot: str = HONEYPOT
    max_name: int = MAX_NAME
    max_email: int = MAX_EMAIL
    other: str = ""  # the same form in the other language


def new_form(
    secret: bytes,
    wording: Wording,
    lang: str,
    now: dt.datetime,
    *,
    root: str = "",
    embedded: bool = False,
    **values: Any,
) -> SignupForm:
    """A fresh form in `lang` (en or fr), its links under `root` (the app's path, or its
    whole base URL for another site). An `embedded` form's stamp says so: its age then
    means nothing."""
    other = "fr" if lang == "en" else "en"
    kind = StampKind.EMBED if embedded else StampKind.FORM
    return SignupForm(
        lang=lang,
        action=root + PATHS[lang],
        stamp=make_stamp(secret, now, kind),
        consent=wording.consent[lang],
        text_hash=wording.text([lang]).hash,
        other=root + PATHS[other],
        **values,
    )


async def read_form(request: Request) -> tuple[dict[str, str] | None, str]:
    """The posted fields, or None and why not: too-large, not-a-form, unreadable."""
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > MAX_BODY:
        return None, "too-large"
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind not in FORM_TYPES:
        return None, "not-a-form"
    try:
        form = await request.form(max_files=0, max_fields=20, max_part_size=MAX_BODY)
    except Exception:
        return None, "unreadable"
    return {k: v for k, v in form.items() if isinstance(v, str)}, ""


def check_fields(fields: dict[str, str]) -> tuple[str, dict[str, str], dict[str, str]]:
    """The address as stored, the choices, and the problems by field (empty when none)."""
    errors: dict[str, str] = {}
    email = fields.get("email", "").strip()
    if not email:
        errors["email"] = "missing"
    elif len(email) > MAX_EMAIL:
        errors["email"] = "too-long"
    else:
        try:
            email = check_email(email)
        except ValueError:
            errors["email"] = "invalid"
    name = printable(fields.get("name", ""))
    if len(name) > MAX_NAME:
        errors["name"] = "too-long"
    language = fields.get("language", "")
    if language not in SUBSCRIBER_LANGUAGES:
        errors["language"] = "unknown"
    if fields.get("consent") != "yes":
        errors["consent"] = "missing"
    return email, {"name": " ".join(name.split()), "language": language}, errors
