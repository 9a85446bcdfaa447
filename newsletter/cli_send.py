"""`newsletter send` and `newsletter status`."""

from __future__ import annotations

import ipaddress
import sys
import time
from pathlib import Path

import click

from .cli_context import AppContext, pass_app
from .config import MAX_CONCURRENCY
from .delivery import Progress, SendOptions, SendRun, outgoing
from .errors import DeliveryError
from .ledger import Ledger, State, send_lock
from .normalise import check_email
from .sending import Prepared, fix_recipients, plan, prepare, test_message_id
from .subscribers import edition_for, open_store
from .transport import SendFailure
from .views import EDITIONS

EXIT_INCOMPLETE = 1  # some deliveries failed or are uncertain
EXIT_PAUSED = 3


def _table(counts: dict[tuple[str, State], int]) -> str:
    states = [State.SENT, State.PENDING, State.FAILED, State.UNCERTAIN, State.SKIPPED]
    lines = ["edition    " + "".join(f"{s.value:>11}" for s in states)]
    for edition in EDITIONS:
        row = [
            counts.get((edition, s), 0)
            + (counts.get((edition, State.SENDING), 0) if s is State.PENDING else 0)
            for s in states
        ]
        lines.append(f"{edition:<11}" + "".join(f"{n:>11,}" for n in row))
    return "\n".join(lines)


def _send_tests(prepared: Prepared, addresses: tuple[str, ...]) -> None:
    conn = prepared.transport.connect()
    failed = 0
    try:
        for address in addresses:
            for name, compiled in prepared.editions.items():
                recipient = prepared.recipient(None, address, "")
                message = outgoing(
                    compiled,
                    recipient,
                    test_message_id(prepared),
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
        raise SystemExit(EXIT_INCOMPLETE)


def _dry_run(prepared: Prepared, app: AppContext, include_lapsed: bool = False) -> None:
    with open_store(app.settings) as store:
        _warn_lapsed(store, include_lapsed)
        counts = {name: 0 for name in EDITIONS}
        sizes = {name: 0 for name in EDITIONS}
        started = time.perf_counter()
        for s in store.mailable(include_lapsed=include_lapsed):
            edition = edition_for(s)
            data = prepared.editions[edition].render(
                prepared.recipient(s.id, s.email, s.name), test_message_id(prepared)
            )
            counts[edition] += 1
            sizes[edition] += len(data)
        elapsed = time.perf_counter() - started
    click.echo(f"dry run of issue {prepared.issue_id} via {prepared.transport.description}:")
    for name in EDITIONS:
        mean = sizes[name] // counts[name] if counts[name] else 0
        click.echo(f"  {name:<10} {counts[name]:>8,} subscriber(s), {mean:,} bytes a message")
    total = sum(counts.values())
    click.echo(f"  built {total:,} messages in {elapsed:.2f} s; nothing sent, nothing recorded")


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
        done = p.sent + p.failed + p.uncertain + p.skipped
        rate = done / max(now - self.started, 1e-6)
        left = (self.total - done) / rate if rate else 0
        width = 30
        filled = int(width * done / self.total) if self.total else width
        bar = "#" * filled + "-" * (width - filled)
        line = (
            f"\r[{bar}] {done:,}/{self.total:,} sent {p.sent:,} failed {p.failed:,}"
            f" {rate:,.0f}/s left {left:,.0f} s {p.note}"
        )
        sys.stderr.write(line[:160].ljust(100) + ("\n" if final else ""))
        sys.stderr.flush()


@click.command()
@click.argument("issue_dir", type=click.Path(file_okay=False, path_type=Path))
@click.argument("addresses", nargs=-1)
@click.option("--test", is_flag=True, help="Send every edition to ADDRESSES, marked [TEST].")
@click.option("--dry-run", is_flag=True, help="Build every message; send and record nothing.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.option(
    "--concurrency",
    type=click.IntRange(1, MAX_CONCURRENCY),
    help="Parallel connections [default: NEWSLETTER_CONCURRENCY, or 4].",
)
@click.option(
    "--rate",
    type=click.FloatRange(0),
    help="Messages per second, 0 for no limit [default: NEWSLETTER_RATE, or 0].",
)
@click.option(
    "--hourly-cap",
    type=click.IntRange(0),
    help="Messages per hour, 0 for no cap [default: NEWSLETTER_HOURLY_CAP, or 0].",
)
@click.option(
    "--resend-uncertain",
    is_flag=True,
    help="Send again the messages that were in flight when a send died.",
)
@click.option(
    "--include-lapsed",
    is_flag=True,
    help="Also send to people whose implied consent is over two years old (CASL).",
)
@pass_app
def send(
    app: AppContext,
    issue_dir: Path,
    addresses: tuple[str, ...],
    test: bool,
    dry_run: bool,
    yes: bool,
    concurrency: int | None,
    rate: float | None,
    hourly_cap: int | None,
    resend_uncertain: bool,
    include_lapsed: bool,
) -> None:
    """Send an issue: each active subscriber gets the edition of their language.

    People whose only consent is implied and over two years old are skipped, with a warning,
    unless --include-lapsed."""
    if addresses and not test:
        raise click.UsageError("addresses are for --test: newsletter send ISSUE --test ADDR...")
    if test and not addresses:
        raise click.UsageError("--test needs at least one address")
    try:  # as the store keeps them: a non-ASCII domain in its xn-- form
        addresses = tuple(check_email(address) for address in addresses)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="ADDRESSES") from None
    settings = app.settings
    smtp = settings.smtp
    if smtp.host and smtp.user and smtp.security == "none" and not _loopback(smtp.host):
        click.echo(
            f"warning: the password for {smtp.host} goes unencrypted "
            "(NEWSLETTER_SMTP_SECURITY=none); use starttls or ssl",
            err=True,
        )
    prepared = prepare(settings, issue_dir, test=test)
    if test:
        return _send_tests(prepared, addresses)
    if dry_run:
        return _dry_run(prepared, app, include_lapsed)
    options = SendOptions(
        concurrency=concurrency or settings.concurrency,
        rate=settings.rate if rate is None else rate,
        hourly_cap=settings.hourly_cap if hourly_cap is None else hourly_cap,
    )
    with send_lock(settings.db_path), open_store(settings) as store:
        ledger = Ledger(settings.db_path, prepared.issue_id)
        try:
            _send(prepared, store, ledger, options, yes, resend_uncertain, include_lapsed)
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


def _send(
    prepared,
    store,
    ledger: Ledger,
    options: SendOptions,
    yes: bool,
    resend_uncertain: bool,
    include_lapsed: bool = False,
) -> None:
    issue_id = prepared.issue_id
    if not ledger.started():
        _warn_lapsed(store, include_lapsed)
        counts = plan(store, include_lapsed)
        if not sum(counts.values()):
            raise DeliveryError(
                "no active subscribers to send to; add some with "
                "'newsletter subscribers import FILE.csv'"
            )
        summary = ", ".join(f"{name} {n:,}" for name, n in counts.items())
        click.echo(
            f"issue {issue_id} via {prepared.transport.description}: {summary} "
            f"({sum(counts.values()):,} in all)"
        )
        if not yes:
            click.confirm("Send it now?", abort=True)
        prepared.transport.connect().close()  # a wrong host or password stops us here
        fixed = fix_recipients(store, ledger, prepared, include_lapsed)
        click.echo(f"recipient list fixed: {fixed:,} subscribers")
    else:
        recovered = ledger.recover()
        uncertain = ledger.in_state(State.UNCERTAIN)
        if recovered:
            click.echo(f"{recovered} message(s) were in flight when the last send stopped.")
        resend = len(uncertain) if resend_uncertain else 0
        if uncertain and not resend:
            click.echo(
                f"{len(uncertain)} uncertain message(s) (may have arrived; not resent "
                "without --resend-uncertain): "
                + ", ".join(d.email for d in uncertain[:5])
                + (" ..." if len(uncertain) > 5 else "")
            )
        counts = ledger.counts()
        pending = sum(n for (_, state), n in counts.items() if state is State.PENDING)
        if not pending + resend:
            click.echo(f"nothing left to send for issue {issue_id}.")
            click.echo(_table(counts))
            if any(s in (State.FAILED, State.UNCERTAIN) for (_, s) in counts):
                raise SystemExit(EXIT_INCOMPLETE)
            return
        again = f", {resend:,} of them uncertain (sent again)" if resend else ""
        click.echo(
            f"resuming issue {issue_id} via {prepared.transport.description}: "
            f"{pending + resend:,} message(s) left{again}"
        )
        if not yes:
            click.confirm("Resume sending?", abort=True)
        prepared.transport.connect().close()
        if resend:  # only now: a "no" above, or a server that is down, changes nothing
            ledger.resend_uncertain()
    pending = sum(n for (_, s), n in ledger.counts().items() if s is State.PENDING)
    bar = _Bar(pending)
    run = SendRun(
        ledger,
        prepared.transport,
        prepared.editions,
        prepared.personalise,
        options,
        on_progress=bar,
        signer=prepared.signer,
    )
    started = time.monotonic()
    result = run.run()
    bar(result.progress, final=True)
    elapsed = time.monotonic() - started
    counts = ledger.counts()
    click.echo(_table(counts))
    p = result.progress
    click.echo(
        f"{p.sent:,} sent in {elapsed:.1f} s ({p.sent / max(elapsed, 1e-6):,.0f}/s), "
        f"{p.failed:,} failed, {p.retried:,} retries, {p.skipped:,} skipped"
    )
    if result.interrupted:
        click.echo(
            "stopped; the messages in flight were finished. Run send again to resume.", err=True
        )
        raise SystemExit(130)
    if result.paused:
        click.echo(result.paused, err=True)
        raise SystemExit(EXIT_PAUSED)
    left = {s: sum(n for (_, st), n in counts.items() if st is s) for s in State}
    if left[State.PENDING] or left[State.SENDING]:
        click.echo(
            f"{left[State.PENDING]:,} message(s) still pending; run send again to resume", err=True
        )
        raise SystemExit(EXIT_PAUSED)
    ledger.finish()
    for d in ledger.in_state(State.FAILED)[:20]:
        click.echo(f"failed: {d.email}: {d.last_reply}", err=True)
    if left[State.FAILED] or left[State.UNCERTAIN]:
        raise SystemExit(EXIT_INCOMPLETE)


@click.command()
@click.argument("issue_dir", type=click.Path(file_okay=False, path_type=Path))
@pass_app
def status(app: AppContext, issue_dir: Path) -> None:
    """Where the send of an issue stands: sent, pending, failed, uncertain."""
    if not (issue_dir / "issue.toml").is_file():
        raise DeliveryError(
            "no issue.toml here; give an issue folder, e.g. issues/2017-11", issue_dir
        )
    issue_id = issue_dir.resolve().name
    ledger = Ledger(app.settings.db_path, issue_id)
    try:
        if not ledger.started():
            click.echo(f"issue {issue_id} has not been sent.")
            return
        click.echo(f"issue {issue_id}:")
        click.echo(_table(ledger.counts()))
        for d in ledger.in_state(State.FAILED):
            click.echo(f"failed     {d.email}: {d.last_reply}")
        for d in ledger.in_state(State.UNCERTAIN):
            click.echo(f"uncertain  {d.email}: {d.last_reply}")
        retrying = [d for d in ledger.in_state(State.PENDING) if d.attempts]
        for d in retrying[:20]:
            click.echo(f"retrying   {d.email} (attempt {d.attempts}): {d.last_reply}")
    finally:
        ledger.close()


def _loopback(host: str) -> bool:
    """A server on this machine, where `none` sends nothing over a network."""
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return host == "localhost"
