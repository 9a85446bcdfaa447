"""What an editor should know before sending: sizes against Gmail's clipping, alt text,
links, preheaders, missing translations."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from urllib.parse import urlsplit

from .compose import BODY_HINT, PREHEADER_HINT, TITLE_HINT
from .render import RenderedEdition

CLIP_LIMIT = 102 * 1024  # Gmail hides the rest of a message's HTML past about 102 KB
CLIP_WARNING = 90 * 1024
PREHEADER_MAX = 150
SUBJECT_MAX = 78  # about what an inbox shows of a subject before cutting it
LINK_SCHEMES = ("https", "http", "mailto")


class Level(StrEnum):
    WARNING = "warning"
    ERROR = "error"


@dataclass(frozen=True)
class Finding:
    level: Level
    edition: str
    message: str
    blocks_send: bool = False  # a warning while composing, but no reader may get it

    def __str__(self) -> str:
        return f"{self.level}: {self.edition}: {self.message}"

    @property
    def stops_send(self) -> bool:
        """An error, or a placeholder no reader should see: a real send refuses to start."""
        return self.level is Level.ERROR or self.blocks_send


def check_edition(edition: RenderedEdition, html_part_bytes: int) -> list[Finding]:
    view = edition.view
    found: list[Finding] = []

    def add(level: Level, message: str, blocks_send: bool = False) -> None:
        found.append(Finding(level, view.name, message, blocks_send))

    kb = html_part_bytes / 1024
    if html_part_bytes > CLIP_LIMIT:
        add(
            Level.ERROR,
            f"HTML part is {kb:.1f} KB encoded: Gmail clips past 102 KB, "
            "hiding the unsubscribe link; drop a brief or shorten them",
        )
    elif html_part_bytes > CLIP_WARNING:
        add(Level.WARNING, f"HTML part is {kb:.1f} KB encoded, close to Gmail's 102 KB clipping")
    if len(view.subject) > SUBJECT_MAX:
        add(
            Level.WARNING,
            f"subject is {len(view.subject)} characters; inboxes cut it after about "
            f"{SUBJECT_MAX}: shorten it, or put what matters first",
        )
    if any(h in view.preheader for h in PREHEADER_HINT.values()):
        add(
            Level.WARNING,
            "preheader is still the placeholder of 'newsletter compose'",
            blocks_send=True,
        )
    if not view.preheader.strip():
        add(Level.WARNING, "preheader is empty; inboxes will show the first text instead")
    elif len(view.preheader) > PREHEADER_MAX:
        add(
            Level.WARNING,
            f"preheader is {len(view.preheader)} characters; keep it under {PREHEADER_MAX}",
        )
    seen: set[str] = set()
    # the bilingual edition holds each brief twice: say which text a warning is about
    both = len({section.lang for section in view.sections}) > 1
    for section in view.sections:
        for block in section.blocks:
            if block.note:
                add(
                    Level.WARNING,
                    f"brief '{block.slug}' has no {section.lang} version ({block.note})",
                )
            if block.stub_href or block.slug + block.html_lang in seen:
                continue
            seen.add(block.slug + block.html_lang)
            if not block.body_text.strip():
                add(
                    Level.WARNING,
                    f"brief '{block.slug}' has no text under its title in {block.html_lang}; "
                    "write it, or take the brief out of the issue",
                )
            for src, _alt in block.images:  # no alt at all stopped the build (views.py)
                if urlsplit(src).scheme not in ("https", "http") or not _absolute(src):
                    add(
                        Level.WARNING,
                        f"brief '{block.slug}': image '{src}' is not an absolute "
                        "https: URL; readers will not see it",
                    )
            if block.title in TITLE_HINT.values() or any(
                h.split(":")[0] in block.body_text for h in BODY_HINT.values()
            ):
                add(
                    Level.WARNING,
                    f"brief '{block.slug}'{f' ({section.lang})' if both else ''} still has the "
                    "placeholder text of 'newsletter new brief'",
                    blocks_send=True,
                )
            for href in block.links:
                if urlsplit(href).scheme not in LINK_SCHEMES or not _absolute(href):
                    add(
                        Level.WARNING,
                        f"brief '{block.slug}': link '{href}' is not an absolute "
                        "https:, http: or mailto: URL; readers cannot follow it",
                    )
    return found


def _absolute(href: str) -> bool:
    parts = urlsplit(href)
    return parts.scheme == "mailto" or bool(parts.netloc)
