"""What the send commands say about a send: the counts table, times, refusals, retries, and
the archive rebuilt after it (shared by `send`, `status` and `due`)."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

import click

from . import campaign
from .config import format_duration
from .content import not_an_issue
from .errors import NewsletterError
from .ledger import State
from .views import EDITIONS

COLUMNS = (State.SENT, State.PENDING, State.DEFERRED, State.FAILED, State.UNCERTAIN, State.SKIPPED)


def counts_table(counts: dict[tuple[str, State], int]) -> str:
    lines = ["edition    " + "".join(f"{s.value:>11}" for s in COLUMNS)]
    for edition in EDITIONS:
        row = [
            counts.get((edition, s), 0)
            + (counts.get((edition, State.SENDING), 0) if s is State.PENDING else 0)
            for s in COLUMNS
        ]
        lines.append(f"{edition:<11}" + "".join(f"{n:>11,}" for n in row))
    return "\n".join(lines)


def local_time(at: float) -> str:
    """When a retry is due, and in how long: "(in 40 s)", "(in 1 h 5 min)", or "(due now)"
    for a time already past (the next `send` or `due` takes it)."""
    local = dt.datetime.fromtimestamp(at).astimezone()
    left = at - time.time()
    when = f"in {format_duration(left)}" if left >= 1 else "due now"
    return f"{local:%Y-%m-%d %H:%M %Z} ({when})"


def issue_id_of(issue_dir: Path) -> str:
    if not (issue_dir / "issue.toml").is_file():
        raise not_an_issue(issue_dir)
    return issue_dir.resolve().name


def say_refusals(passes: campaign.Passes) -> None:
    """Refusals classified as bounces: who left the list, and policy blocks by domain."""
    events = [e for r in passes.refusals for e in r.events]
    gone = [e for e in events if e.action]
    if gone:
        click.echo(
            f"{len(gone):,} address(es) taken off the list (refused for good: "
            + ", ".join(f"{e.email} {e.status}" for e in gone[:5])
            + (" ..." if len(gone) > 5 else "")
            + "); see newsletter bounces list"
        )
    blocked = sorted({e.domain for e in events if e.klass == "blocked"})
    if blocked:
        click.echo(
            f"warning: refused for policy or reputation (5.7.x) by {', '.join(blocked)}: nobody "
            "was taken off the list; check SPF, DKIM, DMARC and the sending address's reputation",
            err=True,
        )


def say_deferred(report: campaign.Report) -> None:
    assert report.next_retry is not None
    click.echo(
        f"{report.total(State.DEFERRED):,} message(s) deferred by the server (temporary "
        f"refusals); next retry {local_time(report.next_retry)}: run send again then, or let "
        "'newsletter due' retry them",
        err=True,
    )


def rebuild_archive(settings, issue_dir: Path) -> None:
    """Once messages are out, their "View in browser" link must lead somewhere: the site
    is rebuilt with this issue. A failure is the archive's, not the send's: a warning."""
    from .archive.site import rebuild_after_send

    try:
        site = rebuild_after_send(settings, issue_dir)
    except NewsletterError as exc:
        click.echo(
            f"warning: the web archive was not rebuilt: {exc}; then run 'newsletter archive build'",
            err=True,
        )
        return
    click.echo(f"web archive: {len(site.issues)} issue(s) in {site.out_dir}/")
