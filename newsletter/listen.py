"""The listening socket of `serve` and `preview`, bound before anything else starts: a
port already taken is one line naming it, not a server's own log and exit status."""

from __future__ import annotations

import errno
import socket

from .errors import NewsletterError


def listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise NewsletterError(
                f"port {port} is in use on {host}; pick another with --port, or --port 0 "
                "for a free one"
            ) from None
        raise NewsletterError(f"cannot listen on {host}:{port} ({exc.strerror})") from None
    sock.listen(64)
    sock.setblocking(False)
    return sock
