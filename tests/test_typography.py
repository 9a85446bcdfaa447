import datetime as dt

import pytest

from newsletter.markup import inline_html, inline_text, to_html, to_text
from newsletter.typography import NBSP, NNBSP, long_date, smarten


def smarten_fr(text: str) -> str:
    return smarten(text, "fr")


def smarten_en(text: str) -> str:
    return smarten(text, "en")


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
    assert smarten_fr(typed) == expected


def test_english_quotes_and_apostrophes() -> None:
    assert smarten_en('the "joint" leaders\' text') == "the \u201cjoint\u201d leaders\u2019 text"


def test_typography_never_touches_urls() -> None:
    html = to_html("Voir [ce lien](https://example.org/a?b=c;d:e) : ici !", "fr").html
    assert 'href="https://example.org/a?b=c;d:e"' in html
    assert f"ici{NNBSP}!" in html


def test_localised_dates() -> None:
    day = dt.date(2017, 11, 11)
    assert long_date(day, "en") == "November 11, 2017"
    assert long_date(day, "fr") == "11 novembre 2017"


def test_the_first_of_the_month_is_an_ordinal_in_french() -> None:
    first = dt.date(2017, 11, 1)
    assert long_date(first, "fr") == "1er novembre 2017"
    assert long_date(first, "en") == "November 1, 2017"
    assert long_date(dt.date(2017, 11, 21), "fr") == "21 novembre 2017"


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


QUOTED = 'He said "see *this* now" and "[link](https://www.example.org/)". The theme "Create" ok.'


def test_double_quotes_pair_across_inline_markup_in_english() -> None:
    assert to_html(QUOTED, "en").html == (
        "<p>He said \u201csee <em>this</em> now\u201d and "
        '\u201c<a href="https://www.example.org/">link</a>\u201d. '
        "The theme \u201cCreate\u201d ok.</p>"
    )
    assert to_text(QUOTED, "en").startswith(
        "He said \u201csee this now\u201d and \u201clink [1]\u201d. "
        "The theme \u201cCreate\u201d ok."
    )


def test_double_quotes_become_guillemets_across_inline_markup_in_french() -> None:
    source = 'Il a dit "voir *ceci* maintenant" et "[lien](https://www.example.org/)". Fin "ok".'
    assert to_html(source, "fr").html == (
        f"<p>Il a dit «{NNBSP}voir <em>ceci</em> maintenant{NNBSP}» et "
        f'«{NNBSP}<a href="https://www.example.org/">lien</a>{NNBSP}». Fin «{NNBSP}ok{NNBSP}».</p>'
    )
    assert to_text(source, "fr").startswith(
        f"Il a dit «{NNBSP}voir ceci maintenant{NNBSP}» et «{NNBSP}lien [1]{NNBSP}»."
    )


def test_quotes_are_judged_across_line_breaks_and_inline_code() -> None:
    source = 'He said "yes\nand no" then `x`"\n"*why*" not'
    assert to_html(source, "en").html == (
        "<p>He said \u201cyes\nand no\u201d then <code>x</code>\u201d\n"
        "\u201c<em>why</em>\u201d not</p>"
    )


@pytest.mark.parametrize(
    ("typed", "expected"),
    [
        ("'Quoted' and 'yes'", "\u2018Quoted\u2019 and \u2018yes\u2019"),
        ("('aside') \"'nested'\"", "(\u2018aside\u2019) \u201c\u2018nested\u2019\u201d"),
        ("don't, the leaders' text", "don\u2019t, the leaders\u2019 text"),
        ("the '90s", "the \u201990s"),
    ],
)
def test_english_single_quotes_open_and_close(typed: str, expected: str) -> None:
    assert smarten_en(typed) == expected


def test_single_quotes_around_markup_and_french_elision() -> None:
    assert inline_html("'*Quoted*' and l'*été*", "en") == (
        "\u2018<em>Quoted</em>\u2019 and l\u2019<em>été</em>"
    )
    assert (
        smarten_fr("l'été d'abord, 'vraiment'") == "l\u2019été d\u2019abord, \u2018vraiment\u2019"
    )


def test_french_spacing_never_enters_a_bare_url() -> None:
    source = "Voir https://www.example.org/a?b=1;c=2 ! Et www.example.org/x?y : fin."
    expected = f"Voir https://www.example.org/a?b=1;c=2{NNBSP}! Et www.example.org/x?y{NBSP}: fin."
    assert to_html(source, "fr").html == f"<p>{expected}</p>"
    assert to_text(source, "fr") == expected
    assert smarten_fr("https://www.example.org/a?b=1") == "https://www.example.org/a?b=1"


@pytest.mark.parametrize(
    "url",
    ["https://www.example.org/x:y?z=1;w=2!", "mailto:info@example.org?subject=Bonjour!"],
)
def test_french_spacing_never_enters_an_autolink(url: str) -> None:
    html = to_html(f"Écrire à <{url}> !", "fr").html
    assert html == f'<p>Écrire à <a href="{url}">{url}</a>{NNBSP}!</p>'
    assert to_text(f"Écrire à <{url}> !", "fr") == f"Écrire à {url}{NNBSP}!"


def test_french_link_whose_text_is_its_url_is_left_alone() -> None:
    url = "https://www.example.org/a?b=1"
    html = to_html(f"Voir [{url}]({url}) ?", "fr").html
    assert html == f'<p>Voir <a href="{url}">{url}</a>{NNBSP}?</p>'
    assert to_text(f"Voir [{url}]({url}) ?", "fr") == f"Voir {url}{NNBSP}?"


def test_french_spacing_after_inline_markup() -> None:
    source = (
        "Un *mot* ? Un [lien](https://www.example.org/) ! Du `code` : fin.\n\n**Liste** : élément"
    )
    assert to_html(source, "fr").html == (
        f"<p>Un <em>mot</em>{NNBSP}? "
        f'Un <a href="https://www.example.org/">lien</a>{NNBSP}! '
        f"Du <code>code</code>{NBSP}: fin.</p>\n"
        f"<p><strong>Liste</strong>{NBSP}: élément</p>"
    )
    assert to_text(source, "fr") == (
        f"Un mot{NNBSP}? Un lien [1]{NNBSP}! Du code{NBSP}: fin.\n\n"
        f"Liste{NBSP}: élément\n\n[1] https://www.example.org/"
    )


def test_french_spacing_added_when_missing_after_inline_markup() -> None:
    source = "Un *mot*? Un [lien](https://www.example.org/)! **Liste**: élément; *Note :* texte"
    assert inline_html(source, "fr") == (
        f"Un <em>mot</em>{NNBSP}? "
        f'Un <a href="https://www.example.org/">lien</a>{NNBSP}! '
        f"<strong>Liste</strong>{NBSP}: élément{NNBSP}; <em>Note{NBSP}:</em> texte"
    )


def test_english_spacing_is_left_as_typed() -> None:
    source = "A *word*? A `code`: end"
    assert inline_html(source, "en") == "A <em>word</em>? A <code>code</code>: end"


def test_plain_text_shows_an_autolink_once_and_skips_decorative_images() -> None:
    source = (
        "Voir <https://www.example.org/x:y?z=1;w=2!> et <mailto:info@example.org>.\n\n"
        "![](https://www.example.org/rule.png) ![Carte](https://www.example.org/map.png)"
    )
    text = to_text(source, "fr")
    assert text.splitlines()[0] == (
        "Voir https://www.example.org/x:y?z=1;w=2! et mailto:info@example.org."
    )
    assert "[1]" not in text  # no footnote repeating a URL already shown
    assert text.splitlines()[-1].strip() == "[Carte]"


def test_a_title_reads_as_plain_text_in_the_text_part() -> None:
    assert inline_text("*Putin* and **Trump** on `Syria`", "en") == "Putin and Trump on Syria"
    assert inline_text("Qui l'a dit ?", "fr") == f"Qui l’a dit{NNBSP}?"


def test_a_link_in_a_title_reads_as_its_text_with_no_stray_footnote() -> None:
    assert inline_text("Le [rapport](https://www.example.org/r) publié", "fr") == (
        "Le rapport publié"
    )


def test_a_url_inside_guillemets_keeps_its_spaces_outside() -> None:
    assert smarten_fr("«https://www.example.org/a»") == f"«{NNBSP}https://www.example.org/a{NNBSP}»"
