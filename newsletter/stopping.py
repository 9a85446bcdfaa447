"""SIGTERM (`systemctl stop`, a shutdown, `kill PID`) stops a send as Ctrl-C does; SIGHUP
(the terminal closed, the ssh connection dropped) does not stop it at all.

Left to Python's default, SIGTERM ends the process on the spot: the messages in flight and
the rows claimed but not yet started stay `sending`, and the next run can only call them
uncertain (they may have arrived), so those readers are not mailed again without
`--resend-uncertain`. Raised as an exception instead, it takes the path Ctrl-C takes: the
messages in flight finish and are recorded, the rows never started go back to pending.

One difference from Ctrl-C: the send is not held. A person who presses Ctrl-C has decided
to stop; a service stopped for a reboot has not, so `newsletter due` resumes the send when
it next runs.
"""

from __future__ import annotations

import ctypes
import os
import signal
import threading

_PR_SET_PDEATHSIG = 1  # linux/prctl.h


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived: stop as on Ctrl-C, without holding the send."""


def _raise(signum: int, frame: object) -> None:
    raise Terminated()


def stop_gently_on_sigterm() -> None:
    """From now on SIGTERM raises Terminated in this process's main thread."""
    if threading.current_thread() is threading.main_thread():  # (signals go only there)
        signal.signal(signal.SIGTERM, _raise)


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
