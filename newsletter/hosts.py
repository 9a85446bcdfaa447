"""Which `Host:` a local server answers: the defence against DNS rebinding.

A web page on a name its owner controls can point that name at 127.0.0.1 (or at any address
of this machine) and then read what a server here answers, since to the browser it is the
page's own origin. Its requests still carry the page's name in `Host:`, so a server that
answers only names it knows is out of reach. An address written out (`127.0.0.2`,
`192.0.2.7`) is always answered: a browser sends one only for a page loaded from that very
address, which no other site can script.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from .config import DNS_NAME

ALWAYS = ("localhost",)


def host_name(header: str) -> str | None:
    """The name or address in a `Host:` value, without port or brackets, lower case."""
    header = header.strip().lower()
    if header.startswith("["):  # [::1]:8025
        address, bracket, _ = header[1:].partition("]")
        return address if bracket else None
    name = header.rsplit(":", 1)[0] if header.count(":") == 1 else header
    return name.rstrip(".") or None


def is_address(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def check_name(name: str) -> str:
    """A name for --allow-host, lower case; ValueError for a pattern, a port or a typo."""
    name = name.strip().lower().rstrip(".")
    if not (is_address(name) or DNS_NAME.fullmatch(name)):
        raise ValueError(f"{name!r} is not a host name, e.g. preview.example.org (no port, no *)")
    return name


def allowed_hosts(bound: str, extra: Iterable[str] = ()) -> frozenset[str]:
    """The names a server bound to `bound` answers besides addresses: its own, if a name,
    `localhost`, and `extra` (--allow-host)."""
    return frozenset({host_name(bound) or bound, *ALWAYS, *extra})


class HostAllowList:
    """ASGI middleware: 400 for a request whose `Host:` is neither an address nor a name in
    `names`."""

    def __init__(self, app: ASGIApp, names: Iterable[str]):
        self.app = app
        self.names = frozenset(host_name(name) or name for name in names)

    def allows(self, header: str) -> bool:
        name = host_name(header)
        return name is not None and (is_address(name) or name in self.names)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            header = dict(scope["headers"]).get(b"host", b"").decode("latin-1")
            if not self.allows(header):
                response = PlainTextResponse("Invalid host header", status_code=400)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
