"""Issue -> RenderedIssue: Jinja2 -> MJML (mjml-python) -> HTML -> premailer; plain text.

Rendering runs once per edition. The per-recipient parts are sentinels (see views.py)
that sending substitutes; nothing here knows about recipients.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
import tomllib
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import jinja2
import mjml

from .config import SHIPPED_TEMPLATES, Identity
from .content import Issue
from .errors import TemplateError
from .lazy import defer_import
from .mjml_tags import unclosed_tag, unknown_tag
from .theme import THEME_FILE, Theme, parse_theme
from .views import EDITIONS, LABEL_KEYS, LANGS, EditionView, edition_view, wrap72

HTML_TEMPLATE = "email.mjml.j2"
TEXT_TEMPLATE = "email.txt.j2"
CSS_TEMPLATE = "email.css.j2"
LABELS_FILE = "labels.toml"


@dataclass(frozen=True)
class RenderedEdition:
    view: EditionView
    html: str  # complete, inlined; contains the sentinels
    text: str

    @property
    def name(self) -> str:
        return self.view.name


@dataclass(frozen=True)
class RenderedIssue:
    issue: Issue
    editions: tuple[RenderedEdition, ...]
    timings: Mapping[str, float] = field(default_factory=dict)  # stage -> seconds

    def edition(self, name: str) -> RenderedEdition:
        return next(e for e in self.editions if e.name == name)


class _CompiledTemplates(jinja2.FileSystemBytecodeCache):
    """Templates compiled by an earlier run, in a folder of this user's that Jinja checks
    (in the temporary folder: losing it costs one compile).

    Jinja takes a compiled template only for the same source and path; the key adds this
    file and Jinja's version, since what the environment below sets (autoescaping,
    whitespace) is compiled into the code. Saves some 30-50 ms of every build's start."""

    KEY = hashlib.sha1(Path(__file__).read_bytes() + jinja2.__version__.encode()).hexdigest()

    def get_cache_key(self, name: str, filename: str | None = None) -> str:
        return super().get_cache_key(f"newsletter-{self.KEY}|{name}", filename)


def _compiled_templates() -> jinja2.BytecodeCache | None:
    try:
        return _CompiledTemplates()
    except (OSError, RuntimeError):  # no folder of our own to be had: compile every time
        return None


class Templates:
    """The templates folder, loaded once: Jinja environment, theme, CSS, labels."""

    def __init__(self, folder: Path | None = None):
        self.folder = Path(folder or SHIPPED_TEMPLATES)
        if not self.folder.is_dir():
            raise TemplateError(
                "no such templates folder; check NEWSLETTER_TEMPLATES (empty: the shipped ones)",
                self.folder,
            )
        self.env = jinja2.Environment(
            loader=jinja2.FunctionLoader(self._load),
            # HTML-escaped: the markup templates; not the text part, nor CSS
            autoescape=lambda name: name is None or name.endswith((".mjml.j2", ".html.j2")),
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=True,
            # Only the shipped templates: a folder per copy (tests make many) would pile up.
            bytecode_cache=_compiled_templates() if self.folder == SHIPPED_TEMPLATES else None,
        )
        self.env.filters["wrap72"] = wrap72
        self.loaded: dict[str, str] = {}  # template name -> source, as Jinja asked for them
        self.theme: Theme = parse_theme(self._read(THEME_FILE), self.folder / THEME_FILE)
        self.css = self.render(CSS_TEMPLATE, None)
        self.labels = self._labels()

    def _read(self, name: str) -> str:
        path = self.folder / name
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            raise TemplateError("template file missing; restore it from git", path) from None
        except OSError as exc:
            raise TemplateError(f"cannot read file ({exc.strerror})", path) from None
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = raw[: exc.start].count(b"\n") + 1
            raise TemplateError("not valid UTF-8; save it as UTF-8", path, line) from None

    def _load(self, name: str) -> tuple[str, str, Callable[[], bool]] | None:
        path = self.folder / name
        if not path.is_file():
            return None  # Jinja says TemplateNotFound, reported with the including template
        source = self._read(name)
        if name.endswith(".mjml.j2") and (found := unknown_tag(source)):
            raise TemplateError(found[1], path, found[0])
        self.loaded[name] = source
        return source, str(path), lambda: True  # a Templates lives for one build

    def _labels(self) -> dict[str, dict[str, str]]:
        path = self.folder / LABELS_FILE
        try:
            labels = tomllib.loads(self._read(LABELS_FILE))
        except tomllib.TOMLDecodeError as exc:
            raise TemplateError(f"invalid TOML: {exc}", path) from None
        for lang in LANGS:
            table = labels.get(lang)
            if not isinstance(table, dict):
                raise TemplateError(f"no [{lang}] table; restore it from git", path)
            for key in LABEL_KEYS:
                if not isinstance(table.get(key), str):
                    raise TemplateError(f'[{lang}] needs {key} = "..." (a text); add it back', path)
        return labels

    def render(self, name: str, view: EditionView | None) -> str:
        try:
            return self.env.get_template(name).render(e=view, t=self.theme)
        except jinja2.TemplateSyntaxError as exc:
            path = self.folder / (exc.name or name)
            raise TemplateError(f"template syntax: {exc.message}", path, exc.lineno) from None
        except jinja2.UndefinedError as exc:
            path, line = _template_frame(exc, self.folder / name)
            raise TemplateError(
                f"{exc.message}; check the name, or add it to labels.toml if it is a label",
                path,
                line,
            ) from None
        except jinja2.TemplateNotFound as exc:
            if exc.name == name:
                raise TemplateError(
                    "template file missing; restore it from git (or copy it from the shipped "
                    "templates)",
                    self.folder / name,
                ) from None
            raise TemplateError(
                f"includes missing template '{exc.name}'", self.folder / name
            ) from None


def _template_frame(exc: Exception, fallback: Path) -> tuple[Path, int | None]:
    """The template file and line an error was raised in: Jinja's tracebacks name them."""
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        if frame.filename.endswith(".j2"):
            return Path(frame.filename), frame.lineno
    return fallback, None


# MRML writes some characters of attribute values as Rust escapes (`\u{a0}`), e.g. the
# no-break space before a French colon in the aria-label it derives from mj-title.
_RUST_ESCAPE = re.compile(r"\\u\{([0-9a-fA-F]{1,6})\}")


def _compile_mjml(source: str, templates: Templates) -> str:
    try:
        html = mjml.mjml2html(source, disable_comments=True, fonts={})
        return _RUST_ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), html)
    except ValueError as exc:
        # MRML's position is in the rendered source, often past the mistake, and says
        # nothing of which template wrote it: look for the mistake in each template.
        for name, template_source in templates.loaded.items():
            if name.endswith(".mjml.j2") and (found := unclosed_tag(template_source)):
                raise TemplateError(
                    f"MJML does not compile: {found[1]}", templates.folder / name, found[0]
                ) from None
        template = templates.folder / HTML_TEMPLATE
        line = _mjml_error_line(source, str(exc))
        where = f" (near line {line} of the rendered MJML)" if line else ""
        raise TemplateError(
            f"MJML does not compile{where}: {exc}; check the tags in this template", template
        ) from None


def _mjml_error_line(source: str, message: str) -> int | None:
    match = re.search(r"position (\d+)", message)
    if not match:
        return None
    offset = int(match.group(1))  # a UTF-8 byte offset, often past the real mistake
    return source.encode("utf-8")[:offset].count(b"\n") + 1


_DOCTYPE = re.compile(r"^<!doctype html>", re.IGNORECASE)
_STYLE_TAG = re.compile(r"<style(?=[\s>])")
cssutils_quiet = False


def inline_css(html: str, css: str) -> str:
    """premailer with the settings that keep MJML's output intact (EMAIL-FACTS.md)."""
    global cssutils_quiet
    # premailer imports `requests` for the network we forbid it (allow_network=False)
    defer_import("requests")
    from premailer import Premailer

    # MJML's reset and responsive rules stay as they are, in their <style> blocks;
    # only our own CSS is inlined.
    html = _STYLE_TAG.sub('<style data-premailer="ignore"', html)
    html = _DOCTYPE.sub("<!DOCTYPE html>", html)
    premailer = Premailer(
        html,
        css_text=css,
        strip_important=False,
        allow_network=False,
        preserve_internal_links=True,
        keep_style_tags=False,
        disable_basic_attributes=["width", "height", "align", "bgcolor", "valign"],
        cssutils_logging_level=None if cssutils_quiet else logging.CRITICAL,
        remove_unset_properties=True,
        # cssutils' validation only feeds the warnings we silence, and its first run
        # compiles a few hundred regular expressions (~50 ms of every build)
        disable_validation=True,
    )
    cssutils_quiet = True
    out = premailer.transform(pretty_print=False)
    return out.replace(' data-premailer="ignore"', "")


def render_issue(issue: Issue, identity: Identity, templates: Templates) -> RenderedIssue:
    """Render every edition of `issue`: HTML (inlined) and plain text, once each."""
    timings = {"jinja": 0.0, "mjml": 0.0, "premailer": 0.0, "text": 0.0, "views": 0.0}
    editions = []
    for name in EDITIONS:
        t0 = time.perf_counter()
        view = edition_view(issue, name, identity, templates.labels)
        t1 = time.perf_counter()
        source = templates.render(HTML_TEMPLATE, view)
        t2 = time.perf_counter()
        html = _compile_mjml(source, templates)
        t3 = time.perf_counter()
        html = inline_css(html, templates.css)
        t4 = time.perf_counter()
        text = templates.render(TEXT_TEMPLATE, view)
        t5 = time.perf_counter()
        text = re.sub(r"\n{4,}", "\n\n\n", text).strip("\n") + "\n"
        editions.append(RenderedEdition(view=view, html=html, text=text))
        timings["views"] += t1 - t0
        timings["jinja"] += t2 - t1
        timings["mjml"] += t3 - t2
        timings["premailer"] += t4 - t3
        timings["text"] += t5 - t4
    return RenderedIssue(issue=issue, editions=tuple(editions), timings=timings)
