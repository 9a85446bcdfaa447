"""The store conformance suite: the same tests on a SQLite file and on a real PostgreSQL
(tests/pg_server.py), through the one interface the tool uses (newsletter.store)."""

from __future__ import annotations

import contextlib
import multiprocessing
import socket
import sqlite3
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from newsletter import db, store
from newsletter.consent import Basis, Consent, ConsentText
from newsletter.errors import StoreError
from newsletter.ledger import Ledger, Outcome, SendStarted, State
from newsletter.schedule import Book, ScheduleState
from newsletter.schema import MIGRATIONS
from newsletter.store.migrate import latest
from newsletter.subscribers import Row, Status, Store

ISSUE = "2017-11"


def _people(where, n: int) -> list[int]:
    with Store(where) as s:
        s.import_rows(
            (Row(f"reader{i}@example.org", f"Reader {i}", ("en", "fr", "both")[i % 3])
             for i in range(n)),
            source="test", default_language="en",
        )  # fmt: skip
        return [sub.id for sub in s.iter()]


def _start(where, n: int) -> list[int]:
    ids = _people(where, n)
    with Store(where) as s:
        recipients = [(p.id, p.email, p.name, "en") for p in s.iter()]
    ledger = Ledger(where, ISSUE)
    try:
        assert ledger.start(recipients, "example.org", "issues/2017-11", {}, {"en": "{}"}) == n
    finally:
        ledger.close()
    return ids


def _sqlite_ledger(tmp_path: Path, n: int) -> Ledger:
    """The ledger of a send to n readers, in a SQLite file of its own."""
    where = tmp_path / "list.db"
    _start(where, n)
    return Ledger(where, ISSUE)


def _states(where) -> dict[State, int]:
    ledger = Ledger(where, ISSUE)
    try:
        out: dict[State, int] = {}
        for (_, state), n in ledger.counts().items():
            out[state] = out.get(state, 0) + n
        return out
    finally:
        ledger.close()


# --- the work queue -----------------------------------------------------------------------


def _drain(where, name: str, out: str, ready) -> None:
    """A worker: claim 7 at a time, walking forward and rescanning, mark them all sent.
    `ready`, a barrier: the workers begin together (a claim is fast enough for the first
    one forked to take every row before the last has started)."""
    ledger = Ledger(where, ISSUE)
    claimed: list[int] = []
    cursor = 0
    ready.wait(60)
    while True:
        batch, next_cursor, _, _ = ledger.claim(name, 7, 60.0, cursor)
        if not batch and next_cursor == 0:
            if cursor == 0:
                break
            cursor = 0
            continue
        cursor = next_cursor
        claimed.extend(d.subscriber_id for d in batch)
        outcomes = [Outcome(d.subscriber_id, State.SENT, "250") for d in batch]
        assert ledger.mark(name, outcomes) == {d.subscriber_id for d in batch}
    ledger.close()
    Path(out).write_text("\n".join(map(str, claimed)))


def test_claims_never_overlap_under_four_processes(db_where, tmp_path: Path) -> None:
    ids = _start(db_where, 700)
    fork = multiprocessing.get_context("fork")
    outs = [tmp_path / f"worker{n}.txt" for n in range(4)]
    ready = fork.Barrier(4)
    procs = [
        fork.Process(target=_drain, args=(db_where, f"w{n}", str(out), ready))
        for n, out in enumerate(outs)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    claimed = [int(x) for out in outs for x in out.read_text().split()]
    assert len(claimed) == len(set(claimed)) == len(ids)  # nobody twice, nobody left out
    assert set(claimed) == set(ids)
    assert sum(1 for out in outs if out.read_text()) >= 2  # the work was shared
    assert _states(db_where) == {State.SENT: 700}


def test_workers_spread_over_what_is_left_and_still_each_row_goes_once(db_where) -> None:
    ids = _start(db_where, 40)
    ledger = Ledger(db_where, ISSUE)
    try:
        assert ledger.start_after(0) == 0  # a host's first worker: from the first id
        half = ledger.start_after(0.5)
        assert half == ids[19]  # the second worker begins past the first 20
        batch, _, _, _ = ledger.claim("w1", 5, 60.0, half)
        assert [d.subscriber_id for d in batch] == ids[20:25]
        ledger.mark("w1", [Outcome(d.subscriber_id, State.SENT, "250 OK") for d in batch])
        # what is already sent is not counted: the 35 left are ids 1-20 and 26-40
        assert ledger.start_after(0.5) == ids[0] - 1 + (ids[-1] - ids[0] + 1) // 2
        # a walk from the middle reaches the end, starts again from the first, and takes
        # the rest, each once
        taken, cursor, seen = [], half, 0
        while seen < 2:
            batch, cursor, _, _ = ledger.claim("w2", 7, 60.0, cursor)
            taken += [d.subscriber_id for d in batch]
            seen += cursor == 0
        assert sorted(taken) == ids[:20] + ids[25:] and len(set(taken)) == 35
        assert taken[0] == ids[25]
        ledger.mark("w2", [Outcome(i, State.SENT, "250 OK") for i in taken])
        assert ledger.start_after(0.5) == 0  # nothing left
    finally:
        ledger.close()


def test_a_lapsed_lease_turns_uncertain_and_the_late_marks_are_fenced(db_where) -> None:
    _start(db_where, 10)
    a, b = Ledger(db_where, ISSUE), Ledger(db_where, ISSUE)
    try:
        batch, cursor, skipped, _ = a.claim("a", 4, 10.0, 0, now=1000.0)
        assert len(batch) == 4 and cursor == batch[-1].subscriber_id and skipped == 0
        assert b.reap(now=1009.0) == 0  # still a's
        assert b.reap(now=1011.0) == 4  # a froze past its lease: may have gone, never resent
        late = [Outcome(d.subscriber_id, State.SENT, "250") for d in batch]
        assert a.mark("a", late) == set()  # a woke up: what it says no longer counts
        uncertain = b.in_state(State.UNCERTAIN)
        assert [d.subscriber_id for d in uncertain] == [d.subscriber_id for d in batch]
        assert all("lease ran out" in d.last_reply for d in uncertain)
        # and nobody claims them again
        rest, _, _, _ = b.claim("b", 10, 10.0, 0, now=1012.0)
        assert {d.subscriber_id for d in rest}.isdisjoint({d.subscriber_id for d in batch})
        assert len(rest) == 6
    finally:
        a.close()
        b.close()


def test_only_the_owner_marks_renews_and_releases(db_where) -> None:
    _start(db_where, 6)
    a, b = Ledger(db_where, ISSUE), Ledger(db_where, ISSUE)
    try:
        mine, _, _, _ = a.claim("a", 3, 10.0, 0, now=1000.0)
        outcomes = [Outcome(d.subscriber_id, State.SENT, "250") for d in mine]
        assert b.mark("b", outcomes) == set()
        b.release("b", [d.subscriber_id for d in mine])
        b.renew("b", 100.0, now=1000.0)
        assert a.reap(now=1011.0) == 3  # b's renewal did not keep a's rows
        _start_again = a.claim("a", 3, 10.0, 0, now=1020.0)
        theirs = _start_again.rows
        a.renew("a", 100.0, now=1020.0)
        assert a.reap(now=1100.0) == 0  # renewed until 1120
        a.release("a", [theirs[0].subscriber_id])
        failed = [Outcome(d.subscriber_id, State.FAILED, "550") for d in theirs]
        assert a.mark("a", failed) == {d.subscriber_id for d in theirs[1:]}
        again = a.due(10, now=2000.0)
        assert [d.subscriber_id for d in again] == [theirs[0].subscriber_id]
        assert again[0].attempts == 0  # given back unattempted
    finally:
        a.close()
        b.close()


def test_deferred_rows_come_due_by_their_time_and_a_rescan_finds_them(db_where) -> None:
    _start(db_where, 3)
    ledger = Ledger(db_where, ISSUE)
    try:
        batch, _, _, _ = ledger.claim("w", 3, 10.0, 0, now=1000.0)
        first = batch[0].subscriber_id
        ledger.mark("w", [Outcome(first, State.DEFERRED, "451", next_attempt=1500.0)]
                    + [Outcome(d.subscriber_id, State.SENT, "250") for d in batch[1:]])  # fmt: skip
        assert ledger.claim("w", 3, 10.0, 0, now=1400.0).rows == []
        again = ledger.claim("w", 3, 10.0, 0, now=1500.0)
        assert [d.subscriber_id for d in again.rows] == [first]
        assert again.rows[0].attempts == 2 and again.rows[0].first_attempt == 1000.0
    finally:
        ledger.close()


def test_a_worker_that_woke_past_its_lease_records_what_it_knows(db_where) -> None:
    # frozen past its lease with its outcomes in hand: its next claim, which also reaps
    # lapsed leases, records them (a message known sent is not left uncertain, to be sent
    # again by --resend-uncertain; one deferred is retried), and reaps the row it has none for
    _start(db_where, 6)
    ledger = Ledger(db_where, ISSUE)
    try:
        mine, cursor, _, _ = ledger.claim("a", 3, 10.0, 0, now=1000.0)
        done = [Outcome(mine[0].subscriber_id, State.SENT, "250 ok"),
                Outcome(mine[1].subscriber_id, State.DEFERRED, "451 later", 1500.0)]  # fmt: skip
        later = ledger.claim("a", 2, 10.0, cursor, now=1100.0, outcomes=done)
        assert later.recorded == {mine[0].subscriber_id, mine[1].subscriber_id}
        states = {d.subscriber_id: d.state for d in ledger.in_state(*State)}
        assert [states[d.subscriber_id] for d in mine] == [
            State.SENT,
            State.DEFERRED,
            State.UNCERTAIN,
        ]
    finally:
        ledger.close()


def test_a_claim_records_the_last_batchs_outcomes_first_fenced_on_the_owner(db_where) -> None:
    _start(db_where, 6)
    a, b = Ledger(db_where, ISSUE), Ledger(db_where, ISSUE)
    try:
        mine, cursor, _, _ = a.claim("a", 2, 10.0, 0, now=1000.0)
        theirs, _, _, _ = b.claim("b", 2, 10.0, cursor, now=1000.0)
        done = [Outcome(d.subscriber_id, State.SENT, "250 ok") for d in mine]
        # an outcome for a row `a` does not hold (b's) is not recorded
        forged = Outcome(theirs[0].subscriber_id, State.FAILED, "550 forged")
        nxt = a.claim("a", 2, 10.0, cursor, now=1001.0, outcomes=[*done, forged])
        assert len(nxt.rows) == 2
        assert nxt.recorded == {d.subscriber_id for d in mine}  # what a counts
        assert _states(db_where) == {State.SENT: 2, State.SENDING: 4}
        assert {d.subscriber_id for d in b.in_state(State.SENT)} == {d.subscriber_id for d in mine}
    finally:
        a.close()
        b.close()


@contextlib.contextmanager
def _two_workers(where, people: int) -> Iterator[tuple[Ledger, Ledger]]:
    """A ledger of `people` rows, as two workers each see it."""
    _start(where, people)
    a, b = Ledger(where, ISSUE), Ledger(where, ISSUE)
    try:
        yield a, b
    finally:
        a.close()
        b.close()


def test_a_claim_that_takes_nothing_still_records_the_outcomes_it_carries(db_where) -> None:
    # the end of the list: nothing left to take, the last outcomes recorded all the same
    with _two_workers(db_where, 4) as (a, b):
        mine, cursor, _, _ = a.claim("a", 3, 10.0, 0, now=1000.0)
        theirs, _, _, _ = b.claim("b", 1, 10.0, cursor, now=1000.0)
        done = [Outcome(d.subscriber_id, State.SENT, "250 ok") for d in mine]
        forged = Outcome(theirs[0].subscriber_id, State.FAILED, "550 forged")
        last = a.claim("a", 5, 10.0, 0, now=1001.0, outcomes=[*done, forged])
        assert (last.rows, last.cursor, last.skipped) == ([], 0, 0)
        assert last.recorded == {d.subscriber_id for d in mine}
        assert _states(db_where) == {State.SENT: 3, State.SENDING: 1}


def test_a_claim_whose_outcomes_were_all_refused_says_so(db_where) -> None:
    with _two_workers(db_where, 6) as (a, b):
        mine, cursor, _, _ = a.claim("a", 2, 10.0, 0, now=1000.0)
        assert b.reap(now=1011.0) == 2  # a froze past its lease
        late = [Outcome(d.subscriber_id, State.SENT, "250 ok") for d in mine]
        nxt = a.claim("a", 2, 10.0, cursor, now=1012.0, outcomes=late)
        assert len(nxt.rows) == 2 and nxt.recorded == set()
        assert _states(db_where) == {State.UNCERTAIN: 2, State.SENDING: 2, State.PENDING: 2}


def test_a_servers_reply_is_recorded_whatever_it_holds(db_where) -> None:
    # (PostgreSQL gets the outcomes as array literals made by the ledger: its quoting)
    odd = ['550 "quoted", {braced}, back\\slash \\" end', "452 NULL", "250 é, ü; ok\\"]
    _start(db_where, 5)
    ledger = Ledger(db_where, ISSUE)
    try:
        rows, cursor, _, _ = ledger.claim("a", 4, 60.0, 0, now=1000.0)
        outcomes = [
            Outcome(rows[0].subscriber_id, State.FAILED, odd[0]),
            Outcome(rows[1].subscriber_id, State.DEFERRED, odd[1], 2000.5),
        ]
        ledger.claim("a", 1, 60.0, cursor, now=1000.0, outcomes=outcomes)  # with a claim
        ledger.mark("a", [  # on their own, one with a NUL, which PostgreSQL's text cannot hold
            Outcome(rows[2].subscriber_id, State.SENT, odd[2]),
            Outcome(rows[3].subscriber_id, State.SENT, "250 queued\x00 as 12"),
        ])  # fmt: skip
        recorded = ledger.in_state(State.FAILED, State.DEFERRED, State.SENT)
        got = {d.subscriber_id: d for d in recorded}
        assert [got[r.subscriber_id].last_reply for r in rows[:3]] == odd
        assert got[rows[1].subscriber_id].next_attempt == 2000.5
        assert got[rows[3].subscriber_id].last_reply in ("250 queued\x00 as 12", "250 queued as 12")
        assert _states(db_where) == {
            State.FAILED: 1, State.DEFERRED: 1, State.SENT: 2, State.SENDING: 1
        }  # fmt: skip
    finally:
        ledger.close()


def _plans(conn, call: Callable[[], Any]) -> tuple[Any, dict[str, str]]:
    """What `call` returns, and the SQLite query plan of each statement it ran on the
    ledger's tables (on `conn`, a SQLite connection of the tool's)."""
    asked: list[str] = []
    conn.raw.set_trace_callback(asked.append)
    try:
        result = call()
    finally:
        conn.raw.set_trace_callback(None)
    return result, {
        sql: " ".join(r[3] for r in conn.execute("EXPLAIN QUERY PLAN " + sql))
        for sql in asked
        if "deliveries" in sql and not sql.startswith(("BEGIN", "COMMIT"))
    }


def test_sqlite_finds_the_few_rows_in_one_state_through_its_own_index(tmp_path: Path) -> None:
    # what status and the end of a send ask for: without these indexes (or with SQLite's
    # planner choosing the primary key), each question walked every row of the issue
    ledger = _sqlite_ledger(tmp_path, 40)
    try:
        rows, _, _, _ = ledger.claim("a", 8, 60.0, 0, now=1000.0)
        states = [State.FAILED, State.UNCERTAIN, State.DEFERRED, State.SENT]
        ledger.mark("a", [Outcome(d.subscriber_id, states[n % 4], "x", 5.0)
                          for n, d in enumerate(rows[:4])])  # fmt: skip
        questions = {
            "deliveries_sending": [lambda: ledger.in_state(State.SENDING, limit=1),
                                   ledger.holding, ledger.recover],
            "deliveries_deferred": [lambda: ledger.in_state(State.DEFERRED), ledger.next_retry],
            "deliveries_failed": [lambda: ledger.in_state(State.FAILED)],
            "deliveries_uncertain": [lambda: ledger.in_state(State.UNCERTAIN),
                                     ledger.resend_uncertain],
        }  # fmt: skip
        found = {}
        for index, calls in questions.items():
            for call in calls:
                found[call], plans = _plans(ledger.conn, call)
                assert len(plans) == 1, plans
                sql, plan = plans.popitem()
                assert f"USING INDEX {index} " in plan, (sql, plan)
        assert len(found[questions["deliveries_failed"][0]]) == 1  # and they still answer
        assert found[questions["deliveries_sending"][2]] == 4  # recover: the 4 still held
        assert found[questions["deliveries_uncertain"][1]] == 1 + 4  # resend: those, and one
    finally:
        ledger.close()


def test_sqlite_claims_and_marks_each_row_by_key(tmp_path: Path) -> None:
    # the outcomes go in one UPDATE for each state, each row found by its key and given
    # its own reply and retry time; the claim takes its rows by a range of keys
    ledger = _sqlite_ledger(tmp_path, 30)
    try:
        rows, cursor, _, _ = ledger.claim("a", 10, 60.0, 0)
        kinds = [(State.SENT, 0.0)] * 6 + [(State.DEFERRED, 5e9), (State.FAILED, 0.0)] * 2
        done = [Outcome(d.subscriber_id, state, f"{d.subscriber_id} said {n}", retry + n)
                for n, (d, (state, retry)) in enumerate(zip(rows, kinds, strict=True))]  # fmt: skip
        done.pop()  # one still held: it stays sending
        claim, plans = _plans(
            ledger.conn, lambda: ledger.claim("a", 10, 60.0, cursor, outcomes=done)
        )
        assert claim.recorded == {o.subscriber_id for o in done} and len(claim.rows) == 10
        stored = {
            r[0]: tuple(r[1:])
            for r in ledger.conn.execute(
                "SELECT subscriber_id, state, last_reply, next_attempt FROM deliveries"
                " WHERE issue_id = ?",
                (ISSUE,),
            )
        }
    finally:
        ledger.close()
    for o in done:
        assert stored[o.subscriber_id] == (o.state, o.reply, o.next_attempt), o
    assert stored[rows[-1].subscriber_id][0] == State.SENDING
    assert [stored[d.subscriber_id][0] for d in claim.rows] == [State.SENDING] * 10
    marks = [plan for sql, plan in plans.items() if "CASE subscriber_id" in sql]
    assert len(marks) == 3, plans  # sent, deferred (two retry times), failed
    for plan in marks:  # ids close together: the range between the first and the last
        assert (
            "SEARCH deliveries USING PRIMARY KEY (issue_id=? AND subscriber_id>? AND"
            " subscriber_id<?)" in plan
        ), plan
    taken = [plan for sql, plan in plans.items() if "SET state = 'sending'" in sql]
    assert taken == [
        "SEARCH deliveries USING PRIMARY KEY (issue_id=? AND subscriber_id>? AND subscriber_id<?)"
    ], plans
    for sql, plan in plans.items():
        assert "SCAN d " not in f"{plan} " and "SCAN deliveries" not in plan, (sql, plan)


def test_a_mark_of_more_outcomes_than_one_statement_takes_records_them_all(db_where) -> None:
    _start(db_where, 300)
    ledger = Ledger(db_where, ISSUE)
    try:
        rows, _, _, _ = ledger.claim("a", 300, 60.0, 0, now=1000.0)
        outcomes = [Outcome(d.subscriber_id, State.SENT, f"250 {n}") for n, d in enumerate(rows)]
        assert ledger.mark("a", outcomes) == {d.subscriber_id for d in rows}
        assert _states(db_where) == {State.SENT: 300}
        replies = {d.subscriber_id: d.last_reply for d in ledger.in_state(State.SENT)}
        assert replies == {o.subscriber_id: o.reply for o in outcomes}
    finally:
        ledger.close()


def test_sqlite_asks_of_one_reader_or_one_end_by_key_not_by_walking(tmp_path: Path) -> None:
    # an unsubscribe (inside the commit every sending worker waits for), a bounce streak and
    # where a worker starts: none walks every row of every ledger
    from newsletter.bounces.book import Book as Bounces

    where = tmp_path / "list.db"
    ids = _start(where, 12)
    with Store(where) as store:
        changed, plans = _plans(store.conn, lambda: store.unsubscribe(ids[3], "test"))
        assert changed
        streak, more = _plans(store.conn, lambda: Bounces(store).soft_streak(ids[4]))
        assert streak == 0
        plans.update(more)
    ledger = Ledger(where, ISSUE)
    try:
        start, more = _plans(ledger.conn, lambda: ledger.start_after(0.5))
        assert start == ids[0] - 1 + 6  # halfway along the ids still due
        plans.update(more)
        assert [d.subscriber_id for d in ledger.in_state(State.SKIPPED)] == [ids[3]]
    finally:
        ledger.close()
    assert len(plans) == 4, plans  # the skip, the streak, and the two ends
    for sql, plan in plans.items():
        assert "SCAN d" not in plan and "SCAN deliveries" not in plan, (sql, plan)
        assert "PRIMARY KEY (issue_id=?" in plan, (sql, plan)


def test_a_ledger_just_filled_is_claimed_and_marked_by_key(pg_url) -> None:
    # A send starts right after an import, before autovacuum has looked at either table: the
    # ledger's statistics are taken when it is filled (without them each mark scanned the
    # new rows), and a claim checks each row's subscriber by key, whatever the planner
    # believes of the subscribers (it hashed all of them for every claim: 28 ms a claim)
    from newsletter.ledger import _PG_CLAIM, _PG_MARK

    _start(pg_url, 3000)
    ledger = Ledger(pg_url, ISSUE)
    try:
        known = ledger.conn.execute(
            "SELECT reltuples FROM pg_class WHERE relname = 'deliveries'"
        ).fetchone()[0]
        assert known >= 3000
        claim = {"worker": "w", "lease": 60.0, "now": None, "stamp": "now", "issue": ISSUE,
                 "after": 0, "k": 50, "ids": [], "states": [], "replies": [],
                 "nexts": []}  # fmt: skip
        plan = "\n".join(r[0] for r in ledger.conn.execute("EXPLAIN " + _PG_CLAIM, claim))
        assert "Index Scan using subscribers_pkey" in plan and "hashed" not in plan, plan
        mark = {"ids": [1, 2], "states": ["sent"] * 2, "replies": ["250"] * 2,
                "nexts": [0.0] * 2, "stamp": "now", "issue": ISSUE, "worker": "w"}  # fmt: skip
        plan = "\n".join(r[0] for r in ledger.conn.execute("EXPLAIN " + _PG_MARK, mark))
        assert "Seq Scan" not in plan and "deliveries_pkey" in plan, plan
    finally:
        ledger.close()


def test_outcomes_are_found_by_primary_key_however_many_were_marked_before(pg_url) -> None:
    # the rows a send has marked stay in deliveries_sending until a vacuum: a mark (or a
    # renewal) that went through that index read every one of them (20 ms a mark 100,000
    # rows into a send)
    from newsletter.ledger import _PG_MARK, _PG_RENEW_HELD

    _start(pg_url, 400)
    ledger = Ledger(pg_url, ISSUE)
    try:
        cursor = 0
        while True:
            batch, cursor, _, _ = ledger.claim("w", 50, 60.0, cursor)
            if not batch:
                break
            ledger.mark("w", [Outcome(d.subscriber_id, State.SENT, "250") for d in batch[1:]])
        params = {"ids": [1, 2], "states": ["sent"] * 2, "replies": ["250"] * 2,
                  "nexts": [0.0] * 2, "stamp": "now", "issue": ISSUE, "worker": "w"}  # fmt: skip
        plan = "\n".join(r[0] for r in ledger.conn.execute("EXPLAIN " + _PG_MARK, params))
        assert "deliveries_sending" not in plan, plan
        held = {"ids": [1, 2], "lease": 60.0, "now": None, "issue": ISSUE, "worker": "w"}
        plan = "\n".join(r[0] for r in ledger.conn.execute("EXPLAIN " + _PG_RENEW_HELD, held))
        assert "deliveries_sending" not in plan, plan
        # and the renewal by ids keeps exactly what the worker holds (8 rows: one a batch)
        ledger.renew("w", 3600.0)
        assert ledger.reap(now=time.time() + 600) == 0
        assert ledger.reap(now=time.time() + 7200) == 8
    finally:
        ledger.close()


def test_a_server_down_past_the_retries_ends_the_claim_in_one_line(
    pg_cluster, pg_url, monkeypatch
) -> None:
    """PostgreSQL down for longer than a worker retries (RECONNECT_FOR, 30 s; 1 s here): the
    claim stops retrying and raises one line that names NEWSLETTER_DB (what a send then
    prints), and the rows stay as they were."""
    import newsletter.ledger as ledger_module

    _start(pg_url, 3)
    ledger = Ledger(pg_url, ISSUE)
    monkeypatch.setattr(ledger_module, "RECONNECT_FOR", 1.0)
    pg_cluster.stop("immediate")
    try:
        with pytest.raises(StoreError) as raised:
            ledger.claim("w", 2, 60.0)
    finally:
        pg_cluster.start()
    try:
        message = str(raised.value)
        assert "\n" not in message and message.startswith("NEWSLETTER_DB=postgresql://"), message
        assert "cannot reach the server" in message or "lost the connection" in message, message
        assert message.endswith("; tried again for 1 s: check that the server is running, then "
                                "run the command again (a send resumes)"), message  # fmt: skip
        assert _states(pg_url) == {State.PENDING: 3}  # the claim never reached the server
    finally:
        ledger.close()


@pytest.mark.parametrize("with_claim", [False, True], ids=["mark", "claim"])
def test_outcomes_whose_answer_was_lost_after_the_commit_are_counted(
    pg_url, monkeypatch, with_claim: bool
) -> None:
    # the server commits the marks, then the connection drops before the answer: the step
    # done again finds those rows no longer held, and cannot tell them from refused ones;
    # they are counted as recorded (as they are), not dropped from the worker's counts
    from newsletter.store.errors import Lost

    _start(pg_url, 6)
    ledger = Ledger(pg_url, ISSUE)
    try:
        mine, cursor, _, _ = ledger.claim("a", 3, 60.0, 0)
        done = [Outcome(d.subscriber_id, State.SENT, "250 ok") for d in mine]
        real, cut = ledger.conn.tuples, []

        def lossy(sql, params):
            rows = real(sql, params)
            if not cut:
                cut.append(sql)
                raise Lost("server closed the connection unexpectedly")
            return rows

        monkeypatch.setattr(ledger.conn, "tuples", lossy)
        if with_claim:
            recorded = ledger.claim("a", 2, 60.0, cursor, outcomes=done).recorded
        else:
            recorded = ledger.mark("a", done)
        assert cut  # the first try's answer was lost
        assert recorded == {d.subscriber_id for d in mine}
        assert _states(pg_url)[State.SENT] == 3
    finally:
        ledger.close()


def test_a_last_claim_whose_answer_was_lost_counts_its_outcomes_when_the_retry_finds_none(
    pg_url, monkeypatch
) -> None:
    # The last claim of a pass carries 3 outcomes; the only rows after it are of readers
    # erased meanwhile (skipped by the claim). The first try commits (3 marked, 2 skipped)
    # and its answer is lost; the try done again takes no row, so mark() records the
    # outcomes, and finds them recorded already. They count: the ledger holds them.
    from newsletter.store.errors import Lost

    _start(pg_url, 5)
    ledger = Ledger(pg_url, ISSUE)
    try:
        mine, cursor, _, _ = ledger.claim("a", 3, 60.0, 0)
        with Store(pg_url) as store:
            assert store.remove("reader3@example.org") and store.remove("reader4@example.org")
        done = [Outcome(d.subscriber_id, State.SENT, "250 ok") for d in mine]
        real, cut = ledger.conn.tuples, []

        def lossy(sql, params):
            rows = real(sql, params)
            if not cut:
                cut.append(sql)
                raise Lost("server closed the connection unexpectedly")
            return rows

        monkeypatch.setattr(ledger.conn, "tuples", lossy)
        claim = ledger.claim("a", 3, 60.0, cursor, outcomes=done)
        assert cut and not claim.rows
        assert _states(pg_url) == {State.SENT: 3, State.SKIPPED: 2}
        assert claim.recorded == {d.subscriber_id for d in mine}
    finally:
        ledger.close()


def test_a_claim_the_server_rolls_back_in_a_deadlock_is_done_again(pg_url) -> None:
    # Two claims can deadlock (each reaping rows the other is marking); the server then
    # rolls one back. Here the other party is a plain transaction: it holds the second row
    # the claim must mark, the claim takes the first and waits, then it asks for the first.
    # The claim's session checks for deadlocks first, so it is the one rolled back; the
    # claim must be done again, not raised, and record both outcomes.
    import psycopg

    _start(pg_url, 6)
    ledger = Ledger(pg_url, ISSUE)
    other = psycopg.connect(str(pg_url))
    watch = psycopg.connect(str(pg_url), autocommit=True)
    try:
        ledger.conn.execute("SET deadlock_timeout = '500ms'")
        other.execute("SET deadlock_timeout = '30s'")
        mine, cursor, _, _ = ledger.claim("a", 2, 60.0, 0)
        first, second = (d.subscriber_id for d in mine)
        row = "WHERE issue_id = %s AND subscriber_id = %s"
        other.execute(f"SELECT 1 FROM deliveries {row} FOR UPDATE", (ISSUE, second))
        done = [Outcome(first, State.SENT, "250 ok"), Outcome(second, State.SENT, "250 ok")]
        result: dict = {}
        claiming = threading.Thread(
            target=lambda: result.update(claim=ledger.claim("a", 2, 60.0, cursor, outcomes=done))
        )
        claiming.start()
        waiting = (
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        deadline = time.monotonic() + 10
        while watch.execute(waiting).fetchone()[0] == 0:
            assert time.monotonic() < deadline, "the claim never waited for the row"
            time.sleep(0.01)
        # waits until the server rolls the claim back (else this raises DeadlockDetected)
        other.execute(f"UPDATE deliveries SET updated_at = updated_at {row}", (ISSUE, first))
        other.commit()
        claiming.join(20)
        assert not claiming.is_alive()
        assert len(result["claim"].rows) == 2
        assert _states(pg_url) == {State.SENT: 2, State.SENDING: 2, State.PENDING: 2}
    finally:
        other.close()
        watch.close()
        ledger.close()


def test_sqlite_marks_outcomes_far_apart_each_by_its_key(tmp_path: Path) -> None:
    # a batch whose rows are far apart (a retry from the start of the list beside the rows
    # of the end): each looked up by its key, not a walk over every row between them
    ledger = _sqlite_ledger(tmp_path, 60)
    try:
        first, _, _, _ = ledger.claim("a", 2, 60.0, 0)
        last, _, _, _ = ledger.claim("a", 2, 60.0, first[-1].subscriber_id + 50)
        ledger.claim("b", 3, 60.0, first[-1].subscriber_id)  # held by another between
        done = [Outcome(d.subscriber_id, State.SENT, f"250 {d.subscriber_id}")
                for d in first + last]  # fmt: skip
        recorded, plans = _plans(ledger.conn, lambda: ledger.mark("a", done))
        assert recorded == {o.subscriber_id for o in done}
        assert {d.subscriber_id: d.last_reply for d in ledger.in_state(State.SENT)} == {
            o.subscriber_id: o.reply for o in done
        }
        assert len(ledger.in_state(State.SENDING)) == 3  # b's, untouched
    finally:
        ledger.close()
    (plan,) = [plan for sql, plan in plans.items() if "CASE subscriber_id" in sql]
    assert "SEARCH deliveries USING PRIMARY KEY (issue_id=? AND subscriber_id=?)" in plan
    assert "subscriber_id>?" not in plan


def test_an_unsubscribe_skips_the_pending_rows_in_the_same_commit(db_where) -> None:
    ids = _start(db_where, 4)
    with Store(db_where) as s:
        assert s.unsubscribe(ids[1], "web:one-click")
        s.remove("reader3@example.org")
    ledger = Ledger(db_where, ISSUE)
    try:
        assert {d.subscriber_id for d in ledger.in_state(State.SKIPPED)} == {ids[1]}
        claim = ledger.claim("w", 10, 10.0, 0)
        # a person removed after the list was fixed is skipped by the claim itself
        assert [d.subscriber_id for d in claim.rows] == [ids[0], ids[2]]
        assert claim.skipped == 1
        # by their ids: the one removed between them is not taken with them
        assert {d.subscriber_id for d in ledger.in_state(State.SENDING)} == {ids[0], ids[2]}
    finally:
        ledger.close()


def test_status_sums_and_each_workers_share(db_where) -> None:
    _start(db_where, 9)
    ledger = Ledger(db_where, ISSUE)
    try:
        for name, outcome in (("a", State.SENT), ("b", State.FAILED)):
            ledger.join(name, f"host-{name}", 100)
            batch, _, _, _ = ledger.claim(name, 3, 10.0, 0)
            ledger.mark(name, [Outcome(d.subscriber_id, outcome, "x") for d in batch])
            ledger.tally(name, {outcome.value: len(batch)}, finished=True)
        ledger.join("c", "host-c", 101)
        ledger.claim("c", 2, 10.0, 0)
        counts = ledger.counts()
        assert sum(counts.values()) == 9
        assert _states(db_where) == {State.SENT: 3, State.FAILED: 3, State.SENDING: 2,
                                     State.PENDING: 1}  # fmt: skip
        shares = {r["worker"]: (r["host"], r["sent"], r["failed"]) for r in ledger.workers()}
        assert shares == {"a": ("host-a", 3, 0), "b": ("host-b", 0, 3), "c": ("host-c", 0, 0)}
        assert ledger.holding() == {"c": 2}
        assert [r["worker"] for r in ledger.live_workers(60.0)] == ["c"]
    finally:
        ledger.close()


def test_a_worker_of_a_container_sharing_this_host_name_is_not_taken_for_dead(db_where):
    """Same host name, another PID namespace (containers with `--network host`): its pid
    means nothing here, so its lease decides, not a lookup of that pid on this machine."""
    _start(db_where, 6)
    gone = subprocess.Popen(["true"])
    gone.wait()  # a pid no process has now
    ledger = Ledger(db_where, ISSUE)
    try:
        for worker in ("ours", "theirs"):
            ledger.join(worker, socket.gethostname(), gone.pid)
            ledger.claim(worker, 2, 60.0, 0)
        conn = store.connect(db_where)
        conn.execute("UPDATE send_workers SET machine = 'a container' WHERE worker = 'theirs'")
        conn.close()
        assert [r["worker"] for r in ledger.live_workers(60.0)] == ["theirs"]
        if ledger.pg:  # other hosts may be sending: only rows known dead are taken back
            ledger.recover()
            assert ledger.holding() == {"theirs": 2}
            assert _states(db_where)[State.UNCERTAIN] == 2  # those of ours, dead
    finally:
        ledger.close()


def test_two_starts_at_the_same_moment_give_one_ledger(db_where) -> None:
    _people(db_where, 50)
    with Store(db_where) as s:
        recipients = [(p.id, p.email, p.name, "en") for p in s.iter()]
    ledgers = [Ledger(db_where, ISSUE) for _ in range(2)]
    gate = threading.Barrier(2)
    results: list[object] = []

    def start(ledger: Ledger) -> None:
        gate.wait()
        try:
            results.append(ledger.start(recipients, "example.org", "issues/2017-11"))
        except SendStarted as exc:
            results.append(exc)

    threads = [threading.Thread(target=start, args=(ledger,)) for ledger in ledgers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for ledger in ledgers:
        ledger.close()
    assert sorted(map(type, results), key=str) == sorted([int, SendStarted], key=str)
    told = next(r for r in results if isinstance(r, SendStarted))
    assert "--join" in str(told)
    assert _states(db_where) == {State.PENDING: 50}


# --- the rest of the store ----------------------------------------------------------------


def test_subscribers_consent_and_signups_behave_alike(db_where) -> None:
    from datetime import UTC, datetime, timedelta

    with Store(db_where) as s:
        ann = s.add("Ann@Example.org", name="Ann", language="fr", source="test",
                    consent=Consent(Basis.IMPLIED, "cli", consent_date="2020-02-29"))  # fmt: skip
        assert s.find("ann@example.org") == ann
        with pytest.raises(StoreError, match="already"):
            s.add("ann@example.org", language="en", source="test")
        assert [p.email for p in s.lapsed(today="2022-03-01")] == ["Ann@Example.org"]
        assert list(s.lapsed(today="2022-02-28")) == []
        with pytest.raises(store.CONFLICT, match="append-only"):
            s.conn.execute("UPDATE consents SET note = 'x'")
        result = s.import_rows([Row("bob@example.org"), Row("ann@example.org", "Annie")],
                               source="import", default_language="en")  # fmt: skip
        assert (result.added, result.updated) == (1, 1)
        assert s.set_language(ann.id, "both", "web:preferences")
        assert s.unsubscribe(ann.id, "web:one-click")
        assert not s.unsubscribe(ann.id, "web:one-click")
        assert [e["kind"] for e in s.events(ann.id)] == [
            "join", "name", "language", "unsubscribe",
        ]  # fmt: skip
        assert s.counts() == {("both", Status.UNSUBSCRIBED): 1, ("en", Status.ACTIVE): 1}
        now = datetime(2026, 5, 1, tzinfo=UTC)
        text = ConsentText("v1", "en", "Yes, mail me")
        admitted = s.request_signup(
            email="cy@example.org", name="Cy", language="en", page_language="en",
            method="web:signup", form_url="https://news.example.org/signup", text=text,
            limit_keys={"k": ()}, now=now,
        )  # fmt: skip
        request = admitted.request
        assert request is not None and request.id
        confirmed = s.confirm_signup(request.id, now=now + timedelta(minutes=1),
                                     automatic=False, guard=timedelta(0))  # fmt: skip
        assert confirmed.subscriber is not None and confirmed.subscriber.email == "cy@example.org"
        assert s.consents(confirmed.subscriber.id)[0].consent.text_hash == text.hash
        assert s.remove("bob@example.org")
        assert s.list_identity().uid


def test_a_sends_list_is_copied_from_the_stores_query_within_the_database(db_where) -> None:
    """Who is mailed, in which edition, each with a Message-ID of its own: the 12 hex digits
    drawn by the database differ for every reader (a bounce quoting one is matched by it)."""
    import re

    with Store(db_where) as s:
        ann = s.add("ann@example.org", name="Ann", language="fr", source="test",
                    consent=Consent(Basis.IMPLIED, "cli", consent_date="2020-02-29"))  # fmt: skip
        bob = s.add("bob@example.org", language="both", source="test")
        cy = s.add("cy@example.org", language="en", source="test")
        s.unsubscribe(s.add("dee@example.org", language="en", source="test").id, "test")
        people = [(bob.id, bob.email, "", "bilingual"), (cy.id, cy.email, "", "en")]
        query = s.recipients_query(today="2026-12-03")  # Ann's implied consent has lapsed
        assert [tuple(r) for r in s.conn.execute(*query)] == people
        with_lapsed = s.recipients_query(include_lapsed=True, today="2026-12-03")
    ledger = Ledger(db_where, ISSUE)
    try:
        assert ledger.start(with_lapsed, "example.org", "issues/2017-11") == 3
        rows = ledger.in_state(State.PENDING)
    finally:
        ledger.close()
    assert [(d.subscriber_id, d.email, d.edition) for d in rows] == [
        (ann.id, ann.email, "fr"), (bob.id, bob.email, "bilingual"), (cy.id, cy.email, "en"),
    ]  # fmt: skip
    salts = set()
    for d in rows:
        found = re.fullmatch(rf"<2017-11\.{d.subscriber_id}\.([0-9a-f]{{12}})@example\.org>",
                             d.message_id)  # fmt: skip
        assert found, d.message_id
        salts.add(found.group(1))
    assert len(salts) == 3


def test_schedules_and_the_archive_state_behave_alike(db_where) -> None:
    from datetime import UTC, datetime

    from newsletter.archive.state import ArchiveState, Decision

    with Book(db_where) as book:
        first = book.add(ISSUE, Path("issues/2017-11"), 2e9, "America/Toronto", 7200.0, False,
                         {}, {}, {"en": "{}"})  # fmt: skip
        assert book.waiting(ISSUE) == first
        assert book.mark(first.id, ScheduleState.STARTED)
        assert not book.mark(first.id, ScheduleState.STARTED)  # another `due` had it
        assert [s.state for s in book.all()] == [ScheduleState.STARTED]
    conn = store.connect(db_where)
    try:
        with conn.transaction():
            state = ArchiveState(conn)
            state.decide("2017-10", Decision.PUBLISHED, datetime(2026, 1, 1, tzinfo=UTC))
            stamps, corrected = state.stamps({("2017-10", "en"): "d1"}, datetime.now(UTC))
        assert state.public() == ["2017-10"] and corrected == []
        assert stamps["2017-10", "en"].published.year == 2026
    finally:
        conn.close()


# --- schema and migrations --------------------------------------------------------------------


def _sqlite_schema(path: Path) -> dict:
    conn = sqlite3.connect(path)
    try:
        tables = {
            name: [tuple(c[1:]) for c in conn.execute(f"PRAGMA table_info({name})")]
            for (name,) in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"
            )
        }
        others = sorted(conn.execute(
            "SELECT type, name FROM sqlite_master WHERE type IN ('index', 'trigger')"
            " AND name NOT LIKE 'sqlite_autoindex%'"
        ))  # fmt: skip
        return {"tables": tables, "others": others, "version": conn.execute(
            "PRAGMA user_version").fetchone()[0]}  # fmt: skip
    finally:
        conn.close()


@pytest.mark.parametrize("start", range(len(MIGRATIONS) + 1))
def test_sqlite_from_every_version_migrates_to_the_fresh_schema(start: int, tmp_path: Path):
    fresh = tmp_path / "fresh.db"
    db.connect(fresh).close()
    old = tmp_path / "old.db"
    raw = sqlite3.connect(old, isolation_level=None)  # a file as that release left it
    raw.create_function("nl_ascii_email", 1, db._ascii_email)
    raw.create_function("nl_email_key", 1, db.email_key_v1)
    for script in MIGRATIONS[:start]:
        raw.executescript(script)
    raw.execute(f"PRAGMA user_version = {start}")
    raw.close()
    store.connect(old).close()
    assert _sqlite_schema(old) == _sqlite_schema(fresh)
    assert _sqlite_schema(old)["version"] == latest("sqlite") == len(MIGRATIONS)


SQL_TYPES = {"INTEGER": "bigint", "TEXT": "text", "REAL": "double precision"}


def test_the_postgresql_schema_is_sqlites_at_the_same_version(pg_url, tmp_path: Path) -> None:
    assert latest("postgres") == latest("sqlite")
    sqlite_path = tmp_path / "fresh.db"
    db.connect(sqlite_path).close()
    expected = _sqlite_schema(sqlite_path)
    conn = store.connect(pg_url)
    try:
        for table, columns in expected["tables"].items():
            if table == "sqlite_sequence":
                continue
            got = conn.execute(
                "SELECT column_name, data_type, is_nullable FROM information_schema.columns"
                " WHERE table_schema = current_schema() AND table_name = ?"
                " ORDER BY ordinal_position",
                (table,),
            ).fetchall()
            got = [tuple(r) for r in got if r[0] != "rowid"]  # SQLite's implicit one, made real
            want = [
                (name, SQL_TYPES[kind.upper()], "NO" if notnull or pk else "YES")
                for name, kind, notnull, _default, pk in columns
            ]
            assert got == want, table
        indexes = {r[0] for r in conn.execute(
            "SELECT indexname FROM pg_indexes WHERE schemaname = current_schema()")}  # fmt: skip
        triggers = {r[0] for r in conn.execute("SELECT tgname FROM pg_trigger")}
        for kind, name in expected["others"]:
            assert name in (indexes if kind == "index" else triggers), name
        # each of its migrations (the first one is version 10) applied once
        applied = conn.execute("SELECT version FROM schema_migrations ORDER BY version")
        assert [r[0] for r in applied] == list(range(10, latest("postgres") + 1))
    finally:
        conn.close()


def test_postgresql_hosts_starting_at_once_migrate_once(pg_cluster) -> None:
    url = store.PgUrl(pg_cluster.create("empty_at_first"))
    errors: list[BaseException] = []
    found: list[int] = []  # the version each found, under the lock (what `db migrate` says)
    gate = threading.Barrier(4)

    def start() -> None:
        gate.wait()
        try:
            conn = store.connect(url)
            found.append(conn.found_version)
            conn.close()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    try:
        assert errors == []
        # one made it; the others, waiting on the lock meanwhile, found it made
        assert sorted(found) == [0] + [latest("postgres")] * 3, found
        conn = store.connect(url)
        rows = conn.execute("SELECT version FROM schema_migrations").fetchall()
        assert [r[0] for r in rows] == list(range(10, latest("postgres") + 1))  # once each
        assert conn.execute("SELECT count(*) FROM list_identity").fetchone()[0] == 1
        conn.close()
    finally:
        pg_cluster.drop("empty_at_first")


def test_a_schema_newer_than_the_code_is_refused(db_where) -> None:
    conn = store.connect(db_where)
    if conn.dialect == "postgres":
        conn.execute("INSERT INTO schema_migrations (version, name) VALUES (?, 'later')",
                     (latest("postgres") + 1,))  # fmt: skip
    else:
        conn.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    conn.close()
    with pytest.raises(StoreError, match="newer than this program"):
        store.connect(db_where)


def test_placeholders_become_psycopgs_and_quoted_text_stays_as_it_is() -> None:
    from newsletter.store.postgres import translate

    sql = "SELECT '50% ?', x::int, :name FROM t WHERE a = ? AND b LIKE 'a%' -- 10% off?"
    assert translate(sql) == (
        "SELECT '50%% ?', x::int, %(name)s FROM t WHERE a = %s AND b LIKE 'a%%' -- 10%% off?"
    )


def test_the_lapse_rule_as_a_cutoff_date_is_sqlites_date_arithmetic() -> None:
    # consent.lapsed_sql compares text with a cutoff worked out in Python, the same on both
    # databases; it must say what SQLite's date(d, '+2 years') <= today said, 29 February too
    import datetime as dt

    from newsletter.consent import lapse_cutoff

    conn = sqlite3.connect(":memory:")
    first = dt.date(2019, 1, 1)
    days = [first + dt.timedelta(days=n) for n in range(0, 4 * 366, 3)] + [
        dt.date(2020, 2, 28), dt.date(2020, 2, 29), dt.date(2020, 3, 1),
    ]  # fmt: skip
    for today in (dt.date(2022, 2, 28), dt.date(2022, 3, 1), dt.date(2024, 2, 29),
                  dt.date(2023, 6, 15), dt.date(2021, 12, 31)):  # fmt: skip
        cutoff = lapse_cutoff(today.isoformat())
        for day in days:
            lapsed = conn.execute(
                "SELECT date(?, '+2 years') <= ?", (day.isoformat(), today.isoformat())
            ).fetchone()[0]
            assert bool(lapsed) == (day.isoformat() <= cutoff), (today, day)
