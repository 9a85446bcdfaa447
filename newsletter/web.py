"""The small web app behind the links in every message: unsubscribe (RFC 8058) and preferences.

The signed token in the URL is the credential: whoever holds the link may act for that one
address, and nothing else. GET never changes anything, because link scanners follow GETs.
The app never creates the database or the signing secret: without them it answers 503
(every link would otherwise look invalid, and every unsubscribe be lost).
"""

from __future__ import annotations

import logging
import re
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from jinja2 import (
    BaseLoader,
    ChoiceLoader,
    Environment,
    FileSystemLoader,
    StrictUndefined,
    select_autoescape,
)
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from . import store as stores
from .config import SHIPPED_TEMPLATES, SUBSCRIBER_LANGUAGES, Settings
from .errors import StoreError
from .normalise import MAX_NAME, printable
from .signup.pages import SignupPages
from .subscribers import SqliteStore, Subscriber, open_store
from .tokens import link_keys, resolve_secret
from .webguard import HEADERS, GuardedApp, StoreBusy, StoreUnavailable, route

TEMPLATES = SHIPPED_TEMPLATES / "web"
LOCALES = {"en": "en-CA", "fr": "fr-CA"}
ONE_CLICK = ("List-Unsubscribe", "One-Click")  # RFC 8058 body: List-Unsubscribe=One-Click

# Mail clients do not retry a one-click unsubscribe that failed, so the app waits for another
# process's write lock (an import of a large list holds it for seconds) longer than a command
# does, yet less than the 60 s a reverse proxy waits by default (nginx's proxy_read_timeout),
# so that the client gets our 503 and Retry-After, not the proxy's 504.
BUSY_TIMEOUT_MS = 45_000
RETRY_AFTER_S = 60
# Every form here is a few fields (a name is 200 characters): a body is refused past this
# before anything reads it, since parsing megabytes costs seconds of CPU.
MAX_BODY = 64 * 1024

T = TypeVar("T")

log = logging.getLogger(__name__)

_TOKEN_IN_PATH = re.compile(r"(/(?:unsubscribe|preferences|confirm|cancel)/)[^/?#\s]+")


class RedactTokens(logging.Filter):
    """Keeps the tokens out of the access log: each one is a credential for one subscriber.

    uvicorn logs a request as `%s - "%s %s HTTP/%s" %d`, the path third among the args.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                _TOKEN_IN_PATH.sub(r"\1…", arg) if isinstance(arg, str) else arg
                for arg in record.args
            )
        return True


def _langs(language: str) -> list[str]:
    return ["en", "fr"] if language == "both" else [language]


@dataclass(frozen=True)
class _Wanted:
    """What a preferences form asks for; None keeps the current value (the field was not sent)."""

    language: str | None = None
    name: str | None = None


def web_loader(settings: Settings) -> BaseLoader:
    """The pages' templates: `web/` in NEWSLETTER_TEMPLATES first, then ours for any page
    that folder lacks (a copy made before a page was added)."""
    own = settings.templates_dir / "web" if settings.templates_dir else None
    if own is None or not own.is_dir():
        return FileSystemLoader(TEMPLATES)
    return ChoiceLoader([FileSystemLoader(own), FileSystemLoader(TEMPLATES)])


def create_app(
    settings: Settings,
    *,
    busy_timeout_ms: int = BUSY_TIMEOUT_MS,
    retry_after_s: int = RETRY_AFTER_S,
    max_body: int = MAX_BODY,
) -> Starlette:
    """The ASGI app for `newsletter serve` (uvicorn) or any ASGI server.

    A change waits up to `busy_timeout_ms` for another process's write lock; past that the
    answer is 503 with `Retry-After: retry_after_s`. A StoreError if the database or the
    signing secret is missing: the app makes neither.
    """
    secret = resolve_secret(settings, create=False)
    open_store(settings, create=False).close()  # migrate the file now, not on the first click
    env = Environment(
        # The pages follow NEWSLETTER_TEMPLATES, like the emails, when that folder has them.
        loader=web_loader(settings),
        autoescape=select_autoescape(["j2", "html"]),
        undefined=StrictUndefined,
    )

    def page(
        name: str,
        language: str,
        status_code: int = 200,
        headers: dict[str, str] | None = None,
        **context: Any,
    ) -> HTMLResponse:
        html = env.get_template(name).render(
            identity=settings.identity,
            langs=_langs(language),
            locales=LOCALES,
            max_name=MAX_NAME,
            **context,
        )
        return HTMLResponse(html, status_code, headers)

    def invalid() -> HTMLResponse:
        return page("invalid.html.j2", "both", 404)

    def removed() -> HTMLResponse:
        # a link of ours, whose person was removed from the list (on request): nothing to
        # do, and a one-click unsubscribe (RFC 8058) is answered as done
        return page("removed.html.j2", "both")

    def busy(subscriber: Subscriber, what: str) -> HTMLResponse:
        # Nothing was changed. A mail client will not come back, so the operator must know.
        log.warning(
            "could not record %s for subscriber %d: the database stayed locked for %g s "
            "(a long import?); nothing was changed",
            what, subscriber.id, busy_timeout_ms / 1000,
        )  # fmt: skip
        headers = {"Retry-After": str(retry_after_s)}
        return page("busy.html.j2", subscriber.language, 503, headers)

    def unavailable(exc: StoreUnavailable) -> HTMLResponse:
        # Nothing can be read or recorded until the operator puts the database back.
        log.error("answering 503: %s", exc)
        return page("unavailable.html.j2", "both", 503, {"Retry-After": str(retry_after_s)})

    async def with_store(work: Callable[[SqliteStore], T]) -> T:
        # One connection per request, in a worker thread: SQLite calls block, and a
        # connection must not be shared by requests running at the same time.
        def run() -> T:
            try:
                try:
                    store = open_store(settings, busy_timeout_ms, create=False)
                except StoreError as exc:  # missing, unreadable, not a database: never made
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

    async def subscriber_for(request: Request) -> Subscriber | Response:
        """The subscriber a link names, or the page to answer: the link is not ours, or
        its person is no longer on the list."""
        token = request.path_params["token"]

        def find(store: SqliteStore) -> Subscriber | Response:
            # The keys come from the database answering, which may have been replaced.
            subscriber_id = link_keys(secret, store.list_identity()).read(token, datetime.now(UTC))
            if subscriber_id is None:
                return invalid()
            return store.get(subscriber_id) or removed()

        return await with_store(find)

    async def unsubscribe_page(request: Request) -> Response:
        subscriber = await subscriber_for(request)
        if isinstance(subscriber, Response):
            return subscriber
        token = request.path_params["token"]
        return page("unsubscribe.html.j2", subscriber.language, subscriber=subscriber, token=token)

    async def unsubscribe(request: Request) -> Response:
        subscriber = await subscriber_for(request)
        if isinstance(subscriber, Response):
            return subscriber
        # An unreadable body still unsubscribes: the token alone is enough (RFC 8058).
        form = await _form(request) or {}
        if (form.get(ONE_CLICK[0]) or "").strip() == ONE_CLICK[1]:
            how = "web:one-click"  # a mail client acting on List-Unsubscribe-Post (RFC 8058)
        elif form.get("action") == "unsubscribe":
            how = "web:button"
        else:
            how = "web:post"  # a bare POST to the link

        def leave(store: SqliteStore) -> Subscriber | None:
            store.unsubscribe(subscriber.id, how)
            return store.get(subscriber.id)

        try:
            after = await with_store(leave)
        except StoreBusy:
            return busy(subscriber, f"an unsubscribe ({how})")
        return page("unsubscribed.html.j2", subscriber.language, subscriber=after or subscriber,
                    token=request.path_params["token"])  # fmt: skip

    def preferences_page(
        subscriber: Subscriber, token: str, status_code: int = 200, **context: Any
    ) -> HTMLResponse:
        context = {"saved": False, "error": None, **context}
        return page("preferences.html.j2", subscriber.language, status_code,
                    subscriber=subscriber, token=token, **context)  # fmt: skip

    async def show_preferences(request: Request) -> Response:
        subscriber = await subscriber_for(request)
        if isinstance(subscriber, Response):
            return subscriber
        return preferences_page(subscriber, request.path_params["token"])

    async def save_preferences(request: Request) -> Response:
        subscriber = await subscriber_for(request)
        if isinstance(subscriber, Response):
            return subscriber
        token = request.path_params["token"]
        form = await _form(request)
        if form is None:  # nothing can be read, so nothing is changed
            return preferences_page(subscriber, token, 400, error="unreadable")
        if form.get("action") == "unsubscribe":
            return await unsubscribe(request)
        wanted = _wanted(form)
        if wanted is None:
            return preferences_page(subscriber, token, 400, error="invalid")

        def save(store: SqliteStore) -> Subscriber | None:
            # Only what the form carries; the store records an event only for a real change.
            with store.conn.transaction():
                if wanted.language is not None:
                    store.set_language(subscriber.id, wanted.language, "web:preferences")
                if wanted.name is not None:
                    store.set_name(subscriber.id, wanted.name, "web:preferences")
            return store.get(subscriber.id)

        try:
            after = await with_store(save) or subscriber
        except StoreBusy:
            return busy(subscriber, "a change of preferences")
        return preferences_page(after, token, saved=True)

    signup = SignupPages(
        settings, secret, env, page, invalid,
        csp=dict(HEADERS)[b"content-security-policy"].decode(),
        busy_timeout_ms=busy_timeout_ms, retry_after_s=retry_after_s,
    )  # fmt: skip

    async def not_found(request: Request, exc: Exception) -> Response:
        if isinstance(exc, HTTPException) and exc.status_code != 404:
            return Response(exc.detail, exc.status_code, headers=exc.headers)
        return invalid()

    async def store_unavailable(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StoreUnavailable)
        return unavailable(exc)

    async def server_error(request: Request, exc: Exception) -> Response:
        # Starlette logs the traceback after this answer; the reader gets a page, not a trace.
        return page("error.html.j2", "both", 500)

    return GuardedApp(
        routes=[
            route("/unsubscribe/{token}", get=unsubscribe_page, post=unsubscribe),
            route("/preferences/{token}", get=show_preferences, post=save_preferences),
            *signup.routes,  # /subscribe, /abonnement, /confirm, /cancel, coming back
        ],
        exception_handlers={404: not_found, StoreUnavailable: store_unavailable, 500: server_error},
        max_body=max_body,
    )


async def _form(request: Request) -> dict[str, str] | None:
    """The posted fields (none for an empty body, or one that is not a form); None if the
    body claims to be a form that cannot be read (malformed multipart, too many fields)."""
    try:
        form = await request.form(max_files=0, max_fields=10)
    except Exception:
        return None
    return {key: value for key, value in form.items() if isinstance(value, str)}


def _wanted(form: dict[str, str]) -> _Wanted | None:
    """The changes a preferences form asks for, or None if a field it sent is not valid.

    A field not sent keeps its current value; an empty name clears the name.
    """
    language = form.get("language") or None
    if language is not None and language not in SUBSCRIBER_LANGUAGES:
        return None
    name = form.get("name")
    if name is not None:
        name = _clean_name(name)
        if name is None:
            return None
    return _Wanted(language, name)


def _clean_name(value: str) -> str | None:
    """The name without control characters, or None if too long to be a name."""
    text = printable(value)
    return text if len(text) <= MAX_NAME else None
