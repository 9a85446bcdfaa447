"""`newsletter preview` in a real browser: Debian's chromium driven by Playwright, against
the command run as a subprocess on a copy of the demo content."""

from __future__ import annotations

import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from .browser import CHROMIUM, only_loopback

sync_api = pytest.importorskip("playwright.sync_api")
expect = sync_api.expect

ROOT = Path(__file__).resolve().parent.parent
ARTEFACTS = ROOT / "build" / "test-artifacts"
ISSUE = Path("issues") / "2017-11"  # relative, as an editor types it: error lines name it so
BRIEF_FR = Path("issues") / "briefs" / "da-nang-apec-summit.fr.md"
BRIEF_EN = Path("issues") / "briefs" / "da-nang-apec-summit.en.md"
EDITIONS = {"en": "en-CA", "fr": "fr-CA", "bilingual": "en-CA"}
STARTUP_SECONDS = 20  # a ceiling for a hung start, not a measurement

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium")


@dataclass
class Server:
    process: subprocess.Popen
    url: str
    output: list[str]  # every line printed so far, filled by a reader thread
    reader: threading.Thread


def clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
    # PYTHONFAULTHANDLER: a preview that hangs prints every thread's stack on SIGABRT
    return {**env, "PYTHONUNBUFFERED": "1", "PYTHONFAULTHANDLER": "1"}


def start_preview(workdir: Path) -> Server:
    args = [sys.executable, "-m", "newsletter", "--env-file", ".env", "preview", str(ISSUE)]
    process = subprocess.Popen(
        [*args, "--port", "0", "--no-open"],
        cwd=workdir,
        env=clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output: list[str] = []
    urls: queue.Queue[str | None] = queue.Queue()

    def read() -> None:
        # A thread, not select(): the pipe's buffer may already hold the line we wait for.
        for line in process.stdout:
            output.append(line)
            if match := re.search(r"preview at (http://\S+)", line):
                urls.put(match.group(1))
        urls.put(None)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        url = urls.get(timeout=STARTUP_SECONDS)
    except queue.Empty:
        url = None
    if url is None:
        process.kill()
        raise AssertionError("preview did not start:\n" + "".join(output))
    return Server(process, url, output, reader)


def stop_preview(server: Server) -> tuple[int, str]:
    """Ctrl-C, then the exit status and everything the command printed."""
    server.process.send_signal(signal.SIGINT)
    try:
        status = server.process.wait(timeout=STARTUP_SECONDS)
    except subprocess.TimeoutExpired:
        server.process.send_signal(signal.SIGABRT)  # its threads' stacks, for the report
        server.process.wait(timeout=STARTUP_SECONDS)
        server.reader.join(timeout=STARTUP_SECONDS)
        raise AssertionError("preview did not stop on Ctrl-C:\n" + "".join(server.output)) from None
    server.reader.join(timeout=STARTUP_SECONDS)
    return status, "".join(server.output)


def wait_for_output(server: Server, line: str) -> None:
    """Wait (a condition, not a delay) until the server has printed `line`."""
    deadline = time.monotonic() + STARTUP_SECONDS
    while f"{line}\n" not in server.output:
        assert time.monotonic() < deadline, f"never printed {line!r}:\n" + "".join(server.output)
        time.sleep(0.05)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the demo issue and of the templates, with a .env pointing at the copy."""
    workdir = tmp_path_factory.mktemp("preview")
    shutil.copytree(ROOT / "issues", workdir / "issues")
    shutil.copytree(ROOT / "templates", workdir / "templates")
    (workdir / ".env").write_text(f"NEWSLETTER_TEMPLATES={workdir / 'templates'}\n", "utf-8")
    return workdir


@pytest.fixture(scope="module")
def server(workdir: Path) -> Iterator[Server]:
    server = start_preview(workdir)
    yield server
    stop_preview(server)


@pytest.fixture
def page(browser, server: Server):
    context = browser.new_context(viewport={"width": 1500, "height": 1000})
    context.route("**/*", only_loopback)
    page = context.new_page()
    page.goto(server.url)
    expect(page.locator("#preview")).to_be_visible()
    yield page
    context.close()


@contextmanager
def edited(path: Path, old: str, new: str) -> Iterator[None]:
    """Change one passage of a file on disk, as an editor saving it; put it back afterwards."""
    original = path.read_text("utf-8")
    assert old in original, f"{old!r} not in {path}"
    path.write_text(original.replace(old, new, 1), "utf-8")
    try:
        yield
    finally:
        path.write_text(original, "utf-8")


def show(page, edition: str, width: str = "both", scheme: str = "light") -> None:
    """Pick an edition, a width and a scheme; return once the frames show that edition."""
    page.click(f"[data-edition='{edition}']")
    page.click(f"[data-width='{width}']")
    page.click(f"[data-scheme='{scheme}']")
    for frame in {"desktop": ["desktop"], "phone": ["phone"]}.get(width, ["desktop", "phone"]):
        html = page.frame_locator(f"#frame-{frame}").locator("html")
        expect(html).to_have_attribute("lang", EDITIONS[edition])


def test_serves_on_loopback_and_says_where(server: Server) -> None:
    assert server.url.startswith("http://127.0.0.1:")
    assert any(line.startswith("built 2017-11 in ") for line in server.output)
    wait_for_output(server, "watching issues/2017-11, issues/briefs, templates, .env")


def test_french_edition_after_switching(page) -> None:
    page.click("[data-edition='fr']")
    frame = page.frame_locator("#frame-desktop")
    expect(frame.locator("html")).to_have_attribute("lang", "fr-CA")
    expect(frame.locator("body")).to_contain_text("Bienvenue dans le premier numéro")
    expect(page.locator("#text")).to_contain_text("Bienvenue dans le premier numéro")
    expect(page.locator("#text")).to_have_attribute("lang", "fr-CA")
    headers = page.locator("#headers")
    expect(headers).to_contain_text("Brèves du Comité <breves@example.org>")
    expect(headers).to_contain_text("Poutine et Trump sur la Syrie")
    expect(headers).to_contain_text("List-Unsubscribe-Post")
    expect(headers).to_contain_text("Un appel commun pour la Syrie")  # the preheader
    checks = page.locator("#checks")
    expect(checks).to_contain_text("of 102.0 KB before Gmail clips")
    expect(checks).to_contain_text("brief 'iter-fusion-milestone' has no fr version")
    assert "edition=fr" in page.url


def test_phone_width_renders_at_375_and_stacks_columns(page) -> None:
    show(page, "bilingual")
    # The masthead is MJML's two columns: side by side on a desktop, stacked on a phone.
    desktop = page.frame_locator("#frame-desktop").locator(".mj-column-per-50")
    phone = page.frame_locator("#frame-phone").locator(".mj-column-per-50")
    d1, d2 = desktop.nth(0).bounding_box(), desktop.nth(1).bounding_box()
    p1, p2 = phone.nth(0).bounding_box(), phone.nth(1).bounding_box()
    assert d1["y"] == d2["y"] and d2["x"] > d1["x"]
    assert p2["y"] >= p1["y"] + p1["height"] and p1["x"] == p2["x"]
    assert p1["width"] == 375
    frame = page.locator("#frame-phone").element_handle().content_frame()
    assert frame.evaluate("window.innerWidth") == 375
    desktop_frame = page.locator("#frame-desktop").element_handle().content_frame()
    assert desktop_frame.evaluate("window.innerWidth") == 640


def test_screenshots_of_each_edition_at_both_widths(page) -> None:
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    for edition in EDITIONS:
        show(page, edition)
        for width in ("desktop", "phone"):
            shot = ARTEFACTS / f"preview-{edition}-{width}.png"
            page.locator(f"#frame-{width}").screenshot(path=shot)
            assert shot.stat().st_size > 10_000
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=ARTEFACTS / "preview-page.png", full_page=True)


def test_saving_a_brief_updates_the_open_page(page, workdir: Path) -> None:
    show(page, "fr", "phone")
    page.evaluate("window.notReloaded = true")
    frame = page.frame_locator("#frame-phone")
    with edited(workdir / BRIEF_FR, "Da Nang", "Hoi An, corrigé à chaud"):
        expect(frame.locator("body")).to_contain_text("Hoi An, corrigé à chaud")
        expect(page.locator("#text")).to_contain_text("Hoi An, corrigé à chaud")
        # The page kept its state: same edition and width, no reload.
        expect(frame.locator("html")).to_have_attribute("lang", "fr-CA")
        expect(page.locator("#pane-desktop")).to_be_hidden()
        expect(page.locator("[data-width='phone']")).to_have_attribute("aria-pressed", "true")
        assert page.evaluate("window.notReloaded") is True
    expect(frame.locator("body")).not_to_contain_text("Hoi An, corrigé à chaud")


def test_saving_env_updates_the_headers(page, workdir: Path) -> None:
    env = workdir / ".env"
    with edited(
        env, "NEWSLETTER_TEMPLATES", "NEWSLETTER_FROM_NAME_EN=Desk Test\nNEWSLETTER_TEMPLATES"
    ):
        expect(page.locator("#headers")).to_contain_text("Desk Test <news@example.org>")
    expect(page.locator("#headers")).to_contain_text("Committee News <news@example.org>")


def test_pointing_env_at_other_templates_watches_them(page, server: Server, workdir: Path) -> None:
    other = workdir / "templates-other"
    shutil.copytree(workdir / "templates", other, dirs_exist_ok=True)
    setting = f"NEWSLETTER_TEMPLATES={workdir / 'templates'}"
    body = page.frame_locator("#frame-desktop").locator("body")
    with edited(workdir / ".env", setting, f"NEWSLETTER_TEMPLATES={other}"):
        # A save in the new folder before the watcher moves there would be read by the
        # rebuild for .env anyway, and prove nothing: wait until the server says it moved.
        wait_for_output(server, f"watching issues/2017-11, issues/briefs, {other.name}, .env")
        # Only a watcher re-aimed at the new folder can see this save.
        with edited(
            other / "email.mjml.j2",
            "{% for s in e.sections %}",
            "<mj-raw><p>from-the-other-folder</p></mj-raw>\n{% for s in e.sections %}",
        ):
            expect(body).to_contain_text("from-the-other-folder")
    expect(body).not_to_contain_text("from-the-other-folder")


def cli_error(workdir: Path) -> str:
    """The one line `newsletter check` prints for the same broken input."""
    result = subprocess.run(
        [sys.executable, "-m", "newsletter", "--env-file", ".env", "check", str(ISSUE)],
        cwd=workdir,
        env=clean_env(),
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2, result.stdout + result.stderr
    (line,) = result.stderr.splitlines()
    return line


@pytest.mark.parametrize(
    ("path", "old", "new"),
    [
        (BRIEF_EN, "---\ntitle:", "title:"),  # no front matter
        (ISSUE / "issue.toml", '"da-nang-apec-summit"', '"da-nang-apec-sumit"'),  # unknown slug
        (Path("templates") / "email.mjml.j2", "{% for s in e.sections %}", "{% for s in %}"),
    ],
    ids=["front-matter", "unknown-slug", "template"],
)
def test_a_broken_file_shows_the_cli_error_then_fixing_it_restores(
    page, workdir: Path, path: Path, old: str, new: str
) -> None:
    show(page, "fr", "desktop")
    with edited(workdir / path, old, new):
        expected = cli_error(workdir)
        assert expected.startswith("error: ")
        expect(page.locator("#error-text")).to_have_text(expected)
        expect(page.locator("#preview")).to_be_hidden()
    expect(page.locator("#error")).to_be_hidden()
    expect(page.locator("#preview")).to_be_visible()
    expect(page.frame_locator("#frame-desktop").locator("html")).to_have_attribute("lang", "fr-CA")


@pytest.mark.parametrize(
    ("folder", "path", "old", "new"),
    [
        (ISSUE, ISSUE / "issue.toml", "premier numéro", "numéro revenu"),
        (BRIEF_FR.parent, BRIEF_FR, "Da Nang", "Hoi An, revenue"),
    ],
    ids=["issue", "briefs"],
)
def test_a_folder_moved_away_and_back_is_watched_again(
    page, workdir: Path, tmp_path: Path, folder: Path, path: Path, old: str, new: str
) -> None:
    """As `git checkout`, `git stash` or an editor replacing a folder do: the folder that
    comes back is a new one to watch, and the page follows without a reload."""
    show(page, "fr", "desktop")
    page.evaluate("window.notReloaded = true")
    aside = tmp_path / "aside"
    (workdir / folder).rename(aside)
    try:
        expect(page.locator("#error-text")).to_have_text(cli_error(workdir))
        expect(page.locator("#preview")).to_be_hidden()
    finally:
        aside.rename(workdir / folder)
    expect(page.locator("#error")).to_be_hidden()
    expect(page.locator("#preview")).to_be_visible()
    body = page.frame_locator("#frame-desktop").locator("body")
    expect(body).to_contain_text(old)
    # Only a watch on the folder now at that path can see a later save in it.
    with edited(workdir / path, old, new):
        expect(body).to_contain_text(new)
    expect(body).not_to_contain_text(new)
    assert page.evaluate("window.notReloaded") is True


PAYLOAD = (  # quoted and self-closed, as MJML wants them inside <mj-raw>
    "<script>window.parent.pwned = 'script'; window.parent.document.title = 'pwned';</script>"
    '<img src="x" onerror="window.parent.pwned = this.tagName" />'
)


def test_scripts_in_a_brief_or_a_template_do_not_run(page, server: Server, workdir: Path) -> None:
    show(page, "en", "desktop")
    title = page.title()
    # Markdown escapes raw HTML in a brief, but a template passes it through untouched:
    # with both, the sandbox and the CSP are what must stop it.
    brief = edited(workdir / BRIEF_EN, "Da Nang", f"Da Nang {PAYLOAD} payload-in-brief")
    template = edited(
        workdir / "templates" / "email.mjml.j2",
        "{% for s in e.sections %}",
        f"<mj-raw>{PAYLOAD}<p>payload-in-template</p></mj-raw>\n{{% for s in e.sections %}}",
    )
    frame_element = page.locator("#frame-desktop")
    with brief, template:
        body = page.frame_locator("#frame-desktop").locator("body")
        expect(body).to_contain_text("payload-in-template")
        expect(body).to_contain_text("payload-in-brief")
        # The frame's load event comes after its images failed and their handlers had
        # their chance to run.
        frame_element.element_handle().content_frame().wait_for_load_state("load")
        with urllib.request.urlopen(server.url + "edition/en.html") as response:
            sent = response.read().decode()
            csp = response.headers["Content-Security-Policy"]
        assert "<script>window.parent.pwned" in sent  # the payload is really in the HTML
        assert page.evaluate("window.pwned") is None
        assert page.title() == title != "pwned"
        # Two locks, each enough alone: no scripts in the frame, no scripts in the document.
        # (allow-same-origin only lets the page keep the frame's scroll across rebuilds.)
        assert frame_element.get_attribute("sandbox") == "allow-same-origin"
        assert "script-src 'none'" in csp


def test_ctrl_c_stops_cleanly_with_a_page_open(browser, workdir: Path) -> None:
    server = start_preview(workdir)
    context = browser.new_context()
    page = context.new_page()
    page.goto(server.url)
    expect(page.locator("#status")).to_contain_text("build 1")  # the event stream is open
    status, output = stop_preview(server)
    context.close()
    assert status == 0, output
    assert "Traceback" not in output
    assert output.rstrip().endswith("preview stopped")


def test_a_missing_issue_folder_is_a_one_line_error(workdir: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "newsletter", "preview", "issues/2099-01", "--no-open"],
        cwd=workdir,
        env=clean_env(),
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    (line,) = result.stderr.splitlines()
    assert (
        line
        == "error: issues/2099-01: no such issue folder; give the path of an issue, e.g. "
        + ("issues/2017-11")
    )


def test_a_port_in_use_is_a_one_line_error(workdir: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "newsletter", "preview", str(ISSUE), "--port", str(port)]
            + ["--no-open"],
            cwd=workdir,
            env=clean_env(),
            capture_output=True,
            text=True,
        )
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1] == (
        f"error: port {port} is in use on 127.0.0.1; pick another with --port, or --port 0 "
        "for a free one"
    )


def test_requests_for_another_host_name_are_refused(server: Server) -> None:
    """A page on a rebound DNS name cannot read the unsent issue from the preview."""
    import urllib.error
    import urllib.request

    state = server.url + "state.json"
    with urllib.request.urlopen(state, timeout=10) as response:
        assert response.status == 200
    forged = urllib.request.Request(state, headers={"Host": "evil.example.com"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(forged, timeout=10)
    assert refused.value.code == 400


def frame_of(page, width: str = "desktop"):
    return page.locator(f"#frame-{width}").element_handle().content_frame()


def wait_until(condition, what: str) -> None:
    """Poll a condition (not a delay) until it holds."""
    deadline = time.monotonic() + STARTUP_SECONDS
    while not condition():
        assert time.monotonic() < deadline, f"never: {what}"
        time.sleep(0.05)


def test_a_save_keeps_the_frames_scroll_position(page, workdir: Path) -> None:
    show(page, "en", "both")
    desktop, phone = frame_of(page, "desktop"), frame_of(page, "phone")
    desktop.evaluate("window.scrollTo(0, 2400)")  # an editor at work on the fifth brief
    phone.evaluate("window.scrollTo(0, 3100)")
    before = (desktop.evaluate("scrollY"), phone.evaluate("scrollY"))
    assert before == (2400, 3100)
    with edited(workdir / BRIEF_EN, "Da Nang", "Da Nang, saved again"):
        expect(page.frame_locator("#frame-desktop").locator("body")).to_contain_text("saved again")
        wait_until(
            lambda: (
                (
                    frame_of(page, "desktop").evaluate("scrollY"),
                    frame_of(page, "phone").evaluate("scrollY"),
                )
                == before
            ),
            f"frames back at {before}",
        )
    # switching the edition starts at its top
    show(page, "fr", "both")
    assert frame_of(page, "desktop").evaluate("scrollY") == 0


SCHEME_COLOURS = """() => [getComputedStyle(document.body).backgroundColor,
  getComputedStyle(document.querySelector('div.c')).backgroundColor,
  getComputedStyle(document.querySelector('.x > div')).color]"""


@pytest.mark.parametrize("edition", sorted(EDITIONS))
def test_each_edition_in_light_dark_and_outlook_dark(page, edition: str) -> None:
    import tomllib

    theme = tomllib.loads((ROOT / "templates" / "theme.toml").read_text("utf-8"))

    def rgb(colour: str) -> str:
        return "rgb({}, {}, {})".format(*(int(colour[i : i + 2], 16) for i in (1, 3, 5)))

    for scheme, palette in (("light", "light"), ("dark", "dark"), ("outlook", "dark")):
        show(page, edition, "desktop", scheme)
        expected = [rgb(theme[palette][token]) for token in ("page", "card", "text")]
        wait_until(
            lambda: frame_of(page).evaluate(SCHEME_COLOURS) == expected,  # noqa: B023
            f"{edition} in {scheme}: {expected}",
        )
        marked = frame_of(page).evaluate("document.body.hasAttribute('data-ogsc')")
        assert marked is (scheme == "outlook")
        assert f"scheme={scheme}" in page.url
    # the scheme is kept across a reload of the page, like the edition and width
    page.reload()
    expect(page.locator("[data-scheme='outlook']")).to_have_attribute("aria-pressed", "true")


def test_the_page_fits_a_phone(browser, server: Server) -> None:
    context = browser.new_context(viewport={"width": 375, "height": 800})
    context.route("**/*", only_loopback)
    page = context.new_page()
    try:
        page.goto(server.url + "#edition=bilingual&width=both")
        expect(page.locator("#preview")).to_be_visible()
        expect(page.frame_locator("#frame-phone").locator("html")).to_have_attribute(
            "lang", "en-CA"
        )
        assert page.evaluate("document.documentElement.scrollWidth") <= 375
        # the frames keep their widths, scrolling sideways inside their pane
        assert frame_of(page, "desktop").evaluate("innerWidth") == 640
        assert frame_of(page, "phone").evaluate("innerWidth") == 375
        ARTEFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=ARTEFACTS / "preview-page-phone.png")
    finally:
        context.close()
