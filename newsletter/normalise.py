"""Normalising what people type: e-mail addresses and language names (CSV, CLI, web)."""

from __future__ import annotations

import re
import unicodedata

from email_validator import EmailNotValidError, validate_email


def email_key(email: str) -> str:
    """What makes two addresses the same person: the domain is case-insensitive, the local part
    is not (RFC 5321), though almost every server treats it so; we keep to the standard."""
    local, _, domain = email.strip().rpartition("@")
    return f"{local}@{domain.lower()}"


def check_email(text: str) -> str:
    """The address, stripped, if its syntax is valid; ValueError saying why not. No DNS lookups."""
    email = text.strip()
    try:
        # no SMTPUTF8: an address with non-ASCII characters cannot go through most servers
        validate_email(email, check_deliverability=False, allow_smtputf8=False)
    except EmailNotValidError as exc:
        raise ValueError(f"{email!r} is not a valid address: {exc}") from None
    return email


_LANGUAGE_WORDS = {
    "en": {"en", "eng", "english", "anglais", "e"},
    "fr": {"fr", "fra", "fre", "french", "francais", "f"},
    "both": {"both", "bilingual", "bilingue", "en+fr", "fr+en", "en/fr", "fr/en", "en,fr",
             "fr,en", "en-fr", "fr-en", "en fr", "fr en", "les deux", "tous"},
}  # fmt: skip


def parse_language(text: str | None) -> str | None:
    """`fr`, `FR`, `fr-CA`, `français`, `English`... -> en | fr | both; None when blank.
    ValueError for anything else."""
    if text is None or not text.strip():
        return None
    word = unicodedata.normalize("NFKD", text.strip().casefold())
    word = "".join(c for c in word if not unicodedata.combining(c)).replace("_", "-")
    for language, words in _LANGUAGE_WORDS.items():
        if word in words:
            return language
    tag = re.fullmatch(r"(en|fr)(?:-[a-z0-9]{2,8})+", word)  # BCP 47: en-CA, fr-BE...
    if tag:
        return tag.group(1)
    raise ValueError(f"unknown language {text.strip()!r}; use en, fr or both")


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")


def clean_name(text: str | None) -> str:
    """A display name as one line of printable text (line breaks and controls become spaces)."""
    return " ".join(_CONTROL.sub(" ", text or "").split())
