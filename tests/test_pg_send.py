"""Several hosts, one send, on a real PostgreSQL: `newsletter send` in one process and
`send --join` in others (standing for other hosts), into aiosmtpd on 127.0.0.1 counting
what arrived. Killed, frozen past their lease, or cut off by a server restart: nobody gets
two copies."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from newsletter.delivery import SendOptions
from newsletter.ledger import Ledger, Outcome, SendState, State
from newsletter.subscribers import Store

from .conftest import DEMO_ISSUE, clean_env, run_cli
from .smtp_server import Handler, Server
from .test_send import SECRET, many


def env_for(url: str, port: int) -> dict[str, str]:
    return clean_env(
        NEWSLETTER_DB=str(url),
        NEWSLETTER_SECRET=SECRET,
        NEWSLETTER_SMTP_HOST="127.0.0.1",
        NEWSLETTER_SMTP_PORT=str(port),
        NEWSLETTER_SMTP_SECURITY="none",
        NEWSLETTER_SMTP_TIMEOUT="10",
    )


def spawn(workdir: Path, url: str, port: int, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "newsletter", "send", f"issues/{DEMO_ISSUE}", "--yes", *args],
        cwd=workdir,
        env=env_for(url, port),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def add(url: str, n: int) -> list[str]:
    people = many(n)
    with Store(url) as store:
        for address, name, language in people:
            store.add(address, name=name, language=language, source="test")
    return [p[0] for p in people]


def wait_for(what: Callable[[], object], timeout: float = 60.0) -> object:
    """Poll until `what` is true (a bound on how long we look, not on how fast it goes)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = what()
        if got:
            return got
        time.sleep(0.05)
    raise AssertionError(f"still not so after {timeout} s: {what}")


def ledger_of(url: str) -> Ledger:
    return Ledger(url, DEMO_ISSUE)


def held_by(url: str, proc: subprocess.Popen) -> int:
    """Rows a process holds now (its workers are named host:pid:random)."""
    ledger = ledger_of(url)
    try:
        if not ledger.started():
            return 0
        return sum(n for w, n in ledger.holding().items() if f":{proc.pid}:" in w)
    finally:
        ledger.close()


def states(url: str) -> dict[str, State]:
    ledger = ledger_of(url)
    try:
        return {d.email: d.state for d in ledger.in_state(*State)}
    finally:
        ledger.close()


def send_state(url: str) -> str:
    ledger = ledger_of(url)
    try:
        return ledger.info().state.value
    finally:
        ledger.close()


def finish(proc: subprocess.Popen) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=180)
    return proc.returncode, out, err


def assert_nobody_twice(handler: Handler, people: list[str], url: str) -> dict[str, State]:
    """Every reader got at most one copy; whoever is not uncertain got exactly one."""
    final = states(url)
    for address in people:
        copies = handler.copies(address)
        assert copies <= 1, (address, copies)
        if final[address] is State.SENT:
            assert copies == 1, address
    assert sum(handler.copies(a) for a in people) == len(handler.received)
    return final


def test_a_send_and_two_joins_give_everyone_exactly_one_copy(workdir: Path, pg_url) -> None:
    people = add(pg_url, 240)
    handler = Handler()
    with Server(handler) as server:
        first = spawn(workdir, pg_url, server.port, "--rate", "40", "--concurrency", "2")
        wait_for(lambda: held_by(pg_url, first))
        joins = [
            spawn(workdir, pg_url, server.port, "--join", "--rate", "40", "--concurrency", "2")
            for _ in range(2)
        ]
        results = [finish(p) for p in (first, *joins)]
    for code, _, err in results:
        assert code == 0, err
    assert "joining the send of issue 2017-11" in results[1][1]
    # a joiner says what it goes with, as the first host did
    assert "2 connection(s), rate 40/s, no cap, a row claimed as each may go" in results[1][1], (
        results[1][1]
    )
    final = assert_nobody_twice(handler, people, pg_url)
    assert set(final.values()) == {State.SENT}
    # each process sent a share, and status says so
    status = run_cli("status", f"issues/{DEMO_ISSUE}", cwd=workdir, env=env_for(pg_url, 1))
    assert status.returncode == 0, status.stderr
    assert "workers (3):" in status.stdout
    shares = [line for line in status.stdout.splitlines() if " process " in line]
    assert len(shares) == 3 and all(" 0 sent" not in line for line in shares), status.stdout
    sent = [int(line.split(": ")[1].split(" sent")[0].replace(",", "")) for line in shares]
    assert sum(sent) == 240


def test_the_first_host_done_says_what_the_joined_ones_still_hold(workdir: Path, pg_url) -> None:
    add(pg_url, 40)
    with Server(Handler()) as server:
        first = spawn(workdir, pg_url, server.port, "--rate", "40", "--concurrency", "1")
        wait_for(lambda: held_by(pg_url, first))
        slow = Ledger(pg_url, DEMO_ISSUE)  # a host that joined and is slow about its rows
        try:
            held = slow.claim("elsewhere:1:abc", 3, 600.0).rows
            code, out, err = finish(first)
            assert code == 0, err
            assert len(held) == 3 and "3 message(s) still in the hands of other sending " in out
            slow.mark(
                "elsewhere:1:abc", [Outcome(d.subscriber_id, State.SENT, "250") for d in held]
            )
        finally:
            slow.close()


def test_two_sends_at_the_same_moment_give_one_ledger_and_the_second_is_told_to_join(
    workdir: Path, pg_url
) -> None:
    people = add(pg_url, 30)
    handler = Handler()
    with Server(handler) as server:
        procs = [spawn(workdir, pg_url, server.port) for _ in range(2)]
        results = sorted(finish(p) for p in procs)
    (ok, _, _), (refused, _, err) = results
    assert (ok, refused) == (0, 2), results
    assert f"newsletter send issues/{DEMO_ISSUE} --join" in err and "Traceback" not in err
    assert [line for line in err.splitlines() if line.startswith("error:")] == [
        next(line for line in err.splitlines() if line.startswith("error:"))
    ]
    assert_nobody_twice(handler, people, pg_url)
    assert len(handler.received) == 30


def test_a_host_killed_mid_claim_leaves_at_most_its_claim_uncertain(workdir: Path, pg_url):
    people = add(pg_url, 120)
    handler = Handler()
    with Server(handler) as server:
        first = spawn(workdir, pg_url, server.port, "--rate", "30", "--concurrency", "2",
                      "--lease", "2")  # fmt: skip
        wait_for(lambda: held_by(pg_url, first))
        victim = spawn(workdir, pg_url, server.port, "--join", "--rate", "30", "--concurrency",
                       "2", "--lease", "2")  # fmt: skip
        wait_for(lambda: held_by(pg_url, victim) >= 1)  # paced: a row as each may go
        victim.send_signal(signal.SIGKILL)
        victim.wait(10)
        code, _, err = finish(first)
        assert code in (0, 1), err
        time.sleep(2.5)  # the dead host's lease runs out; status turns its rows uncertain
        status = run_cli("status", f"issues/{DEMO_ISSUE}", cwd=workdir, env=env_for(pg_url, 1))
        assert status.returncode == 0, status.stderr
    final = assert_nobody_twice(handler, people, pg_url)
    uncertain = [a for a, s in final.items() if s is State.UNCERTAIN]
    assert 0 < len(uncertain) <= SendOptions(concurrency=2).k  # at most what it held
    assert {State.SENT, State.UNCERTAIN} >= set(final.values())


def test_a_host_killed_on_this_machine_is_seen_gone_when_the_others_end(
    workdir: Path, pg_url
) -> None:
    # its lease (60 s) has not lapsed when the first host runs out of rows: the send used
    # to stay active for good, the first host saying they were "in the hands" of others
    people = add(pg_url, 60)
    handler = Handler()
    with Server(handler) as server:
        first = spawn(workdir, pg_url, server.port, "--rate", "30", "--concurrency", "1")
        wait_for(lambda: held_by(pg_url, first))
        victim = spawn(workdir, pg_url, server.port, "--join", "--rate", "30")
        wait_for(lambda: held_by(pg_url, victim) >= 1)
        victim.send_signal(signal.SIGKILL)
        victim.wait(10)
        code, out, _ = finish(first)
    assert code == 1, out  # uncertain messages to look at
    line = next(x for x in out.splitlines() if "held by sending processes that are gone" in x)
    final = assert_nobody_twice(handler, people, pg_url)
    uncertain = sum(s is State.UNCERTAIN for s in final.values())
    assert 0 < uncertain == int(line.split()[0]) <= SendOptions(concurrency=1).k
    assert "still in the hands of other sending processes" not in out
    assert send_state(pg_url) == "done"


def test_due_ends_a_send_whose_last_rows_a_killed_host_held(workdir: Path, pg_url) -> None:
    people = add(pg_url, 3)
    # every message held (and kept): none is answered before the kill. With one held, the
    # other two were answered and their outcomes recorded within 2 s, racing the kill
    handler = Handler(script={p: ["hold-keep"] for p in people})
    with Server(handler) as server:
        only = spawn(workdir, pg_url, server.port)  # one claim takes all 3
        assert handler.holding.wait(60), "the send never reached the held message"
        wait_for(lambda: held_by(pg_url, only) == 3)
        only.send_signal(signal.SIGKILL)
        only.wait(10)
        handler.gate.set()
        due = run_cli("due", cwd=workdir, env=env_for(pg_url, server.port))
    assert due.returncode == 1, due.stderr  # ended, with readers uncertain
    assert f"issue {DEMO_ISSUE}: 0 failed, 3 uncertain; " in due.stderr
    assert f"issue {DEMO_ISSUE}: ended; 3 message(s) held by sending processes that are gone " in (
        due.stdout
    )
    final = assert_nobody_twice(handler, people, pg_url)
    assert list(final.values()) == [State.UNCERTAIN] * 3
    assert send_state(pg_url) == "done"


def test_a_host_frozen_past_its_lease_sends_nothing_more_when_it_wakes(workdir: Path, pg_url):
    people = add(pg_url, 100)
    handler = Handler()
    with Server(handler) as server:
        first = spawn(workdir, pg_url, server.port, "--rate", "25", "--concurrency", "1",
                      "--lease", "2")  # fmt: skip
        wait_for(lambda: held_by(pg_url, first))
        frozen = spawn(workdir, pg_url, server.port, "--join", "--rate", "25", "--concurrency",
                       "1", "--lease", "2")  # fmt: skip
        wait_for(lambda: held_by(pg_url, frozen) >= 1)
        frozen.send_signal(signal.SIGSTOP)
        # the others go on, and reap the frozen host's rows once its lease has run out
        wait_for(lambda: held_by(pg_url, frozen) == 0)
        frozen.send_signal(signal.SIGCONT)
        results = [finish(p) for p in (first, frozen)]
    assert results[0][0] in (0, 1), results[0][2]  # 1: uncertain messages to look at
    # woken past its lease while the other host still sent: it stopped, and says so
    assert results[1][0] in (0, 1, 3), results[1][2]
    if results[1][0] == 3:
        assert (
            "paused: a process was frozen or cut off for longer than its lease" in (results[1][2])
        )  # 1: uncertain messages to look at
    final = assert_nobody_twice(handler, people, pg_url)
    assert 0 < sum(s is State.UNCERTAIN for s in final.values()) <= SendOptions(concurrency=1).k
    # what the frozen host sent on waking, the ledger refused: neither host counts it
    counted = [re.search(r"^([\d,]+) sent in ", out, re.M) for _, out, _ in results]
    assert all(counted), results
    sent = sum(int(m.group(1).replace(",", "")) for m in counted)
    assert sent == sum(s is State.SENT for s in final.values())


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_postgresql_restart_mid_send_loses_nobody_and_doubles_nobody(
    workdir: Path, pg_url, pg_cluster, workers: str
) -> None:
    # with worker processes, the command's own connection sits idle while they send: it is
    # cut too, and must be opened again to end the send (it said "lost the connection")
    people = add(pg_url, 160)
    handler = Handler()
    with Server(handler) as server:
        proc = spawn(workdir, pg_url, server.port, "--rate", "40", "--concurrency", "2",
                     "--workers", workers)  # fmt: skip
        wait_for(lambda: len(handler.received) >= 30)
        pg_cluster.restart(down_for=1.0)  # every session cut, as a crash or a failover does
        code, out, err = finish(proc)
    assert code == 0, err  # it reconnected and went on
    assert "160 sent" in out, out
    final = assert_nobody_twice(handler, people, pg_url)
    assert set(final.values()) == {State.SENT}
    status = run_cli("status", f"issues/{DEMO_ISSUE}", cwd=workdir, env=env_for(pg_url, 1))
    assert f"issue {DEMO_ISSUE} (done, started " in status.stdout, status.stdout


@pytest.mark.parametrize("command", [("status",), ("due",)])
def test_status_and_due_answer_on_postgresql(workdir: Path, pg_url, command) -> None:
    result = run_cli(*command, *(["issues/" + DEMO_ISSUE] if command == ("status",) else []),
                     cwd=workdir, env=env_for(pg_url, 1))  # fmt: skip
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGKILL], ids=["Ctrl-C", "kill -9"])
def test_a_send_stopped_on_this_machine_resumes_at_once(workdir: Path, pg_url, stop) -> None:
    # Ctrl-C holds the send; kill -9 leaves its worker's row unfinished. Either way nobody
    # sends it now: a plain `send` resumes it at once. It was told "being sent now (0
    # worker(s) on another host) ... --join" for a lease, or two after a kill.
    people = add(pg_url, 60)
    handler = Handler()
    with Server(handler) as server:
        first = spawn(workdir, pg_url, server.port, "--rate", "20", "--workers", "1")
        wait_for(lambda: held_by(pg_url, first))
        first.send_signal(stop)
        finish(first)
        again = subprocess.run(
            [sys.executable, "-m", "newsletter", "send", f"issues/{DEMO_ISSUE}", "--yes"],
            cwd=workdir, env=env_for(pg_url, server.port), capture_output=True, text=True,
            timeout=180,
        )  # fmt: skip
    # 1: what the killed worker held is uncertain (at once, not when its lease lapses)
    assert again.returncode in ((0,) if stop is signal.SIGINT else (0, 1)), again.stderr
    final = assert_nobody_twice(handler, people, pg_url)
    uncertain = [a for a, s in final.items() if s is State.UNCERTAIN]
    assert len(uncertain) <= SendOptions(concurrency=4).k
    assert {State.SENT, State.UNCERTAIN} >= set(final.values())


def test_ctrl_c_on_one_host_stops_that_host_not_the_send(workdir: Path, pg_url) -> None:
    # the send stays active while another host sends it (it read "held", as if stopped)
    people = add(pg_url, 80)
    handler = Handler()
    with Server(handler) as server:
        first = spawn(workdir, pg_url, server.port, "--rate", "20", "--workers", "1")
        wait_for(lambda: held_by(pg_url, first))
        joiner = spawn(workdir, pg_url, server.port, "--join", "--rate", "20", "--workers", "1")
        wait_for(lambda: held_by(pg_url, joiner))
        joiner.send_signal(signal.SIGINT)
        code, _, err = finish(joiner)
        assert (
            code == 130 and f"to help again: newsletter send issues/{DEMO_ISSUE} --join" in err
        ), err
        assert send_state(pg_url) == "active"
        code, _, err = finish(first)
    assert code == 0, err
    final = assert_nobody_twice(handler, people, pg_url)
    assert set(final.values()) == {State.SENT}
    assert send_state(pg_url) == "done"


def test_a_host_with_another_secret_cannot_join(workdir: Path, pg_url) -> None:
    """The links it mailed would not work (the issue: 305 of 2,516 readers, unseen)."""
    people = add(pg_url, 150)  # at 40 a second: still sending when the other host comes
    handler = Handler()
    with Server(handler) as server:
        first = spawn(workdir, pg_url, server.port, "--rate", "40", "--workers", "1")
        wait_for(lambda: handler.received)
        env = {**env_for(pg_url, server.port), "NEWSLETTER_SECRET": "another-" + SECRET}
        joined = run_cli("send", f"issues/{DEMO_ISSUE}", "--join", "--yes", cwd=workdir, env=env)
        assert joined.returncode == 2, joined.stdout
        assert joined.stderr.strip() == (
            f"error: issue {DEMO_ISSUE}: its send started with another signing secret, so the "
            "unsubscribe and preferences links sent from here would not work; set "
            "NEWSLETTER_SECRET to the value the host that started it has"
        )
        code, _, err = finish(first)
        assert code == 0, err
        assert len(ledger_of(pg_url).workers()) == 1  # the refused host never took part
    assert_nobody_twice(handler, people, pg_url)


def test_join_after_the_send_ended_or_was_held_says_so_and_sends_nothing(workdir, pg_url):
    add(pg_url, 3)
    handler = Handler()
    with Server(handler) as server:
        first = spawn(workdir, pg_url, server.port)
        code, _, err = finish(first)
        assert code == 0, err
        joined = run_cli("send", f"issues/{DEMO_ISSUE}", "--join", cwd=workdir,
                         env=env_for(pg_url, server.port))  # fmt: skip
        assert joined.returncode == 0, joined.stderr
        assert f"issue {DEMO_ISSUE} has been sent in full: nothing to join" in joined.stdout
        ledger = ledger_of(pg_url)
        try:
            assert len(ledger.workers()) == 1  # no worker of the join was added
            ledger.set_state(SendState.HELD)  # as Ctrl-C leaves it
        finally:
            ledger.close()
        held = run_cli("send", f"issues/{DEMO_ISSUE}", "--join", cwd=workdir,
                       env=env_for(pg_url, server.port))  # fmt: skip
        assert held.returncode == 2, held.stdout
        assert held.stderr.strip() == (
            f"error: issue {DEMO_ISSUE}: its send is held (stopped by Ctrl-C, or by failures in "
            f"a row); resume it with: newsletter send issues/{DEMO_ISSUE} (not --join)"
        )
    assert len(handler.received) == 3
