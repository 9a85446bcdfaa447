"""The theme file: named colours, light and dark; a theme that would leave a scheme
unreadable stops the build, naming the colour and its line."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from newsletter.cli import main
from newsletter.errors import TemplateError
from newsletter.render import Templates
from newsletter.theme import TEXT_ON, contrast, parse_theme

from .conftest import DEMO_ISSUE, ROOT

THEME = (ROOT / "templates" / "theme.toml").read_text("utf-8")


def line_of(text: str, start: str) -> int:
    return next(n for n, line in enumerate(text.split("\n"), 1) if line.startswith(start))


def test_the_shipped_theme_reads_well_in_both_schemes() -> None:
    theme = Templates().theme
    for palette in (theme.light, theme.dark):
        for fg, bg in TEXT_ON:
            assert contrast(palette[fg], palette[bg]) >= 4.5, (fg, bg)
        # near-white and near-black, never pure: some clients' dark modes single those out
        assert not {"#ffffff", "#000000"} & set(palette.values())
    assert theme.light["card"] != theme.dark["card"]


def test_contrast_is_wcags() -> None:
    assert contrast("#000000", "#ffffff") == pytest.approx(21)
    assert contrast("#777777", "#ffffff") == pytest.approx(4.48, abs=0.01)
    assert contrast("#8c1c2b", "#8c1c2b") == 1


BROKEN = {
    "a colour with no dark value": (
        lambda t: t.replace('quote = "#d8d2c9"\n', ""),
        "quote = ",
        "'quote' has no dark value; add quote = \"#rrggbb\" under [dark]",
    ),
    "a colour that is not one": (
        lambda t: t.replace('text = "#ede9e3"', 'text = "offwhite"'),
        'text = "offwhite"',
        '[dark] text = \'offwhite\' is not a colour; write it as "#rrggbb", e.g. "#8c1c2b"',
    ),
    "dark text too close to its card": (
        lambda t: t.replace('muted = "#b8afa5"', 'muted = "#4a4540"'),
        'muted = "#4a4540"',
        "[dark] muted #4a4540 on card #262320 has a contrast of 1.6:1, under the 4.5:1 "
        "readers need; make 'muted' lighter",
    ),
    "light links too pale": (
        lambda t: t.replace('link = "#8c1c2b"', 'link = "#e8a0a8"'),
        'link = "#e8a0a8"',
        "[light] link #e8a0a8 on card #fffffe has a contrast of 2.1:1, under the 4.5:1 readers "
        "need; make 'link' darker",
    ),
    "a colour the templates need, missing from both": (
        lambda t: t.replace('rule = "#8c1c2b"', "").replace('rule = "#c2515f"', ""),
        "[light]",
        "[light] and [dark] need 'rule' (the templates use it); add rule = \"#rrggbb\" to both",
    ),
    "no dark table": (
        lambda t: t[: t.index("[dark]")],
        None,
        "no [dark] table; give each colour a light and a dark value",
    ),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_a_broken_theme_names_the_colour_and_its_line(case: str, tmp_path: Path) -> None:
    break_it, line_start, expected = BROKEN[case]
    text = break_it(THEME)
    path = tmp_path / "theme.toml"
    with pytest.raises(TemplateError) as caught:
        parse_theme(text, path)
    line = None
    if line_start is not None:
        scheme = (
            "[dark]"
            if case in ("a colour that is not one", "dark text too close to its card")
            else "[light]"
        )
        start = text.index(scheme) if line_start != "[light]" else 0
        line = text[:start].count("\n") + line_of(text[start:], line_start)
    assert str(caught.value) == (f"{path}:{line}: {expected}" if line else f"{path}: {expected}")


def test_a_broken_theme_stops_the_build_with_one_line(workdir: Path) -> None:
    templates = workdir / "templates"
    shutil.copytree(ROOT / "templates", templates)
    theme = templates / "theme.toml"
    theme.write_text(THEME.replace('text = "#ede9e3"', 'text = "#3a3530"'), "utf-8")
    result = CliRunner().invoke(
        main, ["build", f"issues/{DEMO_ISSUE}"], env={"NEWSLETTER_TEMPLATES": str(templates)}
    )
    assert result.exit_code == 2
    dark = THEME.index("[dark]")
    line = THEME[:dark].count("\n") + line_of(THEME[dark:], "text = ")
    assert result.stderr.splitlines() == [
        f"error: {theme}:{line}: [dark] text #3a3530 on card #262320 has a contrast of 1.3:1, "
        "under the 4.5:1 readers need; make 'text' lighter"
    ]
    assert not (workdir / "build").exists()
