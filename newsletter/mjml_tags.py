"""What mjml-python does not check in a template: tag names, and tags left open.

MRML copies an unknown tag (`<mj-txt>`) into the HTML as it is and says nothing, and
reports a tag left open as "unexpected end of stream", with no position, against the
whole rendered source. These read a template's own source, Jinja taken out, so that the
error names the file and line the editor has to open.
"""

from __future__ import annotations

import difflib
import re

# MJML 4's components, head and body.
KNOWN = frozenset({
    "mjml", "mj-head", "mj-body", "mj-attributes", "mj-all", "mj-class", "mj-breakpoint",
    "mj-font", "mj-html-attributes", "mj-html-attribute", "mj-selector", "mj-preview",
    "mj-style", "mj-title", "mj-include", "mj-accordion", "mj-accordion-element",
    "mj-accordion-title", "mj-accordion-text", "mj-button", "mj-carousel", "mj-carousel-image",
    "mj-column", "mj-divider", "mj-group", "mj-hero", "mj-image", "mj-navbar", "mj-navbar-link",
    "mj-raw", "mj-section", "mj-social", "mj-social-element", "mj-spacer", "mj-table",
    "mj-text", "mj-wrapper",
})  # fmt: skip
_JINJA = re.compile(r"\{#.*?#\}|\{%.*?%\}|\{\{.*?\}\}", re.DOTALL)
_TAG = re.compile(r"<(/?)(mjml|mj-[A-Za-z0-9-]*)\b((?:[^>\"']|\"[^\"]*\"|'[^']*')*)>")


def _without_jinja(source: str) -> str:
    """The source with Jinja's tags, expressions and comments blanked, lines kept."""
    return _JINJA.sub(lambda m: re.sub(r"[^\n]", " ", m.group()), source)


def _line(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


def unknown_tag(source: str) -> tuple[int, str] | None:
    """(line, message) for the first tag that is no MJML component, or None."""
    text = _without_jinja(source)
    for match in _TAG.finditer(text):
        name = match.group(2)
        if name in KNOWN:
            continue
        close = difflib.get_close_matches(name, KNOWN, n=1, cutoff=0.6)
        hint = f" (did you mean <{match.group(1)}{close[0]}>?)" if close else ""
        return _line(text, match.start()), (
            f"unknown MJML tag <{match.group(1)}{name}>{hint}; MJML would copy it into the "
            "email as it is"
        )
    return None


def unclosed_tag(source: str) -> tuple[int, str] | None:
    """(line, message) for the first MJML tag left open or closed twice, or None.

    Reads the template as written, both branches of an `if` in turn: a template that
    opens a tag in one file and closes it in another would be reported, so this only
    explains a failure MJML has already reported."""
    text = _without_jinja(source)
    stack: list[tuple[str, int]] = []
    for match in _TAG.finditer(text):
        closing, name, rest = match.group(1), match.group(2), match.group(3)
        line = _line(text, match.start())
        if rest.rstrip().endswith("/"):
            continue  # <mj-all ... />
        if not closing:
            stack.append((name, line))
        elif stack and stack[-1][0] == name:
            stack.pop()
        elif any(open_name == name for open_name, _ in stack):
            open_name, open_line = stack[-1]
            return open_line, (
                f"<{open_name}> is not closed: add </{open_name}> before the </{name}> "
                f"of line {line}"
            )
        else:
            return line, f"</{name}> closes no open tag; remove it, or open <{name}> above it"
    if stack:
        open_name, open_line = stack[-1]
        return open_line, f"<{open_name}> is never closed; add </{open_name}> after its content"
    return None
