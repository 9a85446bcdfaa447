"""`newsletter signup-form`: the form as a self-contained HTML snippet for another site.

It posts to NEWSLETTER_BASE_URL, brings its own styles (every class starts with nl-), runs
no script, and carries a stamp that marks it as embedded: the form's age cannot tell a bot
from a person there, so the honeypot, the limits and the confirmation e-mail do the work.
"""

from __future__ import annotations

import datetime as dt

from jinja2 import Environment, StrictUndefined

from ..config import Settings
from ..subscribers import SqliteStore
from ..tokens import resolve_secret
from .forms import new_form
from .texts import load_wording


def snippet(settings: Settings, store: SqliteStore, lang: str, now: dt.datetime) -> str:
    """The HTML to paste into another site's page, in `lang` (en or fr)."""
    from ..web import web_loader  # the pages' templates, NEWSLETTER_TEMPLATES first

    wording = load_wording(settings.templates_dir, settings.identity)
    # Keep the words printed now: a request sent with this form months later, after they
    # have changed, is still recorded with the words it showed.
    store.keep_consent_text(wording.text([lang]), now)
    base_url = settings.identity.base_url
    form = new_form(resolve_secret(settings), wording, lang, now, root=base_url, embedded=True)
    env = Environment(loader=web_loader(settings), autoescape=True, undefined=StrictUndefined)
    css = env.get_template("signup_form.css").render()
    html = env.get_template("_signup_form.html.j2").render(form=form)
    return f'<div class="nl-embed">\n<style>\n{css}</style>\n{html.strip()}\n</div>\n'
