"""Scaffold briefs and issues, and compose the next issue from the briefs not yet used."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from .content import (
    BRIEFS_DIR,
    LANGS,
    MANIFEST,
    SLUG_RE,
    Brief,
    parse_toml,
    read_briefs,
    read_text,
    suggest_slug,
)
from .errors import ContentError

BRIEF_TEMPLATE = """---
# Keep texts in "double quotes": a colon, a guillemet or a # inside is then safe.
# Write a double quote inside one as \\".
title: "{title}"
date: {date}
source: "{source}"
# link: "https://www.example.org/original-article"
# tags: [topic, other-topic]
# image:
#   src: "https://news.example.org/images/picture.jpg"
#   alt: "What the picture shows, for readers who cannot see it"   # "" if only decoration
---
{body}
"""

TITLE_HINT = {"en": "Title of the brief", "fr": "Titre de la brève"}
PREHEADER_HINT = {
    "en": "What this issue is about, in a sentence.",
    "fr": "De quoi parle ce numéro, en une phrase.",
}
# What the bilingual edition's inbox shows: short, or inboxes cut it (see checks.py).
PREHEADER_HINT["bilingual"] = f"{PREHEADER_HINT['en']} / {PREHEADER_HINT['fr']}"
BODY_HINT = {
    "en": "Write the brief here in Markdown: paragraphs, > quotations, [links](https://...).",
    "fr": "Rédigez la brève ici en Markdown : paragraphes, > citations, [liens](https://...).",
}


@dataclass(frozen=True)
class PastIssue:
    id: str
    number: int
    date: dt.date
    slugs: tuple[str, ...]


def new_brief(issues_dir: Path, slug: str, langs: tuple[str, ...], today: dt.date) -> list[Path]:
    """Create `issues/briefs/SLUG.LANG.md` for each language; never overwrite."""
    if not SLUG_RE.match(slug):
        example = suggest_slug(slug) or "syria-ceasefire"
        raise ContentError(
            f"slug '{slug}' must be lowercase letters, digits and hyphens, e.g. {example}"
        )
    folder = issues_dir / BRIEFS_DIR
    paths = [folder / f"{slug}.{lang}.md" for lang in langs]
    for path in paths:
        if path.exists():
            raise ContentError("already exists; edit it, or choose another slug", path)
    folder.mkdir(parents=True, exist_ok=True)
    for lang, path in zip(langs, paths, strict=True):
        title = TITLE_HINT[lang]
        path.write_text(
            BRIEF_TEMPLATE.format(title=title, date=today, source="EIRNS", body=BODY_HINT[lang]),
            "utf-8",
        )
    return paths


def past_issues(issues_dir: Path) -> list[PastIssue]:
    """Every issue manifest under `issues_dir`, oldest first (read leniently: only what
    composing needs)."""
    found = []
    for manifest in sorted(issues_dir.glob(f"*/{MANIFEST}")):
        data = parse_toml(read_text(manifest), manifest)
        date = data.get("date")
        if not isinstance(date, dt.date):
            raise ContentError("'date' is missing; write date = YYYY-MM-DD", manifest)
        number = data.get("number", 0)
        if not isinstance(number, int) or isinstance(number, bool):
            raise ContentError("'number' must be a whole number, e.g. number = 2", manifest)
        found.append(
            PastIssue(
                id=manifest.parent.name,
                number=number,
                date=date,
                slugs=tuple(s for s in data.get("briefs", []) if isinstance(s, str)),
            )
        )
    return sorted(found, key=lambda p: (p.date, p.number))


def unused_briefs(
    issues_dir: Path, until: dt.date | None = None
) -> tuple[list[Brief], PastIssue | None]:
    """Briefs dated on or after the last issue's day (and not after `until`) that no issue
    has used yet, oldest first. The same day counts: a brief written after that day's issue
    went out belongs to the next one."""
    issues = past_issues(issues_dir)
    last = issues[-1] if issues else None
    used = {slug for p in issues for slug in p.slugs}
    briefs = read_briefs(issues_dir / BRIEFS_DIR).values()
    fresh = [
        b
        for b in briefs
        if b.slug not in used
        and (last is None or b.date >= last.date)
        and (until is None or b.date <= until)
    ]
    return sorted(fresh, key=lambda b: (b.date, b.slug)), last


def _toml_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def write_issue(
    issues_dir: Path, issue_id: str, number: int, date: dt.date, slugs: list[str]
) -> Path:
    if not SLUG_RE.match(issue_id) or issue_id == BRIEFS_DIR:
        raise ContentError(
            f"issue id '{issue_id}' must be lowercase letters, digits and hyphens, and not "
            f"'{BRIEFS_DIR}': it names a folder under {issues_dir}/, e.g. 2017-11"
        )
    folder = issues_dir / issue_id
    manifest = folder / MANIFEST
    if manifest.exists():
        raise ContentError("already exists; edit it, or pass another --id", manifest)
    lines = [
        f"number = {number}",
        f"date = {date.isoformat()}",
        "# Reorder or trim: the order here is the order in the newsletter.",
        "briefs = [",
    ]
    lines += [f"    {_toml_string(s)}," for s in slugs]
    lines.append("]")
    texts = {
        "en": (f"News / Brèves No. {number}", PREHEADER_HINT["en"]),
        "fr": (f"News / Brèves no {number}", PREHEADER_HINT["fr"]),
    }
    for lang in LANGS:
        subject, preheader = texts[lang]
        lines += [
            "",
            f"[{lang}]",
            f"subject = {_toml_string(subject)}",
            f"preheader = {_toml_string(preheader)}",
            'intro = """',
            '"""',
        ]
    # Without it the bilingual edition would say both languages' texts one after the
    # other: a subject inboxes cut, and a preheader nobody wrote.
    lines += [
        "",
        "# What the bilingual edition's inbox shows; keep the subject under about 78 characters.",
        "[bilingual]",
        f"subject = {_toml_string(f'News / Brèves No. {number} / no {number}')}",
        f"preheader = {_toml_string(PREHEADER_HINT['bilingual'])}",
    ]
    folder.mkdir(parents=True, exist_ok=True)
    manifest.write_text("\n".join(lines) + "\n", "utf-8")
    return manifest
