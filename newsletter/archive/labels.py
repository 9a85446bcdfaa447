"""The archive's words, per language, from labels.toml: every key in both languages, or a
TemplateError naming the file, the line of the language's table and the missing key."""

from __future__ import annotations

import tomllib
from collections.abc import Sequence
from pathlib import Path

from ..content import LANGS
from ..errors import TemplateError
from ..typography import smarten

LABELS_FILE = "labels.toml"
LABEL_KEYS = (
    "language", "issue", "all_issues", "latest", "feed", "index_title", "index_description",
    "home_description", "no_issues", "skip", "only_en", "only_fr", "read_in_other",
    "both_languages", "one_language", "subscription", "manage", "manage_help", "subscribe",
)  # fmt: skip


def load_labels(folders: Sequence[Path]) -> dict[str, dict[str, str]]:
    """The labels of the first folder that has the file, typographically corrected."""
    path = next((f / LABELS_FILE for f in folders if (f / LABELS_FILE).is_file()), None)
    if path is None:
        raise TemplateError("template file missing; restore it from git", folders[-1])
    try:
        text = path.read_text("utf-8")
    except UnicodeDecodeError:
        raise TemplateError("not valid UTF-8; save it as UTF-8", path) from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise TemplateError(f"invalid TOML: {exc}", path) from None
    labels: dict[str, dict[str, str]] = {}
    for lang in LANGS:
        table = raw.get(lang)
        if not isinstance(table, dict):
            raise TemplateError(f"no [{lang}] table: add it, with a text for every key", path)
        for key in LABEL_KEYS:
            if not isinstance(table.get(key), str) or not table[key].strip():
                raise TemplateError(
                    f'[{lang}] has no translation for {key}: add {key} = "..."',
                    path,
                    _table_line(text, lang),
                )
        labels[lang] = {k: smarten(v, lang) for k, v in table.items() if isinstance(v, str)}
    return labels


def _table_line(text: str, table: str) -> int | None:
    for number, line in enumerate(text.split("\n"), 1):
        if line.strip() == f"[{table}]":
            return number
    return None
