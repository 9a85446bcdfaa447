"""The home page's hook for joining: a link or a form when the web app has a signup page.

The archive is built ahead of time, so it asks here, at build time, whether readers can
sign up on the web, and shows nothing when they cannot (an empty section helps nobody).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from markupsafe import Markup

from ..config import Identity


@dataclass(frozen=True)
class Signup:
    """How to join, per language: the signup page's absolute URL, and optionally the form
    itself (the web app owns its fields and its consent wording), shown in place of a link."""

    url: Mapping[str, str]
    form: Mapping[str, Markup] | None = None


def signup_for(identity: Identity) -> Signup | None:
    """What the home page offers to join with: links to the web app's signup pages.

    A link, not the form itself: the form carries a signed timestamp, which would make every
    build differ and go stale on a static page; the signup page makes a fresh one.
    """
    return Signup(
        url={"en": f"{identity.base_url}/subscribe", "fr": f"{identity.base_url}/abonnement"}
    )
