"""The signup pages of the web app: the form in each language, the confirmation link, "this
wasn't me", and coming back after leaving. web.py mounts `SignupPages.routes`.

What they promise:
- A GET (or HEAD) never changes anything. The confirmation page asks for one click while the
  e-mail is fresh (the guard window: inbox link scanners open links within seconds, some in
  a real browser running scripts); later it may confirm by itself with a script.
- Neither the page nor its timing tells whether an address is on the list: every address
  gets the same answer, the store does the same work for each, and the e-mail goes out
  after the answer.
- Bots and list bombing: a honeypot field and a signed timestamp (filled, or sent within
  2 s: a normal-looking answer, nothing sent), and limits per IP and per address kept in
  the store.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import ipaddress
import logging
import sqlite3
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit

from jinja2 import Environment
from markupsafe import Markup
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from .. import store as stores
from ..config import SUBSCRIBER_LANGUAGES, Settings
from ..consent import ConsentText
from ..errors import StoreError
from ..normalise import MAX_NAME, printable
from ..subscribers import SqliteStore, Subscriber, open_store
from ..tokens import LinkKeys, link_keys, preferences_url, unsubscribe_url
from ..webguard import StoreBusy, StoreUnavailable, route
from . import mail
from .forms import (
    HONEYPOT,
    MAX_EMAIL,
    MAX_FILL,
    MIN_FILL,
    PATHS,
    SignupForm,
    check_fields,
    new_form,
    read_form,
)
from .requests import (
    ADDRESS_LIMITS,
    IP_LIMITS,
    Admitted,
    Confirmed,
    SignupRequest,
)
from .stamps import (
    StampKind,
    limit_key,
    read_stamp,
    request_id,
    request_token,
    request_token_matches,
)
from .texts import Wording, load_wording

T = TypeVar("T")
log = logging.getLogger(__name__)

SENT_PATHS = {"en": "/subscribe/sent", "fr": "/abonnement/envoye"}
MAX_AGENT = 300

# The confirmation page's script, past the guard window: one submit, as the button would.
# Its hash goes in that page's Content-Security-Policy; no other script may run.
AUTO_CONFIRM = (
    'document.getElementById("how").value="auto";document.getElementById("confirm").submit();'
)
_SCRIPT_HASH = base64.b64encode(hashlib.sha256(AUTO_CONFIRM.encode()).digest()).decode()


def csp_with_script(csp: str) -> str:
    """The app's Content-Security-Policy, allowing the one script above."""
    return f"{csp}; script-src 'sha256-{_SCRIPT_HASH}'"


def _network(ip: str) -> str:
    """What the limits per IP count: an IPv4 address, or the /64 an IPv6 address is in (one
    machine commonly has a whole /64 to pick addresses from)."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return ip
    if address.version == 6:
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


def _langs(language: str) -> list[str]:
    return ["en", "fr"] if language == "both" else [language]


class SignupPages:
    """The routes for joining; `page` renders a template of web/ the way web.py does."""

    def __init__(
        self,
        settings: Settings,
        secret: bytes,
        env: Environment,
        page: Callable[..., HTMLResponse],
        invalid: Callable[[], HTMLResponse],
        *,
        csp: str,
        busy_timeout_ms: int,
        retry_after_s: int,
        clock: Callable[[], dt.datetime] | None = None,
    ):
        self.settings = settings
        self.secret = secret
        self.env = env
        self.page = page
        self.invalid = invalid
        self.csp = csp
        self.busy_timeout_ms = busy_timeout_ms
        self.retry_after_s = retry_after_s
        self.clock = clock or (lambda: dt.datetime.now(dt.UTC))
        self.guard = dt.timedelta(seconds=settings.signup.guard_s)
        self.wording: Wording = load_wording(settings.templates_dir, settings.identity)
        self.base = settings.identity.base_url
        # where the app's pages are, seen from the browser (behind a proxy, maybe /news)
        self.root = urlsplit(self.base).path.rstrip("/")
        # one route per path, naming all its methods (see webguard.route)
        self.routes = [
            route(PATHS["en"], get=self.show_form, post=self.submit),
            route(PATHS["fr"], get=self.show_form, post=self.submit),
            route(SENT_PATHS["en"], get=self.show_sent),
            route(SENT_PATHS["fr"], get=self.show_sent),
            route("/confirm/{token}", get=self.show_confirm, post=self.confirm),
            route("/cancel/{token}", get=self.show_cancel, post=self.cancel),
            route("/preferences/{token}/resubscribe", post=self.come_back),
        ]
        env.globals["consent_words"] = self.consent_words

    # -- for other pages ----------------------------------------------------------------

    def form(self, lang: str, **values: Any) -> SignupForm:
        """A fresh form in `lang` (en or fr), stamped now."""
        return new_form(self.secret, self.wording, lang, self.clock(), root=self.root, **values)

    def consent_words(self, langs: list[str]) -> list[tuple[str, str]]:
        """(language, words) for the consent box of a page in `langs`."""
        return [(lang, self.wording.consent[lang]) for lang in langs]

    # -- the form -------------------------------------------------------------------------

    def _lang(self, request: Request) -> str:
        path = request.url.path.rstrip("/")
        return "fr" if path.startswith(PATHS["fr"]) else "en"

    def _form_page(self, form: SignupForm, status_code: int = 200, **context: Any) -> Response:
        return self.page("signup.html.j2", form.lang, status_code, form=form, **context)

    async def show_form(self, request: Request) -> Response:
        return self._form_page(self.form(self._lang(request)))

    async def show_sent(self, request: Request) -> Response:
        return self.page("signup_sent.html.j2", self._lang(request))

    async def submit(self, request: Request) -> Response:
        lang = self._lang(request)
        fields, problem = await read_form(request)
        if fields is None:
            status = {"too-large": 413, "not-a-form": 415}.get(problem, 400)
            return self._form_page(self.form(lang, errors={"form": problem}), status)
        now = self.clock()
        stamp = read_stamp(self.secret, fields.get("stamp", ""))
        if stamp is None:
            return self._form_page(self._again(lang, fields, {"form": "altered"}), 400)
        sent = RedirectResponse(self.root + SENT_PATHS[lang], 303)
        if fields.get(HONEYPOT, "").strip():
            return sent  # looks like success to the bot; nothing is recorded or sent
        if stamp.kind is StampKind.FORM:
            if now - stamp.issued < MIN_FILL:
                return sent  # the same
            if now - stamp.issued > MAX_FILL:
                return self._form_page(self._again(lang, fields, {"form": "stale"}), 400)
        email, wanted, errors = check_fields(fields)
        if errors:
            return self._form_page(self._again(lang, fields, errors), 400)
        try:
            text = await self._text_shown(lang, fields.get("text", ""))
        except StoreBusy:
            return self._busy(lang)
        form_url = self.base + PATHS[lang]
        if stamp.kind is StampKind.EMBED:  # the page of the other site, when it says
            form_url = printable(request.headers.get("referer", ""))[:500] or form_url
        return await self._admit(
            request,
            lang,
            email=email,
            name=wanted["name"],
            language=wanted["language"],
            page_language=lang,
            method="web:signup",
            form_url=form_url,
            text=text,
            answer=lambda: sent,
        )

    def _again(self, lang: str, fields: dict[str, str], errors: dict[str, str]) -> SignupForm:
        """The form sent back with what was typed, a fresh stamp, and what to fix."""
        language = fields.get("language", "")
        return self.form(
            lang,
            email=fields.get("email", "")[: MAX_EMAIL * 2],
            name=fields.get("name", "")[: MAX_NAME * 2],
            language=language if language in SUBSCRIBER_LANGUAGES else "",
            consented=fields.get("consent") == "yes",
            errors=errors,
        )

    async def _text_shown(self, lang: str, text_hash: str) -> ConsentText:
        """The consent text to record: the current one, unless the form says it showed
        another that is known (a snippet printed before the words changed)."""
        current = self.wording.text([lang])
        if not text_hash or text_hash == current.hash:
            return current
        kept = await self._in_store(lambda store: store.consent_text(text_hash))
        return kept if kept is not None and kept.language == lang else current

    # -- admitting a request (the form, or coming back) -----------------------------------

    async def _admit(
        self,
        request: Request,
        lang: str,
        *,
        answer: Callable[[], Response],
        **wanted: Any,
    ) -> Response:
        now = self.clock()
        ip = request.client.host if request.client else ""
        agent = printable(request.headers.get("user-agent", ""))[:MAX_AGENT]
        record_ip = self.settings.signup.record_ip
        keys = {
            limit_key(self.secret, "ip", _network(ip)): IP_LIMITS,
            limit_key(self.secret, "address", wanted["email"].lower()): ADDRESS_LIMITS,
        }

        def admit(store: SqliteStore):
            return store.request_signup(
                **wanted,
                limit_keys=keys,
                now=now,
                ip=ip if record_ip else "",
                user_agent=agent if record_ip else "",
            )

        try:
            admission = await self._in_store(admit)
        except StoreBusy:
            return self._busy(lang)
        if admission.kind is Admitted.LIMITED:
            headers = {"Retry-After": str(admission.retry_after)}
            minutes = max(1, -(-admission.retry_after // 60))
            return self.page("signup_limited.html.j2", lang, 429, headers, minutes=minutes)
        response = answer()
        if admission.kind is Admitted.CONFIRM:
            assert admission.request is not None
            response.background = BackgroundTask(self._mail_confirmation, admission.request)
        else:
            assert admission.subscriber is not None
            response.background = BackgroundTask(
                self._mail_already, admission.subscriber, wanted["page_language"]
            )
        return response

    def _mail_confirmation(self, request: SignupRequest) -> None:
        """After the answer has gone: send the e-mail, then start the guard window."""
        token = request_token(self.secret, request.id, request.nonce)
        links = mail.Links(
            confirm_url=f"{self.base}/confirm/{token}", cancel_url=f"{self.base}/cancel/{token}"
        )
        message = mail.build(
            self.settings, self.env.loader, "confirm", request.email, request.page_language,
            links, self.clock(),
        )  # fmt: skip
        if not self._send(message, f"signup request {request.id}"):
            return
        try:  # never a new database: the app makes none (a moved one answers 503)
            with open_store(self.settings, self.busy_timeout_ms, create=False) as store:
                store.signup_mailed(request.id, self.clock())
        except (sqlite3.OperationalError, StoreError) as exc:  # the link still works; only later
            log.warning("could not record that signup request %d was mailed: %s", request.id, exc)

    def _link_keys(self, store: SqliteStore) -> LinkKeys:
        """The keys of this list's subscriber links (bound to the list: see tokens.py), read
        from the database answering now, as web.py does: one put in place of another while
        the app runs is another list, whose ids name other people."""
        return link_keys(self.secret, store.list_identity())

    def _token(self, subscriber: Subscriber, what: str) -> str | None:
        """A link token for a message sent after the answer; None (logged) if the store
        cannot say which list it is now."""
        try:
            with open_store(self.settings, self.busy_timeout_ms, create=False) as store:
                return self._link_keys(store).make(subscriber.id)
        except (sqlite3.OperationalError, StoreError) as exc:
            log.warning("could not send %s: %s", what, exc)
            return None

    def _mail_already(self, subscriber: Subscriber, page_language: str) -> None:
        what = f"the already-subscribed note to subscriber {subscriber.id}"
        token = self._token(subscriber, what)
        if token is None:
            return
        links = mail.Links(preferences_url=preferences_url(self.base, token))
        message = mail.build(
            self.settings, self.env.loader, "already", subscriber.email, page_language, links,
            self.clock(),
        )  # fmt: skip
        self._send(message, what)

    def _mail_welcome(self, subscriber: Subscriber, page_language: str) -> None:
        what = f"the welcome message to subscriber {subscriber.id}"
        token = self._token(subscriber, what)
        if token is None:
            return
        links = mail.Links(
            preferences_url=preferences_url(self.base, token),
            unsubscribe_url=unsubscribe_url(self.base, token),
        )
        message = mail.build(
            self.settings, self.env.loader, "welcome", subscriber.email, page_language, links,
            self.clock(), welcome=self.wording.welcome,
        )  # fmt: skip
        self._send(message, what)

    def _send(self, message, what: str) -> bool:
        try:
            mail.send(self.settings, message)
            return True
        except Exception as exc:  # the visitor has had their answer: the operator must know
            log.warning("could not send %s: %s", what, getattr(exc, "reply", None) or exc)
            return False

    # -- the link in the e-mail -----------------------------------------------------------

    async def _request_for(self, token: str) -> SignupRequest | None:
        found = request_id(token)
        if found is None:
            return None
        request = await self._in_store(lambda store: store.signup_request(found))
        if request is None or not request_token_matches(
            self.secret, token, request.id, request.nonce
        ):
            return None
        return request

    def _confirm_page(self, request: SignupRequest, token: str) -> Response:
        mailed = dt.datetime.fromisoformat(request.mailed_at) if request.mailed_at else None
        automatic = mailed is not None and self.clock() >= mailed + self.guard
        headers = {"Content-Security-Policy": csp_with_script(self.csp)} if automatic else None
        return self.page(
            "signup_confirm.html.j2", request.page_language, 200, headers,
            token=token, script=Markup(AUTO_CONFIRM) if automatic else None,
        )  # fmt: skip

    async def show_confirm(self, request: Request) -> Response:
        token = request.path_params["token"]
        try:
            found = await self._request_for(token)
        except StoreBusy:
            return self._busy("both")
        if found is None:
            return self.invalid()
        if found.confirmed_at is not None:
            return self.page("signup_confirmed.html.j2", found.page_language, already=True)
        if dt.datetime.fromisoformat(found.expires_at) <= self.clock():
            return self.page("signup_expired.html.j2", found.page_language, 410)
        return self._confirm_page(found, token)

    async def confirm(self, request: Request) -> Response:
        token = request.path_params["token"]
        fields, _ = await read_form(request)
        automatic = (fields or {}).get("how") == "auto"
        ip = request.client.host if request.client else ""
        agent = printable(request.headers.get("user-agent", ""))[:MAX_AGENT]
        record_ip = self.settings.signup.record_ip
        found = None
        try:
            found = await self._request_for(token)
            if found is None:
                return self.invalid()
            result = await self._in_store(
                lambda store: store.confirm_signup(
                    found.id,
                    now=self.clock(),
                    automatic=automatic,
                    guard=self.guard,
                    ip=ip if record_ip else "",
                    user_agent=agent if record_ip else "",
                )
            )
        except StoreBusy:
            return self._busy("both" if found is None else found.page_language)
        lang = found.page_language
        if result.outcome is Confirmed.UNKNOWN:
            return self.invalid()
        if result.outcome is Confirmed.EXPIRED:
            return self.page("signup_expired.html.j2", lang, 410)
        if result.outcome is Confirmed.EARLY:
            return self._confirm_page(found, token)
        already = result.outcome is Confirmed.ALREADY
        response = self.page("signup_confirmed.html.j2", lang, already=already)
        if not already and all(self.wording.welcome[x] for x in _langs(lang)):
            assert result.subscriber is not None
            response.background = BackgroundTask(self._mail_welcome, result.subscriber, lang)
        return response

    async def show_cancel(self, request: Request) -> Response:
        token = request.path_params["token"]
        try:
            found = await self._request_for(token)
        except StoreBusy:
            return self._busy("both")
        if found is None:
            return self.invalid()
        if found.confirmed_at is not None:
            return self.page("signup_confirmed.html.j2", found.page_language, already=True)
        return self.page("signup_cancel.html.j2", found.page_language, done=False)

    async def cancel(self, request: Request) -> Response:
        token = request.path_params["token"]
        try:
            found = await self._request_for(token)
            if found is None:
                return self.invalid()
            if found.confirmed_at is not None:
                return self.page("signup_confirmed.html.j2", found.page_language, already=True)
            await self._in_store(lambda store: store.cancel_signup(found.id))
        except StoreBusy:
            return self._busy("both")
        return self.page("signup_cancel.html.j2", found.page_language, done=True)

    # -- coming back after leaving ---------------------------------------------------------

    async def come_back(self, request: Request) -> Response:
        token = request.path_params["token"]

        def find(store: SqliteStore) -> Subscriber | None:
            subscriber_id = self._link_keys(store).read(token, self.clock())
            return store.get(subscriber_id) if subscriber_id is not None else None

        try:
            subscriber = await self._in_store(find)
        except StoreBusy:
            return self._busy("both")
        if subscriber is None:
            return self.invalid()
        language = subscriber.language
        if subscriber.status == "active":
            return RedirectResponse(f"../../preferences/{token}", 303)
        fields, _ = await read_form(request)
        if (fields or {}).get("consent") != "yes":
            return self.page(
                "signup_comeback.html.j2", language, 400, subscriber=subscriber, token=token,
                error=True,
            )  # fmt: skip
        langs = _langs(language)
        return await self._admit(
            request,
            language,
            email=subscriber.email,
            name=subscriber.name,
            language=language,
            page_language=language,
            method="web:comeback",
            form_url=f"{self.base}/preferences",
            text=self.wording.text(langs),
            answer=lambda: self.page("signup_sent.html.j2", language, comeback=True),
        )

    # -- the store ------------------------------------------------------------------------

    async def _in_store(self, work: Callable[[SqliteStore], T]) -> T:
        # One connection per request, in a worker thread, as in web.py.
        def run() -> T:
            try:
                try:  # never a new database: web.py answers 503 for this
                    store = open_store(self.settings, self.busy_timeout_ms, create=False)
                except StoreError as exc:
                    raise StoreUnavailable(str(exc)) from None
                with store:
                    return work(store)
            except (sqlite3.OperationalError, stores.Busy) as exc:
                if stores.is_busy(exc):
                    raise StoreBusy from exc
                raise
            except stores.Lost as exc:  # the PostgreSQL server went away mid-request
                raise StoreUnavailable(str(exc)) from None

        return await run_in_threadpool(run)

    def _busy(self, language: str) -> Response:
        log.warning(
            "a signup page could not use the database: it stayed locked for %g s "
            "(a long import?); nothing was changed",
            self.busy_timeout_ms / 1000,
        )
        headers = {"Retry-After": str(self.retry_after_s)}
        return self.page("busy.html.j2", language, 503, headers)
