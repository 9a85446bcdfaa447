"""The issues on the web, read and checked: content -> the views the pages are made from."""

from __future__ import annotations

import difflib
import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ..config import Identity
from ..content import (
    BRIEFS_DIR,
    LANGS,
    MANIFEST,
    SLUG_RE,
    Issue,
    read_briefs,
    read_issue,
    read_text,
)
from ..errors import ArchiveError, ContentError
from ..views import EDITIONS, EditionView, edition_view
from .paths import EDITION_DIRS
from .state import Stamp

# Characters that XML 1.0 cannot carry and HTML calls parse errors; invisible in an editor
# (a form feed or vertical tab pasted from a word processor), so they are named by position.
CONTROLS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


@dataclass(frozen=True)
class ArchivedIssue:
    issue: Issue
    views: Mapping[str, EditionView]  # by edition: en, fr, bilingual
    langs: tuple[str, ...]  # the languages with at least one brief of their own
    stamps: Mapping[str, Stamp]  # by language, for each of `langs`

    @property
    def id(self) -> str:
        return self.issue.id

    def exists_in(self, lang: str) -> bool:
        return lang in self.langs


def own_languages(issue: Issue) -> tuple[str, ...]:
    """The languages the issue exists in: those in which at least one brief was written."""
    return tuple(lang for lang in LANGS if any(b.text(lang) for b in issue.briefs))


def newest_first(issues: list[ArchivedIssue]) -> list[ArchivedIssue]:
    return sorted(issues, key=lambda a: (a.issue.date, a.issue.number, a.id), reverse=True)


def issue_folder(issues_dir: Path, issue_id: str, problem: str, fix: str = "") -> Path:
    """The folder of an issue, or an ArchiveError: `problem`, what is missing, then `fix`."""
    if not SLUG_RE.match(issue_id) or issue_id in EDITION_DIRS.values():
        raise ArchiveError(
            f"issue id '{issue_id}' cannot be a web address: use lowercase letters, digits "
            "and hyphens (not en, fr or en-fr); rename the folder before it is sent",
            issues_dir / issue_id,
        )
    folder = issues_dir / issue_id
    if not (folder / MANIFEST).is_file():
        known = sorted(p.parent.name for p in issues_dir.glob(f"*/{MANIFEST}"))
        close = difflib.get_close_matches(issue_id, known, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise ArchiveError(f"{problem}: {folder}/ has no {MANIFEST}{hint}{fix}")
    return folder


def check_controls(issue: Issue) -> None:
    """A control character in a brief or manifest stops the archive, named by file and line."""
    paths = [issue.path / MANIFEST]
    paths += [t.path for b in issue.briefs for t in (b.en, b.fr) if t is not None]
    for path in paths:
        text = read_text(path)
        found = CONTROLS.search(text)
        if found:
            line = text.count("\n", 0, found.start()) + 1
            raise ContentError(
                f"control character U+{ord(found.group()):04X} (invisible in most editors); "
                "delete it: feeds and web pages cannot carry it",
                path,
                line,
            )


def digest(issue: Issue, lang: str) -> str:
    """What a reader of the `lang` page reads, as a hash: the feed's `updated` moves only
    when this changes (a correction), never when a template or setting does."""
    text = issue.text[lang]
    briefs = []
    for brief in issue.briefs:
        shown = brief.text(lang) or brief.text(brief.languages[0])
        assert shown is not None
        image = (shown.image.src, shown.image.alt) if shown.image else None
        briefs.append(
            [brief.slug, shown.lang, shown.title, shown.date.isoformat(), shown.source,
             shown.link, image, shown.body]
        )  # fmt: skip
    content = [issue.number, issue.date.isoformat(), text.subject, text.preheader, text.intro]
    data = json.dumps([content, briefs], ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(data.encode("utf-8")).hexdigest()


def read_public(
    issues_dir: Path, ids: list[str], identity: Identity, labels: Mapping
) -> list[tuple[Issue, dict[str, EditionView]]]:
    """Each public issue read, checked and turned into the views of its three editions."""
    read = []
    # once for all the issues: every issue would otherwise read the whole folder again
    briefs = read_briefs(issues_dir / BRIEFS_DIR) if ids else {}
    for issue_id in ids:
        folder = issue_folder(
            issues_dir,
            issue_id,
            f"issue '{issue_id}' is on the web (sent or published)",
            f"; restore the folder, or take the issue off with "
            f"'newsletter archive unpublish {issue_id}'",
        )
        issue = read_issue(folder, briefs)
        check_controls(issue)
        views = {name: edition_view(issue, name, identity, labels) for name in EDITIONS}
        read.append((issue, views))
    return read
