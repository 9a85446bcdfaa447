"""Pacing a send: a rate limit and an hourly cap, and opening sessions with a shared backoff."""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable, Sequence

from .transport import ConnectFailure, Connection, Transport

HOUR = 3600.0
MAX_CONNECT_BACKOFF = 60.0


class Limiter:
    """Spaces messages `1/rate` apart and keeps an hourly cap over a rolling hour."""

    def __init__(self, rate: float, hourly_cap: int, sent_ago: Sequence[float] = ()):
        """`sent_ago`: how long ago each message already counted against the cap went, in
        seconds, the longest ago first."""
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self.cap = hourly_cap
        self.lock = threading.Lock()
        self.next_slot = 0.0
        # the hourly cap is reached: when (epoch seconds) the next message may go; else 0
        self.held_until = 0.0
        now = time.monotonic()
        # what was sent in the last hour before this run counts against the cap
        self.stamps: collections.deque[float] = collections.deque(now - a for a in sent_ago)

    def wait(self, stop: threading.Event, pointless: Callable[[], bool] = lambda: False) -> bool:
        """Block until a message may go; False if the run is stopping, or if `pointless()`
        says, once a second of a longer wait, that there is nothing left to send."""
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
                        self.held_until = time.time() + delay
                    else:
                        delay = max(0.0, self.next_slot - now)
                        if delay == 0.0:
                            self.next_slot = max(now, self.next_slot) + self.interval
                            if self.cap:
                                self.stamps.append(now)
                            self.held_until = 0.0
                            return not stop.is_set()
                else:
                    delay = max(0.0, self.next_slot - now)
                    if delay == 0.0:
                        self.next_slot = max(now, self.next_slot) + self.interval
                        return not stop.is_set()
            if stop.wait(min(delay, 1.0)) or (delay > 1.0 and pointless()):
                self.held_until = 0.0  # (no longer held: stopping)
                return False


class Sessions:
    """Opens sessions for every worker, with one shared backoff after a failure."""

    def __init__(self, transport: Transport, patience: float):
        self.transport = transport
        self.patience = patience
        self.lock = threading.Lock()
        self.failures = 0
        self.failing_since: float | None = None
        self.next_try = 0.0
        self.last_error = ""

    def open(self, stop: threading.Event, wait: bool = True) -> Connection | None:
        """A new session, or None when the pass is stopping; raises a permanent failure.

        A temporary failure is retried after a pause that doubles, shared by all workers
        so that a server that is down is not hammered; after `patience` seconds without a
        single session it raises, and the caller pauses the pass. `wait=False`: one try at
        most, none during the pause, None if it failed (the caller has other sessions).
        """
        while not stop.is_set():
            with self.lock:
                delay = self.next_try - time.monotonic()
            if delay > 0:
                if not wait or stop.wait(min(delay, 1.0)):
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
                if not wait:
                    return None
                continue
            with self.lock:
                self.failures, self.failing_since = 0, None
            return conn
        return None
