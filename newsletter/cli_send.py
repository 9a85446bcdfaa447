"""`newsletter send`: check, ask, send or schedule, print, pick the exit status.

The send itself is `campaign`'s; this module only talks to the person at the terminal.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import random
import sys
import time
from pathlib import Path

import click

from . import campaign, joining
from .checks import Finding, Level
from .cli_context import AppContext, issue_dir_argument, need_db, pass_app
from .cli_report import (
    counts_table,
    issue_id_of,
    local_time,
    rebuild_archive,
    say_deferred,
    say_refusals,
)
from .config import MAX_CONCURRENCY, format_duration, parse_duration, rate_problem
from .delivery import Progress, SendOptions, outgoing, paced
from .editions import EDITIONS
from .errors import DeliveryError, NewsletterError, shown_dir
from .exits import EXIT_TABLE, Exit
from .ledger import Ledger, SendState, State, send_lock, unreachable
from .normalise import check_email
from .prepared import KEY_CHECK, Prepared, thaw
from .schedule import DEFAULT_GRACE, MAX_GRACE, Book, parse_when
from .stopping import Terminated, carry_on_after_hangup, shielded, stop_gently_on_sigterm
from .subscribers import edition_for, open_store
from .tokens import key_check
from .transport import SendFailure

DEFAULT_LEASE = SendOptions().lease


def _show_findings(findings: tuple[Finding, ...] | list[Finding], test: bool = False) -> None:
    """As `check` shows them; what would stop a real send is an error here."""
    for finding in findings:
        if finding.blocks_send and not test:
            finding = dataclasses.replace(finding, level=Level.ERROR)
        click.echo(str(finding), err=finding.level is Level.ERROR)


def _refuse(blocking: list[Finding], issue_dir: Path) -> None:
    first = blocking[0]
    click.echo(
        f"error: refusing to send: {len(blocking)} problem(s), first: {first.edition}: "
        f"{first.message}; fix them (newsletter check {issue_dir})",
        err=True,
    )
    raise SystemExit(Exit.INCOMPLETE)


def _ask(question: str) -> None:
    """Go on only on a yes. A no, nobody to answer (a timer or a pipe without --yes) and
    Ctrl-C each stop here, before anything is fixed or sent, and say so in words."""
    try:
        if click.confirm(question):
            return
    except click.Abort as exc:  # click turns both into Abort; the cause stays in __context__
        if isinstance(exc.__context__, EOFError):
            raise DeliveryError(
                "nothing sent: no answer to the question (standard input is not a terminal); "
                "add --yes to send without asking"
            ) from None
        if isinstance(exc.__context__, Terminated):  # SIGTERM (a service stopped)
            click.echo("\nterminated: nothing sent", err=True)
            raise SystemExit(Exit.TERMINATED) from None
        click.echo("\ninterrupted: nothing sent", err=True)
        raise SystemExit(Exit.INTERRUPTED) from None
    click.echo("nothing sent", err=True)
    raise SystemExit(Exit.INCOMPLETE)


def _send_tests(prepared: Prepared, addresses: tuple[str, ...]) -> None:
    if prepared.blocking:
        click.echo(
            f"sending a test although a real send would refuse it ({len(prepared.blocking)} "
            "problem(s) above)",
            err=True,
        )
    conn = prepared.transport.connect()
    failed = 0
    try:
        for address in addresses:
            for name, compiled in prepared.editions.items():
                message = outgoing(
                    compiled,
                    prepared.recipient(None, address, ""),
                    prepared.message_id(),
                    f"test-{name}-{address.replace('@', '_at_')}.eml",
                    prepared.signer,
                )
                try:
                    reply = conn.send(message)
                    click.echo(f"[TEST] {name:<9} -> {address}: {reply}")
                except SendFailure as exc:
                    failed += 1
                    click.echo(f"[TEST] {name:<9} -> {address}: failed: {exc.reply}", err=True)
                    if exc.connection_lost:
                        conn = prepared.transport.connect()
    finally:
        conn.close()
    if failed:
        raise SystemExit(Exit.INCOMPLETE)


def _dry_run(prepared: Prepared, app: AppContext, include_lapsed: bool) -> None:
    with open_store(app.settings) as store:
        _warn_lapsed(store, include_lapsed)
        counts = {name: 0 for name in EDITIONS}
        sizes = {name: 0 for name in EDITIONS}
        started = time.perf_counter()
        for s in store.mailable(include_lapsed=include_lapsed):
            edition = edition_for(s)
            data = prepared.editions[edition].render(
                prepared.recipient(s.id, s.email, s.name), prepared.message_id()
            )
            counts[edition] += 1
            sizes[edition] += len(data)
        elapsed = time.perf_counter() - started
        left_out = campaign.plan(store, include_lapsed).left_out
    click.echo(f"dry run of issue {prepared.issue_id} via {prepared.transport.description}:")
    for name in EDITIONS:
        mean = sizes[name] // counts[name] if counts[name] else 0
        click.echo(f"  {name:<10} {counts[name]:>8,} subscriber(s), {mean:,} bytes a message")
    if left_out:
        click.echo("  left out: " + ", ".join(f"{n:,} {s}" for s, n in sorted(left_out.items())))
    total = sum(counts.values())
    click.echo(f"  built {total:,} messages in {elapsed:.2f} s; nothing sent, nothing recorded")
    if prepared.blocking:
        _refuse(prepared.blocking, prepared.issue_dir)


class _Bar:
    """sent/failed, rate and time left on one line of stderr, when it is a terminal."""

    def __init__(self, total: int):
        self.total = total
        self.started = time.monotonic()
        self.last = 0.0
        self.live = sys.stderr.isatty()

    def hold(self, line: str) -> None:
        """The hourly cap holds the send back: on a terminal the bar says so; elsewhere (a
        log) this line, or the send would sit silent, up to an hour."""
        if not self.live:
            with contextlib.suppress(OSError):  # (a log that cannot be written stops no send)
                click.echo(line)

    def __call__(self, p: Progress, final: bool = False) -> None:
        now = time.monotonic()
        if not self.live or (now - self.last < 0.2 and not final):
            return
        self.last = now
        done = p.sent + p.failed + p.uncertain + p.skipped + p.deferred
        rate = done / max(now - self.started, 1e-6)
        left = max(0, self.total - done) / rate if rate else 0
        width = 30
        filled = min(width, int(width * done / self.total)) if self.total else width
        bar = "#" * filled + "-" * (width - filled)
        held = p.held_until - time.time()
        note = f"hourly cap reached, next in {format_duration(max(1.0, held))}" if held > 0 else ""
        line = (
            f"\r[{bar}] {done:,}/{self.total:,} sent {p.sent:,} deferred {p.deferred:,}"
            f" failed {p.failed:,} {rate:,.0f}/s left {left:,.0f} s {note}"
        )
        try:
            sys.stderr.write(line[:160].ljust(100) + ("\n" if final else ""))
            sys.stderr.flush()
        except OSError:  # the terminal is gone (hung up): the send goes on without the bar
            self.live = False


def _finite(value: float | None, param: click.Parameter) -> float | None:
    if value is not None and not math.isfinite(value):  # nan passes FloatRange's bounds
        raise click.BadParameter("must be a finite number", param=param)
    return value


def _rate(value: float | None, param: click.Parameter) -> float | None:
    """As NEWSLETTER_RATE is checked."""
    if _finite(value, param) and rate_problem(value):  # type: ignore[arg-type]
        raise click.BadParameter(rate_problem(value), param=param)  # type: ignore[arg-type]
    return value


@click.command(epilog=EXIT_TABLE)
@issue_dir_argument
@click.argument("addresses", nargs=-1)
@click.option("--test", is_flag=True, help="Send every edition to ADDRESSES, marked [TEST].")
@click.option("--dry-run", is_flag=True, help="Build every message; send and record nothing.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.option(
    "--at",
    "at_text",
    metavar="TIME",
    help="Schedule the send: '2026-12-07 07:00' in NEWSLETTER_TIMEZONE, or ISO 8601 with an "
    "offset. 'newsletter due' starts it.",
)
@click.option(
    "--grace",
    metavar="DURATION",
    help="With --at: how late it may still start (e.g. the machine was off) [default: 2h].",
)
@click.option(
    "--rebuild",
    is_flag=True,
    help="Build the issue again from its files: with --at, when it starts; when resuming, now.",
)
@click.option(
    "--wait", is_flag=True, help="Stay until no message is pending or deferred (retries)."
)
@click.option("--strict", is_flag=True, help="Treat a brief missing in one language as an error.")
@click.option(
    "--concurrency",
    type=click.IntRange(1, MAX_CONCURRENCY),
    help="SMTP connections this host opens, shared by its worker processes [default: as the "
    "send started, NEWSLETTER_CONCURRENCY, or 4].",
)
@click.option(
    "--workers",
    type=click.IntRange(0, 64),
    help="Worker processes sharing the --concurrency connections (one each at least); 0: one "
    "per core when the send is large enough to gain from it [default: as the send started, "
    "or 0].",
)
@click.option(
    "--batch",
    type=click.IntRange(1, 10_000),
    help="Rows each worker claims at a time (with a rate or a cap: one, as each may go): "
    "fewer commits, but a worker that dies leaves up to this many readers uncertain "
    "[default: as the send started, or 4 x the worker's connections + 16].",
)
@click.option(
    "--lease",
    type=click.FloatRange(1, 3600),
    callback=lambda ctx, param, value: _finite(value, param),
    hidden=True,  # for tests: how long a claim holds unrenewed (default 60 s)
)
@click.option(
    "--rate",
    type=click.FloatRange(0),
    callback=lambda ctx, param, value: _rate(value, param),
    help="Messages per second, 0 for no limit [default: as the send started, NEWSLETTER_RATE].",
)
@click.option(
    "--hourly-cap",
    type=click.IntRange(0),
    help="Messages per hour, 0 for no cap [default: as the send started, NEWSLETTER_HOURLY_CAP].",
)
@click.option(
    "--resend-uncertain",
    is_flag=True,
    help="Send again the messages whose fate is unknown (in flight when a send died).",
)
@click.option(
    "--include-lapsed",
    is_flag=True,
    help="Also send to people whose implied consent is over two years old (CASL).",
)
@click.option(
    "--join",
    is_flag=True,
    help="Join the send of this issue that another host started (PostgreSQL NEWSLETTER_DB).",
)
@pass_app
def send(
    app: AppContext,
    issue_dir: Path,
    addresses: tuple[str, ...],
    test: bool,
    dry_run: bool,
    yes: bool,
    at_text: str | None,
    grace: str | None,
    rebuild: bool,
    wait: bool,
    strict: bool,
    concurrency: int | None,
    workers: int | None,
    batch: int | None,
    lease: float | None,
    rate: float | None,
    hourly_cap: int | None,
    resend_uncertain: bool,
    include_lapsed: bool,
    join: bool = False,
) -> None:
    """Send an issue: each active subscriber gets the edition of their language.

    People whose only consent is implied and over two years old are skipped, with a warning,
    unless --include-lapsed."""
    if addresses and not test:
        raise click.UsageError("addresses are for --test: newsletter send ISSUE --test ADDR...")
    if test and not addresses:
        raise click.UsageError("--test needs at least one address")
    if at_text is not None and (test or dry_run or wait or resend_uncertain):
        raise click.UsageError("--at schedules a real send: leave out --test, --dry-run, --wait")
    if grace is not None and at_text is None:
        raise click.UsageError("--grace goes with --at")
    try:  # as the store keeps them: a non-ASCII domain in its xn-- form
        addresses = tuple(check_email(address) for address in addresses)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="ADDRESSES") from None
    grace_seconds = DEFAULT_GRACE
    if grace is not None:
        try:
            grace_seconds = parse_duration(grace)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--grace") from None
        if grace_seconds > MAX_GRACE:
            raise click.BadParameter(
                f"at most {format_duration(MAX_GRACE)}: an issue later than that is better "
                "sent anew",
                param_hint="--grace",
            )
    stop_gently_on_sigterm()
    carry_on_after_hangup()
    settings = app.settings
    if at_text is not None:  # a time refused before anything is made (the signing secret)
        parse_when(at_text, settings.timezone, time.time())
    for warning in settings.warnings:  # once per run, not once per connection
        click.echo(f"warning: {warning}", err=True)
    given = {
        "concurrency": concurrency,
        "workers": workers,
        "batch": batch,
        "rate": rate,
        "hourly_cap": hourly_cap,
        "include_lapsed": include_lapsed or None,
    }
    issue_id = issue_id_of(issue_dir)
    if join:
        if test or dry_run or at_text or rebuild or resend_uncertain or include_lapsed:
            raise click.UsageError(
                "--join takes the send as it was started: only --wait, --workers, --concurrency, "
                "--batch, --rate and --hourly-cap go with it"
            )
        return _join(app, issue_dir, issue_id, given, wait, lease)
    if not test:  # a real send, a dry run or a schedule reads the list
        need_db(settings)
    if test or dry_run:
        prepared = campaign.prepare(settings, issue_dir, strict=strict, test=test)
        _show_findings(prepared.findings, test)
        return _send_tests(prepared, addresses) if test else _dry_run(prepared, app, include_lapsed)
    with send_lock(settings.db_path, joinable=True), open_store(settings) as store:
        ledger = Ledger(settings.db_path, issue_id)
        try:
            with Book(settings.db_path) as book:
                waiting = book.waiting(issue_id)
            if waiting is not None:
                raise DeliveryError(
                    f"issue {issue_id} is scheduled for {waiting.when()}; cancel that first "
                    f"(newsletter schedule cancel {waiting.id}) to send it otherwise"
                )
            if ledger.started():
                if at_text is not None:
                    raise DeliveryError(f"issue {issue_id} has already been sent; see status")
                if ledger.pg:  # other hosts may be sending it now: they are joined, not resumed
                    joining.refuse_second_start(
                        ledger, Path(shown_dir(issue_dir)), lease or DEFAULT_LEASE
                    )
                prepared = _resume(app, ledger, issue_dir, rebuild, strict, resend_uncertain, yes)
            else:
                prepared = campaign.prepare(settings, issue_dir, strict=strict)
                _show_findings(prepared.findings)
                if prepared.blocking:
                    _refuse(prepared.blocking, issue_dir)
                if at_text is not None:
                    return _schedule(app, prepared, store, at_text, grace_seconds, rebuild, given)
                _begin(prepared, store, ledger, given, yes)
            if prepared is None:
                return
            info = ledger.info()
            options, keep = campaign.options_for(settings, info.options if info else {}, given)
            keep.setdefault(KEY_CHECK, key_check(prepared.secret))  # (a send begun before)
            ledger.set_options(keep)
            if lease is not None:
                options = dataclasses.replace(options, lease=lease)
            _say_options(options, ledger)
            _run(prepared, ledger, options, wait)
        finally:
            ledger.close()


def _say_options(options: SendOptions, ledger: Ledger) -> None:
    """What this run goes with, on one line; with --workers 0 (auto), how many that makes.
    (A cap reached already is said as the pass starts, by campaign.run's on_hold.)"""
    due = ledger.count_due()
    rate = f"rate {options.rate:g}/s" if options.rate else "no rate limit"
    cap = f"at most {options.hourly_cap:,} an hour" if options.hourly_cap else "no cap"
    from .workers import AUTO_MIN_MESSAGES, how_many, share  # (only for a send)

    n = how_many(options.workers, due, options.concurrency, options.hourly_cap)
    processes = f"{n} worker process(es)"
    if not options.workers:
        processes += f" (auto: one per core from {AUTO_MIN_MESSAGES:,} messages due"
        processes += ", one a connection at most)" if n > 1 else ")"
    elif n < options.workers:
        processes += f" (not {options.workers}: one connection each at least)"
    connections = f"{options.concurrency} connection(s)"
    if n > 1:
        each = sorted({share(options, n, slot).concurrency for slot in range(n)})
        connections += f" ({' or '.join(map(str, each))} a worker)"
    first = share(options, n, 0) if n > 1 else options
    claims = "a row claimed as each may go" if paced(first) else f"claims of {first.k} rows"
    click.echo(f"{processes}, {connections}, {rate}, {cap}, {claims}")


def _say_newcomers(settings, ledger: Ledger) -> None:
    """Who is on the list but not on this issue's: added after its send started, when the
    list was fixed. Running `send` again does not reach them, which surprises."""
    on_issue = {d.subscriber_id for d in ledger.in_state(*State)}
    with open_store(settings) as store:
        newcomers = [s.email for s in store.mailable() if s.id not in on_issue]
    if newcomers:
        info = ledger.info()
        click.echo(
            f"{len(newcomers):,} subscriber(s) joined after this send started "
            f"({info.started_at if info else '?'}), when its list was fixed: "
            + ", ".join(newcomers[:3])
            + (" ..." if len(newcomers) > 3 else "")
            + "; they get the next issue"
        )


def _join(
    app: AppContext,
    issue_dir: Path,
    issue_id: str,
    given: dict,
    wait: bool,
    lease: float | None,
) -> None:
    """`send --join`: one more host on a send that another host started (PostgreSQL)."""
    settings = app.settings
    joining.require_postgres(settings)
    with send_lock(settings.db_path, joinable=True):
        ledger = Ledger(settings.db_path, issue_id)
        try:
            info = ledger.info()
            if info is not None and info.state is SendState.DONE:
                click.echo(
                    f"issue {issue_id} has been sent in full: nothing to join "
                    f"(newsletter status {issue_dir.as_posix()} shows it)"
                )
                return
            prepared = joining.prepare_join(settings, ledger, issue_dir)
            info = ledger.info()
            assert info is not None
            options, _ = campaign.options_for(settings, info.options, given)
            # its workers begin at a random point, not where the first host's began
            options = dataclasses.replace(options, start=random.random())
            if lease:
                options = dataclasses.replace(options, lease=lease)
            prepared.transport.connect().close()  # a wrong host or password stops us here
            click.echo(
                f"joining the send of issue {issue_id} via {prepared.transport.description}: "
                f"{ledger.count_due():,} message(s) due (as frozen when it started)"
            )
            _say_options(options, ledger)
            _run(prepared, ledger, options, wait)
        finally:
            ledger.close()


def _warn_lapsed(store, include_lapsed: bool) -> None:
    """Implied consent (a membership, a donation) lapses after two years (CASL)."""
    lapsed = sum(store.lapsed_counts().values())
    if not lapsed:
        return
    if include_lapsed:
        click.echo(
            f"warning: including {lapsed:,} subscriber(s) whose implied consent has lapsed "
            "(--include-lapsed)",
            err=True,
        )
        return
    click.echo(
        f"warning: skipping {lapsed:,} subscriber(s) whose implied consent is over two years "
        "old (CASL); see them with 'newsletter subscribers list --lapsed', ask them to "
        "confirm, or send with --include-lapsed",
        err=True,
    )


def _begin(prepared: Prepared, store, ledger: Ledger, given: dict, yes: bool) -> None:
    _warn_lapsed(store, bool(given.get("include_lapsed")))
    the_plan = campaign.plan(store, bool(given.get("include_lapsed")))
    if not the_plan.total:
        raise DeliveryError(
            "no active subscribers to send to; add some with "
            "'newsletter subscribers import FILE.csv'"
        )
    summary = ", ".join(f"{name} {n:,}" for name, n in the_plan.editions.items())
    click.echo(
        f"issue {prepared.issue_id} via {prepared.transport.description}: {summary} "
        f"({the_plan.total:,} in all)"
    )
    if the_plan.left_out:
        click.echo(
            "left out: " + ", ".join(f"{n:,} {s}" for s, n in sorted(the_plan.left_out.items()))
        )
    if not yes:
        _ask("Send it now?")
    prepared.transport.connect().close()  # a wrong host or password stops us here
    fixed = campaign.start(store, ledger, prepared, given)
    click.echo(f"recipient list fixed: {fixed:,} subscribers")


def _resume(
    app: AppContext,
    ledger: Ledger,
    issue_dir: Path,
    rebuild: bool,
    strict: bool,
    resend_uncertain: bool,
    yes: bool,
) -> Prepared | None:
    settings = app.settings
    issue_id = ledger.issue_id
    recovered = ledger.recover()
    uncertain = ledger.in_state(State.UNCERTAIN)
    if recovered:
        click.echo(
            f"{recovered} message(s) were claimed by the last send when it stopped (in flight, "
            "or next in line)."
        )
    resend = len(uncertain) if resend_uncertain else 0
    if uncertain and not resend:
        click.echo(
            f"{len(uncertain)} uncertain message(s) (may have arrived; not resent "
            "without --resend-uncertain): "
            + ", ".join(d.email for d in uncertain[:5])
            + (" ..." if len(uncertain) > 5 else "")
        )
    report = campaign.report(ledger)
    due = ledger.count_due()
    later = report.total(State.PENDING, State.DEFERRED) - due
    if not due + resend:
        if later:
            click.echo(f"nothing due now for issue {issue_id}.")
            click.echo(counts_table(report.counts))
            say_deferred(report)
            raise SystemExit(Exit.DEFERRED)
        click.echo(f"nothing left to send for issue {issue_id}.")
        click.echo(counts_table(report.counts))
        if not report.total(State.SENDING):
            # a send whose last worker ended without marking it (its command was killed,
            # or cut from the database at the end): it is done
            ledger.set_state(SendState.DONE)
        _say_newcomers(settings, ledger)
        if report.total(State.FAILED, State.UNCERTAIN):
            raise SystemExit(Exit.INCOMPLETE)
        return None
    frozen = ledger.frozen()
    if rebuild or not frozen:  # not frozen: started by a version that did not freeze them
        rebuild = True
        prepared = campaign.prepare(settings, issue_dir, strict=strict)
        _show_findings(prepared.findings)
        if prepared.blocking:
            _refuse(prepared.blocking, issue_dir)
    else:
        info = ledger.info()
        prepared = thaw(settings, issue_id, Path(info.issue_dir if info else issue_dir), frozen)
    info = ledger.info()
    prepared.refuse_another_key(info.options if info else {})
    again = f", {resend:,} of them uncertain (sent again)" if resend else ""
    click.echo(
        f"resuming issue {issue_id} via {prepared.transport.description}: "
        f"{due + resend:,} message(s) left{again}"
        + (" (rebuilt from the files now)" if rebuild else " (as frozen when it started)")
    )
    if not yes:
        _ask("Resume sending?")
    prepared.transport.connect().close()
    if rebuild:  # only now: a "no" above, or a server that is down, changes nothing
        ledger.refreeze(prepared.frozen())
    if resend:
        ledger.resend_uncertain()
    return prepared


def _schedule(
    app: AppContext,
    prepared: Prepared,
    store,
    at_text: str,
    grace: float,
    rebuild: bool,
    given: dict,
) -> None:
    settings = app.settings
    at = parse_when(at_text, settings.timezone, time.time())
    with Book(settings.db_path) as book:
        schedule = book.add(
            prepared.issue_id,
            prepared.issue_dir,
            at,
            settings.timezone,
            grace,
            rebuild,
            {k: v for k, v in given.items() if v is not None},
            campaign.inputs_of(prepared),
            prepared.frozen(),
        )
    # said now: when it starts, from a timer, nobody reads the warning
    _warn_lapsed(store, bool(given.get("include_lapsed")))
    the_plan = campaign.plan(store, bool(given.get("include_lapsed")))
    summary = ", ".join(f"{name} {n:,}" for name, n in the_plan.editions.items())
    click.echo(
        f"issue {prepared.issue_id} scheduled for {schedule.when()} (schedule {schedule.id})"
    )
    click.echo(
        f"  today that is {summary} ({the_plan.total:,} in all); the list is read again when "
        "it starts"
    )
    click.echo(
        "  what goes is what was just built"
        + (" (built again when it starts: --rebuild)" if rebuild else "")
        + f"; it may start up to {format_duration(grace)} late; 'newsletter due' must run then "
        "(deploy/ has a timer)"
    )


def _say_counts(
    prepared: Prepared,
    report: campaign.Report,
    passes: campaign.Passes,
    skipped_before: int,
    others: int,
) -> None:
    click.echo(counts_table(report.counts))
    p = passes.progress
    # who left during the send: skipped by a claim, or by their unsubscribe itself (which
    # marks their row at once, so no claim sees it)
    skipped = report.total(State.SKIPPED) - skipped_before
    # the rate is of the time spent sending: not of the hours --wait slept until retries
    rate = f"{p.sent / max(passes.elapsed - passes.waited, 1e-6):,.0f}/s"
    if passes.waited >= 0.05:  # (not a wait for a retry that was due already)
        rate = f"{passes.waited:.1f} s of it waiting for retries; {rate} while sending"
    click.echo(
        f"{p.sent:,} sent in {passes.elapsed:.1f} s ({rate}), {p.deferred:,} temporary"
        f" refusal(s), {p.failed:,} failed, {skipped:,} skipped (left meanwhile)"
    )
    say_refusals(passes)
    if passes.orphans:
        click.echo(
            f"{passes.orphans:,} message(s) held by sending processes that are gone (killed?) "
            f"are now uncertain: newsletter status {shown_dir(prepared.issue_dir)} lists them"
        )
    if others and not (passes.interrupted or passes.paused):
        # this host is done; hosts that joined (--join) still hold some rows
        click.echo(
            f"{others:,} message(s) still in the hands of other sending processes (--join); "
            f"newsletter status {shown_dir(prepared.issue_dir)} shows when they are done"
        )


def _run(prepared: Prepared, ledger: Ledger, options, wait: bool) -> None:
    with shielded():  # SIGTERM during the send or the report after it: recorded, not raised
        _run_and_report(prepared, ledger, options, wait)


def _run_and_report(prepared: Prepared, ledger: Ledger, options, wait: bool) -> None:
    report = campaign.report(ledger)
    bar = _Bar(report.total(State.PENDING, State.DEFERRED))

    def waiting(at: float, count: int) -> None:
        click.echo(f"{count:,} deferred message(s); next retry {local_time(at)}; waiting (--wait)")

    skipped_before = report.total(State.SKIPPED)
    try:
        passes = campaign.run(
            prepared,
            ledger,
            options,
            on_progress=bar,
            wait=wait,
            on_wait=waiting,
            on_hold=bar.hold,
        )
    except NewsletterError as exc:
        if not ledger.pg or not unreachable(exc):
            raise
        # the database stayed away longer than the workers wait for it (their lease)
        raise DeliveryError(
            f"{exc}; nobody is mailed twice: when the server is back, run send again to "
            "resume (the messages in flight then are reported uncertain)"
        ) from None
    bar(passes.progress, final=True)
    others = sum(ledger.holding().values())
    if passes.interrupted:
        # said first: when a service stops, whatever reads our output may stop with us
        again = "Run send again to resume"
        if others:  # other hosts go on sending it: this one may only join them again
            again = "Other hosts go on; to help again: newsletter send "
            again += f"{shown_dir(prepared.issue_dir)} --join"
        elif passes.terminated:
            again = "Not held: newsletter due (the timer) or send resumes it"
        why = " (terminated)" if passes.terminated else ""
        click.echo(f"stopped{why}; the messages in flight were finished. {again}", err=True)
    if passes.stopped_waiting:
        click.echo("stopped waiting (Ctrl-C); nothing is lost: 'newsletter due' (the timer) or "
                   "the next 'send' retries the deferred messages", err=True)  # fmt: skip
    report = campaign.report(ledger)
    try:
        _say_counts(prepared, report, passes, skipped_before, others)
    except BrokenPipeError:
        if not passes.terminated:
            raise
        # (what read our output was stopped with us; `status` has the counts)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    rebuild_archive(prepared.settings, prepared.issue_dir)
    if passes.interrupted:
        raise SystemExit(Exit.TERMINATED if passes.terminated else Exit.INTERRUPTED)
    if passes.paused:
        click.echo(passes.paused, err=True)
        raise SystemExit(Exit.PAUSED)
    for d in ledger.in_state(State.FAILED, limit=20):
        click.echo(f"failed: {d.email}: {d.last_reply}", err=True)
    for d in ledger.in_state(State.UNCERTAIN, limit=20):
        click.echo(f"uncertain: {d.email}: {d.last_reply}", err=True)
    if report.total(State.DEFERRED):
        say_deferred(report)
        raise SystemExit(Exit.DEFERRED)
    if report.total(State.FAILED, State.UNCERTAIN):
        raise SystemExit(Exit.INCOMPLETE)
