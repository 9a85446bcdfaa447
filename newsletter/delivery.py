"""One pass over the ledger: workers over reused connections, a rate limit, the retry queue.

Reads like the algorithm: open a session, claim a row, render its message from the
edition's compiled template, hand it to the transport, record what the server said and
claim the next row in the same commit. What is recorded follows the SMTP phase a failure
happened in (see transport.py): a temporary refusal is `deferred` to a later attempt
(backoff doubling from `retry_backoff` up to an hour, until `retry_for` has passed since
its first attempt), a permanent one `failed`, a lost reply `uncertain`. A session that
cannot be opened is nobody's fault: no row is claimed for it. The pass ends when nothing
is due; deferred rows wait for the next pass. Too many failures in a row pause it; Ctrl-C
lets the messages in flight finish.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from .fastmime import CompiledEdition, dot_stuff
from .ledger import Delivery, Ledger, Outcome, State
from .message import Recipient
from .signing import Signer
from .transport import (
    ConnectFailure,
    Connection,
    Deferred,
    Halt,
    Outgoing,
    Refused,
    Transport,
    Uncertain,
)

HOUR = 3600.0
MAX_BACKOFF = HOUR  # a deferred message is tried at least once an hour
MAX_CONNECT_BACKOFF = 60.0
IDLE_CLOSE = 30.0  # a session left waiting longer than this for the limiter is closed


@dataclass(frozen=True)
class SendOptions:
    concurrency: int = 4
    rate: float = 0.0  # messages per second, 0 = no limit
    hourly_cap: int = 0  # messages per rolling hour, 0 = no cap
    retry_backoff: float = 60.0  # seconds before the first retry; doubles, up to an hour
    retry_for: float = 2 * 86400.0  # a deferred message expires this long after its first try
    pause_after: int = 20  # permanent or uncertain outcomes in a row before the pass pauses
    connect_patience: float = 300.0  # seconds of failing to open any session before a pause


@dataclass
class Progress:
    """Counts the run keeps while it goes; read by the progress display."""

    sent: int = 0
    failed: int = 0
    deferred: int = 0
    uncertain: int = 0
    skipped: int = 0
    note: str = ""


@dataclass(frozen=True)
class RunResult:
    progress: Progress
    paused: str | None = None  # why the run stopped early, if it did
    # paused on failures that cannot be undone: a person should look before it goes on
    held: bool = False
    interrupted: bool = False


Personalise = Callable[[Delivery], Recipient]


def outgoing(
    compiled: CompiledEdition,
    recipient: Recipient,
    message_id: str,
    filename: str,
    signer: Signer | None = None,
) -> Outgoing:
    """One message, rendered from the compiled edition only when the transport asks."""
    # with a bounce domain, each message has its own envelope sender (VERP): a bounce
    # names the delivery it is about
    mail_from = recipient.envelope_from or compiled.from_addr
    if signer is None:
        return Outgoing(
            mail_from=mail_from,
            rcpt=recipient.email,
            filename=filename,
            data=lambda: compiled.render(recipient, message_id),
            smtp_data=lambda: compiled.smtp_payload(recipient, message_id),
            envid=recipient.envid,
        )

    def signed() -> bytes:
        message = compiled.render(recipient, message_id)
        return signer.header(message) + message

    return Outgoing(
        mail_from=mail_from,
        rcpt=recipient.email,
        filename=filename,
        data=signed,
        smtp_data=lambda: dot_stuff(signed()) + b".\r\n",
        envid=recipient.envid,
    )


class _Limiter:
    """Spaces messages `1/rate` apart and keeps an hourly cap over a rolling hour."""

    def __init__(self, rate: float, hourly_cap: int, sent_last_hour: int):
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self.cap = hourly_cap
        self.lock = threading.Lock()
        self.next_slot = 0.0
        now = time.monotonic()
        # what was sent in the last hour before this run counts against the cap
        self.stamps: collections.deque[float] = collections.deque([now] * sent_last_hour)

    def wait(self, stop: threading.Event, progress: Progress) -> bool:
        """Block until a message may go; False if the run is stopping."""
        if not self.interval and not self.cap:
            return not stop.is_set()
        while True:
            with self.lock:
                now = time.monotonic()
                if self.cap:
                    while self.stamps and self.stamps[0] <= now - HOUR:
                        self.stamps.popleft()
                    if len(self.stamps) >= self.cap:
                        delay = self.stamps[0] + HOUR - now
                        progress.note = f"hourly cap of {self.cap} reached; waiting {delay:.0f} s"
                    else:
                        delay = max(0.0, self.next_slot - now)
                        if delay == 0.0:
                            self.next_slot = max(now, self.next_slot) + self.interval
                            if self.cap:
                                self.stamps.append(now)
                            progress.note = ""
                            return not stop.is_set()
                else:
                    delay = max(0.0, self.next_slot - now)
                    if delay == 0.0:
                        self.next_slot = max(now, self.next_slot) + self.interval
                        return not stop.is_set()
            if stop.wait(min(delay, 1.0)):
                return False


class _Sessions:
    """Opens sessions for every worker, with one shared backoff after a failure."""

    def __init__(self, transport: Transport, patience: float):
        self.transport = transport
        self.patience = patience
        self.lock = threading.Lock()
        self.failures = 0
        self.failing_since: float | None = None
        self.next_try = 0.0
        self.last_error = ""

    def open(self, stop: threading.Event) -> Connection | None:
        """A new session, or None when the pass is stopping; raises a permanent failure.

        A temporary failure is retried after a pause that doubles, shared by all workers
        so that a server that is down is not hammered; after `patience` seconds without a
        single session it raises, and the caller pauses the pass.
        """
        while not stop.is_set():
            with self.lock:
                delay = self.next_try - time.monotonic()
            if delay > 0:
                if stop.wait(min(delay, 1.0)):
                    return None
                continue
            try:
                conn = self.transport.connect()
            except ConnectFailure as exc:
                if not exc.temporary:
                    raise
                with self.lock:
                    now = time.monotonic()
                    self.failures += 1
                    self.last_error = str(exc)
                    if self.failing_since is None:
                        self.failing_since = now
                    if now - self.failing_since >= self.patience:
                        raise
                    backoff = min(0.5 * 2 ** (self.failures - 1), MAX_CONNECT_BACKOFF)
                    self.next_try = max(self.next_try, now + backoff)
                continue
            with self.lock:
                self.failures, self.failing_since = 0, None
            return conn
        return None


class SendRun:
    """One pass over the ledger of one issue."""

    def __init__(
        self,
        ledger: Ledger,
        transport: Transport,
        editions: Mapping[str, CompiledEdition],
        personalise: Personalise,
        options: SendOptions,
        on_progress: Callable[[Progress], None] = lambda p: None,
        signer: Signer | None = None,
    ):
        self.signer = signer
        self.ledger = ledger
        self.transport = transport
        self.editions = editions
        self.personalise = personalise
        self.options = options
        self.on_progress = on_progress
        self.progress = Progress()
        self.stop = threading.Event()
        self.paused: str | None = None
        self.held = False
        self.queue: collections.deque[Delivery] = collections.deque()
        self.queued: set[int] = set()
        self.cursor = 0  # the last subscriber id taken from the ledger
        self.lock = threading.Lock()
        self.in_flight = 0
        self.failures_in_row = 0
        self.sessions = _Sessions(transport, options.connect_patience)
        self.limiter = _Limiter(
            options.rate, options.hourly_cap, ledger.sent_since(HOUR) if options.hourly_cap else 0
        )
        self.errors: list[BaseException] = []
        self.all_done = threading.Event()
        self.live_workers = 0

    # --- dispatch ------------------------------------------------------------------------

    def _refill(self) -> Delivery | None:
        """Under self.lock: the next queued row, fetching a batch from the ledger if needed."""
        if not self.queue:
            self.ledger.check_in_place()
            batch = self.ledger.due(256, self.queued, self.cursor)
            if not batch and self.cursor:
                # past the end: what is left behind us are retries now due
                self.cursor = 0
                batch = self.ledger.due(256, self.queued, 0)
            if batch:
                self.cursor = batch[-1].subscriber_id
            self.queue.extend(batch)
            self.queued.update(d.subscriber_id for d in batch)
        if not self.queue:
            return None
        self.in_flight += 1
        return self.queue.popleft()

    def _take(self) -> Delivery | None:
        """The next row for a worker; None when nothing is due (the pass is over for it)."""
        if self.stop.is_set():
            return None
        with self.lock:
            return self._refill()

    def _done(self, delivery: Delivery) -> None:
        with self.lock:
            self.in_flight -= 1
            self.queued.discard(delivery.subscriber_id)

    # --- one worker ----------------------------------------------------------------------

    def _outgoing(self, delivery: Delivery) -> Outgoing:
        return outgoing(
            self.editions[delivery.edition],
            self.personalise(delivery),
            delivery.message_id,
            f"{self.ledger.issue_id}-{delivery.subscriber_id}.eml",
            self.signer,
        )

    def _deferred(self, delivery: Delivery, reply: str) -> Outcome:
        """A temporary refusal: try again later, or give up once `retry_for` has passed."""
        now = time.time()
        first = delivery.first_attempt if delivery.first_attempt is not None else now
        if now - first >= self.options.retry_for:
            waited = _duration(now - first)
            return Outcome(delivery.subscriber_id, State.FAILED, f"expired after {waited}: {reply}")
        attempts = delivery.attempts + 1
        delay = min(self.options.retry_backoff * 2 ** (attempts - 1), MAX_BACKOFF)
        # never past the expiry: the last try happens when the time is up
        retry_at = min(now + delay, first + self.options.retry_for)
        return Outcome(delivery.subscriber_id, State.DEFERRED, reply, retry_at)

    def _attempt(self, conn: Connection, delivery: Delivery) -> tuple[Outcome, bool]:
        """Send one claimed delivery; returns the outcome and whether the connection lives."""
        sid = delivery.subscriber_id
        try:
            reply = conn.send(self._outgoing(delivery))
            return Outcome(sid, State.SENT, reply), True
        except Refused as exc:
            return Outcome(sid, State.FAILED, exc.reply), not exc.connection_lost
        except Uncertain as exc:
            return Outcome(sid, State.UNCERTAIN, exc.reply), False
        except Deferred as exc:
            # after a 4xx, providers expect the retry on a fresh connection
            return self._deferred(delivery, exc.reply), False
        except (UnicodeError, ValueError) as exc:
            # nothing usable reached the server (the envelope or message could not be
            # encoded); the connection may be mid-command, so it is dropped
            return Outcome(sid, State.FAILED, f"cannot send to this address: {exc}"), False

    def _count(self, outcome: Outcome) -> None:
        p = self.progress
        with self.lock:
            if outcome.state is State.SENT:
                p.sent += 1
                self.failures_in_row = 0
            else:
                p.failed += outcome.state is State.FAILED
                p.deferred += outcome.state is State.DEFERRED
                p.uncertain += outcome.state is State.UNCERTAIN
                # a deferral loses nobody: only what cannot be undone counts towards a pause
                if outcome.state is not State.DEFERRED:
                    self.failures_in_row += 1
                if self.failures_in_row >= self.options.pause_after and not self.paused:
                    self.held = True
                    self.paused = (
                        f"paused after {self.failures_in_row} failures in a row "
                        f"(last: {outcome.reply}); run send again to resume"
                    )
                    self.stop.set()
        self.on_progress(p)

    def _worker(self) -> None:
        conn: Connection | None = None
        outcome: Outcome | None = None
        idle_since = time.monotonic()

        def flush() -> None:
            nonlocal outcome
            if outcome is not None:
                self.ledger.record(outcome, None)
                outcome = None

        try:
            while True:
                delivery = self._take()
                if delivery is None:
                    break
                try:
                    if self.limiter.interval or self.limiter.cap:
                        flush()  # the limiter may hold this worker for a while
                        if not self.limiter.wait(self.stop, self.progress):
                            break
                        if conn is not None and time.monotonic() - idle_since > IDLE_CLOSE:
                            conn.close()  # the server may have given up on it meanwhile
                            conn = None
                    if conn is None:
                        # a session first: a failure to open one is no reader's attempt
                        flush()
                        conn = self.sessions.open(self.stop)
                        if conn is None:
                            break
                    claimed = self.ledger.record(outcome, delivery.subscriber_id)
                    outcome = None
                    if not claimed:
                        with self.lock:
                            self.progress.skipped += 1
                        continue
                    try:
                        outcome, alive = self._attempt(conn, delivery)
                    except Halt:
                        self.ledger.release(delivery.subscriber_id)
                        raise
                    idle_since = time.monotonic()
                    if not alive:
                        conn.close()
                        conn = None
                    self._count(outcome)
                finally:
                    self._done(delivery)
        except ConnectFailure as exc:
            if exc.temporary:
                with self.lock:
                    if not self.paused:
                        self.paused = f"paused: {exc}; nothing was lost, run send again to resume"
            else:
                self.errors.append(exc)
            self.stop.set()
        except BaseException as exc:  # noqa: BLE001 - reported by run()
            self.errors.append(exc)
            self.stop.set()
        finally:
            try:
                flush()
                if conn is not None:
                    conn.close()
            finally:
                with self.lock:
                    self.live_workers -= 1
                    if self.live_workers == 0:
                        self.all_done.set()

    def run(self) -> RunResult:
        workers = [
            threading.Thread(target=self._worker, name=f"send-{n}", daemon=True)
            for n in range(self.options.concurrency)
        ]
        self.live_workers = len(workers)
        for w in workers:
            w.start()
        interrupted = False
        # Waiting on an Event, not Thread.join(): a join interrupted by Ctrl-C can leave
        # CPython (before 3.13) believing the thread has ended while it still sends.
        try:
            while not self.all_done.wait(0.2):
                pass
        except KeyboardInterrupt:
            # let the messages in flight finish and be recorded, then stop
            interrupted = True
            self.stop.set()
            self.all_done.wait()
        for exc in self.errors:
            raise exc
        return RunResult(self.progress, self.paused, interrupted=interrupted, held=self.held)


def _duration(seconds: float) -> str:
    """2 d 3 h, 5 h 20 min, 12 min, 40 s: how long, for a person."""
    seconds = int(seconds)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h" if hours else f"{days} d"
    if hours:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    return f"{minutes} min" if minutes else f"{secs} s"
