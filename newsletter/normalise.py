"""Normalising what people type: e-mail addresses and language names (CSV, CLI, web)."""

from __future__ import annotations

import contextlib
import re
import unicodedata


def email_key(email: str) -> str:
    """What makes two addresses the same person: the whole address without regard to case.

    RFC 5321 lets a server tell `Kevin` from `kevin` before the @-sign, but no mailbox
    provider does, and treating them as two people sends one mailbox two copies (the
    subscriber_merges migration merged such pairs). A non-ASCII domain counts as its IDNA
    form, the one the store keeps (see check_email)."""
    return email_key_v1(email).lower()


def email_key_v1(email: str) -> str:
    """The key before the case-merging migration (local part case-sensitive): migration 3
    uses it."""
    email = email.strip()
    if not email.isascii():
        # one the store cannot hold keeps its non-ASCII form, which matches no stored key
        with contextlib.suppress(ValueError):
            email = check_email(email)
    local, _, domain = email.rpartition("@")
    return f"{local}@{domain.lower()}"


def check_email(text: str) -> str:
    """The address as it will be stored, or ValueError saying why not. No DNS lookups.

    Stripped and otherwise kept as typed, except that a non-ASCII domain becomes its ASCII
    (IDNA) form: `ann@exämple.org` -> `ann@xn--exmple-cua.org`."""
    # Here: the build imports this module for MAX_NAME, and email_validator costs ~17 ms.
    from email_validator import EmailNotValidError, validate_email

    email = text.strip()
    try:
        # No SMTPUTF8 (most servers lack it, and so do we): a non-ASCII local part is refused.
        # A non-ASCII domain has an ASCII form that any server takes.
        valid = validate_email(email, check_deliverability=False, allow_smtputf8=False)
    except EmailNotValidError as exc:
        local = email.rpartition("@")[0]
        if not local.isascii():
            chars = ", ".join(repr(c) for c in dict.fromkeys(local) if not c.isascii())
            raise ValueError(
                f"{email!r} is not a valid address: {chars} before the @-sign would need "
                "SMTPUTF8, which this newsletter does not support; ask for another address"
            ) from None
        raise ValueError(f"{email!r} is not a valid address: {exc}") from None
    if email.isascii():
        return email
    local = email.rpartition("@")[0]
    assert local.isascii()  # allow_smtputf8=False refuses any other
    return f"{local}@{valid.ascii_domain}"


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


MAX_NAME = 200  # characters of a subscriber's name, wherever it comes from

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")


def printable(text: str) -> str:
    """What a web form's field or a request header may keep: no control or format characters
    (Unicode category C), stripped."""
    return "".join(c for c in text if unicodedata.category(c)[0] != "C").strip()


def clean_name(text: str | None) -> str:
    """A display name as one line of printable text (line breaks and controls become spaces)."""
    return " ".join(_CONTROL.sub(" ", text or "").split())
