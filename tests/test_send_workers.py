"""A send spread over worker processes sharing one ledger (aiosmtpd on 127.0.0.1 counting what
arrives): everyone exactly once, each worker's share in `status`; a worker killed or frozen
past its lease costs at most the k rows it held (uncertain), never a second copy."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from newsletter.delivery import SendOptions
from newsletter.ledger import Ledger, State
from newsletter.subscribers import SqliteStore

from .conftest import DEMO_ISSUE, run_cli
from .scripted_smtp import Script, ScriptedServer
from .smtp_server import Handler, Server
from .test_send import add_people, env_for, ledger_rows, many, send


@dataclass
class Slow(Handler):
    """Takes `delay` seconds over each message, so a send lasts long enough to act on."""

    delay: float = 0.02

    async def handle_DATA(self, server, session, envelope):
        await asyncio.sleep(self.delay)
        return await super().handle_DATA(server, session, envelope)


def _spawn(workdir: Path, port: int, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "newsletter", "send", f"issues/{DEMO_ISSUE}", "--yes", *args],
        cwd=workdir,
        env=env_for(workdir, port),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _workers(parent: int) -> list[int]:
    """The worker processes a send started (not multiprocessing's resource tracker)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        ppid = int(stat.rpartition(")")[2].split()[1])
        if ppid == parent and b"spawn_main" in cmdline and b"resource_tracker" not in cmdline:
            found.append(int(entry.name))
    return sorted(found)


def _wait_for(condition, what: str, ceiling: float = 60) -> None:
    deadline = time.monotonic() + ceiling  # only stops a hung test
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.02)


def test_two_workers_send_everyone_once_and_status_shows_each_share(workdir: Path) -> None:
    people = many(240)
    add_people(workdir, people)
    with Server(Handler(pipelining=True)) as server:
        result = send(workdir, server.port, "--yes", "--workers", "2", "--concurrency", "3")
        assert result.returncode == 0, result.stderr
        assert "2 worker process(es), 3 connection(s) (1 or 2 a worker)" in result.stdout
        for address, _, _ in people:
            assert server.handler.copies(address) == 1, address
        # the connections are the host's, shared by its workers: what a relay counts
        assert server.handler.most_connected == 3
    status = run_cli("status", f"issues/{DEMO_ISSUE}", cwd=workdir, env=env_for(workdir, 1))
    shares = [line for line in status.stdout.splitlines() if " process " in line]
    assert "workers (2):" in status.stdout and len(shares) == 2, status.stdout
    sent = [int(line.split(": ", 1)[1].split(" sent")[0].replace(",", "")) for line in shares]
    assert sum(sent) == 240 and all(n > 0 for n in sent)
    assert all(line.endswith("/s; finished") for line in shares), shares


def test_a_small_send_says_auto_started_one_worker(workdir: Path) -> None:
    add_people(workdir, many(5))
    with Server(Handler()) as server:
        result = send(workdir, server.port, "--yes")
    assert result.returncode == 0, result.stderr
    assert "1 worker process(es) (auto: one per core from 2,000 messages due)" in result.stdout


def test_more_workers_than_connections_start_one_a_connection(workdir: Path) -> None:
    add_people(workdir, many(30))
    with Server(Handler()) as server:
        result = send(workdir, server.port, "--yes", "--workers", "3", "--concurrency", "2")
        assert result.returncode == 0, result.stderr
        assert server.handler.most_connected <= 2
    assert "2 worker process(es) (not 3: one connection each at least), 2 connection(s) (1 a " in (
        result.stdout
    )
    assert "30 sent" in result.stdout


def test_status_during_a_send_shows_what_the_running_worker_has_sent(workdir: Path) -> None:
    add_people(workdir, many(60))
    with Server(Slow(delay=0.1)) as server:
        sending = _spawn(workdir, server.port, "--workers", "1", "--concurrency", "1")
        try:
            _wait_for(lambda: len(server.handler.received) >= 30, "half the list sent")
            status = run_cli("status", f"issues/{DEMO_ISSUE}", cwd=workdir,
                             env=env_for(workdir, 1))  # fmt: skip
        finally:
            sending.wait(60)
    (share,) = [line for line in status.stdout.splitlines() if " process " in line]
    # counted every few seconds, not only when the lease is renewed (every 15 s)
    assert "sending, holding" in share, status.stdout
    assert int(share.split(": ", 1)[1].split(" sent")[0].replace(",", "")) > 0, share


def test_someone_who_leaves_during_the_send_is_counted_skipped(workdir: Path) -> None:
    ids = add_people(workdir, many(40))
    with Server(Slow(delay=0.05)) as server:
        sending = _spawn(workdir, server.port, "--workers", "1", "--concurrency", "1")
        _wait_for(lambda: len(server.handler.received) >= 5, "the send under way")
        with SqliteStore(workdir / "news.db") as store:  # the last in line leaves
            assert store.unsubscribe(ids["reader39@example.org"], "web:one-click")
        out, err = sending.communicate(timeout=60)
    assert sending.returncode == 0, err
    assert server.handler.copies("reader39@example.org") == 0
    # their unsubscribe marked their row at once: no claim saw it, the summary still does
    assert ", 0 failed, 1 skipped (left meanwhile)" in out, out


def _resumed_with_nobody_twice(workdir: Path, port: int, people, copies) -> None:
    """After a worker was killed: send again. At most its claims (k) end uncertain, and
    everyone else has exactly one copy (`copies(address)`, as the server counts them)."""
    resumed = send(workdir, port, "--yes")
    assert resumed.returncode in (0, 1), resumed.stderr
    rows = ledger_rows(workdir)
    uncertain = [a for a, r in rows.items() if r[0] is State.UNCERTAIN]
    assert len(uncertain) <= SendOptions(concurrency=2).k  # held by the killed worker
    for address, _, _ in people:
        assert copies(address) <= 1, address
        if address not in uncertain:
            assert rows[address][0] is State.SENT and copies(address) == 1, address


def test_a_worker_killed_mid_send_costs_at_most_its_claims(workdir: Path) -> None:
    people = many(300)
    add_people(workdir, people)
    handler = Slow(pipelining=True)
    with Server(handler) as server:
        proc = _spawn(workdir, server.port, "--workers", "2", "--concurrency", "4")
        _wait_for(lambda: len(_workers(proc.pid)) == 2, "the workers never started")
        _wait_for(lambda: len(handler.received) >= 40, "the send never got going")
        victim = _workers(proc.pid)[0]
        os.kill(victim, signal.SIGKILL)
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 3, err  # paused: one worker was lost, the other finished
        assert "worker process(es) stopped unexpectedly" in err
        # the summary counts what the ledger holds: not the replies the killed worker got
        # and could not record (those readers are uncertain, below)
        said = int(out.rpartition(" sent in ")[0].rpartition("\n")[2].replace(",", ""))
        assert said == sum(r[0] is State.SENT for r in ledger_rows(workdir).values()), out
        # what the killed one held is uncertain now, in the table and in a line: not pending
        held = sum(r[0] is State.UNCERTAIN for r in ledger_rows(workdir).values())
        assert 1 <= held <= SendOptions(concurrency=2).k, out
        assert f"{held:,} message(s) held by sending processes that are gone (killed?)" in out
        assert not any(r[0] is State.SENDING for r in ledger_rows(workdir).values())
        # status tells the dead worker from the one that finished, before its lease lapses
        status = run_cli("status", f"issues/{DEMO_ISSUE}", cwd=workdir, env=env_for(workdir, 1))
        shares = {int(line.split(" process ")[1].split(":")[0]): line
                  for line in status.stdout.splitlines() if " process " in line}  # fmt: skip
        # (status first turned what it held uncertain: no send is running)
        dead = shares.pop(victim)
        assert dead.endswith("; stopped without finishing (killed, or cut off)"), status.stdout
        assert [line.rpartition("; ")[2] for line in shares.values()] == ["finished"]
        _resumed_with_nobody_twice(workdir, server.port, people, handler.copies)


def test_a_worker_killed_mid_turn_costs_at_most_its_claims(workdir: Path) -> None:
    """The server takes BDAT pipelined: each worker drives its 2 connections in turn, and
    one is killed with a message written on each. Nobody gets two copies."""
    people = many(300)
    add_people(workdir, people)
    script = Script(extensions=("PIPELINING", "CHUNKING"), pause=0.01)
    with ScriptedServer(script) as server:
        proc = _spawn(workdir, server.port, "--workers", "2", "--concurrency", "4")
        _wait_for(lambda: len(_workers(proc.pid)) == 2, "the workers never started")
        _wait_for(lambda: len(server.stored) >= 40, "the send never got going")
        os.kill(_workers(proc.pid)[0], signal.SIGKILL)
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 3, err  # paused: one worker was lost, the other finished
        _resumed_with_nobody_twice(workdir, server.port, people, server.copies)


def test_workers_stop_when_the_send_that_started_them_is_killed(workdir: Path) -> None:
    """kill -9 of `send` itself: its workers finish the message in flight and stop, rather
    than go on mailing the list unseen."""
    people = many(40)
    add_people(workdir, people)
    victim = "reader3@example.org"
    handler = Handler(script={victim: ["hold-keep"]})
    with Server(handler) as server:
        proc = _spawn(workdir, server.port, "--workers", "2", "--concurrency", "2")
        _wait_for(lambda: len(_workers(proc.pid)) == 2, "the workers never started")
        children = _workers(proc.pid)
        assert handler.holding.wait(60), "the send never reached the held message"
        proc.kill()
        proc.wait(30)
        time.sleep(0.3)
        handler.gate.set()
        _wait_for(
            lambda: not any(Path(f"/proc/{pid}").exists() for pid in children),
            "the workers went on after the send was killed",
        )
        # and nothing is said but what the send itself said before it died: no warning of
        # multiprocessing's about what the killed send could not clean up
        said = proc.stderr.read()  # (to its end: the resource tracker is the last to go)
        assert "leaked" not in said and "Traceback" not in said, said
        rows = ledger_rows(workdir)
        assert rows[victim][0] is State.SENT  # finished and recorded
        # status tells the worker that was stopped (it held the message) from one that ran
        # to the end of what was left for it, or never joined, before the send was killed
        status = run_cli("status", f"issues/{DEMO_ISSUE}", cwd=workdir, env=env_for(workdir, 1))
        ends = [line.rpartition("; ")[2] for line in status.stdout.splitlines()
                if " process " in line]  # fmt: skip
        stopped = "stopped early (SIGTERM, or its send was killed)"
        assert stopped in ends and set(ends) <= {stopped, "finished"}, status.stdout
        assert sum(r[0] is State.PENDING for r in rows.values()) > 0  # the rest left for later
        assert all(r[0] in (State.SENT, State.PENDING) for r in rows.values()), {
            a: r for a, r in rows.items() if r[0] not in (State.SENT, State.PENDING)
        }
        resumed = send(workdir, server.port, "--yes")
        assert resumed.returncode == 0, resumed.stderr
        for address, _, _ in people:
            assert handler.copies(address) == 1, address


def test_a_worker_frozen_past_its_lease_sends_nothing_more_when_it_wakes(workdir: Path) -> None:
    people = many(400)
    add_people(workdir, people)
    handler = Slow(pipelining=True)
    with Server(handler) as server:
        proc = _spawn(workdir, server.port, "--workers", "2", "--concurrency", "2", "--lease", "2")
        _wait_for(lambda: len(_workers(proc.pid)) == 2, "the workers never started")
        _wait_for(lambda: len(handler.received) >= 30, "the send never got going")
        frozen = _workers(proc.pid)[0]
        os.kill(frozen, signal.SIGSTOP)
        try:
            # past its lease: the other worker turns what it held uncertain and goes on
            _wait_for(
                lambda: any(r[2].startswith("in flight when its worker stopped")
                            for r in ledger_rows(workdir).values()),
                "the frozen worker's claims were never reaped",
            )  # fmt: skip
        finally:
            os.kill(frozen, signal.SIGCONT)
        out, err = proc.communicate(timeout=120)
        assert proc.returncode in (0, 1), err
        rows = ledger_rows(workdir)
        uncertain = [a for a, r in rows.items() if r[0] is State.UNCERTAIN]
        assert 1 <= len(uncertain) <= SendOptions(concurrency=1).k
        for address, _, _ in people:
            copies = handler.copies(address)
            assert copies <= 1, address
            if address not in uncertain:
                assert rows[address][0] is State.SENT and copies == 1, address
        # what it sent on waking the ledger refused (those rows were reaped): not counted,
        # so the summary's and the workers' counts add up to the ledger's
        sent = len(people) - len(uncertain)
        assert re.search(rf"^{sent:,} sent in ", out, re.M), out
        ledger = Ledger(workdir / "news.db", DEMO_ISSUE)
        assert sum(w["sent"] for w in ledger.workers()) == sent
        ledger.close()


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_send_frozen_past_its_lease_says_it_paused(workdir: Path, workers: str) -> None:
    """A whole send frozen (SIGSTOP to its group: a suspended machine) wakes past its lease:
    it starts nothing more and, most of the list unsent, says so: exit 3, not a quiet 0."""
    add_people(workdir, many(300))
    handler = Slow(delay=0.01)
    with Server(handler) as server:
        proc = subprocess.Popen(
            [sys.executable, "-m", "newsletter", "send", f"issues/{DEMO_ISSUE}", "--yes",
             "--workers", workers, "--concurrency", "2", "--lease", "2"],
            cwd=workdir, env=env_for(workdir, server.port), stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True, start_new_session=True,
        )  # fmt: skip
        _wait_for(lambda: len(handler.received) >= 10, "the send never got going")
        os.killpg(proc.pid, signal.SIGSTOP)
        time.sleep(4)  # twice the lease
        os.killpg(proc.pid, signal.SIGCONT)
        out, err = proc.communicate(timeout=120)
    assert proc.returncode == 3, (out, err)
    assert re.search(
        r"paused: a process was frozen or cut off for longer than its lease \(2 s\), and "
        r"[\d,]+ message\(s\) are left; run send again to resume",
        err,
    ), err
    rows = ledger_rows(workdir)
    assert sum(r[0] is State.PENDING for r in rows.values()) > 0
    assert max(handler.copies(a) for a, _, _ in many(300)) == 1


def test_batch_sets_how_many_rows_a_worker_claims_and_stays_with_the_send(
    workdir: Path,
) -> None:
    """--batch 3 with one connection each (the default would hold 20 rows): the rows a killed
    worker held, all turned uncertain, are at most 3; a resume would claim 3 too."""
    assert SendOptions(concurrency=1).k == 20
    people = many(200)
    add_people(workdir, people)
    handler = Slow(delay=0.01)
    with Server(handler) as server:
        proc = _spawn(workdir, server.port, "--workers", "2", "--concurrency", "2", "--batch", "3")
        _wait_for(lambda: len(_workers(proc.pid)) == 2, "the workers never started")
        _wait_for(lambda: len(handler.received) >= 30, "the send never got going")
        os.kill(_workers(proc.pid)[0], signal.SIGKILL)
        out, err = proc.communicate(timeout=120)
        assert "2 worker process(es), 2 connection(s) (1 a worker)," in out, out
        assert "claims of 3 rows" in out, out
        resumed = send(workdir, server.port, "--yes")  # reports what the dead one held
        assert resumed.returncode in (0, 1), resumed.stderr
    ledger = Ledger(workdir / "news.db", DEMO_ISSUE)
    try:  # kept with the send: a resume or `due` claims as many
        assert ledger.info().options["batch"] == 3
    finally:
        ledger.close()
    rows = ledger_rows(workdir)
    uncertain = [a for a, r in rows.items() if r[0] is State.UNCERTAIN]
    assert 1 <= len(uncertain) <= 3, len(uncertain)
    for address, _, _ in people:
        assert handler.copies(address) <= 1, address
        if address not in uncertain:
            assert rows[address][0] is State.SENT, address


def test_a_send_left_active_with_nothing_to_do_is_ended_by_the_next_send(workdir: Path) -> None:
    # its command killed after the workers finished (or cut from the database at the very
    # end): every row is done, the send still says active, and nothing used to end it
    add_people(workdir, many(20))
    with Server(Handler()) as server:
        assert send(workdir, server.port, "--yes").returncode == 0
        with SqliteStore(workdir / "news.db") as store, store.conn.transaction():
            store.conn.execute("UPDATE sends SET state = 'active', finished_at = NULL")
        again = send(workdir, server.port, "--yes")
    assert again.returncode == 0, again.stderr
    assert f"nothing left to send for issue {DEMO_ISSUE}." in again.stdout
    status = run_cli("status", f"issues/{DEMO_ISSUE}", cwd=workdir, env=env_for(workdir, 1))
    assert f"issue {DEMO_ISSUE} (done, started " in status.stdout, status.stdout


def test_a_worker_killed_outright_is_seen_gone_before_its_send_reaps_it() -> None:
    # until `send` ends and reaps it, a killed worker is a zombie: its pid still answers
    from newsletter.ledger import process_alive, this_machine

    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        here = (socket.gethostname(), child.pid, this_machine())
        assert process_alive(*here) is True
        os.kill(child.pid, signal.SIGKILL)
        stat = Path(f"/proc/{child.pid}/stat")
        _wait_for(lambda: stat.read_text().rpartition(")")[2].split()[0] == "Z", "no zombie")
        assert process_alive(*here) is False
    finally:
        child.kill()
        child.wait()


def test_the_hourly_cap_is_shared_in_whole_parts_that_add_up_to_it() -> None:
    from newsletter.delivery import share_of
    from newsletter.workers import how_many, share

    options = SendOptions(concurrency=8, rate=8.0, hourly_cap=10)
    parts = [share(options, 4, slot) for slot in range(4)]
    assert [p.hourly_cap for p in parts] == [3, 3, 2, 2]  # ceil(10 / 4) each allowed 12
    # what went in the last hour counts against the parts in the same split: 7 of 10 sent
    # leaves 3 in all (it was counted 3 + 3 + 2 + 2, rounded up each, and left none)
    counted = [share_of(7, p.part) for p in parts]
    assert counted == [2, 2, 2, 1]
    assert sum(p.hourly_cap - c for p, c in zip(parts, counted, strict=True)) == 3
    assert sum(p.concurrency for p in parts) == 8 and sum(p.rate for p in parts) == 8.0
    # a cap of 2 an hour: two workers at most, each keeping one
    assert how_many(4, 10_000, 8, hourly_cap=2) == 2


def test_a_hosts_workers_begin_spread_evenly_from_its_starting_point() -> None:
    from newsletter.workers import share

    assert [share(SendOptions(), 4, n).start for n in range(4)] == [0, 0.25, 0.5, 0.75]
    # a joining host's own point (random) shifts all of its workers alike
    assert [share(SendOptions(start=0.3), 2, n).start for n in range(2)] == [0.15, 0.65]


def test_workers_held_back_by_the_hourly_cap_say_so_in_a_log(workdir: Path) -> None:
    from .test_send import _read_until

    add_people(workdir, many(6))
    with Server(Handler()) as server:
        proc = _spawn(workdir, server.port, "--workers", "2", "--concurrency", "2",
                      "--hourly-cap", "4")  # fmt: skip
        said = _read_until(proc, b"hourly cap of 4 is reached", 60).decode()
        assert _workers(proc.pid), "the send did not run in worker processes"
        _wait_for(lambda: len(server.handler.received) >= 4, "the first four did not go")
        time.sleep(0.5)  # give a wrongly uncapped worker the time to send more
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
        assert re.search(r"^the hourly cap of 4 is reached: the next message may go in about "
                         r"(5[89] min|1 h)$", said, re.M), said  # fmt: skip
        assert (said + out).count("hourly cap of 4 is reached") == 1, said + out
        assert len(server.handler.received) == 4


def test_a_worker_at_its_part_of_the_cap_while_the_others_finish_says_nothing(workdir) -> None:
    # a cap of 11 split 6 + 5: one worker may reach its 5 while the other sends the last
    # messages; the send as a whole is never held, so no line says it is. (And the worker
    # started a moment later does not count the other's first messages against its own
    # part: it did, and with 9 sent the send sat held for an hour.)
    add_people(workdir, many(10))
    with Server(Handler()) as server:
        proc = _spawn(workdir, server.port, "--workers", "2", "--concurrency", "2",
                      "--hourly-cap", "11")  # fmt: skip
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        assert "hourly cap" not in out, out
        assert len(server.handler.received) == 10
