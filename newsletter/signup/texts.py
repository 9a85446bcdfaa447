"""The consent wording of the signup form: read from `web/signup.toml`, filled in from the
settings, typography applied, and identified by a version and the hash of its exact words."""

from __future__ import annotations

import string
import tomllib
from dataclasses import dataclass
from pathlib import Path

from ..config import LANGUAGES, SHIPPED_TEMPLATES, Identity
from ..consent import ConsentText
from ..errors import TemplateError
from ..typography import smarten

TEXTS_FILE = "signup.toml"
PLACEHOLDERS = ("title", "org", "address", "contact")


@dataclass(frozen=True)
class Wording:
    """The consent text in each language, ready to show."""

    version: str
    consent: dict[str, str]  # language -> text
    welcome: dict[str, str]  # language -> the welcome e-mail's words; "" for none

    def text(self, langs: list[str] | tuple[str, ...]) -> ConsentText:
        """What a page in `langs` shows next to the box, as one text to hash and keep."""
        language = "both" if len(langs) > 1 else langs[0]
        return ConsentText(self.version, language, "\n\n".join(self.consent[x] for x in langs))


def texts_path(templates_dir: Path | None) -> Path:
    """`web/signup.toml` in NEWSLETTER_TEMPLATES when that folder has one, else ours."""
    if templates_dir is not None:
        own = templates_dir / "web" / TEXTS_FILE
        if own.is_file():
            return own
    return SHIPPED_TEMPLATES / "web" / TEXTS_FILE


def load_wording(templates_dir: Path | None, identity: Identity) -> Wording:
    """The consent wording; TemplateError naming the file for anything it cannot use."""
    path = texts_path(templates_dir)
    try:
        data = tomllib.loads(path.read_text("utf-8"))
    except OSError as exc:
        raise TemplateError(f"cannot read the consent wording: {exc.strerror}", path) from None
    except UnicodeDecodeError:
        raise TemplateError("not valid UTF-8; save it as UTF-8", path) from None
    except tomllib.TOMLDecodeError as exc:
        raise TemplateError(f"invalid TOML: {exc}", path) from None
    version = data.get("version")
    if not isinstance(version, str | int) or not str(version).strip():
        raise TemplateError('needs version = "1" (raise it when the words change)', path)
    consent, welcome = {}, {}
    for lang in LANGUAGES:
        table = data.get(lang)
        text = table.get("consent") if isinstance(table, dict) else None
        if not isinstance(text, str) or not text.strip():
            raise TemplateError(f'[{lang}] needs consent = "..." (the words by the box)', path)
        values = {
            "title": identity.title[lang],
            "org": identity.org[lang],
            "address": identity.postal[lang],
            "contact": identity.contact[lang],
        }
        consent[lang] = smarten(" ".join(_fill(text, values, path, lang).split()), lang)
        words = table.get("welcome", "") if isinstance(table, dict) else ""
        if not isinstance(words, str):
            raise TemplateError(f'[{lang}] welcome must be a text: welcome = "..."', path)
        paragraphs = _fill(words, values, path, lang).split("\n\n")
        welcome[lang] = "\n\n".join(
            smarten(" ".join(p.split()), lang) for p in paragraphs if p.strip()
        )
    return Wording(str(version).strip(), consent, welcome)


def _fill(text: str, values: dict[str, str], path: Path, lang: str) -> str:
    try:
        fields = [name for _, name, _, _ in string.Formatter().parse(text) if name is not None]
    except ValueError as exc:  # a lone { or }
        raise TemplateError(f"[{lang}] consent: {exc}; write {{{{ for a brace", path) from None
    for name in fields:
        if name not in values:
            names = ["{" + p + "}" for p in PLACEHOLDERS]
            known = ", ".join(names[:-1]) + " or " + names[-1]
            raise TemplateError(f"[{lang}] consent: unknown {{{name}}}; use {known}", path)
    return text.format_map(values)
