"""One Atom feed per language, written by feedgenerator (Pelican's feed library).

Each entry is one issue in one language, with its full HTML. Entry ids are `tag:` URIs
minted from the date the entry was first public, which the archive's table keeps, so an
id never changes; `updated` moves only when the entry's content was corrected.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

import feedgenerator

from ..config import Identity
from ..typography import HTML_LANG
from . import paths

# XML 1.0 cannot carry these; briefs with them are refused earlier (issues.check_controls),
# and anything else that reaches a feed (a setting, a label) loses them here.
_XML_FORBIDDEN = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
NEVER = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)  # an empty feed's `updated`: no time of day


@dataclass(frozen=True)
class FeedEntry:
    """One issue in one language, as its feed shows it."""

    title: str
    links: tuple[tuple[str, str], ...]  # (hreflang, absolute URL), the entry's own page first
    summary: str
    content: str  # the full HTML of the briefs
    published: dt.datetime
    updated: dt.datetime
    id: str


def xml_text(value: str) -> str:
    return _XML_FORBIDDEN.sub("", value)


class _Atom(feedgenerator.Atom1Feed):
    """feedgenerator's Atom writer, with the entry's links carrying `rel` and `hreflang`: the
    entry's own page, and the same issue's page in each other language it exists in."""

    def latest_post_date(self) -> dt.datetime:
        return super().latest_post_date() if self.items else NEVER

    def add_item_elements(self, handler, item) -> None:
        handler.addQuickElement("title", item["title"])
        for i, (hreflang, href) in enumerate(item["links"]):
            # One `alternate`: readers take the first or the last they see as "the" link
            # (feedparser the last), so the translations are `related`, told by hreflang.
            rel = "alternate" if i == 0 else "related"
            attrs = {"rel": rel, "type": "text/html", "hreflang": hreflang, "href": href}
            handler.addQuickElement("link", "", attrs)
        handler.addQuickElement("published", feedgenerator.rfc3339_date(item["pubdate"]))
        handler.addQuickElement("updated", feedgenerator.rfc3339_date(item["updateddate"]))
        handler.addQuickElement("id", item["unique_id"])
        if item["description"]:
            handler.addQuickElement("summary", item["description"])
        handler.addQuickElement("content", item["content"], {"type": "html"})


def tag_uri(base_url: str, first_public: dt.datetime, path: str) -> str:
    """An id that stays the same for good (RFC 4151): the site's host, the day the entry
    was first public, and its path."""
    parts = urlsplit(base_url)
    where = f"{parts.path.rstrip('/')}/{path}"  # a site under a path keeps its own ids
    return f"tag:{parts.hostname or 'localhost'},{first_public.date().isoformat()}:{where}"


def write_feed(
    identity: Identity,
    lang: str,
    title: str,
    description: str,
    entries: Sequence[FeedEntry],
) -> bytes:
    """The feed of one language as UTF-8 bytes, newest entry first."""
    base = identity.base_url
    feed = _Atom(
        title=xml_text(title),
        link=paths.absolute(base, paths.index_path(lang)),
        description=xml_text(description),
        language=HTML_LANG[lang],
        feed_url=paths.absolute(base, paths.feed_path(lang)),
        feed_guid=paths.absolute(base, paths.feed_path(lang)),
        author_name=xml_text(identity.org[lang]),
        author_link=paths.absolute(base, paths.HOME),
    )
    for entry in entries:
        feed.add_item(
            title=xml_text(entry.title),
            link=entry.links[0][1],
            description=xml_text(entry.summary),
            content=xml_text(entry.content),
            pubdate=entry.published,
            updateddate=entry.updated,
            unique_id=entry.id,
            links=entry.links,
        )
    return feed.writeString("utf-8").encode("utf-8")
