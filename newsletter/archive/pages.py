"""The archive's HTML pages, from the editions' views: home, one index per language, one
page per issue and edition. Nothing personal is in a view (the per-reader links are
sentinels these templates never print), so nothing personal can reach a page."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup, escape

from ..config import SHIPPED_TEMPLATES, Identity
from ..content import LANGS
from ..errors import TemplateError
from ..typography import HTML_LANG, long_date
from . import paths
from .issues import ArchivedIssue
from .labels import load_labels
from .signup import Signup

FOLDER = "archive"
DESCRIPTION_MAX = 160


@dataclass(frozen=True)
class Alternate:
    hreflang: str
    href: str


@dataclass(frozen=True)
class NavLink:
    path: str
    label: str
    hreflang: str | None = None
    lang: str | None = None  # when the label is in another language than the page


@dataclass(frozen=True)
class FeedLink:
    path: str
    hreflang: str
    title: str


@dataclass(frozen=True)
class Page:
    path: str  # the page's folder, e.g. "fr/2017-11/"; "" for the home page
    langs: tuple[str, ...]  # the page's languages, its own first
    title: str
    description: str
    canonical: str
    alternates: tuple[Alternate, ...]
    nav: tuple[NavLink, ...] = ()
    feeds: tuple[FeedLink, ...] = ()

    @property
    def html_lang(self) -> str:
        return HTML_LANG[self.langs[0]]


@dataclass(frozen=True)
class Listed:
    """An issue as an index or the home page lists it, in one language."""

    path: str
    subject: str
    meta: str  # "Issue 1"
    date: str
    iso_date: str
    note: str | None = None


@dataclass(frozen=True)
class IssueLine:
    """ "Issue 1 · November 13, 2017", in one of the page's languages."""

    html_lang: str
    foreign: bool
    text: str
    date: str
    iso_date: str


@dataclass(frozen=True)
class Stub:
    """What a page says for an issue that does not exist in its language."""

    note: str
    across: NavLink


@dataclass(frozen=True)
class Latest:
    lang: str
    html_lang: str
    foreign: bool
    labels: Mapping[str, str]
    entry: Listed | None
    index_path: str
    feed_path: str


_HEADING = re.compile(r"<(/?)h([1-6])>")


def shift_headings(html: str, by: int) -> Markup:
    """A brief's own headings, moved below the brief's title (our markup, so a pattern is
    enough: markdown-it writes bare <hN> tags, and raw HTML never gets through)."""
    return Markup(_HEADING.sub(lambda m: f"<{m[1]}h{min(int(m[2]) + by, 6)}>", html))


class Pages:
    """The archive's templates (NEWSLETTER_TEMPLATES/archive first, then ours) and labels."""

    def __init__(self, identity: Identity, templates_dir: Path | None, base_url: str):
        self.identity = identity
        self.base_url = base_url
        own = templates_dir / FOLDER if templates_dir else None
        shipped = SHIPPED_TEMPLATES / FOLDER
        folders = [own, shipped] if own is not None and own.is_dir() else [shipped]
        self.folders = folders
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(folders),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.labels = load_labels(folders)

    def titles(self, langs: tuple[str, ...]) -> Markup:
        return self._both(langs, lambda lang: self.identity.title[lang])

    def orgs(self, langs: tuple[str, ...]) -> Markup:
        return self._both(langs, lambda lang: self.identity.org[lang])

    def _both(self, langs: tuple[str, ...], text: Callable[[str], str]) -> Markup:
        """A text in each of the page's languages, the others marked with their lang."""
        parts = [
            escape(text(lang))
            if i == 0
            else Markup('<span lang="{}">{}</span>').format(HTML_LANG[lang], text(lang))
            for i, lang in enumerate(langs)
        ]
        if len(parts) == 2 and text(langs[0]) == text(langs[1]):
            parts = parts[:1]
        return Markup(" / ").join(parts)

    def render(self, template: str, page: Page, **context: Any) -> str:
        def link(target: str) -> str:
            return paths.relative(page.path, target)

        def t(key: str) -> Markup:
            return self._both(page.langs, lambda lang: self.labels[lang][key])

        try:
            return self.env.get_template(template).render(
                page=page,
                paths=paths,
                identity=self.identity,
                L=self.labels,
                link=link,
                t=t,
                titles=lambda: self.titles(page.langs),
                orgs=lambda: self.orgs(page.langs),
                shift=lambda html: shift_headings(html, context.get("shift_by", 0)),
                **context,
            )
        except jinja2.TemplateSyntaxError as exc:
            raise TemplateError(
                f"template syntax: {exc.message}", exc.filename or template, exc.lineno
            ) from None
        except jinja2.TemplateNotFound as exc:
            raise TemplateError(f"template missing: {exc.name}", self.folders[-1]) from None
        except jinja2.UndefinedError as exc:
            raise TemplateError(f"{exc.message}; check the name", template) from None

    # --- what each page says --------------------------------------------------------------

    def url(self, path: str) -> str:
        return paths.absolute(self.base_url, path)

    def alternates(self, en: str, fr: str, default: str) -> tuple[Alternate, ...]:
        """The same list on every page of a cluster: hreflang is reciprocal by construction."""
        return (
            Alternate(HTML_LANG["en"], self.url(en)),
            Alternate(HTML_LANG["fr"], self.url(fr)),
            Alternate("x-default", self.url(default)),
        )

    def feed_link(self, lang: str) -> FeedLink:
        title = f"{self.identity.title[lang]} · {self.labels[lang]['feed']}"
        return FeedLink(paths.feed_path(lang), HTML_LANG[lang], title)

    def listed(self, archived: ArchivedIssue, lang: str) -> Listed:
        issue = archived.issue
        view = archived.views[lang]
        note = None
        if not archived.exists_in(lang):
            note = self.labels[lang][f"only_{archived.langs[0]}"]
        return Listed(
            path=paths.edition_path(lang, issue.id),
            subject=view.subject,
            meta=f"{self.labels[lang]['issue']} {issue.number}",
            date=long_date(issue.date, lang),
            iso_date=issue.date.isoformat(),
            note=note,
        )

    def home(self, issues: list[ArchivedIssue], signup: Signup | None) -> str:
        langs = LANGS
        title = " / ".join(dict.fromkeys(self.identity.title[lang] for lang in langs))
        page = Page(
            path=paths.HOME,
            langs=langs,
            title=title,
            description=" / ".join(
                self.labels[lang]["home_description"].replace("{title}", title) for lang in langs
            ),
            canonical=self.url(paths.HOME),
            alternates=self.alternates(paths.index_path("en"), paths.index_path("fr"), ""),
            feeds=tuple(self.feed_link(lang) for lang in langs),
        )
        choices = [
            NavLink(paths.index_path(lang), self.labels[lang]["language"], HTML_LANG[lang],
                    HTML_LANG[lang])
            for lang in langs
        ]  # fmt: skip
        latest = []
        for i, lang in enumerate(langs):
            newest = next((a for a in issues if a.exists_in(lang)), None)
            latest.append(
                Latest(
                    lang=lang,
                    html_lang=HTML_LANG[lang],
                    foreign=i > 0,
                    labels=self.labels[lang],
                    entry=self.listed(newest, lang) if newest else None,
                    index_path=paths.index_path(lang),
                    feed_path=paths.feed_path(lang),
                )
            )
        return self.render("home.html.j2", page, choices=choices, latest=latest, signup=signup)

    def index(self, issues: list[ArchivedIssue], lang: str) -> str:
        labels = self.labels[lang]
        title = self.identity.title[lang]
        other = _other(lang)
        page = Page(
            path=paths.index_path(lang),
            langs=(lang,),
            title=labels["index_title"].replace("{title}", title),
            description=labels["index_description"].replace("{title}", title),
            canonical=self.url(paths.index_path(lang)),
            alternates=self.alternates(paths.index_path("en"), paths.index_path("fr"), ""),
            nav=(
                NavLink(
                    paths.index_path(other),
                    self.labels[other]["language"],
                    HTML_LANG[other],
                    HTML_LANG[other],
                ),
            ),  # fmt: skip
            feeds=(self.feed_link(lang),),
        )
        entries = [self.listed(a, lang) for a in issues]
        return self.render(
            "index.html.j2",
            page,
            heading=page.title,
            entries=entries,
            labels=labels,
            feed_path=paths.feed_path(lang),
        )

    def issue(self, archived: ArchivedIssue, edition: str) -> str:
        issue = archived.issue
        view = archived.views[edition]
        bilingual = edition == "bilingual"
        langs = LANGS if bilingual else (edition,)
        here = paths.edition_path(edition, issue.id)
        nav = []
        if bilingual:
            nav = [
                NavLink(paths.edition_path(lang, issue.id), self.labels[lang]["one_language"],
                        HTML_LANG[lang], HTML_LANG[lang] if i else None)
                for i, lang in enumerate(langs)
            ]  # fmt: skip
        else:
            other = _other(edition)
            nav = [
                NavLink(paths.index_path(edition), self.labels[edition]["all_issues"]),
                NavLink(paths.edition_path(other, issue.id), self.labels[other]["language"],
                        HTML_LANG[other], HTML_LANG[other]),
                NavLink(paths.edition_path("bilingual", issue.id),
                        self.labels[edition]["both_languages"]),
            ]  # fmt: skip
        stub = None
        if not bilingual and not archived.exists_in(edition):
            there = archived.langs[0]
            stub = Stub(
                note=self.labels[edition][f"only_{there}"],
                across=NavLink(
                    paths.edition_path(there, issue.id),
                    self.labels[edition]["read_in_other"],
                    HTML_LANG[there],
                ),
            )
        page = Page(
            path=here,
            langs=langs,
            title=view.subject,
            description=_description(
                stub.note if stub else view.preheader or _titles(archived, edition)
            ),
            canonical=self.url(here),
            alternates=self.alternates(
                paths.edition_path("en", issue.id),
                paths.edition_path("fr", issue.id),
                paths.edition_path("bilingual", issue.id),
            ),
            nav=tuple(nav),
            feeds=tuple(self.feed_link(lang) for lang in langs),
        )
        lines = [
            IssueLine(
                html_lang=HTML_LANG[lang],
                foreign=i > 0,
                text=f"{self.labels[lang]['issue']} {issue.number}",
                date=long_date(issue.date, lang),
                iso_date=issue.date.isoformat(),
            )
            for i, lang in enumerate(langs)
        ]
        return self.render(
            "issue.html.j2",
            page,
            view=view,
            lines=lines,
            stub=stub,
            **self.article_context(bilingual),
        )

    @staticmethod
    def article_context(bilingual: bool) -> dict[str, Any]:
        # h1 is the subject; a bilingual page has a heading per language above the briefs
        heading = "h3" if bilingual else "h2"
        return {"bilingual": bilingual, "heading": heading, "shift_by": 3 if bilingual else 2}

    def article(self, archived: ArchivedIssue, lang: str) -> str:
        """The briefs of one language's edition, for its feed entry."""
        page = Page(paths.edition_path(lang, archived.id), (lang,), "", "", "", ())
        view = archived.views[lang]
        return self.render("_article.html.j2", page, view=view, **self.article_context(False))


def _other(lang: str) -> str:
    return "fr" if lang == "en" else "en"


def _titles(archived: ArchivedIssue, edition: str) -> str:
    return " · ".join(b.title for s in archived.views[edition].sections[:1] for b in s.blocks)


def _description(text: str) -> str:
    text = " ".join(text.split())
    if len(text) <= DESCRIPTION_MAX:
        return text
    return text[: DESCRIPTION_MAX - 1].rsplit(" ", 1)[0] + "…"
