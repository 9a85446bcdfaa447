"""The local preview server: build an issue, show it as readers will see it, rebuild on save.

One `Preview` holds the latest build (or the error that stopped it) as an immutable
`Snapshot` with a version number. A watcher rebuilds on every saved brief, manifest,
template or `.env`; the page hears of each new version by Server-Sent Events and fetches
`/state.json` again. Editions are served at their own URL with a Content-Security-Policy
that forbids scripts, and the page shows them in frames sandboxed without scripts, so
nothing in an issue can script the page. Each edition can be shown in the light scheme,
in dark as clients that follow prefers-color-scheme show it, and in Outlook's dark.
"""

from __future__ import annotations

import asyncio
import contextlib
import email
import email.policy
import hashlib
import logging
import re
import time
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import jinja2
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from watchfiles import DefaultFilter, awatch

from .build import Build, EditionBuild, build_issue
from .checks import CLIP_LIMIT, CLIP_WARNING
from .config import SHIPPED_TEMPLATES, load_settings
from .content import briefs_dir_for
from .errors import NewsletterError
from .hosts import HostAllowList
from .render import Templates

log = logging.getLogger(__name__)

PAGE_DIR = SHIPPED_TEMPLATES / "preview"  # the preview page is ours, not the newsletter's
EDITION_LABELS = {"en": "English", "fr": "Français", "bilingual": "Bilingual / Bilingue"}
READER_HEADERS = ("From", "To", "Reply-To", "Subject")
UNSUBSCRIBE_HEADERS = ("List-Unsubscribe", "List-Unsubscribe-Post")

# The sent HTML may hold anything an editor typed: no script, no form, no plugin, no
# framing by other sites. Images and fonts load as they would in a reader's client.
EDITION_CSP = (
    "default-src 'none'; script-src 'none'; object-src 'none'; style-src 'unsafe-inline'; "
    "img-src http: https: data:; font-src http: https: data:; form-action 'none'; "
    "base-uri 'none'; frame-ancestors 'self'"
)
PAGE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "frame-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)
NO_STORE = {"Cache-Control": "no-store"}
SCHEMES = ("light", "dark", "outlook")
_DARK_QUERY = re.compile(r"\(\s*prefers-color-scheme\s*:\s*dark\s*\)", re.IGNORECASE)
_LIGHT_QUERY = re.compile(r"\(\s*prefers-color-scheme\s*:\s*light\s*\)", re.IGNORECASE)
_BODY = re.compile(r"<body\b", re.IGNORECASE)


def in_scheme(html: str, scheme: str) -> str:
    """The edition as a client in `scheme` would apply its CSS.

    `dark`: the prefers-color-scheme: dark rules apply, as in Apple Mail (a frame cannot be
    told to prefer dark on its own). `outlook`: <body> carries the data-ogsc and data-ogsb
    marks that Outlook.com and its apps put on what they recolour."""
    if scheme == "dark":
        return _LIGHT_QUERY.sub("(max-width: 0px)", _DARK_QUERY.sub("(min-width: 0px)", html))
    if scheme == "outlook":
        return _BODY.sub('<body data-ogsc="" data-ogsb=""', html, count=1)
    return html


ASSETS = {"preview.js": "text/javascript", "preview.css": "text/css"}


@dataclass(frozen=True)
class EditionPreview:
    name: str
    label: str
    html_lang: str
    html: str
    html_hash: str  # lets the page reload only the frames whose HTML changed
    text: str
    headers: tuple[tuple[str, str], ...]
    preheader: str
    html_part_bytes: int
    findings: tuple[tuple[str, str], ...]  # (level, message)


@dataclass(frozen=True)
class Snapshot:
    version: int
    issue_id: str | None = None
    editions: tuple[EditionPreview, ...] = ()
    error: str | None = None  # exactly the CLI's line: "error: file:line: what to do"

    def edition(self, name: str) -> EditionPreview | None:
        return next((e for e in self.editions if e.name == name), None)

    def as_json(self) -> dict:
        return {
            "version": self.version,
            "issue": self.issue_id,
            "error": self.error,
            "clip_limit": CLIP_LIMIT,
            "clip_warning": CLIP_WARNING,
            "editions": [
                {
                    "name": e.name,
                    "label": e.label,
                    "lang": e.html_lang,
                    "hash": e.html_hash,
                    "text": e.text,
                    "headers": [*e.headers, ("Preheader", e.preheader)],
                    "html_part_bytes": e.html_part_bytes,
                    "findings": [{"level": lv, "message": m} for lv, m in e.findings],
                }
                for e in self.editions
            ],
        }


def _edition_preview(edition: EditionBuild) -> EditionPreview:
    msg = email.message_from_bytes(edition.eml, policy=email.policy.default)
    headers = tuple(
        (name, str(msg[name])) for name in READER_HEADERS + UNSUBSCRIBE_HEADERS if msg[name]
    )
    return EditionPreview(
        name=edition.name,
        label=EDITION_LABELS.get(edition.name, edition.name),
        html_lang=edition.rendered.view.html_lang,
        html=edition.html,
        html_hash=hashlib.sha256(edition.html.encode()).hexdigest()[:16],
        text=edition.text,
        headers=headers,
        preheader=edition.rendered.view.preheader,
        html_part_bytes=edition.html_part_bytes,
        findings=tuple((str(f.level), f.message) for f in edition.findings),
    )


def snapshot_of(build: Build, version: int) -> Snapshot:
    editions = tuple(_edition_preview(e) for e in build.editions)
    return Snapshot(version=version, issue_id=build.issue.id, editions=editions)


def _gate(path: Path) -> Path:
    """The entry whose creation, deletion or renaming makes `path` appear or vanish: `path`
    itself while the folder holding it exists, else the first missing folder on its way."""
    while not path.parent.is_dir() and path.parent != path:
        path = path.parent
    return path


@dataclass(frozen=True)
class Targets:
    """What to watch: content folders (recursively) and the settings file.

    A watch on a folder follows the folder, not its name: once the folder is deleted, moved
    or replaced (`git checkout`, `git stash`, an editor saving by renaming), nothing at its
    path is seen any more. So each target also has a gate (see `_gate`), watched from the
    folder holding it, which tells when to watch again."""

    folders: tuple[Path, ...]  # those that exist
    env_file: Path
    folder_gates: tuple[Path, ...]  # one for each content folder, existing or not
    env_gate: Path

    @property
    def all(self) -> tuple[Path, ...]:
        return (*self.folders, self.env_file)


@dataclass
class Preview:
    issue_dir: Path
    env_file: Path
    on_rebuild: Callable[[Snapshot, float], None] = lambda snapshot, seconds: None
    on_watch: Callable[[Targets], None] = lambda targets: None
    snapshot: Snapshot = field(init=False, default_factory=lambda: Snapshot(version=0))
    templates_dir: Path = field(init=False, default=SHIPPED_TEMPLATES)  # from the last settings

    def __post_init__(self) -> None:
        self._stop = asyncio.Event()
        self._changed = asyncio.Condition()
        self._lock = asyncio.Lock()

    def build_now(self) -> Snapshot:
        """Build once, synchronously; a problem in the input becomes the snapshot's error."""
        t0 = time.perf_counter()
        version = self.snapshot.version + 1
        try:
            settings = load_settings(self.env_file)
            self.templates_dir = Path(settings.templates_dir or SHIPPED_TEMPLATES)
            build = build_issue(self.issue_dir, settings.identity, Templates(self.templates_dir))
            snapshot = snapshot_of(build, version)
        except NewsletterError as exc:
            snapshot = Snapshot(version=version, error=f"error: {exc}")
        except Exception as exc:  # a bug must not stop the preview the editor is using
            log.exception("preview build failed")
            snapshot = Snapshot(
                version=version,
                error=f"error: unexpected {type(exc).__name__}: {exc} (traceback in the terminal)",
            )
        self.snapshot = snapshot
        self.on_rebuild(snapshot, time.perf_counter() - t0)
        return snapshot

    async def rebuild(self) -> None:
        async with self._lock:
            # Off the event loop: a build takes a few hundred ms and the page must stay served.
            await asyncio.to_thread(self.build_now)
        async with self._changed:
            self._changed.notify_all()

    def targets(self) -> Targets:
        folders = (self.issue_dir, briefs_dir_for(self.issue_dir), self.templates_dir)
        unique = tuple(dict.fromkeys(f.resolve() for f in folders))
        env_file = self.env_file.resolve()
        return Targets(
            folders=tuple(f for f in unique if f.is_dir()),
            env_file=env_file,
            folder_gates=tuple(dict.fromkeys(_gate(f) for f in unique)),
            env_gate=_gate(env_file),
        )

    def stop(self) -> None:
        """Wake every waiter and end the watcher. Call it on the event loop's thread."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    async def wait_for_change(self, seen: int) -> Snapshot | None:
        """The first snapshot newer than version `seen`, or None once the server is stopping."""
        async with self._changed:
            await self._changed.wait_for(lambda: self.snapshot.version != seen or self.stopping)
        return None if self.stopping else self.snapshot

    async def watch(self) -> None:
        """Rebuild on every change until stopped. A round ends when `.env` moves the templates
        folder, or a watched folder vanishes or comes back, so that the next round watches
        what is there now."""
        waker = asyncio.create_task(self._wake_on_stop())
        try:
            watched, changed = self.targets(), False
            while not self.stopping:
                targets = self.targets()
                catch_up = changed or targets != watched
                changed = await self._watch_round(targets, catch_up)
                watched = targets
        finally:
            waker.cancel()

    async def _wake_on_stop(self) -> None:
        await self._stop.wait()
        async with self._changed:
            self._changed.notify_all()

    async def _watch_round(self, targets: Targets, catch_up: bool) -> bool:
        """Watch `targets` until they change (then True) or the preview stops. With `catch_up`,
        rebuild once the watchers are in place: nobody watched between two rounds."""
        round_over = asyncio.Event()

        async def rebuild() -> None:
            await self.rebuild()
            if self.targets() != targets:
                round_over.set()

        async def pump(paths: list[Path], recursive: bool, keep, restart_on=frozenset()) -> None:
            async for changes in awatch(
                *paths, watch_filter=keep, recursive=recursive, stop_event=round_over
            ):
                if restart_on.intersection(path for _, path in changes):
                    round_over.set()  # the next round rebuilds
                else:
                    await rebuild()

        # The gates and the folders holding them are watched, not recursively: `.env` sits
        # beside the whole project (.venv, .git). Watching only `.env`'s name also survives
        # editors that save by renaming. Any change to a folder's gate, or to a folder holding
        # a gate, calls for a new round.
        holders = {gate.parent for gate in (*targets.folder_gates, targets.env_gate)}
        restart_on = frozenset(str(path) for path in (*targets.folder_gates, *holders))
        gates = restart_on | {str(targets.env_gate)}
        at_gates = lambda change, path: path in gates  # noqa: E731
        pumps = [pump(sorted(holders), False, at_gates, restart_on)]
        if targets.folders:
            # The folders' own entries are the gates' business.
            roots, default = {str(f) for f in targets.folders}, DefaultFilter()
            inside = lambda change, path: path not in roots and default(change, path)  # noqa: E731
            pumps.append(pump(list(targets.folders), True, inside))
        tasks = [asyncio.create_task(p) for p in pumps]
        stopper = asyncio.create_task(self._stop.wait())
        await asyncio.sleep(0)  # let the watchers start, so that what we announce is true
        self.on_watch(targets)
        try:
            if catch_up:
                await rebuild()
            await asyncio.wait([stopper, *tasks], return_when=asyncio.FIRST_COMPLETED)
            changed = round_over.is_set()
        finally:
            round_over.set()
            stopper.cancel()
            failures = [r for r in await asyncio.gather(*tasks, return_exceptions=True) if r]
        for failure in failures:
            log.warning("preview: watching stopped (%s); watching again", failure)
        if failures:
            # Don't spin on a watcher that keeps failing; try again after a breath, then
            # catch up on what was saved meanwhile.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), timeout=1.0)
        return changed or bool(failures)


LOOPBACK_NAMES = ("localhost",)
WATCHER_STOP_WITHIN = 10.0  # seconds: more than a build takes


def create_app(preview: Preview, allowed_hosts: Iterable[str] = LOOPBACK_NAMES) -> Starlette:
    """The preview page, its assets, the state as JSON, each edition's HTML, and the events.

    Only requests naming an address or one of `allowed_hosts` are answered (see hosts.py),
    so a web page the editor visits cannot read the unsent issue through a DNS name rebound
    to this machine, whatever address the preview listens on."""
    pages = jinja2.Environment(
        loader=jinja2.FileSystemLoader(PAGE_DIR),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )

    async def page(request: Request) -> Response:
        html = pages.get_template("page.html.j2").render(
            issue_dir=str(preview.issue_dir), editions=EDITION_LABELS
        )
        return HTMLResponse(html, headers={"Content-Security-Policy": PAGE_CSP, **NO_STORE})

    async def asset(request: Request) -> Response:
        name = request.path_params["name"]
        media = ASSETS.get(name)
        if media is None:
            return Response("not found", 404, media_type="text/plain")
        body = (PAGE_DIR / name).read_text("utf-8")
        return Response(body, media_type=f"{media}; charset=utf-8", headers=NO_STORE)

    async def state(request: Request) -> Response:
        return JSONResponse(preview.snapshot.as_json(), headers=NO_STORE)

    async def edition_html(request: Request) -> Response:
        edition = preview.snapshot.edition(request.path_params["name"])
        if edition is None:
            return Response("no such edition in the current build", 404, media_type="text/plain")
        scheme = request.query_params.get("scheme", "light")
        if scheme not in SCHEMES:
            return Response(
                f"no such scheme; one of {', '.join(SCHEMES)}", 404, media_type="text/plain"
            )
        headers = {"Content-Security-Policy": EDITION_CSP, **NO_STORE}
        return HTMLResponse(in_scheme(edition.html, scheme), headers=headers)

    async def edition_text(request: Request) -> Response:
        edition = preview.snapshot.edition(request.path_params["name"])
        if edition is None:
            return Response("no such edition in the current build", 404, media_type="text/plain")
        return Response(edition.text, media_type="text/plain; charset=utf-8", headers=NO_STORE)

    async def events(request: Request) -> Response:
        async def stream() -> AsyncIterator[str]:
            # The browser reconnects by itself (after `retry` ms) if the server restarts.
            snapshot: Snapshot | None = preview.snapshot
            yield "retry: 1000\n\n"
            while snapshot is not None:
                yield f"data: {snapshot.version}\n\n"
                snapshot = await preview.wait_for_change(snapshot.version)

        return StreamingResponse(stream(), media_type="text/event-stream", headers=NO_STORE)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        watcher = asyncio.create_task(preview.watch())
        try:
            yield
        finally:
            preview.stop()
            # the watcher ends at once (its file watchers check the stop every 50 ms); a
            # build in progress is waited for, a watcher that hangs is not
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(watcher, timeout=WATCHER_STOP_WITHIN)

    return Starlette(
        routes=[
            Route("/", page),
            Route("/assets/{name:str}", asset),
            Route("/state.json", state),
            Route("/edition/{name:str}.html", edition_html),
            Route("/edition/{name:str}.txt", edition_text),
            Route("/events", events),
        ],
        lifespan=lifespan,
        middleware=[Middleware(HostAllowList, names=allowed_hosts)],
    )
