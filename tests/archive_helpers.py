"""What the archive tests share: more issues beside the demo, and a reader of pages."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

from newsletter.ledger import Ledger

# An issue whose only brief is in English: its French page must say so and link across.
ENGLISH_ONLY = """\
number = 2
date = 2017-12-04
briefs = ["iter-fusion-milestone"]

[en]
subject = "News No. 2: ITER's milestone"
preheader = "Half of the fusion reactor is built."

[fr]
subject = "Brèves no 2 : le jalon d'ITER"
preheader = "La moitié du réacteur est construite."
"""

DRAFT = """\
number = 3
date = 2018-01-08
briefs = ["churchill-rail-line"]

[en]
subject = "Draft that nobody may see"

[fr]
subject = "Brouillon que personne ne doit voir"
"""

# A subscriber's token as tokens.make_token writes it for any id below 2**32: eight bytes of
# id (base64 "AAAAA..."), then the MAC. Anything of that shape in the site is a leak.
TOKEN_SHAPED = re.compile(r"(?<![A-Za-z0-9_-])AAAAA[A-Za-z0-9_-]{27}(?![A-Za-z0-9_-])")


def add_issues(workdir: Path) -> None:
    for issue_id, text in (("2017-12", ENGLISH_ONLY), ("2018-01", DRAFT)):
        (workdir / "issues" / issue_id).mkdir(parents=True, exist_ok=True)
        (workdir / "issues" / issue_id / "issue.toml").write_text(text, "utf-8")


def mark_sent(db_path: Path, issue_id: str) -> None:
    """The ledger as a send leaves it once started (here with nobody on the list)."""
    ledger = Ledger(db_path, issue_id)
    try:
        ledger.start([], "example.org")
    finally:
        ledger.close()


@dataclass
class PageInfo:
    lang: str = ""
    title: str = ""
    description: str = ""
    canonical: str = ""
    alternates: dict[str, str] = field(default_factory=dict)  # hreflang -> href
    links: list[str] = field(default_factory=list)  # every href and src
    anchors: list[dict[str, str]] = field(default_factory=list)  # <a> attributes, with text


class _Reader(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.info = PageInfo()
        self._in_title = False
        self._anchor: dict[str, str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "html":
            self.info.lang = a.get("lang", "")
        elif tag == "title":
            self._in_title = True
        elif tag == "meta" and a.get("name") == "description":
            self.info.description = a.get("content", "")
        elif tag == "link" and a.get("rel") == "canonical":
            self.info.canonical = a["href"]
        elif tag == "link" and a.get("rel") == "alternate" and "type" not in a:
            self.info.alternates[a["hreflang"]] = a["href"]
        if tag == "a":
            self._anchor = {**a, "text": ""}
            self.info.anchors.append(self._anchor)
        for key in ("href", "src"):
            if a.get(key):
                self.info.links.append(a[key])

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_title = False
        elif tag == "a":
            self._anchor = None

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.info.title += data
        if self._anchor is not None:
            self._anchor["text"] += data


def read_page(html: str) -> PageInfo:
    reader = _Reader()
    reader.feed(html)
    return reader.info
