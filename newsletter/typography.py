"""Language rules in one place: French spacing and quotes, apostrophes, localised dates."""

from __future__ import annotations

import datetime as dt
import re

from babel.dates import format_date

LOCALES = {"en": "en_CA", "fr": "fr_CA"}
HTML_LANG = {"en": "en-CA", "fr": "fr-CA"}

NNBSP = "\u202f"  # narrow no-break space: before ; ! ? and inside « »
NBSP = "\u00a0"  # no-break space: before :

_SPACES = "[ \t\u00a0\u202f]"
# Punctuation that takes a space before it in French, when it ends a word: not "10:30",
# not the second mark of "?!", not "http://".
_HIGH_PUNCT = re.compile(rf"(?<=[^\s;:!?\u00a0\u202f]){_SPACES}*([;!?])")
_COLON = re.compile(rf"(?<=[^\s;:!?\u00a0\u202f\d]){_SPACES}*:(?=\s|$)|(?<=\d){_SPACES}+:(?=\s|$)")
_OPEN_GUILLEMET = re.compile(rf"«{_SPACES}*")
_CLOSE_GUILLEMET = re.compile(rf"{_SPACES}*»")
_DOUBLE_QUOTED = re.compile(r'"([^"\n]+)"')
_APOSTROPHE = re.compile(r"(?<=\w)'|'(?=\w)")


def french(text: str) -> str:
    """Apply French typography to a run of plain text (never to markup or URLs)."""
    text = _APOSTROPHE.sub("\u2019", text)
    text = _DOUBLE_QUOTED.sub(r"«\1»", text)
    text = _OPEN_GUILLEMET.sub("«" + NNBSP, text)
    text = _CLOSE_GUILLEMET.sub(NNBSP + "»", text)
    text = _HIGH_PUNCT.sub(NNBSP + r"\1", text)
    text = _COLON.sub(NBSP + ":", text)
    return text


def english(text: str) -> str:
    """Typographic apostrophes and double quotes for English."""
    text = _APOSTROPHE.sub("\u2019", text)
    return _DOUBLE_QUOTED.sub("\u201c\\1\u201d", text)


def smarten(text: str, lang: str) -> str:
    return french(text) if lang == "fr" else english(text)


def colon(lang: str) -> str:
    """A label's colon: "Web:" / "Web :"."""
    return NBSP + ":" if lang == "fr" else ":"


def long_date(date: dt.date, lang: str) -> str:
    """`November 11, 2017` / `11 novembre 2017`."""
    return format_date(date, format="long", locale=LOCALES[lang])
