"""The send run: workers over reused connections, a rate limit, retries, resume.

Reads like the algorithm: claim a row, render its message from the edition's compiled
template, hand it to the transport, record what the server said and claim the next row in
the same commit. Temporary failures go back to `pending` with a backoff and are retried on
a fresh connection; permanent ones are recorded once. Too many failures in a row pause the
run; Ctrl-C lets the messages in flight finish.
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
    Connection,
    Outgoing,
    PermanentFailure,
    TemporaryFailure,
    TransientConnectError,
    Transport,
    Uncertain,
)

HOUR = 3600.0


@dataclass(frozen=True)
class SendOptions:
    concurrency: int = 4
    rate: float = 0.0  # messages per second, 0 = no limit
    hourly_cap: int = 0  # messages per rolling hour, 0 = no cap
    max_attempts: int = 5
    pause_after: int = 20  # failures in a row before the run pauses
    backoff: float = 2.0  # seconds before the first retry; doubles each time, up to 5 min


@dataclass
class Progress:
    """Counts the run keeps while it goes; read by the progress display."""

    sent: int = 0
    failed: int = 0
    retried: int = 0
    uncertain: int = 0
    skipped: int = 0
    note: str = ""


@dataclass(frozen=True)
class RunResult:
    progress: Progress
    paused: str | None = None  # why the run stopped early, if it did
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
    if signer is None:
        return Outgoing(
            mail_from=compiled.from_addr,
            rcpt=recipient.email,
            filename=filename,
            data=lambda: compiled.render(recipient, message_id),
            smtp_data=lambda: compiled.smtp_payload(recipient, message_id),
        )

    def signed() -> bytes:
        message = compiled.render(recipient, message_id)
        return signer.header(message) + message

    return Outgoing(
        mail_from=compiled.from_addr,
        rcpt=recipient.email,
        filename=filename,
        data=signed,
        smtp_data=lambda: dot_stuff(signed()) + b".\r\n",
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


class SendRun:
    """One run over the ledger of one issue."""

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
        self.queue: collections.deque[Delivery] = collections.deque()
        self.queued: set[int] = set()
        self.cursor = 0  # the last subscriber id taken from the ledger
        self.lock = threading.Lock()
        self.in_flight = 0
        self.failures_in_row = 0
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

    def _take(self, flush: Callable[[], None]) -> Delivery | None:
        """The next row for a worker; None when all is done.

        `flush` records the worker's last outcome. It runs before deciding that nothing is
        left (the outcome may be a retry) and before any wait, so an outcome is never held
        back while this worker is idle.
        """
        while not self.stop.is_set():
            with self.lock:
                delivery = self._refill()
            if delivery is not None:
                return delivery
            flush()
            with self.lock:
                delivery = self._refill()
                if delivery is not None:
                    return delivery
                if self.in_flight == 0:
                    retry_at = self.ledger.next_retry()
                    if retry_at is None:
                        return None
                    wait = max(0.05, min(retry_at - time.time(), 1.0))
                else:
                    wait = 0.05
            self.stop.wait(wait)
        return None

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

    def _retry_at(self, attempts: int) -> float:
        return time.time() + min(self.options.backoff * 2 ** (attempts - 1), 300.0)

    def _attempt(self, conn: Connection, delivery: Delivery) -> tuple[Outcome, bool]:
        """Send one claimed delivery; returns the outcome and whether the connection lives."""
        sid = delivery.subscriber_id
        attempts = delivery.attempts + 1
        try:
            reply = conn.send(self._outgoing(delivery))
            return Outcome(sid, State.SENT, reply), True
        except PermanentFailure as exc:
            return Outcome(sid, State.FAILED, exc.reply), not exc.connection_lost
        except Uncertain as exc:
            return Outcome(sid, State.UNCERTAIN, exc.reply), False
        except (UnicodeError, ValueError) as exc:
            # nothing usable reached the server (the envelope or message could not be
            # encoded); the connection may be mid-command, so it is dropped
            return Outcome(sid, State.FAILED, f"cannot send to this address: {exc}"), False
        except TemporaryFailure as exc:
            if attempts >= self.options.max_attempts:
                reply = f"{exc.reply} (gave up after {attempts} attempts)"
                return Outcome(sid, State.FAILED, reply), not exc.connection_lost
            # a fresh connection for the retry, as providers expect after a 4xx
            return Outcome(sid, State.PENDING, exc.reply, self._retry_at(attempts)), False

    def _count(self, outcome: Outcome) -> None:
        p = self.progress
        with self.lock:
            if outcome.state is State.SENT:
                p.sent += 1
                self.failures_in_row = 0
            else:
                p.failed += outcome.state is State.FAILED
                p.retried += outcome.state is State.PENDING
                p.uncertain += outcome.state is State.UNCERTAIN
                self.failures_in_row += 1
                if self.failures_in_row >= self.options.pause_after and not self.paused:
                    self.paused = (
                        f"paused after {self.failures_in_row} failures in a row "
                        f"(last: {outcome.reply}); run send again to resume"
                    )
                    self.stop.set()
        self.on_progress(p)

    def _worker(self) -> None:
        conn: Connection | None = None
        outcome: Outcome | None = None

        def flush() -> None:
            nonlocal outcome
            if outcome is not None:
                self.ledger.record(outcome, None)
                outcome = None

        try:
            while True:
                delivery = self._take(flush)
                if delivery is None:
                    break
                try:
                    if self.limiter.interval or self.limiter.cap:
                        flush()  # the limiter may hold this worker for a while
                    if not self.limiter.wait(self.stop, self.progress):
                        break
                    claimed = self.ledger.record(outcome, delivery.subscriber_id)
                    outcome = None
                    if not claimed:
                        with self.lock:
                            self.progress.skipped += 1
                        continue
                    if conn is None:
                        try:
                            conn = self.transport.connect()
                        except TransientConnectError as exc:
                            outcome = Outcome(
                                delivery.subscriber_id,
                                State.PENDING,
                                str(exc),
                                self._retry_at(delivery.attempts + 1),
                            )
                            self._count(outcome)
                            continue
                    outcome, alive = self._attempt(conn, delivery)
                    if not alive:
                        conn.close()
                        conn = None
                    self._count(outcome)
                finally:
                    self._done(delivery)
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
        return RunResult(self.progress, self.paused, interrupted)
