"""SIGTERM (`systemctl stop`, a shutdown) stops `send` and `due` as Ctrl-C does: the message
in flight is finished and recorded, the rows claimed and not started go back to pending,
and the send is not held, so the next `due` resumes it. SIGHUP (a terminal hanging up)
does not stop it at all. Real processes, a real SMTP server on 127.0.0.1 that holds one
message until the test lets it go."""

from __future__ import annotations

import fcntl
import os
import pty
import signal
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest

from newsletter.ledger import Ledger, SendState, State

from .conftest import DEMO_ISSUE, run_cli
from .smtp_server import Handler, Server
from .test_send import add_people, env_for, ledger_states, many
from .test_send_workers import Slow, _wait_for, _workers


def _spawn(workdir: Path, port: int, *args: str) -> subprocess.Popen:
    # a session of its own: the test can signal every process of it, as systemd does
    return subprocess.Popen(
        [sys.executable, "-m", "newsletter", *args],
        cwd=workdir,
        env=env_for(workdir, port),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )


def _send_state(workdir: Path) -> SendState:
    ledger = Ledger(workdir / "news.db", DEMO_ISSUE)
    try:
        info = ledger.info()
        assert info is not None
        return info.state
    finally:
        ledger.close()


def _terminate_while_held(proc: subprocess.Popen, handler: Handler, whom: str) -> str:
    """SIGTERM while the server holds a message, then let it go; the command's stderr."""
    assert handler.holding.wait(60), "the send never reached the held message"
    if whom == "stdout closed":
        proc.stdout.close()  # what read its output was stopped with it
    if whom in ("group", "twice"):
        os.killpg(proc.pid, signal.SIGTERM)
    else:
        proc.send_signal(signal.SIGTERM)
    if whom == "twice":  # an impatient second one changes nothing
        time.sleep(0.1)
        os.killpg(proc.pid, signal.SIGTERM)
    time.sleep(0.3)
    assert proc.poll() is None  # still waiting for the server's reply to the held message
    handler.gate.set()
    text = proc.stderr.read().decode()  # to the end: when the command and its workers end
    assert proc.wait(60) == 143, text
    assert "Traceback" not in text and "Exception ignored" not in text, text
    return text


@pytest.mark.parametrize(
    "workers, whom",
    [(1, "parent"), (1, "stdout closed"), (2, "parent"), (2, "group"), (2, "twice")],
    ids=["one process", "stdout closed", "workers, kill PID", "workers, systemctl stop",
         "workers, twice"],
)  # fmt: skip
def test_sigterm_finishes_the_message_in_flight_and_due_resumes(workdir, workers, whom):
    people = many(30)
    add_people(workdir, people)
    victim = "reader5@example.org"
    # slow enough that a second worker is still sending when the stop reaches it
    handler = Slow(delay=0.05, script={victim: ["hold-keep"]})
    with Server(handler) as server:
        args = ("--yes", "--concurrency", str(workers), "--workers", str(workers))
        proc = _spawn(workdir, server.port, "send", f"issues/{DEMO_ISSUE}", *args)
        err = _terminate_while_held(proc, handler, whom)
        assert "stopped (terminated); the messages in flight were finished" in err
        assert "Not held: newsletter due (the timer) or send resumes it" in err
        states = ledger_states(workdir)
        assert states[victim] is State.SENT  # finished and recorded
        # killed outright, the claimed rows would be left `sending`, then uncertain
        assert {State.SENDING, State.UNCERTAIN}.isdisjoint(states.values()), states
        assert State.PENDING in states.values()
        assert _send_state(workdir) is SendState.ACTIVE  # not held: the timer resumes it
        # status says why each process stopped: SIGTERM, however it reached it (a worker
        # that had nothing left by then finished)
        status = run_cli("status", f"issues/{DEMO_ISSUE}", cwd=workdir, env=env_for(workdir, 1))
        ends = [line.rpartition("; ")[2] for line in status.stdout.splitlines()
                if " process " in line]  # fmt: skip
        stopped = "stopped early (SIGTERM, or its send was killed)"
        assert stopped in ends and set(ends) <= {stopped, "finished"}, status.stdout
        due = run_cli("due", cwd=workdir, env=env_for(workdir, server.port))
        assert due.returncode == 0, due.stderr
        # what SIGTERM left is resumed, not "retried": nothing was deferred
        unsent = sum(state is State.PENDING for state in states.values())
        assert f"issue {DEMO_ISSUE}: resuming: {unsent} not yet sent\n" in due.stdout
        for address, _, _ in people:
            assert handler.copies(address) == 1, address
    assert set(ledger_states(workdir).values()) == {State.SENT}
    assert _send_state(workdir) is SendState.DONE


def test_sigterm_after_one_worker_has_ended_stops_the_other(workdir):
    # a worker that ended used to leave the shared stop waiting on it: the command hung
    add_people(workdir, many(12))
    victim = "reader11@example.org"  # the last row: the other worker runs out before it
    handler = Handler(script={victim: ["hold-keep"]})
    with Server(handler) as server:
        args = ("--yes", "--concurrency", "2", "--workers", "2")
        proc = _spawn(workdir, server.port, "send", f"issues/{DEMO_ISSUE}", *args)
        assert handler.holding.wait(60), "the send never reached the held message"
        _wait_for(lambda: len(_workers(proc.pid)) == 1, "the other worker never ended")
        err = _terminate_while_held(proc, handler, "parent")
        assert "stopped (terminated)" in err
        assert ledger_states(workdir)[victim] is State.SENT


@pytest.mark.parametrize("delay", [0.1, 0.5, 0.9, 1.3, 1.7])
def test_sigterm_at_any_moment_leaves_nobody_in_doubt(workdir, delay):
    """Starting up, building, claiming, sending, reporting: wherever SIGTERM lands, the
    command ends on its own terms (143, or 0 if it had finished; killed only while Python
    itself starts or shuts down), and no row is left `sending` (uncertain on the next run)."""
    people = many(40)
    add_people(workdir, people)
    handler = Slow(delay=0.02)
    with Server(handler) as server:
        proc = _spawn(workdir, server.port, "send", f"issues/{DEMO_ISSUE}", "--yes",
                      "--concurrency", "1")  # fmt: skip
        time.sleep(delay)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
        text = err.decode()
        states = ledger_states(workdir)
        # -15: Python itself still starting, or already shutting down (it puts back the
        # default handler then): either way nothing is in flight
        assert proc.returncode in (0, 143, -signal.SIGTERM), text
        assert "Traceback" not in text, text
        assert {State.SENDING, State.UNCERTAIN}.isdisjoint(states.values()), states
        for address, _, _ in people:
            expected = 1 if states.get(address) is State.SENT else 0
            assert handler.copies(address) == expected, address


def test_sigterm_stops_due_itself_and_the_next_due_finishes(workdir):
    people = many(10)
    add_people(workdir, people)
    held, behind = "reader7@example.org", "reader8@example.org"
    with Server(Handler(script={held: ["451"], behind: ["451"]})) as server:
        first = run_cli(
            "send", f"issues/{DEMO_ISSUE}", "--yes", "--concurrency", "1", cwd=workdir,
            env=env_for(workdir, server.port, NEWSLETTER_RETRY_BACKOFF="0.1s"),
        )  # fmt: skip
        assert first.returncode == 4, first.stderr  # two deferred: due retries them
    time.sleep(0.2)
    handler = Handler(script={held: ["hold-keep"]})
    with Server(handler) as server:
        proc = _spawn(workdir, server.port, "due")
        err = _terminate_while_held(proc, handler, "group")
        assert f"issue {DEMO_ISSUE}: stopped (terminated)" in err
        assert "the next due resumes it" in err
        states = ledger_states(workdir)
        assert states[held] is State.SENT
        assert states[behind] is State.DEFERRED  # claimed with it, never started: put back
        assert _send_state(workdir) is SendState.ACTIVE
        time.sleep(0.2)
        again = run_cli("due", cwd=workdir, env=env_for(workdir, server.port))
        assert again.returncode == 0, again.stderr
        assert handler.copies(held) == handler.copies(behind) == 1
    assert _send_state(workdir) is SendState.DONE


@pytest.mark.parametrize("workers", [1, 2], ids=["one process", "workers"])
def test_a_hangup_leaves_the_send_going_to_the_end(workdir, workers):
    """The ssh connection drops, the terminal closes: SIGHUP to the whole foreground group.
    The send carries on, its output dropped, and everyone gets one copy."""
    people = many(12)
    add_people(workdir, people)
    victim = "reader5@example.org"
    handler = Handler(script={victim: ["hold-keep"]})
    master, terminal = pty.openpty()
    with Server(handler) as server:
        proc = subprocess.Popen(
            [sys.executable, "-m", "newsletter", "send", f"issues/{DEMO_ISSUE}", "--yes",
             "--concurrency", str(workers), "--workers", str(workers)],
            cwd=workdir, env=env_for(workdir, server.port),
            stdin=terminal, stdout=terminal, stderr=terminal,
            start_new_session=True,  # and the terminal becomes its controlling one:
            preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0),
        )  # fmt: skip
        os.close(terminal)
        assert handler.holding.wait(60), "the send never reached the held message"
        os.close(master)  # the terminal hangs up: SIGHUP to the process group
        time.sleep(0.5)
        handler.gate.set()
        assert proc.wait(60) == 0  # not killed by the signal (that would be -1)
        for address, _, _ in people:
            assert handler.copies(address) == 1, address
    assert set(ledger_states(workdir).values()) == {State.SENT}
    assert _send_state(workdir) is SendState.DONE


def test_sigterm_at_the_question_sends_nothing_and_says_terminated(workdir):
    """`systemctl stop` (or a shutdown) while `send` waits for its yes: 143, as any SIGTERM
    before a send, not Ctrl-C's 130; nothing fixed, nothing sent."""
    add_people(workdir, many(3))
    with Server(Handler()) as server:
        proc = subprocess.Popen(
            [sys.executable, "-m", "newsletter", "send", f"issues/{DEMO_ISSUE}"],
            cwd=workdir, env=env_for(workdir, server.port),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        shown = b""
        while b"Send it now?" not in shown:  # the question has no newline: read what comes
            chunk = os.read(proc.stdout.fileno(), 4096)
            assert chunk, shown
            shown += chunk
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 143, err
        assert err.decode().strip() == "terminated: nothing sent"
        assert not server.handler.received
    status = run_cli("status", f"issues/{DEMO_ISSUE}", cwd=workdir, env=env_for(workdir, 1))
    assert "has not been sent" in status.stdout
