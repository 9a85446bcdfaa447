"""One pass of one worker over the ledger: reused connections, driven in turn by one thread
(or a thread each), claiming the ledger's rows in batches.

Reads like the algorithm: claim k rows (one commit: each becomes `sending`, ours until our
lease runs out), and for each, on one of `concurrency` connections, open a session if
needed, render the message from its edition's compiled template, hand it to the transport
and keep what the server said; the outcomes are recorded in batches too (one commit), only
where we still hold the row. What is recorded follows the SMTP phase a failure happened in (see
transport.py): a temporary refusal is `deferred` (backoff doubling from `retry_backoff` up
to an hour, until `retry_for` has passed since its first attempt), a permanent one
`failed`, a lost reply `uncertain`. A session that cannot be opened is nobody's fault: the
rows waiting for it go back as they were.

The worker renews its leases while it lives; a row whose lease lapsed (a worker killed or
frozen) is turned uncertain by the next claim, anyone's. A worker never starts an SMTP
transaction after its lease has run out by its own clock, so one frozen past it sends
nothing more when it wakes. The pass ends when nothing is due; too many failures in a row
pause it; Ctrl-C lets the messages in flight finish.
"""

from __future__ import annotations

import collections
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from .config import format_duration
from .fastmime import CompiledEdition, now_header
from .ledger import Delivery, Ledger, Outcome, State, Stopped
from .message import Recipient
from .pacing import HOUR, Limiter, Sessions
from .signing import Signer
from .stopping import ctrl_c_deferred, ctrl_c_noted, shielded, terminating
from .transport import (
    ConnectFailure,
    Connection,
    Deferred,
    Halt,
    Outgoing,
    Refused,
    SendFailure,
    Transport,
    Uncertain,
)

MAX_BACKOFF = HOUR  # a deferred message is tried at least once an hour
# what sending one message may raise that is its own outcome (UnicodeError is a ValueError)
_FAILURES = (SendFailure, ValueError)
IDLE_CLOSE = 30.0  # a session left waiting longer than this for the limiter is closed
FLUSH_EVERY = 0.5  # seconds an outcome may wait in memory before it is recorded
TALLY_EVERY = 2.0  # seconds between a worker's reports of its counts (status shows them)


@dataclass(frozen=True)
class SendOptions:
    concurrency: int = 4
    rate: float = 0.0  # messages per second, 0 = no limit
    hourly_cap: int = 0  # messages per rolling hour, 0 = no cap
    retry_backoff: float = 60.0  # seconds before the first retry; doubles, up to an hour
    retry_for: float = 2 * 86400.0  # a deferred message expires this long after its first try
    pause_after: int = 20  # permanent or uncertain outcomes in a row before the pass pauses
    connect_patience: float = 300.0  # seconds of failing to open any session before a pause
    batch: int = 0  # rows a worker holds at most (claimed at a time); 0: 4 x concurrency + 16
    lease: float = 60.0  # seconds a claim holds without renewal
    workers: int = 1  # worker processes (see workers.py); 0: one per core, when it pays
    # this worker's place among the machine's (slot, of how many; workers.share): what was
    # sent in the last hour counts against its part of the hourly cap in the same split
    part: tuple[int, int] = (0, 1)
    # where its first claim begins, as a fraction of the ids left to send (Ledger.start_after):
    # a host's workers spread evenly from 0, a joining host's from a random point
    start: float = 0.0

    @property
    def k(self) -> int:
        # each thread has a message in flight and, pipelining, the next one's envelope (2 a
        # connection); a claim brings about 2 x concurrency + 16 more. Claims of 2 (k = 2c
        # + 2) cost a quarter more CPU a message and sent a fifth slower than 2c + 8, and
        # those a seventh slower than 2c + 16 (bench/send.py, 2 workers of 2 connections)
        return self.batch or 4 * self.concurrency + 16


@dataclass
class Progress:
    """Counts the run keeps while it goes; read by the progress display."""

    sent: int = 0
    failed: int = 0
    deferred: int = 0
    uncertain: int = 0
    skipped: int = 0
    held_until: float = 0.0  # the hourly cap is reached: when the next may go (epoch s)

    def counts(self) -> dict[str, int]:
        return {
            "sent": self.sent,
            "failed": self.failed,
            "deferred": self.deferred,
            "uncertain": self.uncertain,
            "skipped": self.skipped,
        }


@dataclass(frozen=True)
class RunResult:
    progress: Progress
    paused: str | None = None  # why the run stopped early, if it did
    # paused on failures that cannot be undone: a person should look before it goes on
    held: bool = False
    interrupted: bool = False  # Ctrl-C, or SIGTERM (then `terminated` too)
    terminated: bool = False  # SIGTERM: stopped as on Ctrl-C, but the send is not held
    # a worker stopped at its lease (frozen, or cut off from the database): if the others
    # did not send what was left, the pass ends paused (campaign), not quietly
    lapsed: bool = False


Personalise = Callable[[Delivery], Recipient]


def paced(options: SendOptions) -> bool:
    """Held back by a rate or an hourly cap: then a message waits for the limiter before
    its row is claimed, one row a claim. Rows claimed ahead would wait for the limiter (up
    to an hour at the cap), uncertain after a crash, out of reach of an unsubscribe."""
    return bool(options.rate or options.hourly_cap)


def share_of(total: int, part: tuple[int, int]) -> int:
    """Part `slot` of `total` split in whole parts among `n`: they add up to it."""
    slot, n = part
    each, more = divmod(total, n)
    return each + (slot < more)


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
            data=lambda: compiled.render_parts(recipient, message_id),
            smtp_data=lambda: compiled.smtp_parts(recipient, message_id),
            envid=recipient.envid,
        )

    def signed() -> list[bytes]:
        parts = compiled.render_parts(recipient, message_id)
        return [signer.header(parts, compiled.pieces), *parts]

    def signed_smtp() -> list[bytes]:
        # the same Date in what is signed and what is sent
        parts, smtp = compiled.both_parts(recipient, message_id, now_header())
        return [signer.header(parts, compiled.pieces), *smtp]

    return Outgoing(
        mail_from=mail_from,
        rcpt=recipient.email,
        filename=filename,
        data=signed,
        smtp_data=signed_smtp,
        envid=recipient.envid,
    )


def worker_name() -> str:
    """Unique among every process of every host taking part in a send."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


class SendRun:
    """One pass of one worker (a process) over the ledger of one issue."""

    def __init__(
        self,
        ledger: Ledger,
        transport: Transport,
        editions: Mapping[str, CompiledEdition],
        personalise: Personalise,
        options: SendOptions,
        on_progress: Callable[[Progress], None] = lambda p: None,
        signer: Signer | None = None,
        on_recorded: Callable[[Progress], None] = lambda p: None,
        limiter: Limiter | None = None,
        worker: str | None = None,
        stop: threading.Event | None = None,
        sent_ago: Sequence[float] | None = None,
    ):
        """`sent_ago`: how long ago each of the last messages of the hour went, the longest
        ago first, as the parent measured it before its workers began (else asked of the
        ledger now: a worker started a moment after the others would count their messages
        against its own part of the cap)."""
        self.signer = signer
        self.ledger = ledger
        self.transport = transport
        self.editions = editions
        self.personalise = personalise
        self.options = options
        self.on_progress = on_progress
        self.on_recorded = on_recorded
        self.worker = worker or worker_name()
        self.progress = Progress()
        # the outcomes once recorded, told to `on_recorded` at each commit (a worker process
        # reports these: killed, it has never counted what it could not record; woken past
        # its lease, it does not count the outcomes the ledger refused)
        self.recorded = Progress()
        self.stop = stop or threading.Event()
        self.told = ""  # why it was asked to stop from outside (a Stopped), for status
        self.paused: str | None = None
        self.held = False
        self.lock = threading.Lock()  # the run's state; held for moments, never over I/O
        self.claiming = threading.Lock()  # one thread claims at a time, the others go on
        self.queue: collections.deque[Delivery] = collections.deque()
        self.cursor = 0  # the last subscriber id claimed, for the next claim
        self.exhausted = False
        self.outcomes: list[Outcome] = []
        self.flushed_at = time.monotonic()
        self.unsent: list[int] = []  # claimed, no SMTP transaction started: given back
        self.in_flight = 0
        self.failures_in_row = 0
        self.sessions = Sessions(transport, options.connect_patience)
        # what went in the last hour counts against the cap from when it went (a worker
        # takes its share of them, every n-th); only the last `cap` of them can hold any back
        slot, n = options.part
        last_hour = sent_ago
        if last_hour is None:
            last_hour = (
                ledger.sent_within(HOUR, n * options.hourly_cap) if options.hourly_cap else []
            )
        self.limiter = limiter or Limiter(options.rate, options.hourly_cap, last_hour[slot::n])
        self.paced = bool(self.limiter.interval or self.limiter.cap)  # see paced()
        self.lease_until = 0.0  # by this process's monotonic clock, with a margin
        self.lease_ran_out = False
        self.errors: list[BaseException] = []
        self.all_done = threading.Event()
        self.live_workers = 0
        self.tallied: dict[str, int] = {}  # counts already added to send_workers
        self.left_checked = 0.0  # when _nothing_left last asked the ledger

    # --- claims and outcomes ---------------------------------------------------------------

    def _claim(self) -> None:
        """Refill the queue with a batch of claimed rows, outside self.lock: while one
        thread waits for the database, the others record their outcomes and go on."""
        with self.claiming:
            while True:
                with self.lock:
                    if self.queue or self.exhausted or self.stop.is_set():
                        return  # another thread refilled it meanwhile, or the pass is over
                    self._release_locked()
                    # no more than k rows held at once, counting those still in flight:
                    # that bounds what a crash leaves uncertain
                    # paced: only the row the limiter has just let go
                    want = 1 if self.paced else max(1, self.options.k - self.in_flight)
                    # the outcomes kept so far are recorded in the same commit as the claim
                    outcomes, self.outcomes = self.outcomes, []
                started = time.monotonic()
                try:
                    self.ledger.check_in_place()
                    batch, cursor, skipped, recorded = self.ledger.claim(
                        self.worker, want, self.options.lease, self.cursor, outcomes=outcomes
                    )
                except BaseException:
                    with self.lock:
                        self.outcomes[:0] = outcomes  # for the last flush to try again
                    raise
                with self.lock:
                    self.flushed_at = time.monotonic()
                    self.progress.skipped += skipped
                    self._recorded_locked(outcomes, recorded, skipped)
                    if not batch and cursor == 0:
                        if self.cursor == 0:
                            self.exhausted = True  # nothing due anywhere: this pass is over
                        self.cursor = 0  # past the end: behind us are retries now due
                        continue
                    self.cursor = cursor
                    if batch:
                        self._lease_locked(started, renewed=False)
                        self.queue.extend(batch)

    def _lease_locked(self, started: float, renewed: bool) -> None:
        """The time until which this worker may start transactions (`lease_until`), after a
        claim, or a renewal of every row it holds, that began at `started`: 0.8 of the lease
        on, a margin below what the database holds. A claim leases only its own rows: with
        others held, their earlier deadline stands. A renewal done once the deadline had
        passed (the process frozen past it) moves nothing: the rows held may have been
        reaped meanwhile, so the worker stops at its next check, as it must."""
        fresh = started + 0.8 * self.options.lease
        held = bool(self.queue) or self.in_flight > 0
        if not held or (renewed and time.monotonic() < self.lease_until):
            self.lease_until = fresh
        else:
            self.lease_until = min(self.lease_until, fresh)

    def _pop(self, ahead: bool = False) -> Delivery | None:
        """The next claimed row for a thread, claiming more when none is left; None when
        the pass is over for it. `ahead`: for pipelining behind the message in flight,
        only while fewer than k rows are held."""
        while True:
            with self.lock:
                if self.stop.is_set():
                    return None
                if self.queue:
                    self.in_flight += 1
                    return self.queue.popleft()
                if self.exhausted or (ahead and self.in_flight >= self.options.k):
                    return None
            self._claim()

    def _nothing_left(self) -> bool:
        """Whether waiting for the limiter is pointless: nothing held, nothing due (asked of
        the ledger once a second at most, whatever the number of threads waiting)."""
        with self.lock:
            if self.queue or self.exhausted:
                return self.exhausted and not self.queue
            now = time.monotonic()
            if now - self.left_checked < 1.0:
                return False
            self.left_checked = now
        return not self.ledger.due(1)

    def _done(self, outcome: Outcome | None, delivery: Delivery) -> None:
        """A row's end in this pass: counted, and its outcome kept for the next batch of
        marks (recorded outside the lock, so the other threads go on meanwhile), or, without
        one, given back as it was."""
        batch: list[Outcome] = []
        with self.lock:
            self.in_flight -= 1
            if outcome is None:
                self.unsent.append(delivery.subscriber_id)
                return
            self._count_locked(outcome)
            self.outcomes.append(outcome)
            # most go with the next claim; these wait for none (the last of a pass, or
            # a pass held by the rate limit)
            now = time.monotonic()
            if len(self.outcomes) >= 2 * self.options.k or now - self.flushed_at > FLUSH_EVERY:
                batch, self.outcomes, self.flushed_at = self.outcomes, [], now
        if batch:
            self._mark(batch)
        self.on_progress(self.progress)  # (held_until: the main loop keeps it, not each outcome)

    def _tell_progress(self) -> None:
        """From the main thread: a display that fails (a full disk, a closed pipe) stops
        the pass as an error would, its messages in flight finished and recorded."""
        try:
            self.on_progress(self.progress)
        except Exception as exc:  # noqa: BLE001 - raised once the threads have ended
            with self.lock:
                self.errors.append(exc)
            self.stop.set()

    def _mark(self, batch: list[Outcome]) -> None:
        """Record outcomes taken out of the list, outside the lock; if that fails (the
        database locked or gone), they go back in it, for the last flush to try again."""
        try:
            recorded = self.ledger.mark(self.worker, batch)
        except BaseException:
            with self.lock:
                self.outcomes[:0] = batch
            raise
        with self.lock:
            self._recorded_locked(batch, recorded)

    def _recorded_locked(
        self, outcomes: Iterable[Outcome], recorded: frozenset[int], skipped: int = 0
    ) -> None:
        """Count the outcomes the ledger took. One it refused (our lease had lapsed: the row
        was turned uncertain, by whoever reaped it) is nobody's, as a killed worker's are."""
        counts = self.recorded
        counts.skipped += skipped
        for outcome in outcomes:
            if outcome.subscriber_id in recorded:
                name = outcome.state.value  # sent, failed, deferred or uncertain: a field
                setattr(counts, name, getattr(counts, name) + 1)
        self.on_recorded(counts)

    def _release_locked(self) -> None:
        if self.unsent:
            self.ledger.release(self.worker, self.unsent)
            self.unsent = []

    def _flush_locked(self) -> None:
        if self.outcomes:
            recorded = self.ledger.mark(self.worker, self.outcomes)
            self._recorded_locked(self.outcomes, recorded)
            self.outcomes = []
        self._release_locked()
        self.flushed_at = time.monotonic()

    def _renew(self) -> None:
        """Keep our claims alive while we hold any, and record outcomes that waited (the
        threads may be held by the rate limit or the hourly cap); stop if the database
        cannot be reached. This worker's counts go to its row every few seconds, so that
        `status` shows its share while it sends."""
        interval = self.options.lease / 4
        renewed = time.monotonic()
        while not self.all_done.wait(min(TALLY_EVERY, interval)):
            started = time.monotonic()
            try:
                if started - renewed >= interval:
                    self.ledger.renew(self.worker, self.options.lease)
                    with self.lock:
                        self._lease_locked(started, renewed=True)
                    renewed = started
                with self.lock:
                    batch, self.outcomes, self.flushed_at = self.outcomes, [], started
                if batch:
                    self._mark(batch)
                self._tally()
            except Exception as exc:  # noqa: BLE001 - the workers stop at the lease, not here
                self.errors.append(exc)
                self.stop.set()
                return

    def _stopped(self, interrupted: bool, terminated: bool) -> str:
        """Why the pass ended early, for `status`; "" when it ran until nothing was left."""
        if terminated:
            return Stopped.TERMINATED
        if interrupted:
            return Stopped.INTERRUPTED
        if self.errors:
            return Stopped.FAILED
        if self.paused:
            return Stopped.PAUSED
        if self.exhausted or not self.stop.is_set():
            return ""  # (a stop that came once nothing was left changed nothing)
        return self.told or Stopped.STOPPED  # asked to, or its lease ran out

    def _tally(self, finished: bool = False, stopped: str = "") -> None:
        """Add what was recorded since the last tally to this worker's row (status shows
        it); `finished`: the pass is over, `stopped` says why if it ended early."""
        counts = self.recorded.counts()
        delta = {k: v - self.tallied.get(k, 0) for k, v in counts.items()}
        self.ledger.tally(self.worker, delta, finished, stopped)
        self.tallied = counts

    # --- one message -----------------------------------------------------------------------

    def _lapsed(self) -> bool:
        """Whether this worker may begin nothing more: it was told to stop, or it was frozen
        or cut off past its lease by its own clock (its rows may be someone else's now: the
        pass says so, see RunResult.lapsed)."""
        if self.stop.is_set():
            return True
        if time.monotonic() < self.lease_until:
            return False
        self.lease_ran_out = True
        self.stop.set()
        return True

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
            waited = format_duration(now - first)
            return Outcome(delivery.subscriber_id, State.FAILED, f"expired after {waited}: {reply}")
        delay = min(self.options.retry_backoff * 2 ** (delivery.attempts - 1), MAX_BACKOFF)
        # never past the expiry: the last try happens when the time is up
        retry_at = min(now + delay, first + self.options.retry_for)
        return Outcome(delivery.subscriber_id, State.DEFERRED, reply, retry_at)

    def _attempt(
        self,
        conn: Connection,
        delivery: Delivery,
        message: Outgoing,
        following: Outgoing | None = None,
    ) -> tuple[Outcome, bool]:
        """Send one claimed delivery; returns the outcome and whether the connection lives."""
        try:
            reply = conn.send(message, following) if following else conn.send(message)
        except _FAILURES as exc:
            return self._failed(delivery, exc)
        return Outcome(delivery.subscriber_id, State.SENT, reply), True

    def _failed(self, delivery: Delivery, exc: Exception) -> tuple[Outcome, bool]:
        """What a failure to send means for the row, and whether the connection lives."""
        sid = delivery.subscriber_id
        if isinstance(exc, Refused):
            return Outcome(sid, State.FAILED, exc.reply), not exc.connection_lost
        if isinstance(exc, Uncertain):
            return Outcome(sid, State.UNCERTAIN, exc.reply), False
        if isinstance(exc, Deferred):
            # after a 4xx, providers expect the retry on a fresh connection
            return self._deferred(delivery, exc.reply), False
        # nothing usable reached the server (the envelope or message could not be encoded);
        # the connection may be mid-command, so it is dropped
        return Outcome(sid, State.FAILED, f"cannot send to this address: {exc}"), False

    def _count_locked(self, outcome: Outcome) -> None:
        p = self.progress
        if outcome.state is State.SENT:
            p.sent += 1
            self.failures_in_row = 0
            return
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

    # --- one thread ------------------------------------------------------------------------

    def _thread(self, conn: Connection | None = None, first: Delivery | None = None) -> None:
        """One connection's thread (`conn` and `first`: a session and a row handed over)."""
        idle_since = time.monotonic()
        paced = self.paced
        held: list[Delivery] = [first] if first else []  # taken, outcome not yet given
        message: Outgoing | None = None  # the next delivery's message, when made ahead
        try:
            while True:
                # paced: the limiter first, then a row (none is held while it waits)
                if paced and not held and not self.limiter.wait(self.stop, self._nothing_left):
                    break
                delivery = held[0] if held else self._pop()
                if delivery is None:
                    break
                if not held:
                    held.append(delivery)
                if paced and conn is not None and time.monotonic() - idle_since > IDLE_CLOSE:
                    conn.close()  # the server may have given up on it meanwhile
                    conn = None
                if conn is None:
                    # a session first: a failure to open one is no reader's attempt
                    conn = self.sessions.open(self.stop)
                    if conn is None:
                        break
                if self._lapsed():
                    break
                if message is None or getattr(conn, "owed", None) is not message:
                    message = self._outgoing(delivery)
                ahead = None
                if not paced and getattr(conn, "takes_following", False):
                    following = self._pop(ahead=True)  # its envelope goes behind this message
                    if following is not None:
                        held.append(following)
                        ahead = self._outgoing(following)
                # (a Halt leaves the row without an outcome: it goes back as it was)
                outcome, alive = self._attempt(conn, delivery, message, ahead)
                held.remove(delivery)
                self._done(outcome, delivery)
                idle_since = time.monotonic()
                if not alive:
                    conn.close()  # a message whose envelope went ahead goes again on the next
                    conn = None
                message = ahead
        except BaseException as exc:  # noqa: BLE001 - reported by run()
            self._ended_by(exc)
        finally:
            self._leave(held, [conn])

    def _ended_by(self, exc: BaseException) -> None:
        """A sending thread's end on an exception: a session that cannot be opened pauses
        the pass (nothing was lost) or stops it; run() reports anything else."""
        if isinstance(exc, ConnectFailure) and exc.temporary:
            with self.lock:
                if not self.paused:
                    self.paused = f"paused: {exc}; nothing was lost, run send again to resume"
        else:
            self.errors.append(exc)
        self.stop.set()

    def _leave(self, held: list[Delivery], conns: list[Connection | None]) -> None:
        """A sending thread's last act: the rows it took and never attempted go back as
        they were, its sessions are closed, and the last thread says the pass is over."""
        try:
            for delivery in held:
                self._done(None, delivery)
            for conn in conns:
                if conn is not None:
                    conn.close()
        finally:
            with self.lock:
                self.live_workers -= 1
                if self.live_workers == 0:
                    self.all_done.set()

    # --- one thread, every connection in turn ----------------------------------------------

    def _turns(self) -> None:
        """The worker's connections driven by one thread, in turns: on each a whole message
        is written (envelope and BDAT in one write), then each one's replies are read. As
        many messages in flight as connections, without a thread each: threads handing the
        interpreter to one another cost a fifth of a message's CPU (bench/send.py).

        For a server that takes BDAT pipelined (SmtpConnection.takes_turns). The first
        session tells: one that does not starts a thread a connection instead, as before.
        A session without it opened later sends its message whole, in its turn. Sessions
        are opened between turns, when no reply is waiting to be read."""
        slots: list[Connection | None] = [None] * self.options.concurrency
        held: list[Delivery] = []  # taken, not yet written: given back if it ends here
        begun: list[tuple[int, Delivery]] = []  # written, replies not yet read
        first = True
        try:
            while True:
                over = False
                for i in range(len(slots)):
                    if slots[i] is None and any(slots):
                        continue  # opened between turns (below), holding up no reply
                    delivery = held[0] if held else self._pop()
                    if delivery is None:
                        over = True
                        break
                    if not held:
                        held.append(delivery)
                    if slots[i] is None:
                        # none open: wait for one (a session first: no reader's attempt)
                        slots[i] = self.sessions.open(self.stop)
                        if slots[i] is None:
                            over = True  # the pass is stopping
                            break
                        if first and not getattr(slots[i], "takes_turns", False):
                            conn, slots[i] = slots[i], None  # (the first thread's now)
                            self._threads_instead(conn, held.pop())
                            return
                        first = False
                    if self._lapsed():
                        over = True
                        break
                    conn = slots[i]
                    message = self._outgoing(delivery)
                    if getattr(conn, "takes_turns", False):
                        try:
                            conn.begin(message)
                        except _FAILURES as exc:
                            outcome, alive = self._failed(delivery, exc)
                        else:
                            begun.append((i, held.pop()))
                            continue
                    else:
                        outcome, alive = self._attempt(conn, delivery, message)
                    held.pop()
                    self._done(outcome, delivery)
                    if not alive:
                        conn.close()
                        slots[i] = None
                self._end_turns(slots, begun)
                if over:
                    break
                for i, conn in enumerate(slots):
                    if conn is None:  # one try at most, none during the backoff
                        slots[i] = self.sessions.open(self.stop, wait=False)
        except BaseException as exc:  # noqa: BLE001 - reported by run()
            self._ended_by(exc)
        finally:
            try:
                self._end_turns(slots, begun, last=True)
            finally:
                self._leave(held, slots)

    def _end_turns(
        self, slots: list[Connection | None], begun: list[tuple[int, Delivery]], last=False
    ) -> None:
        """Read the replies of the messages written, in turn, and record their outcomes.
        `last`: the thread is ending on an error; a reply that cannot be read then leaves
        its row uncertain (the message was written: it may have arrived)."""
        halt: Halt | None = None
        unrecorded: Exception | None = None
        while begun:
            i, delivery = begun.pop(0)
            conn = slots[i]
            try:
                outcome, alive = self._replied(conn, delivery)
            except Halt as exc:  # our sender refused: nothing went (conn is closed)
                halt, outcome, alive = halt or exc, None, False
            except Exception as exc:  # noqa: BLE001 - only when ending on an error
                if not last:
                    begun.insert(0, (i, delivery))
                    raise
                why = f"the reply could not be read: {exc}"
                outcome, alive = Outcome(delivery.subscriber_id, State.UNCERTAIN, why), False
            try:
                self._done(outcome, delivery)
            except Exception as exc:  # noqa: BLE001 - recording failed: the outcome is kept
                unrecorded = unrecorded or exc  # for the last flush; the others end first
            if not alive and conn is not None:
                conn.close()
                slots[i] = None
        if unrecorded is not None:
            if not last:
                raise unrecorded
            self._ended_by(unrecorded)  # (ending already: run() reports it)
        if halt is not None and not last:
            raise halt

    def _replied(self, conn: Connection | None, delivery: Delivery) -> tuple[Outcome, bool]:
        """The outcome of a message written in its turn, once its replies are read."""
        if conn is None:  # (never expected: each connection holds one message at most)
            why = "the connection was gone before its reply was read"
            return Outcome(delivery.subscriber_id, State.UNCERTAIN, why), False
        try:
            reply = conn.end()
        except _FAILURES as exc:
            return self._failed(delivery, exc)
        return Outcome(delivery.subscriber_id, State.SENT, reply), True

    def _threads_instead(self, conn: Connection, first: Delivery) -> None:
        """The server does not take turns: a thread a connection, the first with the
        session and the row in hand (the thread starting them then ends)."""
        threads = [threading.Thread(target=self._thread, args=(conn, first), name="send-0")]
        threads += [
            threading.Thread(target=self._thread, name=f"send-{n}")
            for n in range(1, self.options.concurrency)
        ]
        for n, t in enumerate(threads):  # each counted once started: one that cannot start
            t.daemon = True  # never ends
            with self.lock:
                self.live_workers += 1
            try:
                t.start()
            except BaseException:
                with self.lock:
                    self.live_workers -= 1
                if n == 0:  # the session and the row in hand were its own: given back
                    conn.close()
                    self._done(None, first)
                raise

    def run(self) -> RunResult:
        with shielded():  # SIGTERM while it runs: recorded, seen below, never raised
            return self._run()

    def _run(self) -> RunResult:
        if terminating():  # SIGTERM came before this pass began: nothing claimed yet
            return RunResult(self.progress, interrupted=True, terminated=True)
        if self.paced or self.options.concurrency == 1:
            threads = [
                threading.Thread(target=self._thread, name=f"send-{n}", daemon=True)
                for n in range(self.options.concurrency)
            ]
        else:
            threads = [threading.Thread(target=self._turns, name="send-turns", daemon=True)]
        self.live_workers = len(threads)
        renewer = threading.Thread(target=self._renew, name="send-lease", daemon=True)
        interrupted = terminated = False
        # Waiting on an Event, not Thread.join(): a join interrupted by Ctrl-C can leave
        # CPython (before 3.13) believing the thread has ended while it still sends.
        try:
            with ctrl_c_deferred():  # (taken up below once every thread has started)
                self.ledger.join(self.worker, socket.gethostname(), os.getpid())
                self.cursor = self.ledger.start_after(self.options.start)
                renewer.start()
                for t in threads:
                    t.start()
            while not self.all_done.wait(0.2):
                held = self.limiter.held_until
                if held or held != self.progress.held_until:
                    # held back by the hourly cap (told five times a second, as no outcome
                    # comes), or let go: told now, not at the next outcome
                    self.progress.held_until = held
                    self._tell_progress()
                if terminating() and not terminated:
                    # SIGTERM: as on Ctrl-C, the messages in flight finish and are recorded
                    interrupted = terminated = True
                    self.stop.set()
        except KeyboardInterrupt:
            # Ctrl-C: let the messages in flight finish and be recorded, then stop
            interrupted = True
            self.stop.set()
            self.all_done.wait()
        with ctrl_c_noted() as pressed:  # (the outcomes are recorded whole)
            renewer.join()
            with self.lock:
                # what was claimed and never started goes back as it was
                self.unsent.extend(d.subscriber_id for d in self.queue)
                self.queue.clear()
                self._flush_locked()
            interrupted = interrupted or bool(pressed)
            self._tally(True, self._stopped(interrupted, terminated))
        for exc in self.errors:
            raise exc
        return RunResult(
            self.recorded,  # (what the ledger took: the live counts hold what it refused too)
            self.paused,
            interrupted=interrupted,
            terminated=terminated,
            held=self.held,
            lapsed=self.lease_ran_out,
        )
