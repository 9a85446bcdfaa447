"""Where each page of the public archive lives, relative to NEWSLETTER_BASE_URL.

Free of imports on purpose: the emails link to these pages (views.py) and the archive
writes them, so both ask here and the two can never disagree.
"""

from __future__ import annotations

import posixpath

# The bilingual edition gets a folder of its own beside the two languages: a name that is
# no language, and that no issue id can take (ids are lowercase words joined by hyphens,
# and `en-fr` is refused for an issue by the archive).
EDITION_DIRS = {"en": "en", "fr": "fr", "bilingual": "en-fr"}
HOME = ""
SITEMAP = "sitemap.xml"
STYLESHEET = "style.css"
FEED_FILE = "feed.atom"


def edition_path(edition: str, issue_id: str) -> str:
    """The folder of one edition's page, e.g. `fr/2017-11/`."""
    return f"{EDITION_DIRS[edition]}/{issue_id}/"


def index_path(lang: str) -> str:
    return f"{lang}/"


def feed_path(lang: str) -> str:
    return f"{lang}/{FEED_FILE}"


def absolute(base_url: str, path: str) -> str:
    return f"{base_url.rstrip('/')}/{path}"


def relative(page: str, target: str) -> str:
    """A link from the page at folder `page` to `target` that works wherever the tree is
    served: under the base URL, on a bucket, or from the local files."""
    link = posixpath.relpath(target or ".", page.rstrip("/") or ".")
    if target == "" or target.endswith("/"):
        return "./" if link == "." else link + "/"
    return link
