"""SIGTERM (`systemctl stop`, a shutdown, `kill PID`) stops a send as Ctrl-C does; SIGHUP
(the terminal closed, the ssh connection dropped) does not stop it at all.

Left to Python's default, SIGTERM ends the process on the spot: the messages in flight and
the rows claimed but not yet started stay `sending`, and the next run can only call them
uncertain (they may have arrived), so those readers are not mailed again without
`--resend-uncertain`. Here it is a request: while a send runs (inside `shielded()`), the
handler only records it, and the send's own loops see it, let the messages in flight
finish, record them and put the rows never started back, as on Ctrl-C. Outside (starting
up, before anything is claimed), it raises `Terminated` at once. A second SIGTERM changes
nothing: the first one's stop is already under way.

One difference from Ctrl-C: the send is not held. A person who presses Ctrl-C has decided
to stop; a service stopped for a reboot has not, so `newsletter due` resumes the send when
it next runs.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import threading
from collections.abc import Iterator

_PR_SET_PDEATHSIG = 1  # linux/prctl.h
_requested = threading.Event()
_shields = [0]  # how deep in shielded() the main thread is


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived while nothing was being sent: stop now, without holding the send."""


def _on_sigterm(signum: int, frame: object) -> None:
    first = not _requested.is_set()
    _requested.set()
    if first and not _shields[0]:
        raise Terminated()


def stop_gently_on_sigterm() -> None:
    """From now on SIGTERM is a request to stop (see the module's docstring)."""
    if threading.current_thread() is threading.main_thread():  # (signals go only there)
        signal.signal(signal.SIGTERM, _on_sigterm)


def terminating() -> bool:
    """Whether SIGTERM asked this process to stop."""
    return _requested.is_set()


@contextlib.contextmanager
def shielded() -> Iterator[None]:
    """A stretch that must end by itself: SIGTERM in it is recorded, not raised; the code
    inside polls `terminating()` and winds down."""
    _shields[0] += 1
    try:
        yield
    finally:
        _shields[0] -= 1


@contextlib.contextmanager
def ctrl_c_noted() -> Iterator[list[int]]:
    """A stretch Ctrl-C must not cut in two (threads half started, outcomes half recorded):
    a Ctrl-C in it is only noted in the list it gives. Outside the main thread, or where
    Ctrl-C does not raise KeyboardInterrupt (ignored, someone else's handler), it changes
    nothing."""
    pressed: list[int] = []
    if (
        threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGINT) is not signal.default_int_handler
    ):
        yield pressed
        return
    signal.signal(signal.SIGINT, lambda signum, frame: pressed.append(signum))
    try:
        yield pressed
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)


@contextlib.contextmanager
def ctrl_c_deferred() -> Iterator[None]:
    """As `ctrl_c_noted`, and a Ctrl-C noted is raised as KeyboardInterrupt once the stretch
    ends, where the caller's handler takes it up."""
    with ctrl_c_noted() as pressed:
        yield
    if pressed:
        raise KeyboardInterrupt


def stop_with_parent(parent: int) -> None:
    """Linux: SIGTERM this process when `parent` dies. A worker process of a `send` killed
    with SIGKILL would otherwise go on mailing the list, unseen, after the person stopped it
    and perhaps started another; now it finishes what is in flight and stops. (Linux
    signals when the *thread* that started the worker ends: run_pass runs in the main one.)"""
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):  # not Linux: the worker outlives its parent
        return
    prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:  # it died before the line above
        os.kill(os.getpid(), signal.SIGTERM)


def carry_on_after_hangup() -> None:
    """SIGHUP (the terminal closed, an ssh connection dropped): the send goes on, and what
    it would have printed on that terminal is dropped (`status` shows how it went).
    Python's default would end it on the spot, as SIGKILL does."""
    if threading.current_thread() is not threading.main_thread():
        return
    # known now: once the terminal has hung up, isatty() answers False for it
    terminal = [fd for fd in (1, 2) if _isatty(fd)]

    def detach(signum: int, frame: object) -> None:
        null = os.open(os.devnull, os.O_WRONLY)
        for fd in terminal:
            os.dup2(null, fd)
        os.close(null)

    signal.signal(signal.SIGHUP, detach)


def _isatty(fd: int) -> bool:
    try:
        return os.isatty(fd)
    except OSError:
        return False
