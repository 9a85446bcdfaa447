"""Signup in a real browser: Debian's chromium (Playwright) against the app under uvicorn on
127.0.0.1, aiosmtpd capturing the mail, time-machine moving the server's clock. Every page
is checked with axe (0 violations) and at a 375 px phone width."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest

from newsletter.subscribers import Status
from newsletter.tokens import make_token, signing_key

from ..browser import CHROMIUM, only_loopback
from .helpers import fill, http, post_form, wait_for_mails

sync_api = pytest.importorskip("playwright.sync_api")
axe_api = pytest.importorskip("axe_playwright_python.sync_playwright")
expect = sync_api.expect

GUARD = 300
ARTEFACTS = Path(__file__).resolve().parents[2] / "build" / "test-artifacts"

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium")


def _context(browser, **options):
    context = browser.new_context(viewport={"width": 1000, "height": 900}, **options)
    context.route("**/*", only_loopback)
    return context


def _subscribe(page, app, path: str, email: str, language_label: str, clock) -> None:
    """Fill the form as a person does, and send it."""
    page.goto(app.url(path))
    page.get_by_label(re.compile("^(E-mail address|Adresse courriel)$")).fill(email)
    page.get_by_label(re.compile("^(Name|Nom)")).fill("Ann <b>Spam</b>")
    page.get_by_label(language_label, exact=True).check()
    consent = page.locator("input[name=consent]")
    expect(consent).not_to_be_checked()  # never ticked in advance
    consent.check()
    clock.shift(4)  # people take more than two seconds
    page.get_by_role("button", name=re.compile("^(Subscribe|M’abonner)$")).click()


def test_both_forms_one_click_each(browser, app, store, mail_server, clock):
    context = _context(browser)
    page = context.new_page()

    _subscribe(page, app, "/subscribe", "ann@example.org", "Both, English and French", clock)
    expect(page).to_have_url(app.url("/subscribe/sent"))
    expect(page.locator("h2")).to_have_text("Check your inbox")
    _subscribe(page, app, "/abonnement", "bea@example.org", "Français", clock)
    expect(page).to_have_url(app.url("/abonnement/envoye"))
    expect(page.locator("html")).to_have_attribute("lang", "fr-CA")

    ann, bea = sorted(wait_for_mails(mail_server, 2), key=lambda m: m.rcpt)
    assert "Confirmez votre abonnement" in bea.subject and "Spam" not in bea.text + bea.html

    # Within the guard window a browser that runs scripts confirms nothing by itself.
    for mail in (ann, bea):
        page.goto(app.url(mail.link("confirm")))
        page.wait_for_timeout(1000)
        expect(page).to_have_url(app.url(mail.link("confirm")))
    assert store.find("ann@example.org") is None and store.find("bea@example.org") is None

    page.get_by_role("button", name="Confirmer mon abonnement").click()
    expect(page.locator("h2")).to_have_text("Abonnement confirmé")
    page.goto(app.url(ann.link("confirm")))
    page.get_by_role("button", name="Confirm my subscription").click()
    expect(page.locator("h2")).to_have_text("You are subscribed")
    assert store.find("ann@example.org").language == "both"
    assert store.find("bea@example.org").language == "fr"
    context.close()


def test_after_the_guard_window_the_link_confirms_by_itself_or_with_a_click(
    browser, app, settings, store, mail_server, clock
):
    for email in ("cy@example.org", "dee@example.org"):
        post_form(app.url("/subscribe"), fill(settings, email))
    cy, dee = sorted(wait_for_mails(mail_server, 2), key=lambda m: m.rcpt)
    clock.shift(GUARD + 1)

    # Scripts allowed (by the page's Content-Security-Policy): one submit, as a click would.
    context = _context(browser)
    page = context.new_page()
    page.goto(app.url(cy.link("confirm")))
    expect(page.locator("h2")).to_have_text("You are subscribed")
    assert store.find("cy@example.org").status is Status.ACTIVE
    context.close()

    # No scripts: the page waits for the click.
    context = _context(browser, java_script_enabled=False)
    page = context.new_page()
    page.goto(app.url(dee.link("confirm")))
    page.wait_for_timeout(500)
    assert store.find("dee@example.org") is None
    page.get_by_role("button", name="Confirm my subscription").click()
    expect(page.locator("h2")).to_have_text("You are subscribed")
    assert store.find("dee@example.org").status is Status.ACTIVE
    context.close()


def test_coming_back_after_unsubscribing(browser, app, settings, store, mail_server, clock):
    eve = store.add("eve@example.org", language="fr", source="import:list.csv").id
    token = make_token(signing_key(settings), eve)
    context = _context(browser)
    page = context.new_page()
    page.goto(app.url(f"/unsubscribe/{token}"))
    page.get_by_role("button", name="Me désabonner").click()
    expect(page.locator("h2")).to_have_text("Désabonnement confirmé")
    assert store.get(eve).status is Status.UNSUBSCRIBED

    page.get_by_role("button", name="Me réabonner").click()  # the box not ticked: asked again
    expect(page.locator("[role=alert]")).to_contain_text("Cochez la case pour dire oui")
    page.locator("#comeback-consent").check()
    page.get_by_role("button", name="Me réabonner").click()
    expect(page.locator("h2")).to_have_text("Vérifiez votre boîte de réception")
    (mail,) = wait_for_mails(mail_server, 1)
    clock.shift(GUARD + 1)
    page.goto(app.url(mail.link("confirm")))
    expect(page.locator("h2")).to_have_text("Abonnement confirmé")
    assert store.get(eve).status is Status.ACTIVE
    assert [r.consent.method for r in store.consents(eve)] == ["web:comeback"]

    # From the preferences page too.
    store.unsubscribe(eve, "web:one-click")
    page.goto(app.url(f"/preferences/{token}"))
    page.locator("#comeback-consent").check()
    clock.shift(601)  # past the limit of one confirmation per ten minutes
    page.get_by_role("button", name="Me réabonner").click()
    expect(page.locator("h2")).to_have_text("Vérifiez votre boîte de réception")
    wait_for_mails(mail_server, 2)
    context.close()


def _pages(app, settings, store, mail_server, clock) -> list[tuple[str, str]]:
    """(what, HTML) of every page a visitor can see."""
    pages: list[tuple[str, str]] = []

    def add(what: str, reply) -> None:
        assert reply.status < 500, what
        pages.append((what, reply.body))

    for path in ("/subscribe", "/abonnement"):
        add(f"form {path}", http(app.url(path)))
        bad = fill(settings, "not an address", name="N" * 300, language="de")
        del bad["consent"]
        add(f"form with every error {path}", post_form(app.url(path), bad))
        add(f"form altered {path}", post_form(app.url(path), fill(settings, "a@example.org",
                                                                  stamp="x")))  # fmt: skip
    add("sent", http(app.url("/subscribe/sent")))
    add("envoye", http(app.url("/abonnement/envoye")))
    post_form(app.url("/abonnement"), fill(settings, "fay@example.org", language="both"))
    post_form(app.url("/subscribe"), fill(settings, "gus@example.org"))
    fay, gus = sorted(wait_for_mails(mail_server, 2), key=lambda m: m.rcpt)
    add("limited", post_form(app.url("/abonnement"), fill(settings, "fay@example.org")))
    add("confirm", http(app.url(fay.link("confirm"))))
    add("cancel", http(app.url(gus.link("cancel"))))
    add("cancelled", post_form(app.url(gus.link("cancel")), {}))
    add("confirmed", post_form(app.url(fay.link("confirm")), {}))
    add("already confirmed", http(app.url(fay.link("confirm"))))
    add("invalid link", http(app.url("/confirm/" + "x" * 32)))
    hal = store.add("hal@example.org", language="both", source="cli").id
    token = make_token(signing_key(settings), hal)
    add("unsubscribe", http(app.url(f"/unsubscribe/{token}")))
    add("preferences", http(app.url(f"/preferences/{token}")))
    add("unsubscribed", post_form(app.url(f"/unsubscribe/{token}"), {"action": "unsubscribe"}))
    add("preferences, unsubscribed", http(app.url(f"/preferences/{token}")))
    add("come back unticked", post_form(app.url(f"/preferences/{token}/resubscribe"), {}))
    post_form(app.url("/subscribe"), fill(settings, "ivy@example.org"))
    late = wait_for_mails(mail_server, 3)[-1].link("confirm")
    clock.shift(dt.timedelta(days=8))
    add("expired", http(app.url(late)))
    return pages


def test_every_page_passes_axe_and_fits_a_phone(browser, app, settings, store, mail_server, clock):
    pages = _pages(app, settings, store, mail_server, clock)
    axe = axe_api.Axe()
    context = _context(browser, bypass_csp=True)  # axe is a script of its own
    page = context.new_page()
    page.set_viewport_size({"width": 375, "height": 800})
    # The checker itself: a field with no label is a violation it must find.
    page.route(app.url("/page"), _serve('<html lang="en"><title>x</title><input></html>'))
    page.goto(app.url("/page"))
    assert "label" in {v["id"] for v in axe.run(page).response["violations"]}
    page.unroute(app.url("/page"))
    failures = []
    for what, html in pages:
        page.route(app.url("/page"), _serve(html))
        page.goto(app.url("/page"))
        for v in axe.run(page).response["violations"]:
            failures.append(f"{what}: {v['id']}: {v['help']}")
        overflow = page.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        if overflow > 0:
            failures.append(f"{what}: {overflow} px wider than a 375 px phone")
        if what in ("form with every error /abonnement", "unsubscribed"):
            ARTEFACTS.mkdir(parents=True, exist_ok=True)
            name = what.replace(" ", "-").replace("/", "")
            page.screenshot(path=str(ARTEFACTS / f"signup-{name}-375.png"), full_page=True)
        page.unroute(app.url("/page"))
    context.close()
    assert failures == []
    assert len(pages) == 21


def _serve(html: str):
    def fulfill(route, request) -> None:
        route.fulfill(body=html, content_type="text/html; charset=utf-8")

    return fulfill
