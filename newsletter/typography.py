"""Language rules in one place: French spacing and quotes, apostrophes, localised dates.

The rules run over a whole paragraph at once, so that a quote or a colon next to inline
markup (emphasis, a link, inline code) is judged by the text on the other side of it. The
caller describes the paragraph as text pieces with `Inline` values between them; each
`Inline` becomes one reserved character while the rules run, and the text is cut back into
its pieces afterwards. The reserved characters are Unicode noncharacters, which never
travel in real text, so any found in the input are dropped.
"""

from __future__ import annotations

import datetime as dt
import enum
import re
from collections.abc import Callable, Sequence

from babel.dates import format_date

LOCALES = {"en": "en_CA", "fr": "fr_CA"}
HTML_LANG = {"en": "en-CA", "fr": "fr-CA"}

NNBSP = "\u202f"  # narrow no-break space: before ; ! ? and inside « »
NBSP = "\u00a0"  # no-break space: before :


class Inline(enum.Enum):
    """What lies between two text pieces of a paragraph, as far as typography cares."""

    MARKUP = "\ufdd0"  # emphasis or link delimiters: invisible, seen through
    ATOM = "\ufdd1"  # inline code, an image, a URL shown as link text: an opaque word
    BREAK = "\ufdd2"  # a soft or hard line break: white space


MARK, ATOM, BREAK = (kind.value for kind in Inline)
_URL = "\ufdd3"  # stands for a bare URL in the text while the rules run: an opaque word
_RESERVED = re.compile("[\ufdd0-\ufdd3]")
_CUT = re.compile(f"[{MARK}{ATOM}{BREAK}]")

# A URL typed as text. Trailing punctuation belongs to the sentence, as in GitHub's
# autolinks: "voir https://example.org/a?b=1 !" keeps the URL whole and spaces the "!".
_URL_CHAR = r"[^\s<>«»\ufdd0-\ufdd3]"
_BARE_URL = re.compile(
    rf"(?:\b(?:https?|ftp)://|\bwww\.|\bmailto:){_URL_CHAR}*(?<![?!.,:;'\")\]*_~])",
    re.IGNORECASE,
)

_SPACES = "[ \t\u00a0\u202f]"
_GAP = f"[ \t\u00a0\u202f{MARK}]*"  # spaces, and markup closing or opening around them
# Punctuation that takes a space before it in French, when it ends a word: not "10:30",
# not the second mark of "?!", not "http://". The word may sit behind closing markup
# ("un *mot* ?") and the space may be missing ("un *mot*?").
_NOT_A_WORD = rf"\s;:!?\u00a0\u202f{MARK}{BREAK}"
_HIGH_PUNCT = re.compile(rf"(?<=[^{_NOT_A_WORD}])({_GAP})([;!?])")
_COLON = re.compile(rf"(?<=[^{_NOT_A_WORD}])({_GAP})(:)(?={MARK}*(?:[\s{BREAK}]|$))")
_OPEN_GUILLEMET = re.compile(rf"«{_SPACES}*")
_CLOSE_GUILLEMET = re.compile(rf"{_SPACES}*»")

# A straight quote opens after these (or at the start, or after white space) and closes
# anywhere else; markup in between is seen through.
_OPENERS = "([{\u2018\u201c«-\u2013\u2014"


def _quotes(text: str, open_double: str, close_double: str) -> str:
    """Curl straight quotes by what stands before and after each one.

    `"` opens after the start, white space, an opening bracket or quote, or a dash, when
    a word follows; otherwise it closes. `'` follows the same rule with one exception: a
    digit after it makes it an apostrophe ("the '90s"). So `'Quoted'` gives ‘Quoted’,
    while `l'été`, `don't` and `leaders'` (after a letter) keep the apostrophe ’. An
    elision after a space ("'tis") comes out as an opening quote: rare, and ambiguous.
    """
    out = list(text)
    before = ""  # the last character written, markup skipped
    for i, char in enumerate(text):
        if char in "\"'":
            after = next((text[j] for j in range(i + 1, len(text)) if text[j] != MARK), "")
            opens = (
                (not before or before.isspace() or before in _OPENERS or before == BREAK)
                and after != ""
                and not after.isspace()
                and after != BREAK
            )
            if char == "'":
                out[i] = "\u2018" if opens and not after.isdigit() else "\u2019"
            else:
                out[i] = open_double if opens else close_double
        if char != MARK:
            before = out[i]
    return "".join(out)


def _space_before(space: str) -> Callable[[re.Match[str]], str]:
    """A replacement putting `space` before the punctuation, where the first space was."""

    def replace(match: re.Match[str]) -> str:
        gap, punct = match[1], match[2]
        if punct == ":" and gap.strip(MARK) == "" and match.string[match.start() - 1].isdigit():
            return match[0]  # "article 5:" stays as typed; "à 17 h 30 :" is spaced
        marks = MARK * gap.count(MARK)
        at = len(gap) - len(gap.lstrip(MARK))  # markup before the first space, or all of it
        return marks[:at] + space + marks[at:] + punct

    return replace


def _french(text: str) -> str:
    text = _quotes(text, "«", "»")
    text = _OPEN_GUILLEMET.sub("«" + NNBSP, text)
    text = _CLOSE_GUILLEMET.sub(NNBSP + "»", text)
    text = _HIGH_PUNCT.sub(_space_before(NNBSP), text)
    return _COLON.sub(_space_before(NBSP), text)


def _english(text: str) -> str:
    return _quotes(text, "\u201c", "\u201d")


def smarten_run(pieces: Sequence[str | Inline], lang: str) -> list[str]:
    """Apply `lang`'s typography to the text pieces of one paragraph, in order.

    Returns the text pieces only, changed; URLs typed in them are left as they are.
    """
    parts: list[str] = []
    where: list[int] = []  # for each text piece, its slot among the cut-up parts
    cuts = 0
    for piece in pieces:
        if isinstance(piece, Inline):
            parts.append(piece.value)
            cuts += 1
        else:
            if where and where[-1] == cuts:  # two text pieces in a row: keep them apart
                parts.append(MARK)
                cuts += 1
            parts.append(_RESERVED.sub("", piece))
            where.append(cuts)
    text = "".join(parts)
    urls = iter(_BARE_URL.findall(text))
    text = _BARE_URL.sub(_URL, text)
    text = _french(text) if lang == "fr" else _english(text)
    text = re.sub(_URL, lambda _: next(urls), text)
    slots = _CUT.split(text)
    return [slots[i] for i in where]


def smarten(text: str, lang: str) -> str:
    """Typography for a single line with no markup (a title, a subject)."""
    return smarten_run([text], lang)[0]


def colon(lang: str) -> str:
    """A label's colon: "Web:" / "Web :"."""
    return NBSP + ":" if lang == "fr" else ":"


def long_date(date: dt.date, lang: str) -> str:
    """`November 1, 2017` / `1er novembre 2017`."""
    text = format_date(date, format="long", locale=LOCALES[lang])
    if lang == "fr" and date.day == 1:
        # CLDR writes "1 novembre"; French writes the first of the month as an ordinal.
        text = re.sub(r"^1(?!\d)", "1er", text)
    return text
