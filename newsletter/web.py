"""The small web app behind the links in every message: unsubscribe (RFC 8058) and preferences.

The signed token in the URL is the credential: whoever holds the link may act for that one
address, and nothing else. GET never changes anything, because link scanners follow GETs.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from collections.abc import Callable
from typing import Any, TypeVar

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .config import SHIPPED_TEMPLATES, SUBSCRIBER_LANGUAGES, Settings
from .subscribers import SqliteStore, Subscriber, open_store
from .tokens import read_token, resolve_secret

TEMPLATES = SHIPPED_TEMPLATES / "web"
LOCALES = {"en": "en-CA", "fr": "fr-CA"}
MAX_NAME = 200
ONE_CLICK = ("List-Unsubscribe", "One-Click")  # RFC 8058 body: List-Unsubscribe=One-Click

# Every answer: never cached (a shared cache must not serve one person's page to another),
# never indexed, and the token never leaks to another site through Referer.
HEADERS = [
    (b"cache-control", b"no-store"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-robots-tag", b"noindex"),
    (b"x-content-type-options", b"nosniff"),
    (
        b"content-security-policy",
        b"default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
        b"frame-ancestors 'none'; base-uri 'none'",
    ),
]

T = TypeVar("T")

_TOKEN_IN_PATH = re.compile(r"(/(?:unsubscribe|preferences)/)[^/?#\s]+")


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


class _Headers:
    """ASGI middleware adding HEADERS to every response, errors included."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *HEADERS]
            await send(message)

        await self.app(scope, receive, send_with_headers)


def create_app(settings: Settings) -> Starlette:
    """The ASGI app for `newsletter serve` (uvicorn) or any ASGI server."""
    secret = resolve_secret(settings)
    open_store(settings).close()  # create and migrate the file now, not on the first click
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(["j2", "html"]),
        undefined=StrictUndefined,
    )

    def page(name: str, language: str, status_code: int = 200, **context: Any) -> HTMLResponse:
        html = env.get_template(name).render(
            identity=settings.identity,
            langs=_langs(language),
            locales=LOCALES,
            max_name=MAX_NAME,
            **context,
        )
        return HTMLResponse(html, status_code)

    def invalid() -> HTMLResponse:
        return page("invalid.html.j2", "both", 404)

    async def with_store(work: Callable[[SqliteStore], T]) -> T:
        # One connection per request, in a worker thread: SQLite calls block, and a
        # connection must not be shared by requests running at the same time.
        def run() -> T:
            with open_store(settings) as store:
                return work(store)

        return await run_in_threadpool(run)

    async def subscriber_for(request: Request) -> Subscriber | None:
        subscriber_id = read_token(secret, request.path_params["token"])
        if subscriber_id is None:
            return None
        return await with_store(lambda store: store.get(subscriber_id))

    async def unsubscribe_page(request: Request) -> Response:
        subscriber = await subscriber_for(request)
        if subscriber is None:
            return invalid()
        token = request.path_params["token"]
        return page("unsubscribe.html.j2", subscriber.language, subscriber=subscriber, token=token)

    async def unsubscribe(request: Request) -> Response:
        subscriber = await subscriber_for(request)
        if subscriber is None:
            return invalid()
        form = await _form(request)
        if (form.get(ONE_CLICK[0]) or "").strip() == ONE_CLICK[1]:
            how = "web:one-click"  # a mail client acting on List-Unsubscribe-Post (RFC 8058)
        elif form.get("action") == "unsubscribe":
            how = "web:button"
        else:
            how = "web:post"  # a bare POST to the link: the token alone is enough (RFC 8058)
        await with_store(lambda store: store.unsubscribe(subscriber.id, how))
        after = await with_store(lambda store: store.get(subscriber.id))
        return page("unsubscribed.html.j2", subscriber.language, subscriber=after or subscriber)

    async def preferences(request: Request) -> Response:
        subscriber = await subscriber_for(request)
        if subscriber is None:
            return invalid()
        token = request.path_params["token"]
        if request.method == "GET":
            return page("preferences.html.j2", subscriber.language, subscriber=subscriber,
                        token=token, saved=False, error=None)  # fmt: skip
        form = await _form(request)
        if form.get("action") == "unsubscribe":
            return await unsubscribe(request)
        language = form.get("language") or subscriber.language
        name = _clean_name(form.get("name"))
        if language not in SUBSCRIBER_LANGUAGES or name is None:
            error = {
                "en": "Choose English, French or both, and a name of at most "
                f"{MAX_NAME} characters.",
                "fr": "Choisissez anglais, français ou les deux, et un nom d’au plus "
                f"{MAX_NAME}\u00a0caractères.",
            }
            return page("preferences.html.j2", subscriber.language, 400, subscriber=subscriber,
                        token=token, saved=False, error=error)  # fmt: skip

        def save(store: SqliteStore) -> Subscriber | None:
            store.set_language(subscriber.id, language, "web:preferences")
            store.set_name(subscriber.id, name, "web:preferences")
            return store.get(subscriber.id)

        after = await with_store(save) or subscriber
        return page("preferences.html.j2", after.language, subscriber=after, token=token,
                    saved=True, error=None)  # fmt: skip

    async def not_found(request: Request, exc: Exception) -> Response:
        if isinstance(exc, HTTPException) and exc.status_code != 404:
            return Response(exc.detail, exc.status_code, headers=exc.headers)
        return invalid()

    app = Starlette(
        routes=[
            Route("/unsubscribe/{token}", unsubscribe_page, methods=["GET"]),
            Route("/unsubscribe/{token}", unsubscribe, methods=["POST"]),
            Route("/preferences/{token}", preferences, methods=["GET", "POST"]),
        ],
        exception_handlers={404: not_found},
    )
    app.add_middleware(_Headers)
    return app


async def _form(request: Request) -> dict[str, str]:
    """The posted fields; empty for a body that is not a form (a bare POST still counts)."""
    try:
        form = await request.form(max_files=0, max_fields=10)
    except Exception:  # malformed multipart, wrong content type: the token decides, not the body
        return {}
    return {key: value for key, value in form.items() if isinstance(value, str)}


def _clean_name(value: str | None) -> str | None:
    """The name without control characters, or None if too long to be a name."""
    text = "".join(c for c in (value or "") if unicodedata.category(c)[0] != "C").strip()
    return text if len(text) <= MAX_NAME else None
