"""sitemap.xml: every page, with the other-language versions it has (hreflang alternates)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from xml.sax.saxutils import quoteattr

from .pages import Alternate

SITEMAP_NS = "http://www.sitemaps.org/schemas/sitemap/0.9"
XHTML_NS = "http://www.w3.org/1999/xhtml"


@dataclass(frozen=True)
class Cluster:
    """Pages that are versions of one another: each lists all of them, itself included."""

    urls: tuple[str, ...]
    alternates: tuple[Alternate, ...]
    lastmod: dt.date | None


def write_sitemap(clusters: Sequence[Cluster]) -> bytes:
    lines = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<urlset xmlns="{SITEMAP_NS}" xmlns:xhtml="{XHTML_NS}">',
    ]
    for cluster in clusters:
        for url in cluster.urls:
            lines.append(f"<url><loc>{_text(url)}</loc>")
            if cluster.lastmod:
                lines.append(f"<lastmod>{cluster.lastmod.isoformat()}</lastmod>")
            for a in cluster.alternates:
                lines.append(
                    f'<xhtml:link rel="alternate" hreflang={quoteattr(a.hreflang)}'
                    f" href={quoteattr(a.href)}/>"
                )
            lines.append("</url>")
    lines.append("</urlset>")
    return ("\n".join(lines) + "\n").encode("utf-8")


def _text(value: str) -> str:
    return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
