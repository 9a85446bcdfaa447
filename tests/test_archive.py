"""`newsletter archive`: which issues appear, what every page and feed says, and builds that
are reproducible, atomic and refuse bad input with one line. In-process (CliRunner), on
copies of the demo content and real SQLite files."""

from __future__ import annotations

import datetime as dt
import email
import re
import shutil
import xml.etree.ElementTree as ET
from email import policy
from pathlib import Path

import feedparser
import pytest
from click.testing import CliRunner
from markupsafe import Markup

from newsletter.archive.signup import Signup
from newsletter.archive.site import build_site, publish
from newsletter.cli import main
from newsletter.config import load_settings
from newsletter.subscribers import SqliteStore
from newsletter.tokens import make_token, signing_key

from .archive_helpers import TOKEN_SHAPED, add_issues, mark_sent, read_page
from .conftest import ROOT

BASE = "https://news.example.org"
ATOM = "{http://www.w3.org/2005/Atom}"
T0 = dt.datetime(2026, 3, 2, 9, 30, tzinfo=dt.UTC)


def invoke(workdir: Path, *args: str, **env: str):
    env_file = workdir / "empty.env"  # so a developer's own .env is not read
    env_file.touch()
    return CliRunner().invoke(
        main,
        ["--env-file", str(env_file), *args],
        env={"NEWSLETTER_DB": str(workdir / "news.db"), **env},
    )


def settings_for(workdir: Path, **env: str):
    return load_settings(None, environ={"NEWSLETTER_DB": str(workdir / "news.db"), **env})


@pytest.fixture
def issues(workdir: Path) -> Path:
    """The demo issue sent, an English-only issue published before any send, a draft."""
    add_issues(workdir)
    mark_sent(workdir / "news.db", "2017-11")
    result = invoke(workdir, "archive", "publish", "2017-12", "--unsent")
    assert result.exit_code == 0, result.output
    return workdir


def tree(site: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(site)): p.read_bytes() for p in sorted(site.rglob("*")) if p.is_file()
    }


def html_pages(site: Path) -> dict[str, str]:
    return {
        "" if p.parent == site else f"{p.parent.relative_to(site)}/": p.read_text("utf-8")
        for p in site.rglob("index.html")
    }


# --- what appears ----------------------------------------------------------------------------


def test_only_sent_or_published_issues_appear_newest_first(issues: Path) -> None:
    site = issues / "site"
    assert sorted(tree(site)) == [
        "en-fr/2017-11/index.html", "en-fr/2017-12/index.html",
        "en/2017-11/index.html", "en/2017-12/index.html", "en/feed.atom", "en/index.html",
        "fr/2017-11/index.html", "fr/2017-12/index.html", "fr/feed.atom", "fr/index.html",
        "index.html", "sitemap.xml", "style.css",
    ]  # fmt: skip
    everything = b"".join(tree(site).values()).decode("utf-8")
    assert "2018-01" not in everything and "Draft that nobody may see" not in everything
    index = read_page((site / "en" / "index.html").read_text("utf-8"))
    listed = [a["href"] for a in index.anchors if re.fullmatch(r"\d{4}-\d\d/", a["href"])]
    assert listed == ["2017-12/", "2017-11/"]
    home = (site / "index.html").read_text("utf-8")
    assert 'href="en/2017-12/"' in home  # the latest English issue
    assert 'href="fr/2017-11/"' in home  # the latest issue that exists in French


def test_an_archive_with_nothing_sent_yet_is_a_home_page_and_empty_feeds(workdir: Path) -> None:
    SqliteStore(workdir / "news.db").close()  # a list, nothing sent from it yet
    result = invoke(workdir, "archive", "build")
    assert result.exit_code == 0, result.output
    assert result.output == "wrote 7 files to site/: 0 issue(s) on the web\n"
    home = (workdir / "site" / "index.html").read_text("utf-8")
    assert "No issue has been published yet." in home and "Aucun numéro" in home
    for lang in ("en", "fr"):
        feed = feedparser.parse((workdir / "site" / lang / "feed.atom").read_bytes())
        assert (feed.bozo, len(feed.entries)) == (0, 0)
        assert feed.feed.updated == "1970-01-01T00:00:00+00:00"  # not the time of the build


@pytest.mark.parametrize(
    "args", [("build",), ("publish", "2017-11"), ("unpublish", "issues/2017-11")]
)
def test_the_archive_run_without_its_database_is_refused_not_wiped(
    issues: Path, args: tuple[str, ...]
) -> None:
    # run in the wrong folder (NEWSLETTER_DB relative), with the real site's folder: an empty
    # database made there used to rebuild the site with no issue at all
    site, elsewhere = issues / "site", issues / "elsewhere"
    elsewhere.mkdir()
    before = tree(site)
    env = {"NEWSLETTER_ARCHIVE_DIR": str(site), "NEWSLETTER_DB": str(elsewhere / "news.db")}
    result = invoke(elsewhere, "archive", *args, **env)
    assert result.exit_code == 2
    assert result.output.startswith(f"error: {elsewhere / 'news.db'}: no database here")
    assert tree(site) == before and not (elsewhere / "news.db").exists()


def test_an_issue_given_as_its_folder_elsewhere_is_found_there(
    issues: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert invoke(issues, "archive", "unpublish", "2017-11").exit_code == 0
    # from another folder, the issue as an absolute path: not looked for under ./issues
    (issues / "elsewhere").mkdir()
    monkeypatch.chdir(issues / "elsewhere")
    site = issues / "site"
    result = invoke(issues, "archive", "publish", str(issues / "issues" / "2017-11"),
                    NEWSLETTER_ARCHIVE_DIR=str(site))  # fmt: skip
    assert result.exit_code == 0, result.output
    assert (site / "en" / "2017-11" / "index.html").exists()


def test_unpublish_takes_an_issue_off_and_publish_brings_it_back(issues: Path) -> None:
    result = invoke(issues, "archive", "unpublish", "2017-11")
    assert result.exit_code == 0, result.output
    assert "took 2017-11 off the web" in result.output
    site = issues / "site"
    assert not (site / "en" / "2017-11").exists()
    assert b"2017-11" not in (site / "en" / "feed.atom").read_bytes()
    assert b"2017-11" not in (site / "sitemap.xml").read_bytes()
    result = invoke(issues, "archive", "publish", "2017-11")  # sent: no --unsent needed
    assert result.exit_code == 0, result.output
    assert (site / "fr" / "2017-11" / "index.html").is_file()


def test_localised_dates_and_the_briefs_in_their_language(issues: Path) -> None:
    fr = (issues / "site" / "fr" / "2017-11" / "index.html").read_text("utf-8")
    en = (issues / "site" / "en" / "2017-11" / "index.html").read_text("utf-8")
    assert "13 novembre 2017" in fr and "November 13, 2017" in en
    assert "Poutine et Trump" in fr and "Putin and Trump" in en
    # the brief that exists only in English, inside the French page: marked, in its language
    assert 'id="fr-iter-fusion-milestone" lang="en-CA"' in fr
    assert "En anglais seulement" in fr


# --- every page ------------------------------------------------------------------------------


def test_every_page_is_localised_with_reciprocal_alternates(issues: Path) -> None:
    pages = {path: read_page(html) for path, html in html_pages(issues / "site").items()}
    assert len(pages) == 9
    by_url = {f"{BASE}/{path}": page for path, page in pages.items()}
    for path, page in pages.items():
        assert page.lang in ("en-CA", "fr-CA"), path
        assert page.canonical == f"{BASE}/{path}", path
        assert page.title.strip() and page.description.strip(), path
        assert set(page.alternates) == {"en-CA", "fr-CA", "x-default"}, path
        assert page.canonical in page.alternates.values(), f"{path} does not list itself"
        for href in page.alternates.values():
            assert by_url[href].alternates == page.alternates, f"{path} <-> {href}"
        # a visible link to the other language (both, on the bilingual pages)
        others = {"en-CA": {"fr-CA"}, "fr-CA": {"en-CA"}}[page.lang]
        if path in ("", "en-fr/2017-11/", "en-fr/2017-12/"):
            others = {"en-CA", "fr-CA"}
        shown = {a.get("hreflang") for a in page.anchors if a.get("hreflang")}
        assert others <= shown, path


def test_an_issue_in_one_language_says_so_on_the_other_side(issues: Path) -> None:
    site = issues / "site"
    fr = read_page((site / "fr" / "2017-12" / "index.html").read_text("utf-8"))
    text = (site / "fr" / "2017-12" / "index.html").read_text("utf-8")
    assert "Ce numéro n’existe qu’en anglais." in text
    assert "ITER" not in text.split("<main", 1)[1].split("</h1>", 1)[1]  # no English briefs
    across = [a for a in fr.anchors if a["href"] == "../../en/2017-12/"]
    assert across and any("lire en anglais" in a["text"].lower() for a in across)
    assert fr.description == "Ce numéro n’existe qu’en anglais."
    index = (site / "fr" / "index.html").read_text("utf-8")
    assert 'href="2017-12/"' in index and "Ce numéro n’existe qu’en anglais." in index
    assert b"2017-12" not in (site / "fr" / "feed.atom").read_bytes()
    assert b"/en/2017-12/" in (site / "en" / "feed.atom").read_bytes()


def test_pages_carry_nothing_of_the_email_machinery(issues: Path) -> None:
    for path, html in html_pages(issues / "site").items():
        assert "sentinel.invalid" not in html and "<table" not in html, path
        assert 'href="./#subscription"' in html or '#subscription"' in html, path


def test_a_base_url_under_a_path(issues: Path) -> None:
    base = "https://example.org/news"
    build_site(settings_for(issues, NEWSLETTER_BASE_URL=base), issues / "issues", now=T0)
    page = read_page((issues / "site" / "fr" / "2017-11" / "index.html").read_text("utf-8"))
    assert page.canonical == f"{base}/fr/2017-11/"
    assert page.alternates["x-default"] == f"{base}/en-fr/2017-11/"
    assert "../../style.css" in page.links and "../../en/2017-11/" in page.links
    feed = feedparser.parse((issues / "site" / "fr" / "feed.atom").read_bytes())
    assert {e.id.split(":", 2)[2] for e in feed.entries} == {"/news/fr/2017-11/"}


def test_the_home_page_offers_signup_only_when_the_app_has_it(issues: Path) -> None:
    settings = settings_for(issues)
    home = issues / "site" / "index.html"
    # the app has signup pages: the home page links to each language's
    page = read_page(home.read_text("utf-8"))
    joins = {a["href"]: a["text"] for a in page.anchors if a["href"].startswith(BASE + "/")}
    assert joins[f"{BASE}/subscribe"] == "Subscribe"
    assert joins[f"{BASE}/abonnement"] == "S’abonner"
    build_site(settings, issues / "issues", signup=None)  # an app without them: nothing
    assert "/subscribe" not in home.read_text("utf-8")
    link = Signup(url={"en": f"{BASE}/signup/en", "fr": f"{BASE}/signup/fr"})
    build_site(settings, issues / "issues", signup=link)
    page = read_page(home.read_text("utf-8"))
    joins = {a["href"]: a["text"] for a in page.anchors if "/signup/" in a["href"]}
    assert joins == {f"{BASE}/signup/en": "Subscribe", f"{BASE}/signup/fr": "S’abonner"}
    form = Markup('<form method="post" action="{}"><button>Go</button></form>')
    build_site(
        settings,
        issues / "issues",
        signup=Signup(url=link.url, form={lang: form.format(link.url[lang]) for lang in link.url}),
    )
    html = home.read_text("utf-8")
    assert html.count("<form") == 2 and f'action="{BASE}/signup/fr"' in html


def test_the_sitemap_lists_every_page_with_its_alternates(issues: Path) -> None:
    root = ET.fromstring((issues / "site" / "sitemap.xml").read_bytes())
    ns = {"s": "http://www.sitemaps.org/schemas/sitemap/0.9", "x": "http://www.w3.org/1999/xhtml"}
    urls = {u.findtext("s:loc", namespaces=ns): u for u in root.findall("s:url", ns)}
    assert set(urls) == {f"{BASE}/{p}" for p in html_pages(issues / "site")}
    fr = urls[f"{BASE}/fr/2017-11/"]
    alternates = {x.get("hreflang"): x.get("href") for x in fr.findall("x:link", ns)}
    assert alternates == {
        "en-CA": f"{BASE}/en/2017-11/",
        "fr-CA": f"{BASE}/fr/2017-11/",
        "x-default": f"{BASE}/en-fr/2017-11/",
    }


# --- feeds -----------------------------------------------------------------------------------


def test_feeds_per_language(issues: Path) -> None:
    ids = set()
    for lang, html_lang in (("en", "en-CA"), ("fr", "fr-CA")):
        raw = (issues / "site" / lang / "feed.atom").read_bytes()
        feed = feedparser.parse(raw)
        assert feed.bozo == 0, feed.get("bozo_exception")
        assert feed.feed.language == html_lang
        assert feed.feed.id == f"{BASE}/{lang}/feed.atom"
        assert ET.fromstring(raw).get("{http://www.w3.org/XML/1998/namespace}lang") == html_lang
        for entry in feed.entries:
            assert re.fullmatch(
                rf"tag:news\.example\.org,\d{{4}}-\d\d-\d\d:/{lang}/2017-1[12]/", entry.id
            )
            assert entry.link.startswith(f"{BASE}/{lang}/")
            assert entry.content[0].type == "text/html"
            ids.add(entry.id)
        ids.add(feed.feed.id)
    assert len(ids) == 2 + 3  # two feeds; 2017-11 in both, 2017-12 in English only
    en = ET.fromstring((issues / "site" / "en" / "feed.atom").read_bytes())
    entry = next(e for e in en.iter(f"{ATOM}entry") if "2017-11" in e.findtext(f"{ATOM}id"))
    links = [(x.get("rel"), x.get("hreflang"), x.get("href")) for x in entry.iter(f"{ATOM}link")]
    assert links == [
        ("alternate", "en-CA", f"{BASE}/en/2017-11/"),
        ("related", "fr-CA", f"{BASE}/fr/2017-11/"),
    ]
    content = entry.findtext(f"{ATOM}content")
    assert "Putin and Trump Call on All Nations" in content and "<p>" in content


def test_feed_ids_and_updated_change_only_when_an_issue_is_corrected(workdir: Path) -> None:
    add_issues(workdir)
    templates = workdir / "templates"
    shutil.copytree(ROOT / "templates", templates)
    settings = settings_for(workdir, NEWSLETTER_TEMPLATES=str(templates))
    publish(settings, "2017-11", workdir / "issues", unsent=True, now=T0)
    first = tree(workdir / "site")

    def entries(lang: str) -> dict[str, tuple[str, str]]:
        feed = feedparser.parse((workdir / "site" / lang / "feed.atom").read_bytes())
        return {e.id: (e.published, e.updated) for e in feed.entries}

    before = {lang: entries(lang) for lang in ("en", "fr")}
    assert list(before["en"].values()) == [("2026-03-02T09:30:00+00:00",) * 2]
    # later, with other templates: nothing a reader of the feed would call a correction
    css = templates / "archive" / "style.css"
    css.write_text(css.read_text("utf-8") + "\nbody { color: #111111; }\n", "utf-8")
    build_site(settings, workdir / "issues", now=T0 + dt.timedelta(days=3))
    assert {lang: entries(lang) for lang in ("en", "fr")} == before
    assert tree(workdir / "site")["en/feed.atom"] == first["en/feed.atom"]
    # the French text of one brief is corrected
    brief = workdir / "issues" / "briefs" / "da-nang-apec-summit.fr.md"
    brief.write_text(brief.read_text("utf-8").replace("Da Nang", "Đà Nẵng", 1), "utf-8")
    later = T0 + dt.timedelta(days=5)
    result = build_site(settings, workdir / "issues", now=later)
    assert result.corrected == (("2017-11", "fr"),)
    after = {lang: entries(lang) for lang in ("en", "fr")}
    assert after["en"] == before["en"]
    assert list(after["fr"]) == list(before["fr"])  # the same id
    assert list(after["fr"].values()) == [
        ("2026-03-02T09:30:00+00:00", "2026-03-07T09:30:00+00:00")
    ]


def test_control_characters_never_reach_the_xml(workdir: Path) -> None:
    # briefs with them are refused (see the bad input table), settings too (config.py);
    # the archive's own labels, which an editor may copy and edit, are cleaned
    templates = workdir / "my-templates"
    shutil.copytree(ROOT / "templates", templates)
    labels = templates / "archive" / "labels.toml"
    labels.write_text(
        labels.read_text("utf-8").replace(
            'feed = "Atom feed"', 'feed = "Atom\\u0007 feed\\u001b"', 1
        ),
        "utf-8",
    )
    settings = settings_for(workdir, NEWSLETTER_TEMPLATES=str(templates))
    publish(settings, "2017-11", workdir / "issues", unsent=True, now=T0)
    pages = tree(workdir / "site")
    assert any(b"Atom feed" in content for content in pages.values())
    for path, content in pages.items():
        assert not re.search(rb"[\x00-\x08\x0b\x0c\x0e-\x1f]", content), path
    feed = feedparser.parse((workdir / "site" / "en" / "feed.atom").read_bytes())
    assert feed.bozo == 0


# --- reproducible, atomic --------------------------------------------------------------------


def test_builds_are_reproducible(issues: Path) -> None:
    settings = settings_for(issues)
    build_site(settings, issues / "issues", issues / "one", now=T0)
    build_site(settings, issues / "issues", issues / "two", now=T0 + dt.timedelta(hours=7))
    one, two = tree(issues / "one"), tree(issues / "two")
    assert one == two
    assert one == tree(issues / "site")  # the CLI's build of the same inputs


def test_a_failed_build_leaves_the_previous_site_intact(issues: Path) -> None:
    before = tree(issues / "site")
    brief = issues / "issues" / "briefs" / "iter-fusion-milestone.en.md"
    brief.write_text("---\ntitle: [unclosed\n---\nBody.\n", "utf-8")
    result = invoke(issues, "archive", "build")
    assert result.exit_code == 2
    assert result.stderr.startswith(f"error: {Path('issues/briefs/iter-fusion-milestone.en.md')}:")
    assert tree(issues / "site") == before
    assert sorted(p.name for p in issues.iterdir() if p.name.startswith(".")) == []


def test_a_folder_holding_other_files_is_never_replaced(issues: Path) -> None:
    (issues / "mine").mkdir()
    (issues / "mine" / "thesis.odt").write_text("precious", "utf-8")
    result = invoke(issues, "archive", "build", "--out", "mine")
    assert result.exit_code == 2
    assert "holds other files (thesis.odt, ...)" in result.stderr
    assert (issues / "mine" / "thesis.odt").read_text("utf-8") == "precious"


# --- bad input -------------------------------------------------------------------------------


def _missing_translation(workdir: Path) -> dict[str, str]:
    templates = workdir / "templates"
    shutil.copytree(ROOT / "templates", templates)
    labels = templates / "archive" / "labels.toml"
    text = labels.read_text("utf-8")
    fr = text.index("[fr]")
    labels.write_text(text[:fr] + re.sub(r"\nfeed = .*", "", text[fr:]), "utf-8")
    return {"NEWSLETTER_TEMPLATES": str(templates)}


def _control_character(workdir: Path) -> dict[str, str]:
    brief = workdir / "issues" / "briefs" / "churchill-rail-line.fr.md"
    lines = brief.read_text("utf-8").split("\n")
    lines[6] = "\x1c" + lines[6]  # Word's \x0b would become a space; this one is refused
    brief.write_text("\n".join(lines), "utf-8")
    (workdir / "issues" / "2017-11" / "issue.toml").write_text(
        (workdir / "issues" / "2017-11" / "issue.toml")
        .read_text("utf-8")
        .replace('"montreal-375-closing",', '"montreal-375-closing", "churchill-rail-line",'),
        "utf-8",
    )
    return {}


def _file(workdir: Path) -> dict[str, str]:
    (workdir / "site").write_text("not a folder", "utf-8")
    return {}


def _unwritable(workdir: Path) -> dict[str, str]:
    (workdir / "plain-file").write_text("", "utf-8")  # even root cannot make a folder in it
    return {"NEWSLETTER_ARCHIVE_DIR": str(workdir / "plain-file" / "site")}


BAD_INPUT = {
    "unknown issue": (
        ["publish", "2017-13"], None,
        "error: no issue '2017-13' to publish: issues/2017-13/ has no issue.toml "
        "(did you mean '2017-12'?)",
    ),
    "never sent": (
        ["publish", "2018-01"], None,
        "error: issue '2018-01' was never sent; to put it on the web before it is, run "
        "'newsletter archive publish 2018-01 --unsent'",
    ),
    "not on the web": (
        ["unpublish", "2018-01"], None,
        "error: issue '2018-01' is not on the web (was never sent nor published); nothing to "
        "take off",
    ),
    "missing translation": (
        ["build"], _missing_translation,
        "templates/archive/labels.toml:{line}: [fr] has no translation for feed: add "
        'feed = "..."',
    ),
    "control character": (
        ["build"], _control_character,
        "error: issues/briefs/churchill-rail-line.fr.md:7: invisible control character U+001C "
        "at column 1; delete it (it came with a paste?)",
    ),
    "base URL missing": (
        ["build"], lambda w: {"NEWSLETTER_BASE_URL": ""},
        "error: NEWSLETTER_BASE_URL='': must be an absolute http(s) URL",
    ),
    "base URL not absolute": (
        ["build"], lambda w: {"NEWSLETTER_BASE_URL": "news.example.org/archive"},
        "error: NEWSLETTER_BASE_URL='news.example.org/archive': must be an absolute",
    ),
    "output is a file": (
        ["build"], _file,
        "error: site: is a file, not a folder; give a folder for the site with --out",
    ),
    "output not writable": (
        ["build"], _unwritable,
        "plain-file/site: cannot write the site here: {workdir}/plain-file is a file; "
        "choose another folder (--out, or NEWSLETTER_ARCHIVE_DIR)",
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", list(BAD_INPUT))
def test_bad_input_gets_one_line_exit_2_and_no_site(case: str, issues: Path) -> None:
    args, spoil, expected = BAD_INPUT[case]
    shutil.rmtree(issues / "site")
    env = spoil(issues) if spoil else {}
    if case == "missing translation":
        text = (issues / "templates" / "archive" / "labels.toml").read_text("utf-8")
        expected = expected.format(line=text.split("\n").index("[fr]") + 1)
    expected = expected.replace("{workdir}", str(issues))
    before = {p.name for p in issues.iterdir()}
    result = invoke(issues, "archive", *args, **env)
    assert result.exit_code == 2, result.output
    assert len(result.stderr.splitlines()) == 1 and "Traceback" not in result.stderr
    assert expected in result.stderr
    assert {p.name for p in issues.iterdir()} == before  # no site, no staging folder left
    if case != "output is a file":
        assert not (issues / "site").exists()


# --- nothing personal; the emails' link -----------------------------------------------------

PEOPLE = [
    ("anne@example.org", "Anne Smith", "en"),
    ("marie@example.org", "Marie Côté", "fr"),
    ("alex@example.net", "Alex Tremblay", "both"),
]
SECRET = "test-secret-with-enough-entropy-0123456789"


def test_a_send_rebuilds_the_archive_and_nothing_personal_reaches_it(workdir: Path) -> None:
    add_issues(workdir)
    with SqliteStore(workdir / "news.db") as store:
        ids = [store.add(e, name=n, language=lang, source="test").id for e, n, lang in PEOPLE]
    result = invoke(workdir, "send", "issues/2017-11", "--yes", NEWSLETTER_SECRET=SECRET)
    assert result.exit_code == 0, result.output
    assert "web archive: 1 issue(s) in site/" in result.output
    site = tree(workdir / "site")
    assert "en/2017-11/index.html" in site and "en/2017-12/index.html" not in site
    secret = signing_key(settings_for(workdir, NEWSLETTER_SECRET=SECRET))
    forbidden = [
        "/unsubscribe/", "/preferences/", "sentinel.invalid", "SAMPLE-TOKEN",
        *(e for e, _, _ in PEOPLE), *(n for _, n, _ in PEOPLE),
        *(make_token(secret, i) for i in ids),
    ]  # fmt: skip
    # the same search finds every one of them in what was sent: it can see a leak
    sent = ""
    for eml in (workdir / "outbox" / "2017-11").glob("*.eml"):
        message = email.message_from_bytes(eml.read_bytes(), policy=policy.default)
        sent += "".join(f"{k}: {v}\n" for k, v in message.items())
        sent += "".join(part.get_content() for part in message.walk() if not part.is_multipart())
    assert all(f in sent for f in forbidden if not f.startswith(("sentinel", "SAMPLE")))
    assert TOKEN_SHAPED.search(sent)
    for path, content in site.items():
        text = content.decode("utf-8")
        for needle in forbidden:
            assert needle not in text, f"{needle!r} in {path}"
        assert not TOKEN_SHAPED.search(text), f"a token-shaped string in {path}"


def test_every_edition_links_to_its_page(workdir: Path) -> None:
    result = invoke(workdir, "build", "issues/2017-11", "--out", "build")
    assert result.exit_code == 0, result.output
    for edition, folder, label in (
        ("en", "en", "View in browser"),
        ("fr", "fr", "Version web"),
        ("bilingual", "en-fr", "View in browser"),
    ):
        url = f"{BASE}/{folder}/2017-11/"
        html = (workdir / "build" / f"{edition}.html").read_text("utf-8")
        page = read_page(html)
        assert any(a["href"] == url and label in a["text"] for a in page.anchors), edition
        text = (workdir / "build" / f"{edition}.txt").read_text("utf-8")
        assert text.split("\n", 1)[0].endswith(f" {url}") and label in text.split("\n", 1)[0]
