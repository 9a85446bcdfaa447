"""The archive's tree served in front of the web app: `newsletter serve` answers every link a
reader can follow (issue pages, feeds, unsubscribe, preferences) from one process.

A GET or HEAD for a file of the tree gets it; anything else goes on to the app behind, so
the app's own pages and its "link not valid" answer stay as they are. The tree is looked up
on each request: a rebuild swapped in meanwhile is served at once.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Receive, Scope, Send

TYPES = {
    ".html": "text/html; charset=utf-8",
    ".atom": "application/atom+xml; charset=utf-8",
    ".xml": "application/xml; charset=utf-8",
    ".css": "text/css; charset=utf-8",
}
# Public pages: cacheable and indexable, unlike the app's (which carry a reader's token).
HEADERS = [
    (b"cache-control", b"public, max-age=300"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"strict-origin-when-cross-origin"),
    (
        b"content-security-policy",
        b"default-src 'none'; style-src 'self'; img-src https: http: data:; "
        b"form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    ),
]


class ArchiveApp:
    """ASGI: the static site at `root`, in front of `app`."""

    def __init__(self, root: Path, app: ASGIApp):
        self.root = Path(root)
        self.app = app

    def find(self, path: str) -> Path | str | None:
        """The file for a request path, a redirect (str) for a folder without its slash, or
        None for what the tree does not have."""
        parts = path.split("/")
        if any(p in (".", "..") or p.startswith(".") or "\\" in p or "\0" in p for p in parts):
            return None  # never outside the tree, never a staging folder
        root = self.root.resolve()
        target = root.joinpath(*[p for p in parts if p])
        try:
            if not target.resolve().is_relative_to(root):
                return None
            if target.is_dir():
                if not path.endswith("/"):
                    # relative, so it is right behind a proxy that serves us under a path
                    return (parts[-1] or ".") + "/"
                target = target / "index.html"
            return target if target.is_file() else None
        except OSError:
            return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("GET", "HEAD"):
            await self.app(scope, receive, send)
            return
        found = await run_in_threadpool(self.find, scope["path"])
        if found is None:
            await self.app(scope, receive, send)
            return
        if isinstance(found, str):
            headers = [(b"location", found.encode("utf-8")), (b"content-length", b"0")]
            await send({"type": "http.response.start", "status": 301, "headers": headers})
            await send({"type": "http.response.body", "body": b""})
            return
        try:
            body = await run_in_threadpool(found.read_bytes)
        except OSError:  # gone between the look-up and the read
            await self.app(scope, receive, send)
            return
        etag = b'"' + hashlib.sha256(body).hexdigest()[:20].encode("ascii") + b'"'
        asked = dict(scope.get("headers") or []).get(b"if-none-match")
        status = 304 if asked == etag else 200
        headers = [
            (b"content-type", TYPES.get(found.suffix, "application/octet-stream").encode()),
            (b"etag", etag),
            *HEADERS,
        ]
        if status == 200:
            headers.append((b"content-length", str(len(body)).encode("ascii")))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        send_body = status == 200 and scope["method"] == "GET"
        await send({"type": "http.response.body", "body": body if send_body else b""})


def with_archive(app: ASGIApp, root: Path) -> ArchiveApp:
    return ArchiveApp(root, app)
