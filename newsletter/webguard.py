"""What every answer of the web app goes through: security headers, a body size limit, and
routes that name all their methods; and the two ways the store can fail a page, which every
page (web.py, signup/pages.py) answers alike. Kept apart from the pages they guard."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

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


class StoreBusy(Exception):
    """Another process held the database's write lock for longer than the app waits."""


class StoreUnavailable(Exception):
    """The database is missing or cannot be opened (moved away, damaged, a newer schema): the
    app answers 503, and never makes a new one (every link would look invalid)."""


class SecurityHeaders:
    """ASGI middleware adding HEADERS to every response, errors included: it wraps even
    Starlette's handler of unexpected errors (see GuardedApp)."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                # a page may set its own (the signup confirmation allows its one script)
                own = list(message.get("headers", []))
                have = {k.lower() for k, _ in own}
                message["headers"] = [*own, *(h for h in HEADERS if h[0] not in have)]
            await send(message)

        await self.app(scope, receive, send_with_headers)


class BodyLimit:
    """ASGI middleware reading a request's body whole, up to `limit` bytes, before the app
    sees it; past that, 413 at once. A declared length over the limit is refused unread."""

    def __init__(self, app: ASGIApp, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"0")
        if not declared.isdigit() or int(declared) > self.limit:
            await self._refuse(send)
            return
        body, more = b"", True
        while more:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > self.limit:  # sent in chunks, with no length declared
                await self._refuse(send)
                return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    async def _refuse(self, send: Send) -> None:
        text = f"Request body over {self.limit} bytes\n".encode()
        headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"connection", b"close"),
                   (b"content-length", str(len(text)).encode())]  # fmt: skip
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": text})


class GuardedApp(Starlette):
    """Starlette, with our middleware outside its handler of unexpected errors, so that a
    500 too carries the security headers."""

    def __init__(self, *args: Any, max_body: int, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.max_body = max_body

    def build_middleware_stack(self) -> ASGIApp:
        return SecurityHeaders(BodyLimit(super().build_middleware_stack(), self.max_body))


def route(path: str, **handlers: Callable[[Request], Awaitable[Response]]) -> Route:
    """One route for all the methods of a path, so that OPTIONS and a 405 name them all
    (two routes for one path answer with the methods of the first)."""
    methods = {method.upper() for method in handlers} | {"OPTIONS"}
    if "GET" in methods:
        methods.add("HEAD")  # a GET route answers HEAD too: both only show the page
    allow = ", ".join(sorted(methods))

    async def endpoint(request: Request) -> Response:
        if request.method == "OPTIONS":
            return Response(status_code=204, headers={"Allow": allow})
        method = "get" if request.method == "HEAD" else request.method.lower()
        return await handlers[method](request)

    return Route(path, endpoint, methods=sorted(methods))
