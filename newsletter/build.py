"""The build pipeline in one place: read -> render -> sample messages -> checks -> files."""

from __future__ import annotations

import email
import os
import secrets
import shutil
import time
from dataclasses import dataclass
from email import policy
from email.utils import make_msgid
from pathlib import Path

from .checks import Finding, Level, check_edition
from .config import Identity
from .content import Issue, read_issue
from .errors import ContentError, NewsletterError
from .fastmime import CompiledEdition, compile_edition, now_header
from .message import (
    Recipient,
    html_part_size,
    personalise_html,
    personalise_text,
    sample_recipient,
)
from .render import RenderedEdition, RenderedIssue, Templates, render_issue
from .views import EDITIONS

LANG_NAMES = {"en": "English", "fr": "French"}


@dataclass(frozen=True)
class EditionBuild:
    rendered: RenderedEdition
    compiled: CompiledEdition  # what a send personalises for each reader
    html: str  # personalised for the sample recipient
    text: str
    eml: bytes  # the compiled edition, personalised for the sample recipient
    html_part_bytes: int
    findings: tuple[Finding, ...]

    @property
    def name(self) -> str:
        return self.rendered.name


@dataclass(frozen=True)
class Build:
    issue: Issue
    rendered: RenderedIssue
    editions: tuple[EditionBuild, ...]
    timings: dict[str, float]

    @property
    def findings(self) -> tuple[Finding, ...]:
        return tuple(f for e in self.editions for f in e.findings)

    @property
    def has_errors(self) -> bool:
        return any(f.level is Level.ERROR for f in self.findings)


def _strict_check(issue: Issue) -> None:
    for brief in issue.briefs:
        for lang in ("en", "fr"):
            if brief.text(lang) is None:
                (other,) = brief.languages
                have = brief.text(other)
                assert have is not None
                missing = have.path.with_name(f"{brief.slug}.{lang}.md")
                raise ContentError(
                    f"brief '{brief.slug}' has no {LANG_NAMES[lang]} version (--strict); "
                    f"write it, or build without --strict",
                    missing,
                )


def build_issue(
    issue_dir: Path,
    identity: Identity,
    templates: Templates,
    *,
    strict: bool = False,
    recipient: Recipient | None = None,
) -> Build:
    """Build every edition of the issue in `issue_dir`, in memory."""
    t0 = time.perf_counter()
    issue = read_issue(issue_dir)
    if strict:
        _strict_check(issue)
    t1 = time.perf_counter()
    rendered = render_issue(issue, identity, templates)
    t2 = time.perf_counter()
    recipient = recipient or sample_recipient(identity)
    editions = []
    domain = identity.from_addr["en"].rpartition("@")[2]
    for edition in rendered.editions:
        # the message every reader gets, compiled once; the sample .eml is made from it
        compiled = compile_edition(edition, identity)
        eml = compiled.render(recipient, make_msgid(domain=domain), now_header())
        size = html_part_size(email.message_from_bytes(eml, policy=policy.SMTP))
        editions.append(
            EditionBuild(
                rendered=edition,
                compiled=compiled,
                html=personalise_html(edition.html, recipient),
                text=personalise_text(edition.text, recipient),
                eml=eml,
                html_part_bytes=size,
                findings=tuple(check_edition(edition, size)),
            )
        )
    t3 = time.perf_counter()
    timings = {"parse": t1 - t0, **rendered.timings, "mime": t3 - t2, "total": t3 - t0}
    return Build(issue=issue, rendered=rendered, editions=tuple(editions), timings=timings)


def _staging_dir(out_dir: Path) -> Path:
    """A new empty folder beside `out_dir`, with the permissions the umask gives any folder
    (tempfile.mkdtemp would make it 0700, and a web server running as another user could
    not serve the build)."""
    while True:
        staging = out_dir.with_name(f".{out_dir.name}.{secrets.token_hex(4)}")
        try:
            staging.mkdir(mode=0o777)
        except FileExistsError:
            continue
        return staging


def write_build(build: Build, out_dir: Path) -> Path:
    """Write `<edition>.html/.txt/.eml` into `out_dir`, all or nothing."""
    out_dir = Path(out_dir).resolve()
    blocked = next((p for p in out_dir.parents if p.exists() and not p.is_dir()), None)
    if blocked is not None:
        raise NewsletterError("is a file, not a folder; choose another folder with --out", blocked)
    try:
        return _write_build(build, out_dir)
    except OSError as exc:  # no room, no right to write, a system folder...
        raise NewsletterError(
            f"cannot write the build: {exc.strerror or exc}; choose another folder with --out",
            out_dir,
        ) from None


def _write_build(build: Build, out_dir: Path) -> Path:
    ours = {f"{e}.{x}" for e in EDITIONS for x in ("html", "txt", "eml")}
    if out_dir.exists():
        others = (
            sorted(p.name for p in out_dir.iterdir() if p.name not in ours)
            if (out_dir.is_dir())
            else [out_dir.name]
        )
        if others:
            # the folder is replaced whole: never when it holds anything but a build
            raise NewsletterError(
                f"holds other files ({others[0]}, ...); build into an empty or new folder",
                out_dir,
            )
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = _staging_dir(out_dir)
    try:
        for edition in build.editions:
            (staging / f"{edition.name}.html").write_text(edition.html, "utf-8")
            (staging / f"{edition.name}.txt").write_text(edition.text, "utf-8")
            (staging / f"{edition.name}.eml").write_bytes(edition.eml)
        if out_dir.exists():
            old = out_dir.with_name(f".{out_dir.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(out_dir, old)
            os.replace(staging, out_dir)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out_dir
