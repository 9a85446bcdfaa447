"""`newsletter status`: where the send of an issue stands, each worker's share, and what to
run next."""

from __future__ import annotations

from pathlib import Path

import click

from .cli_context import AppContext, need_db, optional_issue_dir_argument, pass_app
from .cli_report import counts_table, issue_id_of, local_time
from .delivery import SendOptions
from .exits import EXIT_TABLE
from .ledger import Ledger, SendBusy, SendState, State, Stopped, send_lock, sends, totals
from .schedule import Book, ScheduleState

DEFAULT_LEASE = SendOptions().lease
# how a worker whose pass ended early is shown (send_workers.stopped)
_ENDED = {
    Stopped.INTERRUPTED: "stopped early (Ctrl-C)",
    Stopped.TERMINATED: "stopped early (SIGTERM, or its send was killed)",
    Stopped.PAUSED: "paused (failures in a row, or no session with the server)",
    Stopped.FAILED: "stopped by an error",
    Stopped.STOPPED: "stopped early, with the others (one paused or failed) or at its lease",
}


@click.command(epilog=EXIT_TABLE)
@optional_issue_dir_argument
@pass_app
def status(app: AppContext, issue_dir: Path | None) -> None:
    """Where the send of an issue stands: sent, pending, deferred, failed, uncertain.
    Without ISSUE_DIR: every send of the list, and what is scheduled."""
    if issue_dir is None:
        need_db(app.settings)
        return _overview(app.settings)
    issue_id = issue_id_of(issue_dir)  # a wrong path first: it explains more than a missing db
    settings = app.settings
    need_db(settings)
    with Book(settings.db_path) as book:
        waiting = book.waiting(issue_id)
        last = next((s for s in reversed(book.all()) if s.issue_id == issue_id), None)
    ledger = Ledger(settings.db_path, issue_id)
    try:
        if not ledger.started():
            if waiting is not None:
                click.echo(f"issue {issue_id} is scheduled for {waiting.when()}.")
            elif last is not None and last.state in (ScheduleState.MISSED, ScheduleState.REFUSED):
                # said by `due`, in a timer's log: said here too, where the editor looks
                click.echo(
                    f"issue {issue_id} has not been sent: its schedule for {last.when()} was "
                    f"{last.state}: {last.note.removeprefix(f'{last.state}: ')}"
                )
            else:
                click.echo(f"issue {issue_id} has not been sent.")
            return
        in_flight = _relabel(settings.db_path, ledger)
        info = ledger.info()
        assert info is not None
        click.echo(f"issue {issue_id} ({info.state}, started {info.started_at}):")
        click.echo(counts_table(ledger.counts()))
        _say_workers(ledger)
        if settings.smtp.host:
            # what a 250 from a relay or a provider means: the rest of the way is theirs
            click.echo(
                f"sent = accepted by the relay {settings.smtp.host}:{settings.smtp.port}, not "
                "delivered: later refusals come back by mail (newsletter bounces fetch)"
            )
        if in_flight:
            click.echo(
                f"a send is running: {in_flight} message(s) claimed (in flight, or next in line)"
            )
        for d in ledger.in_state(State.DEFERRED):
            retry = local_time(d.next_attempt)
            click.echo(f"deferred   {d.email} (attempt {d.attempts}, next {retry}): {d.last_reply}")
        for d in ledger.in_state(State.FAILED):
            click.echo(f"failed     {d.email}: {d.last_reply}")
        for d in ledger.in_state(State.UNCERTAIN):
            click.echo(f"uncertain  {d.email}: {d.last_reply}")
        if not in_flight and (next_step := _next_step(info.state, ledger.counts(), issue_dir)):
            click.echo(next_step)
    finally:
        ledger.close()


def _say_workers(ledger: Ledger) -> None:
    """Each sending process's share and rate (one line per host and process, whatever its
    passes), from what the workers record as they join, renew and finish."""
    rows = ledger.workers()
    if not rows:
        return
    holding = ledger.holding()
    shares: dict[tuple[str, int], dict] = {}
    for r in rows:
        share = shares.setdefault(
            (r["host"], r["pid"]),
            {"sent": 0, "failed": 0, "deferred": 0, "uncertain": 0, "holding": 0,
             "start": r["started_at"], "end": 0.0, "finished": True, "stopped": ""},
        )  # fmt: skip
        for key in ("sent", "failed", "deferred", "uncertain"):
            share[key] += r[key]
        share["holding"] += holding.get(r["worker"], 0)
        share["start"] = min(share["start"], r["started_at"])
        share["end"] = max(share["end"], r["finished_at"] or r["seen_at"])
        share["finished"] &= r["finished_at"] is not None
        share["stopped"] = r["stopped"]  # (rows come by start: the last pass says)
    sending = {(r["host"], r["pid"]) for r in ledger.live_workers(2 * DEFAULT_LEASE)}
    total = sum(s["sent"] for s in shares.values()) or 1
    click.echo(f"workers ({len(shares)}):")
    for (host, pid), s in sorted(shares.items(), key=lambda kv: kv[1]["start"]):
        rate = s["sent"] / max(s["end"] - s["start"], 1e-3)
        if s["finished"]:
            state = _ENDED.get(s["stopped"], "finished")
        elif (host, pid) in sending:
            state = f"sending, holding {s['holding']:,}"
        else:
            state = "stopped without finishing (killed, or cut off)"
            if s["holding"]:
                state += f": the {s['holding']:,} it held turn uncertain"
        click.echo(
            f"  {host} process {pid}: {s['sent']:,} sent ({100 * s['sent'] / total:.0f}%), "
            f"{s['failed']:,} failed, {s['deferred']:,} deferred, {s['uncertain']:,} uncertain, "
            f"{rate:,.0f}/s; {state}"
        )


def _next_step(state: SendState, counts: dict, issue_dir: Path) -> str | None:
    """What the state word means for the editor, and what to run, when a send is unfinished
    and none is running: `held` and `active` alone say neither."""
    pending = sum(n for (_, st), n in counts.items() if st is State.PENDING)
    deferred = sum(n for (_, st), n in counts.items() if st is State.DEFERRED)
    issue = issue_dir.as_posix()
    resume = f"run 'newsletter send {issue}' to resume"
    if state is SendState.HELD:
        # (Ctrl-C, or a pause after failures in a row: each worker's line above says which)
        why = "stopped by Ctrl-C or paused (see the workers above)"
        return f"held: {why}, {pending + deferred:,} left; {resume}"
    if state is SendState.ACTIVE and pending:
        return f"unfinished: {pending:,} not sent yet (paused, or the send died); {resume}"
    if state is SendState.ACTIVE and deferred:
        return (
            f"waiting to retry {deferred:,} deferred message(s): 'newsletter due' (from its "
            f"timer) or 'newsletter send {issue}' retries them"
        )
    return None


def _relabel(db_path: Path, ledger: Ledger) -> int:
    """Rows in `sending`: in flight if a send runs (returned), else uncertain (relabelled)."""
    if not ledger.in_state(State.SENDING, limit=1):
        return 0
    try:
        with send_lock(db_path):
            recovered = ledger.recover()
    except SendBusy:
        return len(ledger.in_state(State.SENDING))
    if not recovered:
        return 0  # held by workers still in time (another host's): nothing to say yet
    click.echo(
        f"{recovered} message(s) were claimed by the last send when it stopped (in flight, or "
        "next in line): now uncertain "
        "(they may have arrived; resend them with send --resend-uncertain)"
    )
    return 0


def _overview(settings) -> None:
    """One line a send, oldest first, then the schedules waiting: the list's history."""
    every = sends(settings.db_path)
    with Book(settings.db_path) as book:
        waiting = [s for s in book.all() if s.state is ScheduleState.SCHEDULED]
    if not every and not waiting:
        click.echo("nothing sent from this list yet; send an issue with: newsletter send ISSUE")
        return
    if every:
        counted = totals(settings.db_path)
        # `sending`: claimed, in flight now or held by a send that stopped (killed, cut off):
        # status ISSUE tells which, and turns the latter uncertain
        columns = (State.SENT, State.PENDING, State.SENDING, State.DEFERRED, State.FAILED,
                   State.UNCERTAIN)  # fmt: skip
        rows = [("issue", "state", "started (UTC)", *(c.value for c in columns))]
        for issue_id, info in every:
            n = counted.get(issue_id, {})
            cells = [n.get(c, 0) for c in columns]
            rows.append((issue_id, str(info.state), info.started_at[:16].replace("T", " "),
                         *(f"{v:,}" for v in cells)))  # fmt: skip
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        for row in rows:
            left = "  ".join(f"{v:<{w}}" for v, w in zip(row[:3], widths[:3], strict=True))
            right = "  ".join(f"{v:>{w}}" for v, w in zip(row[3:], widths[3:], strict=True))
            click.echo(f"{left}  {right}")
    for s in waiting:
        click.echo(f"scheduled: issue {s.issue_id} for {s.when()} (schedule {s.id})")
    click.echo("details of one: newsletter status ISSUE")
