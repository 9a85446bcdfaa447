"""Brief bodies: CommonMark in, typographically correct HTML or wrapped plain text out.

Raw HTML is never passed through (markdown-it's `html` option is off, so it arrives as
text), and markdown-it refuses `javascript:`-style link targets. Typography is applied to
text tokens only, a paragraph at a time, so URLs and markup are never touched.
"""

from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass

from markdown_it import MarkdownIt
from markdown_it.token import Token

from .typography import Inline, smarten_run

_md = MarkdownIt("commonmark", {"html": False, "typographer": False})


@dataclass(frozen=True)
class Html:
    html: str
    links: tuple[str, ...]  # every link written, the refused ones too (for the checks)
    images: tuple[tuple[str, str, int], ...]  # (src, alt, line of the source, from 0)


_REFUSED_LINK = re.compile(r"\]\(\s*<?([a-z][a-z0-9+.-]*:[^)\s>]*)", re.IGNORECASE)


def _shows_its_url(children: list[Token], start: int) -> bool:
    """Whether the link opened at `start` reads as its own URL (`<https://...>`)."""
    link = children[start]
    if link.markup in ("autolink", "linkify"):
        return True
    href = str(link.attrGet("href") or "")
    label = ""
    for child in children[start + 1 :]:
        if child.type == "link_close":
            break
        label += child.content
    return label.strip() in (href, href.removeprefix("mailto:"))


def _smarten_inline(children: list[Token], lang: str) -> None:
    """Typography for one paragraph's inline tokens, judged across the markup in them.

    A URL shown as link text is an opaque word, like inline code: never changed.
    """
    pieces: list[str | Inline] = []
    texts: list[Token] = []
    in_url_link = False
    for i, child in enumerate(children):
        kind = child.type
        if kind == "text" and not in_url_link:
            pieces.append(child.content)
            texts.append(child)
        elif kind in ("text", "code_inline", "image"):
            pieces.append(Inline.ATOM)
            if kind == "image":  # its alt text is a paragraph of its own
                _smarten_inline(child.children or [], lang)
        elif kind in ("softbreak", "hardbreak"):
            pieces.append(Inline.BREAK)
        else:
            if kind == "link_open":
                in_url_link = _shows_its_url(children, i)
            elif kind == "link_close":
                in_url_link = False
            pieces.append(Inline.MARKUP)
    for token, text in zip(texts, smarten_run(pieces, lang), strict=True):
        token.content = text


def _smarten_tokens(tokens: list[Token], lang: str) -> None:
    for token in tokens:
        if token.type == "inline":
            _smarten_inline(token.children or [], lang)


def to_html(source: str, lang: str) -> Html:
    tokens = _md.parse(source)
    _smarten_tokens(tokens, lang)
    links: list[str] = []
    images: list[tuple[str, str, int]] = []
    for token in tokens:
        for child in token.children or ():
            if child.type == "link_open":
                links.append(str(child.attrGet("href") or ""))
            elif child.type == "image":
                alt = "".join(c.content for c in child.children or ())
                line = token.map[0] if token.map else 0
                images.append((str(child.attrGet("src") or ""), alt, line))
    # markdown-it leaves a link it refuses (javascript:, data:...) as the text typed
    links += (m[1] for m in _REFUSED_LINK.finditer(source) if not _md.validateLink(m[1]))
    html = _md.renderer.render(tokens, _md.options, {})
    return Html(html=html.strip(), links=tuple(links), images=tuple(images))


def inline_html(source: str, lang: str) -> str:
    """A one-line Markdown string (a title, an intro line) as inline HTML."""
    tokens = _md.parseInline(source)
    _smarten_tokens(tokens, lang)
    return _md.renderer.render(tokens, _md.options, {})


def inline_text(source: str, lang: str) -> str:
    """A one-line Markdown string (a title) as plain text: `*Putin*` reads Putin."""
    tokens = _md.parseInline(source)
    _smarten_tokens(tokens, lang)
    return _TextWriter(width=0, footnotes=False).inline(tokens[0]) if tokens else ""


class _TextWriter:
    """Walks markdown-it block tokens and writes wrapped plain text with numbered links."""

    def __init__(self, width: int, footnotes: bool = True):
        self.width = width
        self.footnotes = footnotes  # False: a link reads as its text alone (a title)
        self.blocks: list[str] = []
        self.notes: list[str] = []
        self.prefixes: list[str] = []  # "> " for quotes, list markers for items
        self.list_stack: list[list[int | None]] = []  # [counter or None]
        self.pending_marker = ""
        self.hidden = False  # the paragraph being written belongs to a tight list
        self.last_hidden = False

    def inline(self, token: Token) -> str:
        out: list[str] = []
        href_stack: list[str] = []
        for child in token.children or ():
            kind = child.type
            if kind in ("text", "code_inline"):
                out.append(child.content)
            elif kind == "softbreak":
                out.append(" ")
            elif kind == "hardbreak":
                out.append("\n")
            elif kind == "link_open":
                href_stack.append(str(child.attrGet("href") or ""))
                out.append("\x00")  # where the link text starts
            elif kind == "link_close":
                href = href_stack.pop()
                start = len(out) - 1 - out[::-1].index("\x00")
                label = "".join(out[start + 1 :])
                del out[start:]
                shown = _md.normalizeLinkText(href)  # as markdown-it shows an autolink's URL
                if label.strip() in {
                    u.removeprefix(prefix) for u in (href, shown) for prefix in ("", "mailto:")
                }:
                    out.append(label.strip())
                elif not self.footnotes:
                    out.append(label)
                else:
                    self.notes.append(href)
                    out.append(f"{label} [{len(self.notes)}]")
            elif kind == "image":
                alt = "".join(c.content for c in child.children or ())
                if alt.strip():  # an image with no alt text is decoration: nothing to read
                    out.append(f"[{alt}]")
        return "".join(out)

    def emit(self, text: str) -> None:
        quote = "".join(p for p in self.prefixes if p.startswith(">"))
        indent = " " * sum(len(p) for p in self.prefixes if not p.startswith(">"))
        first = quote + indent[: -len(self.pending_marker) or None] + self.pending_marker
        if not self.pending_marker:
            first = quote + indent
        rest = quote + indent
        self.pending_marker = ""
        lines: list[str] = []
        for i, piece in enumerate(text.split("\n")):
            lines.extend(
                textwrap.wrap(
                    piece,
                    width=self.width,
                    initial_indent=first if i == 0 else rest,
                    subsequent_indent=rest,
                    break_long_words=False,
                    break_on_hyphens=False,
                )
                or [first.rstrip()]
            )
        joined = "\n".join(lines)
        if self.blocks and self.hidden and self.last_hidden:
            self.blocks[-1] += "\n" + joined
        else:
            self.blocks.append(joined)
        self.last_hidden = self.hidden

    def write(self, tokens: list[Token]) -> str:
        for token in tokens:
            kind = token.type
            if kind == "blockquote_open":
                self.prefixes.append("> ")
            elif kind == "blockquote_close":
                self.prefixes.pop()
            elif kind in ("bullet_list_open", "ordered_list_open"):
                start = int(token.attrGet("start") or 1) if kind == "ordered_list_open" else None
                self.list_stack.append([start])
            elif kind in ("bullet_list_close", "ordered_list_close"):
                self.list_stack.pop()
                self.last_hidden = False
            elif kind == "list_item_open":
                counter = self.list_stack[-1]
                if counter[0] is None:
                    marker = "- "
                else:
                    marker = f"{counter[0]}. "
                    counter[0] += 1
                self.prefixes.append(" " * len(marker))
                self.pending_marker = marker
            elif kind == "list_item_close":
                self.prefixes.pop()
            elif kind == "paragraph_open":
                self.hidden = bool(token.hidden)
            elif kind == "inline":
                self.emit(self.inline(token))
            elif kind in ("fence", "code_block"):
                self.blocks.append(textwrap.indent(token.content.rstrip("\n"), "    "))
                self.last_hidden = False
            elif kind == "hr":
                self.blocks.append("-" * 20)
        body = "\n\n".join(self.blocks)
        if self.notes:
            body += "\n\n" + "\n".join(f"[{n}] {href}" for n, href in enumerate(self.notes, 1))
        return body


def to_text(source: str, lang: str, width: int = 72) -> str:
    tokens = _md.parse(source)
    _smarten_tokens(tokens, lang)
    return _TextWriter(width).write(tokens)
