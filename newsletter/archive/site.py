"""The archive's pipeline in one place: which issues are public -> read and check them ->
stamp their entries -> pages, feeds, sitemap -> one atomic write of the whole tree.

Also the editor's two decisions (publish, unpublish) and the rebuild a send asks for when it
ends. Each runs in one transaction of the SQLite file: the state and the entries' stamps are
committed only once the new site is in place, so a failure changes nothing at all, and two
builds never interleave.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import store
from ..config import Identity, Settings
from ..content import LANGS
from ..errors import ArchiveError
from ..render import Templates
from ..typography import HTML_LANG
from . import paths
from .feeds import FeedEntry, tag_uri, write_feed
from .issues import (
    CONTROLS,
    ArchivedIssue,
    digest,
    issue_folder,
    newest_first,
    own_languages,
    read_public,
)
from .pages import FOLDER, Pages
from .signup import Signup, signup_for
from .sitemap import Cluster, write_sitemap
from .state import ArchiveState, Decision
from .tree import write_tree

# Everything the site has at its top; a folder holding anything else is not replaced.
TOP = {"index.html", paths.SITEMAP, paths.STYLESHEET, *paths.EDITION_DIRS.values()}
STYLESHEET_SOURCE = "style.css"


@dataclass(frozen=True)
class SiteBuild:
    out_dir: Path
    issues: tuple[str, ...]  # the public issues, newest first
    files: int
    corrected: tuple[tuple[str, str], ...]  # (issue id, language) whose `updated` moved now


def _now(now: dt.datetime | None) -> dt.datetime:
    return now or dt.datetime.now(dt.UTC)


def render_site(
    state: ArchiveState,
    identity: Identity,
    templates_dir: Path | None,
    issues_dir: Path,
    now: dt.datetime,
    signup: Signup | None,
) -> tuple[dict[str, bytes], list[ArchivedIssue], list[tuple[str, str]]]:
    """Every file of the site, in memory; records the entries' stamps on `state`."""
    labels = Templates(templates_dir).labels  # the e-mails' words, for the briefs' notes
    pages = Pages(identity, templates_dir, identity.base_url)
    read = read_public(issues_dir, state.public(), identity, labels)
    digests = {
        (issue.id, lang): digest(issue, lang) for issue, _ in read for lang in own_languages(issue)
    }
    stamps, corrected = state.stamps(digests, now)
    issues = newest_first(
        [
            ArchivedIssue(
                issue=issue,
                views=views,
                langs=own_languages(issue),
                stamps={lang: stamps[issue.id, lang] for lang in own_languages(issue)},
            )
            for issue, views in read
        ]
    )
    files: dict[str, str | bytes] = {"index.html": pages.home(issues, signup)}
    for lang in LANGS:
        files[paths.index_path(lang) + "index.html"] = pages.index(issues, lang)
        files[paths.feed_path(lang)] = _feed(pages, identity, issues, lang)
    for archived in issues:
        for edition in paths.EDITION_DIRS:
            files[paths.edition_path(edition, archived.id) + "index.html"] = pages.issue(
                archived, edition
            )
    files[paths.SITEMAP] = write_sitemap(_clusters(pages, issues))
    files[paths.STYLESHEET] = _stylesheet(pages)
    # briefs with control characters were refused; a setting or label may still hold one
    encoded = {
        p: c if isinstance(c, bytes) else CONTROLS.sub("", c).encode("utf-8")
        for p, c in files.items()
    }
    return encoded, issues, corrected


def _feed(pages: Pages, identity: Identity, issues: list[ArchivedIssue], lang: str) -> bytes:
    entries = []
    for archived in issues:
        if not archived.exists_in(lang):
            continue  # its page in this language only points across; the other feed has it
        stamp = archived.stamps[lang]
        view = archived.views[lang]
        own = paths.edition_path(lang, archived.id)
        links = ((HTML_LANG[lang], pages.url(own)),) + tuple(
            (HTML_LANG[other], pages.url(paths.edition_path(other, archived.id)))
            for other in LANGS
            if other != lang and archived.exists_in(other)
        )
        entries.append(
            FeedEntry(
                title=view.subject,
                links=links,
                summary=view.preheader,
                content=pages.article(archived, lang),
                published=stamp.published,
                updated=stamp.updated,
                id=tag_uri(identity.base_url, stamp.published, own),
            )
        )
    labels = pages.labels[lang]
    title = identity.title[lang]
    return write_feed(
        identity,
        lang,
        title,
        labels["index_description"].replace("{title}", title),
        entries,
    )


def _clusters(pages: Pages, issues: list[ArchivedIssue]) -> list[Cluster]:
    newest = max((s.updated for a in issues for s in a.stamps.values()), default=None)
    top = (paths.HOME, paths.index_path("en"), paths.index_path("fr"))
    clusters = [
        Cluster(
            urls=tuple(pages.url(p) for p in top),
            alternates=pages.alternates(top[1], top[2], top[0]),
            lastmod=newest.date() if newest else None,
        )
    ]
    for archived in issues:
        editions = [paths.edition_path(e, archived.id) for e in ("en", "fr", "bilingual")]
        clusters.append(
            Cluster(
                urls=tuple(pages.url(p) for p in editions),
                alternates=pages.alternates(*editions),
                lastmod=max(s.updated for s in archived.stamps.values()).date(),
            )
        )
    return clusters


def _stylesheet(pages: Pages) -> bytes:
    source = next(f / STYLESHEET_SOURCE for f in pages.folders if (f / STYLESHEET_SOURCE).is_file())
    return source.read_bytes()


def _build(
    conn: Any,
    settings: Settings,
    issues_dir: Path,
    out_dir: Path | None,
    now: dt.datetime,
    signup: Signup | None,
) -> SiteBuild:
    """Inside the caller's transaction: render, write, report."""
    state = ArchiveState(conn)
    out = Path(out_dir or settings.archive_dir)
    files, issues, corrected = render_site(
        state, settings.identity, settings.templates_dir, Path(issues_dir), now, signup
    )
    write_tree(files, out, TOP)
    return SiteBuild(out, tuple(a.id for a in issues), len(files), tuple(corrected))


def build_site(
    settings: Settings,
    issues_dir: Path,
    out_dir: Path | None = None,
    *,
    now: dt.datetime | None = None,
    signup: Signup | None | bool = True,
) -> SiteBuild:
    """Build the whole site into `out_dir` (default NEWSLETTER_ARCHIVE_DIR), all or nothing.

    `signup=True` asks the web app whether it has a signup page (signup.signup_for)."""
    if signup is True:
        signup = signup_for(settings.identity)
    conn = store.connect(settings.db_path)
    try:
        with conn.transaction():
            return _build(conn, settings, issues_dir, out_dir, _now(now), signup or None)
    finally:
        conn.close()


def publish(
    settings: Settings,
    issue_id: str,
    issues_dir: Path,
    out_dir: Path | None = None,
    *,
    unsent: bool = False,
    now: dt.datetime | None = None,
) -> SiteBuild:
    """Put an issue on the web, then rebuild: a sent issue that was taken off, or (with
    `unsent`) one that was never sent."""
    now = _now(now)
    issue_folder(Path(issues_dir), issue_id, f"no issue '{issue_id}' to publish")
    conn = store.connect(settings.db_path)
    try:
        with conn.transaction():
            state = ArchiveState(conn)
            if state.sent_at(issue_id) is None and not unsent:
                raise ArchiveError(
                    f"issue '{issue_id}' was never sent; to put it on the web before it is, "
                    f"run 'newsletter archive publish {issue_id} --unsent'"
                )
            state.decide(issue_id, Decision.PUBLISHED, now)
            return _build(conn, settings, issues_dir, out_dir, now, signup_for(settings.identity))
    finally:
        conn.close()


def unpublish(
    settings: Settings,
    issue_id: str,
    issues_dir: Path,
    out_dir: Path | None = None,
    *,
    now: dt.datetime | None = None,
) -> SiteBuild:
    """Take an issue off the web (sent or not), then rebuild."""
    now = _now(now)
    conn = store.connect(settings.db_path)
    try:
        with conn.transaction():
            state = ArchiveState(conn)
            if issue_id not in state.public():
                decided = state.decision(issue_id)
                why = (
                    "was already taken off"
                    if decided and decided[0] is Decision.UNPUBLISHED
                    else "was never sent nor published"
                )
                raise ArchiveError(
                    f"issue '{issue_id}' is not on the web ({why}); nothing to take off"
                )
            state.decide(issue_id, Decision.UNPUBLISHED, now)
            return _build(conn, settings, issues_dir, out_dir, now, signup_for(settings.identity))
    finally:
        conn.close()


def rebuild_after_send(
    settings: Settings, issue_dir: Path, *, now: dt.datetime | None = None
) -> SiteBuild:
    """What a send calls when its run ends: the site again, with the issue just sent.

    The issues are read from the folder that holds the one sent (where its briefs are too);
    the site goes to NEWSLETTER_ARCHIVE_DIR, as `newsletter archive build` writes it.
    """
    return build_site(settings, Path(issue_dir).resolve().parent, now=now)


__all__ = ["FOLDER", "SiteBuild", "build_site", "publish", "rebuild_after_send", "unpublish"]
