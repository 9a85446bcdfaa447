"""Debian's chromium for the browser tests, launched through Playwright (never a browser
Playwright downloads), and kept on this machine."""

from __future__ import annotations

import re
from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")
# without the background-networking flags chromium reaches out to Google's hosts at start
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
_HOST = re.compile(r"https?://([^/:]+)")


def only_loopback(route) -> None:
    """A Playwright route handler: nothing leaves the machine (the demo's images and links
    point at example.org)."""
    host = _HOST.match(route.request.url)
    if host and host.group(1) == "127.0.0.1":
        route.continue_()
    else:
        route.abort()
