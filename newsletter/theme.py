"""The email's colours: one theme file of named colours, light and dark, checked once.

Templates name colours (`t.light.card`) and put css-class hooks on what the dark rules
recolour; no template writes a colour out. A build stops on a theme that would leave a
scheme unreadable: a colour without a dark value, one that is not a colour, or text
that does not stand out from its background.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from .content import toml_key_line
from .errors import TemplateError

THEME_FILE = "theme.toml"
SCHEMES = ("light", "dark")
# The colours the shipped templates use: a theme must define each of them.
TOKENS = ("page", "card", "text", "muted", "accent", "link", "rule", "quote", "quote_rule")
# Text on background, as the templates pair them; WCAG AA asks 4.5:1 for body text.
TEXT_ON = (
    ("text", "card"),
    ("muted", "card"),
    ("accent", "card"),
    ("link", "card"),
    ("quote", "card"),
    ("muted", "page"),
    ("link", "page"),
)
MIN_CONTRAST = 4.5
_COLOUR = re.compile(r"#(?:[0-9a-fA-F]{3}){1,2}")


@dataclass(frozen=True)
class Theme:
    light: Mapping[str, str]  # token -> "#rrggbb"
    dark: Mapping[str, str]


def _normalise(colour: str) -> str:
    digits = colour[1:].lower()
    return "#" + ("".join(c * 2 for c in digits) if len(digits) == 3 else digits)


def luminance(colour: str) -> float:
    """Relative luminance of "#rrggbb", as WCAG 2 defines it."""

    def linear(channel: int) -> float:
        c = channel / 255
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (int(colour[i : i + 2], 16) for i in (1, 3, 5))
    return 0.2126 * linear(r) + 0.7152 * linear(g) + 0.0722 * linear(b)


def contrast(a: str, b: str) -> float:
    """WCAG contrast ratio of two "#rrggbb" colours, from 1 to 21."""
    light, dark = sorted((luminance(a), luminance(b)), reverse=True)
    return (light + 0.05) / (dark + 0.05)


def parse_theme(text: str, path: Path) -> Theme:
    """The theme file's text as a Theme, or a TemplateError naming the token and its line."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise TemplateError(f"invalid TOML: {exc}", path) from None

    def line(scheme: str, token: str | None = None) -> int | None:
        return toml_key_line(text, scheme, token) or toml_key_line(text, scheme, None)

    tables: dict[str, dict] = {}
    for scheme in SCHEMES:
        table = data.get(scheme)
        if not isinstance(table, dict):
            raise TemplateError(
                f"no [{scheme}] table; give each colour a light and a dark value", path
            )
        tables[scheme] = table
    light, dark = tables["light"], tables["dark"]
    for token in light:
        if token not in dark:
            raise TemplateError(
                f"'{token}' has no dark value; add {token} = \"#rrggbb\" under [dark]",
                path,
                line("light", token),
            )
    for token in dark:
        if token not in light:
            raise TemplateError(
                f"'{token}' has no light value; add {token} = \"#rrggbb\" under [light]",
                path,
                line("dark", token),
            )
    for token in TOKENS:
        if token not in light:
            raise TemplateError(
                f"[light] and [dark] need '{token}' (the templates use it); "
                f'add {token} = "#rrggbb" to both',
                path,
                line("light"),
            )
    colours: dict[str, dict[str, str]] = {}
    for scheme, table in tables.items():
        colours[scheme] = {}
        for token, value in table.items():
            if not isinstance(value, str) or not _COLOUR.fullmatch(value):
                raise TemplateError(
                    f"[{scheme}] {token} = {value!r} is not a colour; "
                    'write it as "#rrggbb", e.g. "#8c1c2b"',
                    path,
                    line(scheme, token),
                )
            colours[scheme][token] = _normalise(value)
    for scheme, palette in colours.items():
        for fg, bg in TEXT_ON:
            ratio = contrast(palette[fg], palette[bg])
            if ratio < MIN_CONTRAST:
                raise TemplateError(
                    f"[{scheme}] {fg} {palette[fg]} on {bg} {palette[bg]} has a contrast of "
                    f"{ratio:.1f}:1, under the {MIN_CONTRAST}:1 readers need; make '{fg}' "
                    f"{'darker' if luminance(palette[bg]) > 0.18 else 'lighter'}",
                    path,
                    line(scheme, fg),
                )
    return Theme(light=colours["light"], dark=colours["dark"])
