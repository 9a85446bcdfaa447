"""A send from start to finish, in the order it happens:

    prepare (build once, check, compile each edition once)
      -> plan (who would get what)
      -> start (fix the recipient list, freeze the editions) or resume (thaw them)
      -> run (passes over the ledger until nothing is due; with `wait`, until nothing is left)
      -> report (what the ledger says)

and `run_due`, which does the same for every scheduled send whose time has come and every
send with deferred messages due. The CLI asks, prints and picks the exit code; the tests and
bench/send.py call these same functions.
"""

from __future__ import annotations

import dataclasses
import functools
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from . import workers
from .bounces.book import Book as BounceBook
from .bounces.book import Recorded
from .build import build_issue
from .config import Settings, format_duration
from .delivery import Progress, RunResult, SendOptions, SendRun, share_of
from .editions import EDITIONS
from .errors import DeliveryError
from .fastmime import compile_edition
from .ledger import Ledger, SendState, State, unfinished
from .pacing import HOUR
from .prepared import KEY_CHECK, Prepared, thaw
from .render import Templates
from .schedule import Book, Schedule, ScheduleState, changed, format_when, inputs
from .signing import signer_for
from .stopping import ctrl_c_noted, shielded, terminating
from .subscribers import EDITION_FOR_LANGUAGE, SqliteStore, Status
from .tokens import key_check, signing_key
from .transport import transport_for

TEST_PREFIX = "[TEST] "
# the options a send remembers, so that a resume goes on as it started
KEPT_OPTIONS = ("concurrency", "rate", "hourly_cap", "workers", "batch")


def prepare(
    settings: Settings, issue_dir: Path, *, strict: bool = False, test: bool = False
) -> Prepared:
    """Build the issue once, with its checks; each edition is compiled once, by the build."""
    build = build_issue(
        issue_dir, settings.identity, Templates(settings.templates_dir), strict=strict
    )
    editions = {e.name: e.compiled for e in build.editions}
    if test:  # the subject is part of the compiled headers
        editions = {
            e.name: compile_edition(e.rendered, settings.identity, TEST_PREFIX)
            for e in build.editions
        }
    return Prepared(
        settings=settings,
        issue_id=build.issue.id,
        issue_dir=Path(issue_dir),
        editions=editions,
        # the secret bound to this list; a test send's links lead nowhere and need none (and
        # must not make a database where there is none)
        secret=b"" if test else signing_key(settings),
        transport=transport_for(settings.smtp, settings.outbox / build.issue.id),
        signer=signer_for(settings.dkim),
        findings=build.findings,
        build=build,
    )


def inputs_of(prepared: Prepared) -> dict[str, str]:
    assert prepared.build is not None
    templates = Templates(prepared.settings.templates_dir).folder
    return inputs(prepared.build.issue, templates)


# --- plan and start -----------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    """Who would get the issue now: per edition, and how many are left out, per status."""

    editions: dict[str, int]
    left_out: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.editions.values())


def plan(store: SqliteStore, include_lapsed: bool = False) -> Plan:
    """Active subscribers per edition, less those whose implied consent has lapsed unless
    `include_lapsed` (see store.mailable); the others counted by why they are left out."""
    editions: Counter[str] = Counter({name: 0 for name in EDITIONS})
    left_out: Counter[str] = Counter()
    for (language, status), n in store.counts().items():
        if status == Status.ACTIVE:
            editions[EDITION_FOR_LANGUAGE[language]] += n
        else:
            left_out[str(status)] += n
    if not include_lapsed:
        for language, n in store.lapsed_counts().items():
            editions[EDITION_FOR_LANGUAGE[language]] -= n
            left_out["implied consent lapsed"] += n
    return Plan(dict(editions), {k: v for k, v in left_out.items() if v})


def start(
    store: SqliteStore, ledger: Ledger, prepared: Prepared, options: Mapping[str, object]
) -> int:
    """Fix the recipient list in the ledger and freeze the editions; returns how many.

    The list is who the store says may be mailed now: active, with a consent that has not
    lapsed (unless `options` says include_lapsed)."""
    domain = prepared.settings.identity.from_addr["en"].rpartition("@")[2]
    count = ledger.start(
        store.recipients_query(include_lapsed=bool(options.get("include_lapsed"))),
        domain,
        str(prepared.issue_dir.resolve()),
        {k: v for k, v in options.items() if k in KEPT_OPTIONS and v is not None}
        | {KEY_CHECK: key_check(prepared.secret)},
        prepared.frozen(),
    )
    return count


def options_for(
    settings: Settings, kept: Mapping[str, object], given: Mapping[str, object]
) -> tuple[SendOptions, dict[str, object]]:
    """What this run uses: given now, else kept by the send, else the settings; and what the
    send keeps from now on."""
    defaults = {
        "concurrency": settings.concurrency,
        "rate": settings.rate,
        "hourly_cap": settings.hourly_cap,
        "workers": 0,  # one per core, for a send large enough to gain from them
        "batch": 0,  # 4 x concurrency + 16 (see SendOptions.k)
    }
    keep = {k: kept[k] for k in KEPT_OPTIONS if kept.get(k) is not None}
    keep.update({k: given[k] for k in KEPT_OPTIONS if given.get(k) is not None})
    if KEY_CHECK in kept:  # (not an option: kept as the send started, for every host)
        keep[KEY_CHECK] = kept[KEY_CHECK]
    chosen = {**defaults, **{k: v for k, v in keep.items() if k in KEPT_OPTIONS}}
    options = SendOptions(
        concurrency=int(chosen["concurrency"]),  # type: ignore[call-overload]
        rate=float(chosen["rate"]),  # type: ignore[arg-type]
        hourly_cap=int(chosen["hourly_cap"]),  # type: ignore[call-overload]
        workers=int(chosen["workers"]),  # type: ignore[call-overload]
        batch=int(chosen["batch"]),  # type: ignore[call-overload]
        retry_backoff=settings.retry_backoff,
        retry_for=settings.retry_for,
    )
    return options, keep


# --- run -----------------------------------------------------------------------------------


@dataclass
class Passes:
    """What one `run` did over one or more passes."""

    progress: Progress = field(default_factory=Progress)
    paused: str | None = None
    interrupted: bool = False  # Ctrl-C or SIGTERM: the messages in flight were finished
    terminated: bool = False  # SIGTERM (a service stopped): not held, `due` resumes it
    held: bool = False  # stopped by Ctrl-C or by failures in a row: only `send` resumes it
    # Ctrl-C while waiting for retries (--wait): only the waiting stopped; the send is left
    # as a send without --wait leaves it, its retries to `due`
    stopped_waiting: bool = False
    elapsed: float = 0.0
    waited: float = 0.0  # of `elapsed`, asleep until retries were due (--wait)
    # PostgreSQL: rows that sending processes now gone held, turned uncertain at the end
    orphans: int = 0
    # refusals (5xx) classified as bounces once the passes ended: some took people off
    refusals: list[Recorded] = field(default_factory=list)


def run(
    prepared: Prepared,
    ledger: Ledger,
    options: SendOptions,
    *,
    on_progress: Callable[[Progress], None] = lambda p: None,
    wait: bool = False,
    on_wait: Callable[[float, int], None] = lambda at, n: None,
    on_hold: Callable[[str], None] = lambda line: None,
    stop: threading.Event | None = None,
) -> Passes:
    """Passes over the ledger until nothing is due; with `wait`, until nothing is left.

    Between passes (only with `wait`) it sleeps until the next deferred message is due,
    telling `on_wait(when, how_many)`; `stop` (or Ctrl-C) ends the wait. Each time the
    hourly cap begins to hold the send back, `on_hold` gets a line that says so.
    """
    with shielded():  # SIGTERM: recorded, the pass winds down, the state set as it ends
        return _passes(prepared, ledger, options, on_progress, wait, on_wait, on_hold, stop)


def _passes(
    prepared: Prepared,
    ledger: Ledger,
    options: SendOptions,
    on_progress: Callable[[Progress], None],
    wait: bool,
    on_wait: Callable[[float, int], None],
    on_hold: Callable[[str], None],
    stop: threading.Event | None,
) -> Passes:
    stop = stop or threading.Event()
    passes = Passes()
    started = time.monotonic()
    ledger.set_state(SendState.ACTIVE)
    try:
        while True:
            # Ctrl-C: a pass takes it up itself while it sends; between passes it is noted,
            # so that no database call is cut in two, and taken up here
            watch = on_progress
            if options.hourly_cap:  # (each pass its own: a hold said in one is new in the next)
                watch = _CapWatch(on_progress, on_hold, options.hourly_cap)
            with ctrl_c_noted() as pressed:
                processes = workers.how_many(
                    options.workers, ledger.count_due(), options.concurrency, options.hourly_cap
                )
                single = None if processes > 1 else _single(prepared, ledger, options, watch)
            if pressed:  # nothing claimed yet
                passes.interrupted = passes.held = True
                break
            if single is None:
                result = workers.run_pass(
                    prepared.settings,
                    prepared.issue_id,
                    prepared.issue_dir,
                    options,
                    processes,
                    watch,
                    _last_hour(ledger, options, processes),
                )
            else:
                result = single.run()
            with ctrl_c_noted() as pressed:
                _add(passes.progress, result.progress)
                result = _lapsed(result, ledger, options)
            if pressed:
                result = dataclasses.replace(result, interrupted=True)
            if result.interrupted or result.paused:
                passes.interrupted, passes.paused = result.interrupted, result.paused
                passes.terminated = result.terminated
                passes.held = (result.interrupted and not result.terminated) or result.held
                break
            if not wait:
                break
            # from here on, Ctrl-C stops only the waiting, even as the wait is announced
            with ctrl_c_noted() as pressed:
                next_retry = ledger.next_retry()
                if next_retry is not None:
                    on_wait(next_retry, report(ledger).total(State.DEFERRED))
            if pressed:
                passes.stopped_waiting = True
                break
            if next_retry is None:
                break
            asleep = time.monotonic()
            try:
                if not _sleep_until(next_retry, stop):
                    passes.interrupted = passes.terminated = terminating()
                    break
            except KeyboardInterrupt:
                passes.stopped_waiting = True
                break
            finally:
                passes.waited += time.monotonic() - asleep
    finally:
        passes.elapsed = time.monotonic() - started
        if not ledger.pg or not (passes.interrupted or passes.paused):
            # what hosts killed meanwhile held: this machine's at once, others' once their
            # lease lapsed (as any claim does); else the send would wait on them for ever.
            # On SQLite, what this send's killed workers held: said now, not at the next run
            passes.orphans = ledger.recover()
        if passes.held and _left(ledger) and not ledger.live_workers(2 * options.lease):
            # (held only when nobody else sends it: Ctrl-C on one of several hosts stops
            # that host, not the send)
            ledger.set_state(SendState.HELD)
        else:
            end_if_done(ledger)
    passes.refusals = classify_refusals(ledger)
    return passes


def _last_hour(ledger: Ledger, options: SendOptions, processes: int) -> list[float]:
    """What went in the last hour, for the cap's parts (every n-th to each worker), as it
    is before the workers begin: one started a moment after the others must not count
    their first messages against its own part (with a cap of 11 split 6 + 5, 9 went and
    the send sat held for an hour)."""
    if not options.hourly_cap:
        return []
    return ledger.sent_within(HOUR, processes * share_of(options.hourly_cap, (0, processes)))


def _single(
    prepared: Prepared,
    ledger: Ledger,
    options: SendOptions,
    on_progress: Callable[[Progress], None],
) -> SendRun:
    """A pass in this process (its sending threads), made ready to run."""
    return SendRun(
        ledger,
        prepared.transport,
        prepared.editions,
        prepared.personalise,
        options,
        on_progress=on_progress,
        signer=prepared.signer,
    )


def _lapsed(result: RunResult, ledger: Ledger, options: SendOptions) -> RunResult:
    """A pass whose process was frozen past its lease, with rows left: paused, saying so."""
    if not result.lapsed or result.interrupted or result.paused:
        return result
    left = ledger.count_due()
    if not left:  # the others sent it all: nothing to say
        return result
    return dataclasses.replace(result, paused=(
        f"paused: a process was frozen or cut off for longer than its lease "
        f"({format_duration(options.lease)}), and {left:,} message(s) are left; run send "
        "again to resume"
    ))  # fmt: skip


def _left(ledger: Ledger) -> set[State]:
    """The states of rows still to send, in flight or to retry."""
    left = {s for (_, s), n in ledger.counts().items() if n}
    return left & {State.PENDING, State.SENDING, State.DEFERRED}


def end_if_done(ledger: Ledger) -> bool:
    """Mark the send done when no row is left to send, in flight or to retry."""
    if _left(ledger):
        return False
    ledger.set_state(SendState.DONE)
    return True


def _sleep_until(moment: float, stop: threading.Event) -> bool:
    """Wait until `moment` (epoch seconds); False if stopped first, by `stop` or SIGTERM."""
    while not terminating():
        left = moment - time.time()
        if left <= 0:
            return True
        if stop.wait(min(left, 0.5)):
            return False
    return False


def classify_refusals(ledger: Ledger) -> list[Recorded]:
    """The messages a server refused (or that expired) go through the same classification
    as the bounces that come back later, into the same history: a 5.1.1 at RCPT takes the
    address off the list now. A crash before this runs leaves them to the next run, or to
    `bounces fetch`."""
    with SqliteStore(ledger.path) as store:
        return BounceBook(store).record_refusals(ledger.issue_id)


def _add(total: Progress, more: Progress) -> None:
    total.sent += more.sent
    total.failed += more.failed
    total.deferred += more.deferred
    total.uncertain += more.uncertain
    total.skipped += more.skipped


# --- report --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Report:
    counts: dict[tuple[str, State], int]
    next_retry: float | None

    def total(self, *states: State) -> int:
        return sum(n for (_, s), n in self.counts.items() if s in states)

    @property
    def finished_short(self) -> bool:
        """Nothing left to send or retry, and some readers failed or are uncertain."""
        left = self.total(State.PENDING, State.DEFERRED, State.SENDING)
        return not left and self.total(State.FAILED, State.UNCERTAIN) > 0


def report(ledger: Ledger) -> Report:
    return Report(ledger.counts(), ledger.next_retry())


# --- due: scheduled sends and retries, from a timer ------------------------------------------


@dataclass(frozen=True)
class DueItem:
    """What `run_due` did for one issue."""

    issue_id: str
    action: str  # "started", "retried", "missed", "refused", "ended"
    detail: str = ""
    issue_dir: Path = Path()
    passes: Passes | None = None
    report: Report | None = None


def run_due(
    settings: Settings,
    store: SqliteStore,
    now: float,
    on_start: Callable[[str, str], None] = lambda issue, what: None,
    on_hold: Callable[[str, str], None] = lambda issue, line: None,
) -> list[DueItem]:
    """Start every schedule whose time has come, then retry what is due in every send.

    The caller holds the send lock. Recipients are resolved now, when a send starts: people
    who left since it was scheduled get nothing.
    """
    items: list[DueItem] = []
    with Book(settings.db_path) as book:
        for schedule in book.due(now):
            if terminating():
                return items
            item = _start_scheduled(settings, store, book, schedule, now, on_start, on_hold)
            if item is not None:
                items.append(item)
                if item.passes is not None and item.passes.interrupted:
                    return items  # Ctrl-C or SIGTERM: stop here, not at the next send
    for issue_id, info in unfinished(settings.db_path):
        if terminating():
            return items
        if info.state is not SendState.ACTIVE or any(i.issue_id == issue_id for i in items):
            continue
        ledger = Ledger(settings.db_path, issue_id)
        try:
            orphans = ledger.recover() if ledger.in_state(State.SENDING, limit=1) else 0
            if not ledger.due(1, now=now):
                # nothing to send or retry, and nobody sending: what processes now gone left
                # in flight (turned uncertain here, or by `status`) was all that kept it going
                if end_if_done(ledger):
                    note = "ended; nothing was left to send"
                    if orphans:
                        note = (f"ended; {orphans} message(s) held by sending processes that "
                                "are gone are uncertain (status lists them)")  # fmt: skip
                    items.append(
                        DueItem(
                            issue_id, "ended", note, Path(info.issue_dir), report=report(ledger)
                        )
                    )
                continue
            frozen = ledger.frozen()
            if not frozen:
                note = (
                    "refused: this send started before its editions were kept; resume it by "
                    f"hand: newsletter send issues/{issue_id}"
                )
                items.append(DueItem(issue_id, "refused", note))
                continue
            prepared = thaw(settings, issue_id, Path(info.issue_dir), frozen)
            try:
                prepared.refuse_another_key(info.options)
            except DeliveryError as exc:
                why = exc.message.removeprefix(f"issue {issue_id}: ")
                items.append(DueItem(issue_id, "refused", f"refused: {why}"))
                continue
            options, _ = options_for(settings, info.options, {})
            on_start(issue_id, _what_is_due(ledger, now))
            held = functools.partial(on_hold, issue_id)
            passes = run(prepared, ledger, options, on_hold=held)
            items.append(
                DueItem(
                    issue_id,
                    "retried",
                    passes=passes,
                    report=report(ledger),
                    issue_dir=Path(info.issue_dir),
                )
            )
            if passes.interrupted:
                return items
        finally:
            ledger.close()
    return items


def _cap_line(cap: int, wait: float) -> str:
    return (
        f"the hourly cap of {cap:,} is reached: the next message may go in about "
        f"{format_duration(max(1.0, wait))}"
    )


# A hold shorter than this is the cap's ordinary pace once an hour has gone (each message
# waits for the one sent an hour earlier), not a silence worth a line
_HOLD_WORTH_SAYING = 60.0
# ...nor one that did not last this long: with workers, one held while the last messages of
# the others go, or a held worker about to find nothing left
_HOLD_STEADY = 3.0


class _CapWatch:
    """Passes the progress on, and says once, each time the hourly cap holds a pass back
    for long, in about how long the next message may go: else a send in a log (a timer, a
    redirect) sits silent, up to an hour. Outcomes come from several threads; while held,
    the pass reports its progress five times a second."""

    def __init__(self, on_progress: Callable[[Progress], None], on_hold: Callable[[str], None],
                 cap: int) -> None:  # fmt: skip
        self.on_progress, self.on_hold, self.cap = on_progress, on_hold, cap
        self.since = 0.0  # when this hold was first seen (monotonic), 0 when not held
        self.said = False  # this hold has had its line
        self.lock = threading.Lock()

    def __call__(self, progress: Progress) -> None:
        self.on_progress(progress)
        until = progress.held_until  # (once: another thread may change it)
        if not until and not self.since:
            return  # not held: what nearly every message sees
        with self.lock:
            if not until:
                self.since, self.said = 0.0, False
                return
            now, wait = time.monotonic(), until - time.time()
            self.since = self.since or now
            if self.said or now - self.since < _HOLD_STEADY or wait < _HOLD_WORTH_SAYING:
                return
            self.said = True
        self.on_hold(_cap_line(self.cap, wait))


def _what_is_due(ledger: Ledger, now: float) -> str:
    """What `due` takes up in a send begun earlier: its unsent rest (stopped by SIGTERM, or
    cut off), its retries, or both. (A cap that holds it back is said as the pass starts.)"""
    pending = sum(n for (_, state), n in ledger.counts().items() if state is State.PENDING)
    retries = max(0, ledger.count_due(now) - pending)
    if pending:
        said = f"resuming: {pending:,} not yet sent"
        said += f", {retries:,} deferred due for a retry" if retries else ""
    else:  # (due came for a reason: rows due now; were none left, it says so plainly)
        said = f"retrying {retries:,} deferred message(s)" if retries else "resuming"
    return said


def _start_scheduled(
    settings: Settings,
    store: SqliteStore,
    book: Book,
    schedule: Schedule,
    now: float,
    on_start: Callable[[str, str], None],
    on_hold: Callable[[str, str], None],
) -> DueItem | None:
    issue_id = schedule.issue_id
    late = now - schedule.at
    if late > schedule.grace:
        note = (
            f"missed: its time ({schedule.when()}) passed {format_duration(late)} ago, more "
            f"than its grace ({format_duration(schedule.grace)}); send it by hand or schedule "
            "it again"
        )
        book.mark(schedule.id, ScheduleState.MISSED, note)
        return DueItem(issue_id, "missed", note)
    ledger = Ledger(settings.db_path, issue_id)
    try:
        if ledger.started():
            book.mark(schedule.id, ScheduleState.STARTED, "already started by hand")
            return None
        if schedule.rebuild:
            prepared = prepare(settings, Path(schedule.issue_dir))
            if prepared.blocking:
                note = f"refused: {prepared.blocking[0]}"
                book.mark(schedule.id, ScheduleState.REFUSED, note)
                return DueItem(issue_id, "refused", note)
        else:
            moved = changed(schedule.inputs)
            if moved:
                shown = ", ".join(moved[:3]) + (" ..." if len(moved) > 3 else "")
                note = (
                    f"refused: changed since it was scheduled: {shown}; check the issue and "
                    "schedule it again, or schedule it with --rebuild"
                )
                book.mark(schedule.id, ScheduleState.REFUSED, note)
                return DueItem(issue_id, "refused", note)
            prepared = thaw(settings, issue_id, Path(schedule.issue_dir), ledger.frozen())
        if not book.mark(schedule.id, ScheduleState.STARTED, format_when(now, schedule.zone)):
            return None
        on_start(issue_id, "starting")
        start(store, ledger, prepared, schedule.options)
        options, _ = options_for(settings, schedule.options, {})
        passes = run(prepared, ledger, options, on_hold=lambda line: on_hold(issue_id, line))
        return DueItem(
            issue_id,
            "started",
            passes=passes,
            report=report(ledger),
            issue_dir=Path(schedule.issue_dir),
        )
    finally:
        ledger.close()
