import datetime as dt

import pytest

from newsletter.markup import to_html, to_text
from newsletter.typography import NBSP, NNBSP, english, french, long_date


@pytest.mark.parametrize(
    ("typed", "expected"),
    [
        ("Vraiment ?", f"Vraiment{NNBSP}?"),
        ("Oui ! Non; peut-être", f"Oui{NNBSP}! Non{NNBSP}; peut-être"),
        ("Il a dit : non", f"Il a dit{NBSP}: non"),
        ("« bonjour »", f"«{NNBSP}bonjour{NNBSP}»"),
        ('un "mot"', f"un «{NNBSP}mot{NNBSP}»"),
        ("l'économie", "l\u2019économie"),
        ("Quoi ?!", f"Quoi{NNBSP}?!"),
        ("à 10:30 précises", "à 10:30 précises"),
    ],
)
def test_french_typography(typed: str, expected: str) -> None:
    assert french(typed) == expected


def test_english_quotes_and_apostrophes() -> None:
    assert english('the "joint" leaders\' text') == "the \u201cjoint\u201d leaders\u2019 text"


def test_typography_never_touches_urls() -> None:
    html = to_html("Voir [ce lien](https://example.org/a?b=c;d:e) : ici !", "fr").html
    assert 'href="https://example.org/a?b=c;d:e"' in html
    assert f"ici{NNBSP}!" in html


def test_localised_dates() -> None:
    day = dt.date(2017, 11, 11)
    assert long_date(day, "en") == "November 11, 2017"
    assert long_date(day, "fr") == "11 novembre 2017"


def test_plain_text_wraps_and_numbers_links() -> None:
    source = (
        "A long paragraph " * 10 + "with [a link](https://example.org/x).\n\n"
        "> A quotation that is also quite long, long enough to wrap across lines here.\n\n"
        "- one\n- two\n"
    )
    text = to_text(source, "en")
    lines = text.splitlines()
    assert all(len(line) <= 72 for line in lines)
    assert "a link [1]" in text
    assert lines[-1] == "[1] https://example.org/x"
    assert any(line.startswith("> A quotation") for line in lines)
    assert "- one\n- two" in text
