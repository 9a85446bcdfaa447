"""`newsletter due` (from a timer: scheduled sends and retries) and `newsletter schedule`."""

from __future__ import annotations

import contextlib
import time

import click

from . import campaign
from .cli_context import AppContext, as_issue_id, need_db, pass_app
from .cli_report import local_time, rebuild_archive, say_refusals
from .config import Settings
from .errors import shown_dir
from .exits import EXIT_TABLE, Exit
from .ledger import SendBusy, State, send_lock, sends
from .schedule import Book, format_when
from .stopping import shielded, stop_gently_on_sigterm, terminating
from .subscribers import open_store


@click.command(epilog=EXIT_TABLE)
@pass_app
def due(app: AppContext) -> None:
    """Start the scheduled sends whose time has come and retry the deferred messages due.

    Safe to run from a timer every minute: quiet when there is nothing to do, and a second
    one running at the same time does nothing.
    """
    stop_gently_on_sigterm()
    with shielded():  # SIGTERM: what runs winds down, and nothing more starts
        worst = _due(app.settings)
    if terminating() and worst is not Exit.TERMINATED:
        click.echo("stopped (terminated) before anything more was started", err=True)
        worst = Exit.TERMINATED
    if worst:
        raise SystemExit(worst)


def _say_held(issue: str, line: str) -> None:
    with contextlib.suppress(OSError):  # (a log that cannot be written stops no send)
        click.echo(f"issue {issue}: {line}")


def _due(settings: Settings) -> Exit:
    # a timer started in the wrong folder would otherwise make an empty list and send nothing
    need_db(settings, "from a timer: check its WorkingDirectory")
    try:
        lock = send_lock(settings.db_path)
        lock.__enter__()
    except SendBusy:
        click.echo("a send is running on this database; nothing to do until it ends")
        return Exit.OK
    warned = []

    def on_start(issue: str, what: str) -> None:
        if not warned:  # as send does, once, and only when something goes (else quiet)
            warned.append(True)
            for warning in settings.warnings:
                click.echo(f"warning: {warning}", err=True)
        click.echo(f"issue {issue}: {what}")

    try:
        with open_store(settings) as store:
            items = campaign.run_due(
                settings,
                store,
                time.time(),
                on_start=on_start,
                on_hold=_say_held,
            )
    finally:
        lock.__exit__(None, None, None)
    worst = Exit.OK
    for item in items:
        if item.action == "ended":
            click.echo(f"issue {item.issue_id}: {item.detail}")
            worst = max(worst, _finished_short(item))
            continue
        if item.passes is None:
            click.echo(f"issue {item.issue_id}: {item.detail}", err=True)
            worst = max(worst, Exit.INCOMPLETE)
            continue
        if item.action == "started":
            rebuild_archive(settings, item.issue_dir)
        p = item.passes.progress
        line = f"issue {item.issue_id}: {p.sent:,} sent, {p.deferred:,} temporary refusal(s)"
        line += f", {p.failed:,} failed, {p.uncertain:,} uncertain"
        if item.report and item.report.next_retry is not None:
            line += f"; {item.report.total(State.DEFERRED):,} to retry, next "
            line += local_time(item.report.next_retry)
        click.echo(line)
        say_refusals(item.passes)
        if not (item.passes.paused or item.passes.interrupted):
            worst = max(worst, _finished_short(item))
        if item.passes.paused:
            click.echo(f"issue {item.issue_id}: {item.passes.paused}", err=True)
        if item.passes.interrupted:
            if item.passes.terminated:
                click.echo(
                    f"issue {item.issue_id}: stopped (terminated); the messages in flight were "
                    "finished; the next due resumes it",
                    err=True,
                )
                worst = Exit.TERMINATED
            else:
                click.echo(
                    f"issue {item.issue_id}: stopped; the messages in flight were finished; "
                    f"held: newsletter send {shown_dir(item.issue_dir)} "
                    "resumes it",
                    err=True,
                )
                worst = Exit.INTERRUPTED
    return worst


def _finished_short(item: campaign.DueItem) -> Exit:
    """A send that ended with failed or uncertain readers exits 1, as `send` does (once:
    the next `due` has nothing to do for it)."""
    if item.report is None or not item.report.finished_short:
        return Exit.OK
    failed, uncertain = item.report.total(State.FAILED), item.report.total(State.UNCERTAIN)
    click.echo(
        f"issue {item.issue_id}: {failed:,} failed, {uncertain:,} uncertain; "
        f"newsletter status {shown_dir(item.issue_dir)} lists them",
        err=True,
    )
    return Exit.INCOMPLETE


@click.group()
def schedule() -> None:
    """Scheduled sends: list them, cancel one. 'newsletter send ISSUE --at TIME' adds one."""


@schedule.command("list")
@pass_app
def schedule_list(app: AppContext) -> None:
    """Every schedule, waiting or not, with what became of it."""
    need_db(app.settings)
    with Book(app.settings.db_path) as book:
        found = book.all()
    if not found:
        click.echo("nothing scheduled; schedule a send with: newsletter send ISSUE --at TIME")
        return
    # a schedule that started says where its send is now (`started` alone reads as going)
    going = {issue_id: info.state for issue_id, info in sends(app.settings.db_path)}
    # A header, so that the first column reads as the number `schedule cancel` takes.
    rows = [("#", "issue", "time", "state")]
    rows += [
        (
            str(s.id),
            s.issue_id,
            format_when(s.at, s.zone),
            _state(s.state, s.note)
            + (
                f"; the send is {going[s.issue_id]}"
                if s.state == "started" and s.issue_id in going
                else ""
            ),
        )
        for s in found
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    for number, issue, when, state in rows:
        click.echo(
            f"{number:>{widths[0]}}  {issue:<{widths[1]}}  {when:<{widths[2]}}  {state}".rstrip()
        )


@schedule.command("cancel")
@click.argument("key", metavar="ID", callback=as_issue_id)
@pass_app
def schedule_cancel(app: AppContext, key: str) -> None:
    """Cancel a waiting schedule, by its number or its issue id."""
    need_db(app.settings)
    with Book(app.settings.db_path) as book:
        cancelled = book.cancel(key)
    click.echo(f"cancelled: issue {cancelled.issue_id} at {cancelled.when()}")


def _state(state: str, note: str) -> str:
    """The state and what became of the schedule, the word once ("missed: its time...")."""
    if not note:
        return state
    return note if note.startswith(f"{state}:") else f"{state}  {note}"
