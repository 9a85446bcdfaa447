"""Joining from the web: the real app under uvicorn on 127.0.0.1, a real SMTP server (aiosmtpd)
capturing the confirmation mail, a real SQLite file, and a controlled clock (time-machine)."""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from newsletter.consent import Basis
from newsletter.signup.pages import AUTO_CONFIRM
from newsletter.signup.stamps import make_stamp
from newsletter.subscribers import SqliteStore, Status
from newsletter.tokens import make_token, resolve_secret, signing_key
from newsletter.web import RedactTokens

from ..conftest import ROOT
from ..test_web import NNBSP, Server, _free_port, _french_spacing_errors
from .helpers import (
    START,
    field,
    fill,
    http,
    mails,
    post_form,
    signup_settings,
    stamp,
    wait_for_mails,
    wait_until,
)

SENT = {"en": "/subscribe/sent", "fr": "/abonnement/envoye"}


def _count(store: SqliteStore, table: str) -> int:
    return store.conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


def _nothing_recorded(store: SqliteStore) -> None:
    for table in ("subscribers", "signup_requests", "signup_limits", "consents"):
        assert _count(store, table) == 0, table


def _control(app, settings, mail_server, already: int) -> None:
    """A genuine request after the ones that must send nothing: once its mail is in, any
    mail the earlier ones had wrongly queued would be too."""
    assert post_form(app.url("/subscribe"), fill(settings, "control@example.net")).status == 303
    got = wait_for_mails(mail_server, already + 1)
    assert [m.rcpt for m in got][-1] == "control@example.net"
    time.sleep(0.2)
    assert len(mails(mail_server)) == already + 1


# -- the form -------------------------------------------------------------------------------


def test_the_form_in_each_language_links_to_the_other_and_changes_nothing(app, store):
    en = http(app.url("/subscribe"))
    fr = http(app.url("/abonnement"))
    assert en.status == fr.status == 200
    assert '<html lang="en-CA">' in en.body and '<html lang="fr-CA">' in fr.body
    assert 'href="/abonnement" lang="fr-CA" hreflang="fr">Version française' in en.body
    assert 'href="/subscribe" lang="en-CA" hreflang="en">English version' in fr.body
    for page in (en.body, fr.body):
        box = re.search(r'<input type="checkbox"[^>]*name="consent"[^>]*>', page).group(0)
        assert "checked" not in box  # express consent: never ticked in advance
        assert 'name="website"' in page and 'tabindex="-1"' in page  # the honeypot
    # The words by the box name the sender, its mailing address and a contact, the purpose,
    # and that consent can be withdrawn.
    assert "Sender: Committee for the Republic of Canada, PO Box 1234" in en.body
    assert "contact: news@example.org" in en.body and "withdraw my consent at any time" in en.body
    assert "Expéditeur\u00a0: Comité pour la République du Canada" in fr.body
    assert "pour nous joindre\u00a0: breves@example.org" in fr.body
    assert "retirer mon consentement à tout moment" in fr.body
    assert http(app.url("/subscribe"), "HEAD").status == 200
    _nothing_recorded(store)


def test_one_email_one_click(app, settings, store, mail_server, clock):
    page = http(app.url("/subscribe")).body
    clock.shift(5)  # a person takes more than two seconds
    reply = post_form(
        app.url("/subscribe"),
        {
            "stamp": field(page, "stamp"),
            "text": field(page, "text"),
            "email": "Ann@Example.ORG",
            "name": "Ann <a href='https://spam.example.com'>win</a>",
            "language": "both",
            "consent": "yes",
            "website": "",
        },
    )
    assert (reply.status, reply.headers["location"]) == (303, "/subscribe/sent")
    sent = http(app.url("/subscribe/sent"))
    assert "Check your inbox" in sent.body

    (mail,) = wait_for_mails(mail_server, 1)
    assert mail.rcpt == "Ann@Example.ORG"
    assert mail.subject == "Confirm your subscription to “News”"
    assert mail.headers["To"] == "Ann@Example.ORG"
    assert mail.headers["Auto-Submitted"] == "auto-generated"
    for part in (mail.text, mail.html):
        assert "spam.example.com" not in part and "Ann" not in part  # nothing they typed
        assert "PO Box 1234" in part and "news@example.org" in part  # who it is from
    assert mail.html.count("Confirm my subscription") == 1  # one button
    confirm, cancel = mail.link("confirm"), mail.link("cancel")
    assert confirm.split("/")[-1] == cancel.split("/")[-1]

    # Pending: apart from the subscribers, counted nowhere else.
    assert store.find("Ann@example.org") is None
    assert store.counts() == {}
    assert [r.email for r in store.pending_signups(START)] == ["Ann@Example.ORG"]

    # Within the guard window the page asks for one click, and has no script.
    for method in ("GET", "HEAD", "GET"):
        page = http(app.url(confirm), method)
        assert page.status == 200
    assert "<script" not in page.body and "Confirm my subscription" in page.body
    assert "script-src" not in page.headers["content-security-policy"]
    assert store.find("Ann@example.org") is None

    clock.shift(30)
    done = post_form(app.url(confirm), {"how": "click"})
    assert done.status == 200 and "You are subscribed" in done.body
    ann = store.find("Ann@example.org")
    assert (ann.status, ann.language, ann.join_source) == (Status.ACTIVE, "both", "web:signup")
    (record,) = store.consents(ann.id)
    proof = record.consent
    assert proof.basis is Basis.EXPRESS and proof.method == "web:signup"
    assert proof.requested_at.startswith("2025-03-03T09:00:0")
    assert proof.confirmed_at.startswith("2025-03-03T09:00:") and proof.confirmed_at > (
        proof.requested_at
    )
    assert proof.form_url == "https://news.example.org/subscribe"
    assert proof.language == "en" and proof.text_version == "1"
    words = store.consent_text(proof.text_hash)
    assert words.text.startswith("Yes, I want to receive “News”")
    assert proof.text_hash == "sha256:" + hashlib.sha256(words.text.encode()).hexdigest()
    assert proof.request_ip == proof.confirm_ip == proof.request_user_agent == ""  # not asked

    # Single-use yet idempotent: the second click says so; nothing is recorded twice.
    again = post_form(app.url(confirm), {"how": "click"})
    assert again.status == 200 and "Already confirmed" in again.body
    assert "Already confirmed" in http(app.url(confirm)).body
    assert len(store.consents(ann.id)) == 1
    assert [e["kind"] for e in store.events(ann.id)] == ["join"]
    assert store.pending_signups(START) == []
    assert len(mails(mail_server)) == 1


def test_the_french_form_sends_a_french_email(app, settings, store, mail_server, clock):
    reply = post_form(app.url("/abonnement"), fill(settings, "bea@example.org", language="fr"))
    assert reply.headers["location"] == "/abonnement/envoye"
    assert "Vérifiez votre boîte de réception" in http(app.url("/abonnement/envoye")).body
    (mail,) = wait_for_mails(mail_server, 1)
    assert mail.subject == f"Confirmez votre abonnement à «{NNBSP}Brèves{NNBSP}»"
    assert mail.headers["Content-Language"] == "fr-CA"
    assert "Confirmer mon abonnement\u00a0: https://news.example.org/confirm/" in mail.text
    assert "Pour nous joindre\u00a0: breves@example.org" in mail.text
    page = http(app.url(mail.link("confirm")))
    assert '<html lang="fr-CA">' in page.body and "Confirmer mon abonnement" in page.body
    done = post_form(app.url(mail.link("confirm")), {"how": "click"})
    assert "Abonnement confirmé" in done.body
    bea = store.find("bea@example.org")
    assert (bea.language, store.consents(bea.id)[0].consent.language) == ("fr", "fr")


# -- link scanners --------------------------------------------------------------------------


def test_scanners_confirm_nothing_and_the_page_confirms_by_itself_only_later(
    app, settings, store, mail_server, clock
):
    post_form(app.url("/subscribe"), fill(settings, "cy@example.org"))
    confirm = wait_for_mails(mail_server, 1)[0].link("confirm")

    # What a scanner does within a second of delivery: GET, HEAD, and a script-run page that
    # posts the form by itself. None confirms.
    assert http(app.url(confirm)).status == 200
    assert http(app.url(confirm), "HEAD").status == 200
    early = post_form(app.url(confirm), {"how": "auto"})
    assert early.status == 200 and "Confirm my subscription" in early.body
    assert store.find("cy@example.org") is None

    clock.shift(299)  # still inside the 5 minutes
    assert "<script" not in http(app.url(confirm)).body
    assert store.find("cy@example.org") is None

    clock.shift(2)  # past them: the page may confirm by itself
    page = http(app.url(confirm))
    assert f"<script>{AUTO_CONFIRM}</script>" in page.body
    digest = base64.b64encode(hashlib.sha256(AUTO_CONFIRM.encode()).digest()).decode()
    assert f"script-src 'sha256-{digest}'" in page.headers["content-security-policy"]
    assert page.headers["content-security-policy"].count("content-security-policy") == 0
    assert store.find("cy@example.org") is None  # a GET still changes nothing
    assert "You are subscribed" in post_form(app.url(confirm), {"how": "auto"}).body
    assert store.find("cy@example.org").status is Status.ACTIVE


def test_the_guard_window_is_a_setting(tmp_path, mail_server, clock):
    settings = signup_settings(tmp_path, mail_server.port, SIGNUP_GUARD="60")
    with Server(settings) as app:
        post_form(app.url("/subscribe"), fill(settings, "cy@example.org"))
        confirm = wait_for_mails(mail_server, 1)[0].link("confirm")
        assert "<script" not in http(app.url(confirm)).body
        clock.shift(61)
        assert "<script" in http(app.url(confirm)).body


# -- bots and list bombing ------------------------------------------------------------------


def test_a_filled_honeypot_or_a_form_sent_within_two_seconds_looks_fine_and_sends_nothing(
    app, settings, store, mail_server, clock
):
    honeypot = post_form(app.url("/subscribe"), fill(settings, "dee@example.org", website="x"))
    page = http(app.url("/abonnement")).body
    too_fast = post_form(
        app.url("/abonnement"),
        {"stamp": field(page, "stamp"), "email": "dee@example.org", "language": "fr",
         "consent": "yes"},
    )  # fmt: skip
    assert (honeypot.status, honeypot.headers["location"]) == (303, SENT["en"])
    assert (too_fast.status, too_fast.headers["location"]) == (303, SENT["fr"])
    _nothing_recorded(store)
    _control(app, settings, mail_server, already=0)


def test_a_forged_or_stale_form_timestamp_gets_the_form_back(app, settings, store, mail_server):
    secret = resolve_secret(settings)
    genuine = stamp(settings)
    forged = [
        "",
        genuine[:-2] + ("AA" if genuine[-2:] != "AA" else "BB"),
        make_stamp(b"another secret entirely", START),
        "x" * 32,
    ]
    for value in forged:
        reply = post_form(app.url("/abonnement"), fill(settings, "eve@example.org", stamp=value))
        assert reply.status == 400, value
        assert "Ce formulaire a été modifié ou n’est plus à jour" in reply.body
        assert 'value="eve@example.org"' in reply.body  # what they typed is kept
        assert field(reply.body, "stamp") != value  # with a fresh stamp to send it again
    import datetime as dt

    old = make_stamp(secret, dt.datetime.now(dt.UTC) - dt.timedelta(days=2))
    stale = post_form(app.url("/subscribe"), fill(settings, "eve@example.org", stamp=old))
    assert stale.status == 400 and "This page was open for too long" in stale.body
    _nothing_recorded(store)
    _control(app, settings, mail_server, already=0)


def test_one_confirmation_per_address_per_ten_minutes_and_three_a_day(
    app, settings, store, mail_server, clock
):
    victim = "fay@example.org"
    assert post_form(app.url("/subscribe"), fill(settings, victim)).status == 303
    for spelling in (victim, "FAY@EXAMPLE.ORG"):  # the same person, however it is typed
        limited = post_form(app.url("/abonnement"), fill(settings, spelling))
        assert limited.status == 429
        assert '<html lang="fr-CA">' in limited.body and "Trop de demandes" in limited.body
        assert 0 < int(limited.headers["retry-after"]) <= 600
    clock.shift(601)
    assert post_form(app.url("/subscribe"), fill(settings, victim)).status == 303
    clock.shift(601)
    assert post_form(app.url("/subscribe"), fill(settings, victim)).status == 303
    clock.shift(601)
    fourth = post_form(app.url("/subscribe"), fill(settings, victim))
    assert fourth.status == 429 and "Too many requests" in fourth.body
    assert int(fourth.headers["retry-after"]) > 20 * 3600  # the day's three are used
    wait_for_mails(mail_server, 3)
    clock.shift(24 * 3600)
    assert post_form(app.url("/subscribe"), fill(settings, victim)).status == 303
    wait_for_mails(mail_server, 4)
    time.sleep(0.2)
    assert [m.rcpt for m in mails(mail_server)] == [victim] * 4


def test_one_place_asking_for_many_addresses_is_limited(app, settings, store, mail_server, clock):
    for n in range(10):
        reply = post_form(app.url("/subscribe"), fill(settings, f"p{n}@example.net"))
        assert reply.status == 303, n
    limited = post_form(app.url("/subscribe"), fill(settings, "p10@example.net"))
    assert limited.status == 429
    wait_for_mails(mail_server, 10)
    time.sleep(0.2)
    assert len(mails(mail_server)) == 10
    assert store.find("p10@example.net") is None
    assert {r.email for r in store.pending_signups(START)} == {
        f"p{n}@example.net" for n in range(10)
    }


def test_the_limits_hold_across_processes_and_restarts(tmp_path, mail_server):
    # Real time here: the second server is `newsletter serve` in a process of its own.
    settings = signup_settings(tmp_path, mail_server.port)
    with Server(settings) as app:
        assert post_form(app.url("/subscribe"), fill(settings, "gus@example.org")).status == 303
    wait_for_mails(mail_server, 1)
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
    env |= {
        "NEWSLETTER_DB": str(settings.db_path),
        "NEWSLETTER_SECRET": settings.secret,
        "NEWSLETTER_SMTP_HOST": "127.0.0.1",
        "NEWSLETTER_SMTP_PORT": str(mail_server.port),
        "NEWSLETTER_SMTP_SECURITY": "none",
    }
    (tmp_path / "none.env").touch()
    proc = subprocess.Popen(
        [sys.executable, "-m", "newsletter", "--env-file", str(tmp_path / "none.env"),
         "serve", "--port", str(port), "--no-access-log"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}/subscribe"
        wait_until(lambda: _answers(url), "newsletter serve")
        assert post_form(url, fill(settings, "gus@example.org")).status == 429
        assert post_form(url, fill(settings, "hal@example.org")).status == 303
    finally:
        proc.terminate()
        proc.communicate(timeout=10)
    wait_for_mails(mail_server, 2)
    time.sleep(0.2)
    assert [m.rcpt for m in mails(mail_server)] == ["gus@example.org", "hal@example.org"]


def _answers(url: str) -> bool:
    try:
        return http(url).status == 200
    except OSError:
        return False


# -- no enumeration -------------------------------------------------------------------------


def test_every_address_gets_the_same_answer_whatever_its_state(
    app, settings, store, mail_server, clock
):
    store.add("active@example.org", language="en", source="test")
    for email, status in (("gone@example.org", Status.UNSUBSCRIBED),
                          ("bounced@example.org", Status.BOUNCED),
                          ("angry@example.org", Status.COMPLAINED)):  # fmt: skip
        store.set_status(store.add(email, language="fr", source="test").id, status, "test")
    post_form(app.url("/subscribe"), fill(settings, "pending@example.org"))
    wait_for_mails(mail_server, 1)
    clock.shift(601)

    replies = []
    for email in ("new@example.org", "pending@example.org", "active@example.org",
                  "gone@example.org", "bounced@example.org", "angry@example.org"):  # fmt: skip
        reply = post_form(app.url("/subscribe"), fill(settings, email))
        replies.append((reply.status, reply.headers["location"], reply.body))
    assert len(set(replies)) == 1
    got = wait_for_mails(mail_server, 7)
    by_rcpt = {m.rcpt: m for m in got[1:]}
    assert by_rcpt["active@example.org"].subject == "You are already subscribed to “News”"
    assert "/preferences/" in by_rcpt["active@example.org"].text
    assert "/confirm/" not in by_rcpt["active@example.org"].text
    for email in ("new", "pending", "gone", "bounced", "angry"):
        assert "/confirm/" in by_rcpt[f"{email}@example.org"].text, email
    # Asking again keeps the link of the first e-mail working.
    assert by_rcpt["pending@example.org"].link("confirm") == got[0].link("confirm")
    assert store.find("active@example.org").status is Status.ACTIVE
    # ...and the already-subscribed note falls under the same limits.
    assert post_form(app.url("/subscribe"), fill(settings, "active@example.org")).status == 429


def test_someone_whose_implied_consent_lapsed_renews_it_by_signing_up(
    app, settings, store, mail_server, clock
):
    from newsletter.consent import Basis, Consent

    member = store.add("member@example.org", language="fr", source="import:m.csv",
                       consent=Consent(Basis.IMPLIED, "import:m.csv", "2022-01-10"))  # fmt: skip
    assert store.has_lapsed(member.id)  # a send skips them
    assert post_form(app.url("/abonnement"), fill(settings, "member@example.org")).status == 303
    (mail,) = wait_for_mails(mail_server, 1)
    # not "already subscribed": a confirmation, whose click records their express consent
    done = post_form(app.url(mail.link("confirm")), {"how": "click"})
    assert done.status == 200, done.body
    assert not store.has_lapsed(member.id)
    assert store.consents(member.id)[-1].consent.basis is Basis.EXPRESS
    assert store.find("member@example.org").status is Status.ACTIVE


# -- bad input ------------------------------------------------------------------------------

BAD = [
    # (fields changed, problem shown in English, in French)
    ({"email": ""}, "Enter your e-mail address.", "Entrez votre adresse courriel."),
    ({"email": "not-an-address"}, "This is not a valid e-mail address", "n’est pas valide"),
    ({"email": "ann@exämple..org"}, "This is not a valid e-mail address", "n’est pas valide"),
    ({"email": "a" * 250 + "@example.org"}, "too long to be an e-mail", "trop longue"),
    ({"name": "N" * 201}, "A name of at most 200 characters", "Un nom d’au plus 200 caractères"),
    ({"language": "de"}, "Choose English, French or both.", "Choisissez anglais, français"),
    ({"consent": ""}, "Tick the box to say yes", "Cochez la case pour dire oui"),
    ({"consent": "on"}, "Tick the box to say yes", "Cochez la case pour dire oui"),
]


@pytest.mark.parametrize(("changed", "en", "fr"), BAD)
def test_bad_input_gets_the_form_back_saying_what_to_fix(app, settings, store, changed, en, fr):
    for path, words, lang in (("/subscribe", en, "en-CA"), ("/abonnement", fr, "fr-CA")):
        fields = fill(settings, "ivy@example.org") | changed
        if not fields["consent"]:
            del fields["consent"]
        reply = post_form(app.url(path), fields)
        assert reply.status == 400
        assert f'<html lang="{lang}">' in reply.body
        assert words in reply.body
        assert 'role="alert"' in reply.body and 'aria-invalid="true"' in reply.body
    _nothing_recorded(store)


def test_a_body_that_is_not_a_form_changes_nothing(app, settings, store):
    json = http(app.url("/subscribe"), "POST", b'{"email": "ivy@example.org"}',
                {"Content-Type": "application/json"})  # fmt: skip
    assert json.status == 415 and "Your form could not be read" in json.body
    broken = http(app.url("/abonnement"), "POST", b"email=x",
                  {"Content-Type": "multipart/form-data"})  # no boundary  # fmt: skip
    assert broken.status == 400 and "Votre formulaire n’a pas pu être lu" in broken.body
    huge = post_form(app.url("/subscribe"), fill(settings, "ivy@example.org", name="x" * 20_000))
    assert huge.status == 413
    _nothing_recorded(store)


def test_tampered_expired_and_deleted_links(app, settings, store, mail_server, clock):
    post_form(app.url("/subscribe"), fill(settings, "jo@example.org"))
    mail = wait_for_mails(mail_server, 1)[0]
    confirm, cancel = mail.link("confirm"), mail.link("cancel")
    token = confirm.split("/")[-1]
    flipped = token[:-3] + ("A" if token[-3] != "A" else "B") + token[-2:]
    subscriber_token = make_token(signing_key(settings), 1)  # another kind of link
    for bad in (flipped, token[:-1], token + "A", subscriber_token, "x" * 32, "..%2fetc"):
        for path in (f"/confirm/{bad}", f"/cancel/{bad}"):
            assert http(app.url(path)).status == 404, bad
            assert post_form(app.url(path), {"how": "click"}).status == 404, bad
    assert store.find("jo@example.org") is None and len(store.pending_signups(START)) == 1

    # "This wasn't me": the page asks, the POST deletes the request.
    ask = http(app.url(cancel))
    assert ask.status == 200 and "This wasn’t you?" in ask.body
    assert len(store.pending_signups(START)) == 1
    done = post_form(app.url(cancel), {})
    assert done.status == 200 and "Request deleted" in done.body
    assert _count(store, "signup_requests") == 0
    assert post_form(app.url(confirm), {"how": "click"}).status == 404
    assert store.find("jo@example.org") is None

    clock.shift(601)
    post_form(app.url("/subscribe"), fill(settings, "jo@example.org"))
    second = wait_for_mails(mail_server, 2)[1].link("confirm")
    assert second != confirm  # a new request, a new link
    clock.shift(7 * 24 * 3600 + 1)
    expired = http(app.url(second))
    assert expired.status == 410 and "This link has expired" in expired.body
    assert post_form(app.url(second), {"how": "click"}).status == 410
    assert store.find("jo@example.org") is None


# -- coming back ------------------------------------------------------------------------------


def test_coming_back_reads_the_links_keys_from_the_database_answering(
    app, settings, store, mail_server, clock
):
    """As the unsubscribe and preferences pages do (#14, finding 8): a database put in place
    of another while serve runs is another list, whose ids name other people."""
    kim = store.add("kim@example.org", language="fr", source="test").id
    store.unsubscribe(kim, "test")
    token = make_token(signing_key(settings), kim)
    first = post_form(app.url(f"/preferences/{token}/resubscribe"), {"consent": "yes"})
    assert first.status == 200  # the link of this list works, and the app has read its keys
    store.close()
    moved = settings.db_path.with_name("list-a.db")
    for path in list(settings.db_path.parent.glob(settings.db_path.name + "*")):
        if not path.name.endswith(".secret"):
            path.rename(moved.with_name(path.name.replace(settings.db_path.name, moved.name)))
    with SqliteStore(settings.db_path) as other:  # another list: its own id, its own people
        lee = other.add("lee@example.org", language="en", source="test").id
        other.unsubscribe(lee, "test")
    assert lee == kim
    clock.shift(700)  # past the per-address limit of the first request
    stale = post_form(app.url(f"/preferences/{token}/resubscribe"), {"consent": "yes"})
    assert stale.status == 404, stale.body
    time.sleep(0.3)
    assert [m.rcpt for m in mails(mail_server)] == ["kim@example.org"]


def test_someone_who_left_comes_back_with_a_fresh_confirmation(
    app, settings, store, mail_server, clock
):
    kim = store.add("kim@example.org", language="fr", source="import:list.csv").id
    token = make_token(signing_key(settings), kim)
    left = post_form(app.url(f"/unsubscribe/{token}"), {"action": "unsubscribe"})
    assert "Désabonnement confirmé" in left.body
    assert f'action="../preferences/{token}/resubscribe"' in left.body
    box = re.search(r'<input type="checkbox"[^>]*id="comeback-consent"[^>]*>', left.body).group(0)
    assert "checked" not in box
    assert "Expéditeur\u00a0: Comité pour la République du Canada" in left.body
    assert (
        f'action="../preferences/{token}/resubscribe"'
        in http(app.url(f"/preferences/{token}")).body
    )

    unticked = post_form(app.url(f"/preferences/{token}/resubscribe"), {})
    assert unticked.status == 400 and "Cochez la case pour dire oui" in unticked.body
    assert mails(mail_server) == []
    back = post_form(app.url(f"/preferences/{token}/resubscribe"), {"consent": "yes"})
    assert back.status == 200 and "Vérifiez votre boîte de réception" in back.body
    assert store.get(kim).status is Status.UNSUBSCRIBED  # not until they confirm

    (mail,) = wait_for_mails(mail_server, 1)
    assert mail.rcpt == "kim@example.org" and "Confirmez votre abonnement" in mail.subject
    clock.shift(20)
    assert "Abonnement confirmé" in post_form(app.url(mail.link("confirm")), {}).body
    after = store.get(kim)
    assert (after.status, after.join_source, after.left_at) == (Status.ACTIVE, "web:comeback", None)
    assert [e["kind"] for e in store.events(kim)] == ["join", "unsubscribe", "resubscribe"]
    (record,) = store.consents(kim)
    assert record.consent.method == "web:comeback"
    assert record.consent.form_url == "https://news.example.org/preferences"  # no token kept
    # Back on the list, the link leads to the preferences page.
    active = post_form(app.url(f"/preferences/{token}/resubscribe"), {"consent": "yes"})
    assert active.status == 303 and active.headers["location"] == f"../../preferences/{token}"


def test_ip_and_user_agent_are_recorded_only_when_the_setting_says_so(tmp_path, mail_server, clock):
    settings = signup_settings(tmp_path, mail_server.port, RECORD_CONSENT_IP="1")
    agent = {"User-Agent": "Mozilla/5.0 (test) \x07bell"}
    with Server(settings) as app, SqliteStore(settings.db_path) as store:
        post_form(app.url("/subscribe"), fill(settings, "lu@example.org"), agent)
        confirm = wait_for_mails(mail_server, 1)[0].link("confirm")
        post_form(app.url(confirm), {}, {"User-Agent": "Confirming browser"})
        (record,) = store.consents(store.find("lu@example.org").id)
    proof = record.consent
    assert (proof.request_ip, proof.confirm_ip) == ("127.0.0.1", "127.0.0.1")
    assert proof.request_user_agent == "Mozilla/5.0 (test) bell"
    assert proof.confirm_user_agent == "Confirming browser"


def test_consent_records_cannot_be_changed_or_deleted(store):
    ann = store.add("ann@example.org", language="en", source="test")
    from newsletter.consent import Consent

    store.record_consent(ann.id, Consent(Basis.EXPRESS, "cli"))
    import sqlite3

    for statement in ("UPDATE consents SET basis = 'implied'", "DELETE FROM consents"):
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            store.conn.execute(statement)
    store.remove("ann@example.org")
    assert [r.consent.method for r in store.consents(email="ann@example.org")] == ["cli"]


# -- pages --------------------------------------------------------------------------------------


def test_french_pages_space_their_punctuation(app, settings, store, mail_server, clock):
    fr = "/abonnement"
    pages = [
        http(app.url(fr)),
        post_form(app.url(fr), fill(settings, "x", language="fr")),
        http(app.url(SENT["fr"])),
    ]
    post_form(app.url(fr), fill(settings, "mo@example.org", language="fr"))
    confirm = wait_for_mails(mail_server, 1)[0].link("confirm")
    cancel = confirm.replace("/confirm/", "/cancel/")
    pages += [http(app.url(confirm)), http(app.url(cancel))]
    pages.append(post_form(app.url(fr), fill(settings, "mo@example.org", language="fr")))  # 429
    pages.append(post_form(app.url(confirm), {}))
    pages.append(post_form(app.url(confirm), {}))  # already
    clock.shift(8 * 24 * 3600)
    post_form(app.url(fr), fill(settings, "no@example.org", language="fr"))
    expiring = wait_for_mails(mail_server, 2)[1].link("confirm")
    clock.shift(8 * 24 * 3600)
    pages.append(http(app.url(expiring)))
    for reply in pages:
        assert reply.status in (200, 400, 410, 429)
        assert _french_spacing_errors(reply.body) == [], reply.body[-600:]


def test_confirmation_tokens_stay_out_of_the_access_log():
    record = logging.LogRecord(
        "uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:1", "GET", "/confirm/AAAAAAAAAAEtokentokentokentoken", "1.1", 200), None,
    )  # fmt: skip
    RedactTokens().filter(record)
    assert record.args[2] == "/confirm/…"


def test_a_mail_server_that_is_down_is_logged_and_the_visitor_is_told_the_same(
    tmp_path, caplog, clock
):
    port = _free_port()  # nothing listens there
    settings = signup_settings(tmp_path, port)
    with Server(settings) as app, SqliteStore(settings.db_path) as store:
        reply = post_form(app.url("/subscribe"), fill(settings, "ned@example.org"))
        assert reply.status == 303
        wait_until(lambda: "could not send" in caplog.text, "the warning")
        (request,) = store.pending_signups(START)
        assert request.mailed_at is None
    assert "ned@example.org" not in caplog.text


def test_a_database_moved_away_while_the_mail_goes_is_not_made_again(
    app, settings, mail_server, clock, caplog
):
    """The web app never makes the store (#14, finding 4): not even in the task that records,
    after the e-mail went, that the request was mailed."""
    mail_server.handler.script["eve@example.org"] = ["hold-keep"]
    reply = post_form(app.url("/subscribe"), fill(settings, "eve@example.org"))
    assert reply.status == 303
    wait_until(mail_server.handler.holding.is_set, "the e-mail at DATA")
    settings.db_path.rename(settings.db_path.with_name("moved.db"))
    mail_server.handler.gate.set()
    wait_until(lambda: "signup request" in caplog.text, "the warning")
    assert not settings.db_path.exists()
    (line,) = [r for r in caplog.records if "signup request" in r.getMessage()]
    assert "no database here" in line.getMessage() and line.exc_info is None
    assert "eve@example.org" not in caplog.text


def test_without_an_smtp_server_the_confirmation_goes_to_the_outbox(tmp_path, clock):
    settings = signup_settings(tmp_path, None)
    with Server(settings) as app:
        post_form(app.url("/subscribe"), fill(settings, "ola@example.org"))
        folder = tmp_path / "outbox" / "signup"
        wait_until(lambda: folder.is_dir() and any(folder.glob("*.eml")), "the .eml file")
    (eml,) = (tmp_path / "outbox" / "signup").glob("signup-*.eml")
    assert b"To: ola@example.org" in eml.read_bytes()


def test_an_unusable_consent_wording_stops_the_app_with_one_line(tmp_path: Path, settings):
    import dataclasses

    from newsletter.errors import TemplateError
    from newsletter.web import create_app

    own = tmp_path / "look" / "web"
    own.mkdir(parents=True)
    (own / "signup.toml").write_text('version = "2"\n[en]\nconsent = "Hi {name}"\n[fr]\n')
    moved = dataclasses.replace(settings, templates_dir=tmp_path / "look")
    with pytest.raises(TemplateError) as caught:
        create_app(moved)
    assert str(caught.value) == (
        f"{own / 'signup.toml'}: [en] consent: unknown {{name}}; "
        "use {title}, {org}, {address} or {contact}"
    )


def test_the_snippet_for_another_site_posts_to_the_app_and_is_recorded(
    tmp_path, app, settings, store, mail_server, clock
):
    from click.testing import CliRunner

    from newsletter.cli import main

    env_file = tmp_path / "empty.env"
    env_file.touch()
    env = {"NEWSLETTER_DB": str(settings.db_path), "NEWSLETTER_SECRET": settings.secret}
    printed = CliRunner().invoke(
        main, ["--env-file", str(env_file), "signup-form", "--lang", "fr"], env=env
    )
    assert printed.exit_code == 0
    snippet = printed.output
    assert snippet.startswith('<div class="nl-embed">\n<style>\n')
    assert '<form class="nl-signup" method="post" action="https://news.example.org/abonnement"' in (
        snippet
    )
    assert "<script" not in snippet and "<html" not in snippet
    box = re.search(r'<input type="checkbox"[^>]*name="consent"[^>]*>', snippet).group(0)
    assert "checked" not in box
    assert "Expéditeur\u00a0: Comité pour la République du Canada" in snippet

    # Sent at once from the other site: an embedded form's age proves nothing, so it is taken.
    fields = {
        "stamp": field(snippet, "stamp"),
        "text": field(snippet, "text"),
        "email": "pia@example.org",
        "language": "fr",
        "consent": "yes",
        "website": "",
    }
    site = {"Referer": "https://www.example.com/comite/"}
    reply = post_form(app.url("/abonnement"), fields, site)
    assert (reply.status, reply.headers["location"]) == (303, "/abonnement/envoye")
    (mail,) = wait_for_mails(mail_server, 1)
    post_form(app.url(mail.link("confirm")), {})
    (record,) = store.consents(store.find("pia@example.org").id)
    assert record.consent.form_url == "https://www.example.com/comite/"
    assert record.consent.text_hash == field(snippet, "text")


def test_behind_a_proxy_under_a_path_the_form_and_its_answer_stay_under_it(
    tmp_path, mail_server, clock
):
    settings = signup_settings(tmp_path, mail_server.port, BASE_URL="https://www.example.org/news")
    with Server(settings) as app:  # the proxy strips /news; the browser sees it
        page = http(app.url("/subscribe")).body
        assert 'action="/news/subscribe"' in page and 'href="/news/abonnement"' in page
        reply = post_form(app.url("/subscribe"), fill(settings, "quinn@example.org"))
        assert reply.headers["location"] == "/news/subscribe/sent"
        (mail,) = wait_for_mails(mail_server, 1)
        assert "https://www.example.org/news/confirm/" in mail.text


def test_a_welcome_message_follows_the_confirmation_when_the_wording_has_one(
    tmp_path, mail_server, clock
):
    look = tmp_path / "look"
    shutil.copytree(ROOT / "templates", look)
    wording = look / "web" / "signup.toml"
    wording.write_text(
        wording.read_text("utf-8").replace(
            "[fr]\n",
            "[fr]\nwelcome = '''Bienvenue ! Le prochain numéro de « {title} » arrive bientôt.\n\n"
            "Écrivez-nous : {contact}'''\n",
        ),
        "utf-8",
    )
    settings = signup_settings(tmp_path, mail_server.port, TEMPLATES=str(look))
    with Server(settings) as app, SqliteStore(settings.db_path) as store:
        post_form(app.url("/abonnement"), fill(settings, "rae@example.org", language="fr"))
        post_form(app.url("/subscribe"), fill(settings, "sam@example.org"))
        for mail in wait_for_mails(mail_server, 2):
            post_form(app.url(mail.link("confirm")), {})
        (welcome,) = [m for m in wait_for_mails(mail_server, 3) if "Bienvenue" in m.subject]
        rae = store.find("rae@example.org")
    assert welcome.rcpt == "rae@example.org"
    assert welcome.subject == f"Bienvenue à «{NNBSP}Brèves{NNBSP}»"
    assert f"Bienvenue{NNBSP}! Le prochain numéro de «{NNBSP}Brèves{NNBSP}» arrive" in welcome.text
    assert "Écrivez-nous\u00a0: breves@example.org" in welcome.html
    token = make_token(signing_key(settings), rae.id)
    unsubscribe = f"<https://news.example.org/unsubscribe/{token}>"
    assert welcome.headers["List-Unsubscribe"].strip() == unsubscribe
    assert welcome.link("preferences") == f"/preferences/{token}"
    time.sleep(0.2)
    assert len(mails(mail_server)) == 3  # none for sam: there is no English welcome


def test_the_limits_per_ip_count_an_ipv6_machine_by_its_64():
    from newsletter.signup.pages import _network

    assert _network("2001:db8:1:2::1") == _network("2001:db8:1:2:ffff::9") == "2001:db8:1:2::/64"
    assert _network("2001:db8:1:3::1") != _network("2001:db8:1:2::1")
    assert _network("192.0.2.1") == "192.0.2.1"
