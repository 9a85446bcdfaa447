"""The unsubscribe and preferences app, served by uvicorn on 127.0.0.1 and spoken to over HTTP."""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
import uvicorn

from newsletter import db
from newsletter.config import Settings, load_settings
from newsletter.subscribers import SqliteStore, Status, edition_for
from newsletter.tokens import make_token, signing_key
from newsletter.web import create_app

from .conftest import ROOT

NNBSP = "\u202f"


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: str


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """The real app under uvicorn in a background thread, as `newsletter serve` runs it."""

    def __init__(self, settings: Settings, **options: Any):
        self.port = _free_port()
        config = uvicorn.Config(
            create_app(settings, **options), host="127.0.0.1", port=self.port, log_level="warning"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> Server:
        self.thread.start()
        for _ in range(500):  # wait for the socket, not for a fixed time
            if self.server.started:
                return self
            time.sleep(0.01)
        raise RuntimeError("uvicorn did not start")

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


def request(
    url: str,
    data: bytes | None = None,
    content_type: str = "application/x-www-form-urlencoded",
    method: str | None = None,
) -> Reply:
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", content_type)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return Reply(resp.status, dict(resp.headers), resp.read().decode("utf-8"))
    except urllib.error.HTTPError as err:
        return Reply(err.code, dict(err.headers), err.read().decode("utf-8"))


def post(url: str, fields: dict[str, str]) -> Reply:
    return request(url, urlencode(fields).encode("ascii"))


ONE_CLICK = {"List-Unsubscribe": "One-Click"}


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(
        None,
        environ={
            "NEWSLETTER_DB": str(tmp_path / "data" / "newsletter.db"),
            "NEWSLETTER_SECRET": "test-secret-with-enough-entropy-0123456789",
            "NEWSLETTER_BASE_URL": "https://news.example.org",
        },
    )


@pytest.fixture
def store(settings: Settings) -> Iterator[SqliteStore]:
    with SqliteStore(settings.db_path) as store:
        yield store


@pytest.fixture
def server(settings: Settings) -> Iterator[Server]:
    with Server(settings) as server:
        yield server


def _person(store: SqliteStore, email: str, language: str) -> int:
    return store.add(email, language=language, source="test", consent_note="form").id


def _token(settings: Settings, subscriber_id: int) -> str:
    return make_token(signing_key(settings), subscriber_id)  # as `send` signs links


def test_get_shows_one_button_and_changes_nothing(settings, store, server):
    ann = _person(store, "ann@example.org", "fr")
    url = server.url(f"/unsubscribe/{_token(settings, ann)}")
    for _ in range(3):  # a link scanner may fetch it several times
        reply = request(url)
        assert reply.status == 200
    assert '<html lang="fr-CA">' in reply.body
    assert reply.body.count("<button") == 1
    assert '<form method="post"' in reply.body
    assert f"Ne plus envoyer «{NNBSP}Brèves{NNBSP}» à ann@example.org{NNBSP}?" in reply.body
    assert store.get(ann).status is Status.ACTIVE
    assert [e["kind"] for e in store.events(ann)] == ["join"]


def test_one_click_post_unsubscribes_and_a_second_post_is_harmless(settings, store, server):
    ann = _person(store, "ann@example.org", "en")
    url = server.url(f"/unsubscribe/{_token(settings, ann)}")

    first = post(url, ONE_CLICK)
    assert first.status == 200
    assert "You are unsubscribed" in first.body
    after = store.get(ann)
    assert after.status is Status.UNSUBSCRIBED
    assert after.left_how == "web:one-click"
    assert after.left_at is not None

    second = post(url, ONE_CLICK)
    assert second.status == 200
    assert store.get(ann) == after  # when and how it happened are not overwritten
    assert [e["kind"] for e in store.events(ann)] == ["join", "unsubscribe"]


def test_one_click_as_multipart_and_the_page_button(settings, store, server):
    # RFC 8058 allows the mail client to send multipart/form-data.
    ann = _person(store, "ann@example.org", "en")
    boundary = "b0undary"
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="List-Unsubscribe"\r\n\r\n'
        f"One-Click\r\n--{boundary}--\r\n"
    ).encode()
    reply = request(
        server.url(f"/unsubscribe/{_token(settings, ann)}"),
        body,
        f"multipart/form-data; boundary={boundary}",
    )
    assert reply.status == 200
    assert store.get(ann).left_how == "web:one-click"

    bob = _person(store, "bob@example.org", "both")
    reply = post(server.url(f"/unsubscribe/{_token(settings, bob)}"), {"action": "unsubscribe"})
    assert reply.status == 200
    assert store.get(bob).left_how == "web:button"
    assert '<span lang="fr-CA">Désabonnement confirmé</span>' in reply.body


def test_forged_tampered_and_truncated_tokens_get_the_same_plain_404(settings, store, server):
    ann = _person(store, "ann@example.org", "en")
    gone = _person(store, "gone@example.org", "en")
    store.remove("gone@example.org")
    good = _token(settings, ann)
    flipped = good[:-3] + ("A" if good[-3] != "A" else "B") + good[-2:]
    bad_tokens = [
        flipped,
        good[:-1],
        good + "A",
        good.lower() if good.lower() != good else good.upper(),
        make_token(b"another secret", ann),
        "x" * 32,
        "..%2f..%2fetc",
    ]
    bodies = set()
    for token in bad_tokens:
        for reply in (
            request(server.url(f"/unsubscribe/{token}")),
            post(server.url(f"/unsubscribe/{token}"), ONE_CLICK),
            request(server.url(f"/preferences/{token}")),
            post(server.url(f"/preferences/{token}"), {"language": "fr"}),
        ):
            assert reply.status == 404, token
            assert reply.headers["cache-control"] == "no-store"
            bodies.add(reply.body)
    assert len(bodies) == 1  # nothing tells a subscriber apart from a stranger
    (body,) = bodies
    assert "This link is not valid" in body and "Ce lien n’est pas valide" in body
    assert "example.org" not in body
    assert store.get(ann).status is Status.ACTIVE
    assert store.get(ann).language == "en"
    # a genuine link whose person was removed (only we can sign one) says that instead
    for token in (_token(settings, gone), _token(settings, 999)):
        reply = request(server.url(f"/unsubscribe/{token}"))
        assert reply.status == 200 and "no longer on the list" in reply.body
        assert "example.org" not in reply.body


def test_preferences_change_the_edition_and_the_page_language(settings, store, server):
    ann = _person(store, "ann@example.org", "en")
    url = server.url(f"/preferences/{_token(settings, ann)}")
    page = request(url)
    assert page.status == 200
    assert 'value="en" checked' in page.body
    assert edition_for(store.get(ann)) == "en"

    saved = post(url, {"action": "save", "language": "fr", "name": "Ann Ébert"})
    assert saved.status == 200
    assert '<html lang="fr-CA">' in saved.body
    assert "Vos préférences sont enregistrées." in saved.body
    assert store.get(ann).name == "Ann Ébert"
    assert edition_for(store.get(ann)) == "fr"

    post(url, {"action": "save", "language": "both", "name": "Ann Ébert"})
    assert edition_for(store.get(ann)) == "bilingual"
    kinds = [(e["kind"], e["route"], e["detail"]) for e in store.events(ann)]
    assert ("language", "web:preferences", "fr") in kinds
    assert ("language", "web:preferences", "both") in kinds


def test_preferences_refuse_an_unknown_language(settings, store, server):
    ann = _person(store, "ann@example.org", "en")
    reply = post(server.url(f"/preferences/{_token(settings, ann)}"), {"language": "de"})
    assert reply.status == 400
    assert store.get(ann).language == "en"


def test_preferences_page_can_unsubscribe(settings, store, server):
    ann = _person(store, "ann@example.org", "fr")
    token = _token(settings, ann)
    page = request(server.url(f"/preferences/{token}"))
    assert f'action="../unsubscribe/{token}"' in page.body
    reply = post(server.url(f"/preferences/{token}"), {"action": "unsubscribe"})
    assert reply.status == 200
    assert store.get(ann).status is Status.UNSUBSCRIBED


def test_the_links_of_someone_removed_say_so_and_one_click_is_done(settings, store, server):
    ann = _person(store, "ann@example.org", "fr")
    token = _token(settings, ann)
    assert store.remove("ann@example.org")  # on their request to erase their data
    for reply in (
        request(server.url(f"/unsubscribe/{token}")),
        post(server.url(f"/unsubscribe/{token}"), ONE_CLICK),  # a mail client's RFC 8058 POST
        request(server.url(f"/preferences/{token}")),
    ):
        assert reply.status == 200, reply.body
        assert "This address is no longer on the list" in reply.body
        assert "Cette adresse n’est plus sur la liste" in reply.body
        assert "not valid" not in reply.body
    assert store.find("ann@example.org") is None  # and nothing made them come back


def test_bilingual_page_marks_each_language(settings, store, server):
    bob = _person(store, "bob@example.org", "both")
    reply = request(server.url(f"/unsubscribe/{_token(settings, bob)}"))
    assert '<p lang="en-CA">Stop sending News to bob@example.org?</p>' in reply.body
    assert "<title>Unsubscribe / Désabonnement · News / Brèves</title>" in reply.body  # no tags
    assert '<p lang="fr-CA">Ne plus envoyer' in reply.body
    assert '<span lang="en-CA">Unsubscribe</span> / <span lang="fr-CA">Me désabonner</span>' in (
        reply.body
    )
    assert reply.headers["cache-control"] == "no-store"
    assert reply.headers["referrer-policy"] == "no-referrer"


def test_names_are_escaped(settings, store, server):
    ann = store.add("ann@example.org", name='<script>x</script>"', language="en", source="test").id
    reply = request(server.url(f"/preferences/{_token(settings, ann)}"))
    assert "<script>x</script>" not in reply.body
    assert "&lt;script&gt;x&lt;/script&gt;&#34;" in reply.body


def test_two_concurrent_unsubscribes_of_the_same_person(settings, store, server):
    people = [_person(store, f"p{i}@example.net", "en") for i in range(10)]
    barrier = threading.Barrier(2)
    replies: list[int] = []

    def click(url: str) -> None:
        barrier.wait()
        replies.append(post(url, ONE_CLICK).status)

    for person in people:
        url = server.url(f"/unsubscribe/{_token(settings, person)}")
        threads = [threading.Thread(target=click, args=(url,)) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert replies == [200] * 20
    for person in people:
        assert store.get(person).status is Status.UNSUBSCRIBED
        assert [e["kind"] for e in store.events(person)].count("unsubscribe") == 1


def test_data_and_links_survive_a_restart(tmp_path: Path):
    # No NEWSLETTER_SECRET: the secret generated beside the database must be reused.
    settings = load_settings(None, environ={"NEWSLETTER_DB": str(tmp_path / "n.db")})
    with SqliteStore(settings.db_path) as store:
        ann = _person(store, "ann@example.org", "fr")
        bob = _person(store, "bob@example.org", "en")
    ann_path = f"/unsubscribe/{_token(settings, ann)}"
    bob_path = f"/preferences/{_token(settings, bob)}"
    with Server(settings) as server:
        assert post(server.url(ann_path), ONE_CLICK).status == 200
        assert post(server.url(bob_path), {"language": "both", "name": ""}).status == 200
    with Server(settings) as server:  # a new process would read the same two files
        assert "est déjà désabonnée" in request(server.url(ann_path)).body
        assert 'value="both" checked' in request(server.url(bob_path)).body
    with SqliteStore(settings.db_path) as store:
        assert store.get(ann).status is Status.UNSUBSCRIBED
        assert store.get(bob).language == "both"


def test_newsletter_serve_command(tmp_path: Path, settings: Settings):
    with SqliteStore(settings.db_path) as store:
        ann = _person(store, "ann@example.org", "en")
    port = _free_port()
    env = {
        **os.environ,
        "NEWSLETTER_DB": str(settings.db_path),
        "NEWSLETTER_SECRET": settings.secret,
    }
    (tmp_path / "none.env").touch()
    proc = subprocess.Popen(
        [sys.executable, "-m", "newsletter", "--env-file", str(tmp_path / "none.env"),
         "serve", "--port", str(port)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert (
            first == f"serving on http://127.0.0.1:{port}/ (links use https://news.example.org)\n"
        )
        url = f"http://127.0.0.1:{port}/unsubscribe/{_token(settings, ann)}"
        for _ in range(500):
            try:
                reply = post(url, ONE_CLICK)
                break
            except urllib.error.URLError:
                time.sleep(0.01)
        assert reply.status == 200
    finally:
        proc.terminate()
        log, _ = proc.communicate(timeout=10)  # uvicorn's access log goes to stdout
    with SqliteStore(settings.db_path) as store:
        assert store.get(ann).status is Status.UNSUBSCRIBED
    # The access log shows the request, but not the token: it would unsubscribe ann.
    token = _token(settings, ann)
    assert '"POST /unsubscribe/… HTTP/1.1" 200' in log
    assert token not in log and token[:12] not in log


def test_head_and_partial_posts_change_only_what_they_carry(settings, store, server):
    ann = store.add("ann@example.org", name="Ann Ébert", language="en", source="test").id
    url = server.url(f"/preferences/{_token(settings, ann)}")

    head = request(url, method="HEAD")  # a GET route answers HEAD too
    assert head.status == 200
    assert head.body == ""
    assert store.get(ann).name == "Ann Ébert"

    assert post(url, {"language": "fr"}).status == 200  # no name field: the name stays
    assert post(url, {}).status == 200  # nothing to change
    assert post(url, {"action": "save", "language": "fr", "name": "Ann Ébert"}).status == 200
    unreadable = request(url, b"name=&language=both", "multipart/form-data")  # no boundary
    assert unreadable.status == 400
    assert "Vos modifications n’ont pas pu être lues" in unreadable.body
    after = store.get(ann)
    assert (after.name, after.language) == ("Ann Ébert", "fr")
    assert [e["kind"] for e in store.events(ann)] == ["join", "language"]

    assert post(url, {"name": ""}).status == 200  # an empty name sent is a choice: cleared
    assert (store.get(ann).name, store.get(ann).language) == ("", "fr")

    # An unreadable body to the unsubscribe link still unsubscribes (RFC 8058).
    unsubscribe = server.url(f"/unsubscribe/{_token(settings, ann)}")
    assert request(unsubscribe, b"x", "multipart/form-data").status == 200
    assert store.get(ann).left_how == "web:post"


def _hold_write_lock(settings: Settings) -> sqlite3.Connection:
    """What `newsletter subscribers import big.csv` does for its whole run."""
    conn = sqlite3.connect(settings.db_path, isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    return conn


def test_one_click_waits_for_an_import_holding_the_database(settings, store, server, monkeypatch):
    # An import can hold the write lock for longer than a command waits for it. Cutting the
    # commands' wait to 0.1 s lets a lock held for one second stand for that import.
    monkeypatch.setattr(db, "BUSY_TIMEOUT_MS", 100)
    ann = _person(store, "ann@example.org", "en")
    url = server.url(f"/unsubscribe/{_token(settings, ann)}")
    replies: list[Reply] = []
    click = threading.Thread(target=lambda: replies.append(post(url, ONE_CLICK)))
    lock = _hold_write_lock(settings)
    try:
        click.start()
        time.sleep(1)
        assert replies == []  # still waiting: a mail client does not try again
        assert store.get(ann).status is Status.ACTIVE
    finally:
        lock.execute("COMMIT")
        lock.close()
    click.join(10)
    assert [reply.status for reply in replies] == [200]
    assert store.get(ann).status is Status.UNSUBSCRIBED
    assert store.get(ann).left_how == "web:one-click"


def test_a_change_that_cannot_wait_longer_is_a_503(settings, store, caplog):
    ann = _person(store, "ann@example.org", "fr")
    token = _token(settings, ann)
    with Server(settings, busy_timeout_ms=200, retry_after_s=30) as server:
        lock = _hold_write_lock(settings)
        try:
            replies = [
                post(server.url(f"/unsubscribe/{token}"), ONE_CLICK),
                post(server.url(f"/preferences/{token}"), {"language": "en"}),
            ]
        finally:
            lock.execute("ROLLBACK")
            lock.close()
        for reply in replies:
            assert reply.status == 503
            assert reply.headers["retry-after"] == "30"
            assert reply.headers["cache-control"] == "no-store"
            assert '<html lang="fr-CA">' in reply.body
            assert "Réessayez dans une minute" in reply.body
            assert "locked" not in reply.body and "Traceback" not in reply.body
            assert _french_spacing_errors(reply.body) == []
        assert (store.get(ann).status, store.get(ann).language) == (Status.ACTIVE, "fr")
        assert [e["kind"] for e in store.events(ann)] == ["join"]
        # The operator learns of the unsubscribe the mail client will not send again.
        assert f"unsubscribe (web:one-click) for subscriber {ann}" in caplog.text

        assert post(server.url(f"/unsubscribe/{token}"), ONE_CLICK).status == 200
    assert store.get(ann).status is Status.UNSUBSCRIBED


class _FrenchText(HTMLParser):
    """The text of a page that is in French, by the lang of the elements around it."""

    VOID = {"meta", "link", "input", "br", "hr", "img"}

    def __init__(self) -> None:
        super().__init__()
        self.open: list[tuple[str, str]] = []  # (tag, lang) of each element open
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in self.VOID:
            lang = dict(attrs).get("lang") or (self.open[-1][1] if self.open else "")
            self.open.append((tag, lang))

    def handle_endtag(self, tag: str) -> None:
        while self.open and self.open.pop()[0] != tag:
            pass

    def handle_data(self, data: str) -> None:
        tags = [tag for tag, _ in self.open]
        if tags and self.open[-1][1].startswith("fr") and "style" not in tags:
            self.text.append(data)


# As in the emails: U+202F before ; ! ? and inside « », U+00A0 before a colon, and no other
# space (nor none at all) in those places.
_BAD_FRENCH_SPACING = re.compile(r"[^\u202f][;!?]|«[^\u202f]|[^\u202f]»|[^\u00a0]:(?=\s|$)")


def _french_spacing_errors(html: str) -> list[str]:
    parser = _FrenchText()
    parser.feed(html)
    parser.close()
    text = "".join(parser.text)
    assert text.strip(), "no French text"
    return [text[max(m.start() - 20, 0) : m.end() + 5] for m in _BAD_FRENCH_SPACING.finditer(text)]


def test_french_pages_space_their_punctuation_as_french_does(settings, store, server):
    assert len(_french_spacing_errors('<p lang="fr-CA">Vraiment ? Oui : « non »</p>')) == 4
    assert _french_spacing_errors(f'<p lang="fr">Oui\u00a0: «{NNBSP}non{NNBSP}»{NNBSP}!</p>') == []
    pages: list[tuple[str, Reply]] = []
    for language in ("fr", "both"):
        person = _person(store, f"{language}@example.org", language)
        token = _token(settings, person)
        unsubscribe = server.url(f"/unsubscribe/{token}")
        preferences = server.url(f"/preferences/{token}")
        pages += [
            ("confirm", request(unsubscribe)),
            ("preferences", request(preferences)),
            ("saved", post(preferences, {"name": "Ann"})),
            ("refused", post(preferences, {"name": "x" * 300})),
            ("unreadable", request(preferences, b"x", "multipart/form-data")),
            ("unsubscribed", post(unsubscribe, ONE_CLICK)),
            ("already", request(unsubscribe)),
            ("preferences when unsubscribed", request(preferences)),
        ]
    pages.append(("invalid", request(server.url("/unsubscribe/not-a-token"))))
    for what, reply in pages:
        assert _french_spacing_errors(reply.body) == [], what


def test_pages_follow_the_templates_folder_of_the_settings(tmp_path: Path, settings: Settings):
    own = tmp_path / "look"
    shutil.copytree(ROOT / "templates", own)
    page = own / "web" / "unsubscribe.html.j2"
    page.write_text(
        page.read_text("utf-8").replace(
            "{% block content %}", "{% block content %}<p>house-style</p>", 1
        )
    )
    moved = dataclasses.replace(settings, templates_dir=own)
    with SqliteStore(settings.db_path) as store:
        ann = _person(store, "ann@example.org", "en")
    with Server(moved) as server:
        assert "house-style" in request(server.url(f"/unsubscribe/{_token(settings, ann)}")).body
    page.unlink()  # a copy made before a page existed: that page comes from ours
    with Server(moved) as server:
        body = request(server.url(f"/unsubscribe/{_token(settings, ann)}")).body
        assert "house-style" not in body and "<form" in body
    with Server(settings) as server:  # no NEWSLETTER_TEMPLATES: the shipped pages
        body = request(server.url(f"/unsubscribe/{_token(settings, ann)}")).body
        assert "house-style" not in body
