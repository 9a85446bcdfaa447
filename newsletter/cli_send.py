"""`newsletter send`, `status`, `due` and `schedule`: ask, print, pick the exit status.

The send itself is `campaign`'s; this module only talks to the person at the terminal.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import sys
import time
from pathlib import Path

import click

from . import campaign, joining
from .checks import Finding, Level
from .cli_context import AppContext, as_issue_id, issue_dir_argument, need_db, pass_app
from .config import MAX_CONCURRENCY, parse_duration
from .content import not_an_issue
from .delivery import Progress, SendOptions, outgoing
from .errors import DeliveryError, NewsletterError
from .exits import EXIT_TABLE, Exit
from .ledger import Ledger, SendBusy, SendState, State, send_lock
from .normalise import check_email
from .schedule import DEFAULT_GRACE, Book, format_when, parse_when
from .subscribers import edition_for, open_store
from .transport import SendFailure
from .views import EDITIONS

DEFAULT_LEASE = SendOptions().lease
COLUMNS = (State.SENT, State.PENDING, State.DEFERRED, State.FAILED, State.UNCERTAIN, State.SKIPPED)


def _table(counts: dict[tuple[str, State], int]) -> str:
    lines = ["edition    " + "".join(f"{s.value:>11}" for s in COLUMNS)]
    for edition in EDITIONS:
        row = [
            counts.get((edition, s), 0)
            + (counts.get((edition, State.SENDING), 0) if s is State.PENDING else 0)
            for s in COLUMNS
        ]
        lines.append(f"{edition:<11}" + "".join(f"{n:>11,}" for n in row))
    return "\n".join(lines)


def _when(at: float) -> str:
    local = dt.datetime.fromtimestamp(at).astimezone()
    minutes = max(0, round((at - time.time()) / 60))
    return f"{local:%Y-%m-%d %H:%M %Z} (in {minutes} min)"


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
        click.echo("\ninterrupted: nothing sent", err=True)
        raise SystemExit(Exit.INTERRUPTED) from None
    click.echo("nothing sent", err=True)
    raise SystemExit(Exit.INCOMPLETE)


def _send_tests(prepared: campaign.Prepared, addresses: tuple[str, ...]) -> None:
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


def _dry_run(prepared: campaign.Prepared, app: AppContext, include_lapsed: bool) -> None:
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
        line = (
            f"\r[{bar}] {done:,}/{self.total:,} sent {p.sent:,} deferred {p.deferred:,}"
            f" failed {p.failed:,} {rate:,.0f}/s left {left:,.0f} s {p.note}"
        )
        sys.stderr.write(line[:160].ljust(100) + ("\n" if final else ""))
        sys.stderr.flush()


def _issue_id(issue_dir: Path) -> str:
    if not (issue_dir / "issue.toml").is_file():
        raise not_an_issue(issue_dir)
    return issue_dir.resolve().name


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
    help="Parallel connections [default: as the send started, NEWSLETTER_CONCURRENCY, or 4].",
)
@click.option(
    "--workers",
    type=click.IntRange(0, 64),
    help="Worker processes, each with --concurrency connections; 0: one per core when the "
    "send is large enough to gain from it [default: as the send started, or 0].",
)
@click.option(
    "--lease",
    type=click.FloatRange(1),
    hidden=True,  # for tests: how long a claim holds unrenewed (default 60 s)
)
@click.option(
    "--rate",
    type=click.FloatRange(0),
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
    settings = app.settings
    for warning in settings.smtp.warnings:  # once per run, not once per connection
        click.echo(f"warning: {warning}", err=True)
    given = {
        "concurrency": concurrency,
        "workers": workers,
        "rate": rate,
        "hourly_cap": hourly_cap,
        "include_lapsed": include_lapsed or None,
    }
    issue_id = _issue_id(issue_dir)
    if join:
        if test or dry_run or at_text or rebuild or resend_uncertain or include_lapsed:
            raise click.UsageError("--join takes the send as it was started: only --wait, "
                                   "--concurrency, --rate and --hourly-cap go with it")  # fmt: skip
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
                    joining.refuse_second_start(ledger, issue_dir, lease or DEFAULT_LEASE)
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
            if lease:
                options = dataclasses.replace(options, lease=lease)
            ledger.set_options(keep)
            if lease is not None:
                options = dataclasses.replace(options, lease=lease)
            rate = f"rate {options.rate:g}/s" if options.rate else "no rate limit"
            cap = f"at most {options.hourly_cap:,} an hour" if options.hourly_cap else "no cap"
            processes = (
                f"{options.workers} worker process(es)" if options.workers else "workers: auto"
            )
            click.echo(f"{processes}, concurrency {options.concurrency}, {rate}, {cap}")
            _run(prepared, ledger, options, wait)
        finally:
            ledger.close()


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
            prepared = joining.prepare_join(settings, ledger, issue_dir)
            info = ledger.info()
            assert info is not None
            options, _ = campaign.options_for(settings, info.options, given)
            if lease:
                options = dataclasses.replace(options, lease=lease)
            prepared.transport.connect().close()  # a wrong host or password stops us here
            click.echo(
                f"joining the send of issue {issue_id} via {prepared.transport.description}: "
                f"{ledger.count_due():,} message(s) due (as frozen when it started)"
            )
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


def _begin(prepared: campaign.Prepared, store, ledger: Ledger, given: dict, yes: bool) -> None:
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
) -> campaign.Prepared | None:
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
            click.echo(_table(report.counts))
            _say_deferred(report)
            raise SystemExit(Exit.DEFERRED)
        click.echo(f"nothing left to send for issue {issue_id}.")
        click.echo(_table(report.counts))
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
        prepared = campaign.thaw(
            settings, issue_id, Path(info.issue_dir if info else issue_dir), frozen
        )
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
    prepared: campaign.Prepared,
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
        + f"; it may start up to {grace / 3600:g} h late; 'newsletter due' must run then "
        "(deploy/ has a timer)"
    )


def _run(prepared: campaign.Prepared, ledger: Ledger, options, wait: bool) -> None:
    report = campaign.report(ledger)
    bar = _Bar(report.total(State.PENDING, State.DEFERRED))

    def waiting(at: float, count: int) -> None:
        click.echo(f"{count:,} deferred message(s); next retry {_when(at)}; waiting (--wait)")

    passes = campaign.run(prepared, ledger, options, on_progress=bar, wait=wait, on_wait=waiting)
    bar(passes.progress, final=True)
    report = campaign.report(ledger)
    click.echo(_table(report.counts))
    p = passes.progress
    click.echo(
        f"{p.sent:,} sent in {passes.elapsed:.1f} s ({p.sent / max(passes.elapsed, 1e-6):,.0f}/s)"
        f", {p.deferred:,} deferred, {p.failed:,} failed, {p.skipped:,} skipped"
    )
    _say_refusals(passes)
    _rebuild_archive(prepared.settings, prepared.issue_dir)
    if passes.interrupted:
        click.echo(
            "stopped; the messages in flight were finished. Run send again to resume", err=True
        )
        raise SystemExit(Exit.INTERRUPTED)
    if passes.paused:
        click.echo(passes.paused, err=True)
        raise SystemExit(Exit.PAUSED)
    for d in ledger.in_state(State.FAILED, limit=20):
        click.echo(f"failed: {d.email}: {d.last_reply}", err=True)
    for d in ledger.in_state(State.UNCERTAIN, limit=20):
        click.echo(f"uncertain: {d.email}: {d.last_reply}", err=True)
    if report.total(State.DEFERRED):
        _say_deferred(report)
        raise SystemExit(Exit.DEFERRED)
    if report.total(State.FAILED, State.UNCERTAIN):
        raise SystemExit(Exit.INCOMPLETE)


def _say_refusals(passes: campaign.Passes) -> None:
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


def _say_deferred(report: campaign.Report) -> None:
    assert report.next_retry is not None
    click.echo(
        f"{report.total(State.DEFERRED):,} message(s) deferred by the server (temporary "
        f"refusals); next retry {_when(report.next_retry)}: run send again then, or let "
        "'newsletter due' retry them",
        err=True,
    )


@click.command(epilog=EXIT_TABLE)
@issue_dir_argument
@pass_app
def status(app: AppContext, issue_dir: Path) -> None:
    """Where the send of an issue stands: sent, pending, deferred, failed, uncertain."""
    issue_id = _issue_id(issue_dir)  # a wrong path first: it explains more than a missing db
    settings = app.settings
    need_db(settings)
    with Book(settings.db_path) as book:
        waiting = book.waiting(issue_id)
    ledger = Ledger(settings.db_path, issue_id)
    try:
        if not ledger.started():
            if waiting is not None:
                click.echo(f"issue {issue_id} is scheduled for {waiting.when()}.")
            else:
                click.echo(f"issue {issue_id} has not been sent.")
            return
        in_flight = _relabel(settings.db_path, ledger)
        info = ledger.info()
        assert info is not None
        click.echo(f"issue {issue_id} ({info.state}, started {info.started_at}):")
        click.echo(_table(ledger.counts()))
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
            click.echo(
                f"deferred   {d.email} (attempt {d.attempts}, next {_when(d.next_attempt)}): "
                f"{d.last_reply}"
            )
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
    now = ledger.clock()
    holding = ledger.holding()
    shares: dict[tuple[str, int], dict] = {}
    for r in rows:
        share = shares.setdefault(
            (r["host"], r["pid"]),
            {"sent": 0, "failed": 0, "deferred": 0, "uncertain": 0, "holding": 0,
             "start": r["started_at"], "end": 0.0, "live": False},
        )  # fmt: skip
        for key in ("sent", "failed", "deferred", "uncertain"):
            share[key] += r[key]
        share["holding"] += holding.get(r["worker"], 0)
        share["start"] = min(share["start"], r["started_at"])
        share["end"] = max(share["end"], r["finished_at"] or r["seen_at"])
        share["live"] |= r["finished_at"] is None and now - r["seen_at"] < 2 * DEFAULT_LEASE
    total = sum(s["sent"] for s in shares.values()) or 1
    click.echo(f"workers ({len(shares)}):")
    for (host, pid), s in sorted(shares.items(), key=lambda kv: kv[1]["start"]):
        rate = s["sent"] / max(s["end"] - s["start"], 1e-3)
        state = f"sending, holding {s['holding']:,}" if s["live"] else "stopped"
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
        return f"held: stopped by Ctrl-C, {pending + deferred:,} left; {resume}"
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
    click.echo(
        f"{recovered} message(s) were claimed by the last send when it stopped (in flight, or "
        "next in line): now uncertain "
        "(they may have arrived; resend them with send --resend-uncertain)"
    )
    return 0


@click.command(epilog=EXIT_TABLE)
@pass_app
def due(app: AppContext) -> None:
    """Start the scheduled sends whose time has come and retry the deferred messages due.

    Safe to run from a timer every minute: quiet when there is nothing to do, and a second
    one running at the same time does nothing.
    """
    settings = app.settings
    # a timer started in the wrong folder would otherwise make an empty list and send nothing
    need_db(settings, "from a timer: check its WorkingDirectory")
    try:
        lock = send_lock(settings.db_path)
        lock.__enter__()
    except SendBusy:
        click.echo("a send is running on this database; nothing to do until it ends")
        return
    try:
        with open_store(settings) as store:
            items = campaign.run_due(
                settings,
                store,
                time.time(),
                on_start=lambda issue, what: click.echo(f"issue {issue}: {what}"),
            )
    finally:
        lock.__exit__(None, None, None)
    worst = Exit.OK
    for item in items:
        if item.passes is None:
            click.echo(f"issue {item.issue_id}: {item.detail}", err=True)
            worst = max(worst, Exit.INCOMPLETE)
            continue
        if item.action == "started":
            _rebuild_archive(settings, item.issue_dir)
        p = item.passes.progress
        line = f"issue {item.issue_id}: {p.sent:,} sent, {p.deferred:,} deferred"
        line += f", {p.failed:,} failed, {p.uncertain:,} uncertain"
        if item.report and item.report.next_retry is not None:
            line += f"; {item.report.total(State.DEFERRED):,} to retry, next "
            line += _when(item.report.next_retry)
        click.echo(line)
        _say_refusals(item.passes)
        if item.passes.paused:
            click.echo(f"issue {item.issue_id}: {item.passes.paused}", err=True)
    if worst:
        raise SystemExit(worst)


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
    # A header, so that the first column reads as the number `schedule cancel` takes.
    rows = [("#", "issue", "time", "state")]
    rows += [
        (
            str(s.id),
            s.issue_id,
            format_when(s.at, s.zone),
            s.state + (f"  {s.note}" if s.note else ""),
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


# --- The public archive (work item #11) ----------------------------------------------------


def _rebuild_archive(settings, issue_dir: Path) -> None:
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
