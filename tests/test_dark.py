"""Dark mode in a real browser (Debian's chromium): every edition in the light scheme, in
Apple-Mail-style dark (prefers-color-scheme) and in Outlook-style dark (data-ogsc and
data-ogsb on <body>), with computed colours and axe's colour-contrast rule."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from newsletter.build import build_issue
from newsletter.config import load_settings
from newsletter.content import read_issue
from newsletter.render import HTML_TEMPLATE, Templates, _compile_mjml, inline_css
from newsletter.views import edition_view

from .browser import CHROMIUM
from .conftest import DEMO_ISSUE, ROOT

sync_api = pytest.importorskip("playwright.sync_api")
axe_playwright = pytest.importorskip("axe_playwright_python")

AXE_SCRIPT = Path(axe_playwright.__file__).parent / "axe.min.js"
SCHEMES = ("light", "dark", "outlook")

needs_chromium = pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium")


def rgb(colour: str) -> str:
    r, g, b = (int(colour[i : i + 2], 16) for i in (1, 3, 5))
    return f"rgb({r}, {g}, {b})"


@pytest.fixture(scope="module")
def editions() -> dict[str, str]:
    settings = load_settings(None, environ={})
    build = build_issue(ROOT / "issues" / DEMO_ISSUE, settings.identity, Templates())
    return {e.name: e.html for e in build.editions}


@pytest.fixture(scope="module")
def theme():
    return Templates().theme


def open_edition(browser, html: str, scheme: str):
    context = browser.new_context(
        viewport={"width": 640, "height": 900},
        color_scheme="dark" if scheme == "dark" else "light",
    )
    context.route("**/*", lambda route: route.abort())  # nothing leaves the machine
    page = context.new_page()
    page.set_content(html, wait_until="domcontentloaded")
    if scheme == "outlook":  # what Outlook.com and its apps mark when they recolour
        page.evaluate("['data-ogsc', 'data-ogsb'].forEach(a => document.body.setAttribute(a, ''))")
    return context, page


COMPUTED = """() => {
  const style = (el, prop) => getComputedStyle(el)[prop];
  const one = (sel) => document.querySelector(sel);
  return {
    body: style(document.body, "backgroundColor"),
    card: style(one("div.c"), "backgroundColor"),
    card_table: style(one("div.c > table"), "backgroundColor"),
    footer: style(one("div.ft"), "backgroundColor"),
    text: style(one(".x > div"), "color"),
    paragraph: style(one("[id$='-putin-trump-syria-statement'] p:not(.m)"), "color"),
    title: style(one("h2"), "color"),
    meta: style(one("p.m"), "color"),
    link: style(one("[id$='-putin-trump-syria-statement'] a"), "color"),
    quote: style(one("blockquote"), "color"),
    quote_rule: style(one("blockquote"), "borderLeftColor"),
    masthead_rule: style(one("div.rl td"), "borderBottomColor"),
    footer_text: style(one("p.f"), "color"),
  };
}"""


@needs_chromium
@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("edition", ["en", "fr", "bilingual"])
def test_each_scheme_shows_its_palette(browser, editions, theme, edition, scheme) -> None:
    palette = theme.light if scheme == "light" else theme.dark
    context, page = open_edition(browser, editions[edition], scheme)
    try:
        seen = page.evaluate(COMPUTED)
    finally:
        context.close()
    expected = {
        "body": "page",
        "card": "card",
        "card_table": "card",
        "footer": "page",
        "text": "text",
        "paragraph": "text",
        "title": "accent",
        "meta": "muted",
        "link": "link",
        "quote": "quote",
        "quote_rule": "quote_rule",
        "masthead_rule": "rule",
        "footer_text": "muted",
    }
    assert seen == {key: rgb(palette[token]) for key, token in expected.items()}


@needs_chromium
@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("edition", ["en", "fr", "bilingual"])
def test_axe_finds_no_contrast_problem(browser, editions, edition, scheme) -> None:
    context, page = open_edition(browser, editions[edition], scheme)
    try:
        page.add_script_tag(path=str(AXE_SCRIPT))
        result = page.evaluate(
            "axe.run(document, {runOnly: ['color-contrast'], resultTypes: ['violations']})"
        )
    finally:
        context.close()
    problems = [
        f"{node['target']}: {node['failureSummary']}"
        for violation in result["violations"]
        for node in violation["nodes"]
    ]
    assert problems == []
    assert [rule["id"] for rule in result["passes"]] == ["color-contrast"]  # it did look


def test_premailer_keeps_the_dark_rules(editions) -> None:
    """premailer drops rules it cannot inline ([data-ogsc] ...) from a style block it
    processes: the dark block must reach the email whole, media query included."""
    settings = load_settings(None, environ={})
    templates = Templates()
    issue = read_issue(ROOT / "issues" / DEMO_ISSUE)
    view = edition_view(issue, "en", settings.identity, templates.labels)
    compiled = _compile_mjml(templates.render(HTML_TEMPLATE, view), templates)
    out = inline_css(compiled, templates.css)
    dark = templates.theme.dark
    assert "@media (prefers-color-scheme:dark)" in out
    assert f"body,.pg,.ft,.ft table{{background-color:{dark['page']}!important}}" in out
    assert f"[data-ogsc] .x div{{color:{dark['text']}!important}}" in out
    assert "body[data-ogsb],[data-ogsb] .pg" in out
    assert ":root{color-scheme:light dark}" in out
    assert re.search(r'<meta name="color-scheme" content="light dark">', out)
    assert re.search(r'<meta name="supported-color-schemes" content="light dark">', out)
    for html in editions.values():  # and so in every edition as built
        assert "[data-ogsb] .c,[data-ogsb] .c table" in html
