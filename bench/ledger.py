"""The ledger's work queue alone: claim k rows, mark them sent with the next claim (as a
send does), again, until none is left; 1, 2 and 4 worker processes over one ledger of ROWS
rows, on PostgreSQL and on SQLite.
No SMTP, no messages: what the ledger costs a send, per row.

    .venv/bin/python bench/ledger.py [--rows 1000000] [--k 50] [--url postgresql://...]

PostgreSQL is a private server started here (tests/pg_server.py: fsync off, synchronous
commit on, a unix socket), unless --url names one (its database must be empty). SQLite is a
file in a temporary folder (WAL, synchronous=NORMAL, as the tool opens it).
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from newsletter import store  # noqa: E402
from newsletter.ledger import Ledger, Outcome, State  # noqa: E402

WORKERS = (1, 2, 4)


def fill(where, rows: int) -> None:
    """ROWS active subscribers (a claim checks each one is still subscribed)."""
    conn = store.connect(where)
    stamp = "2026-01-01T00:00:00+00:00"
    people = (
        (i, f"reader{i}@example.org", f"reader{i}@example.org", "en", stamp, "bench", stamp)
        for i in range(1, rows + 1)
    )
    columns = "id, email, email_key, language, joined_at, join_source, updated_at"
    with conn.transaction():
        if conn.dialect == "postgres":
            with conn.raw.cursor().copy(f"COPY subscribers ({columns}) FROM STDIN") as copy:
                for person in people:
                    copy.write_row(person)
        else:
            conn.executemany(f"INSERT INTO subscribers ({columns}) VALUES (?,?,?,?,?,?,?)", people)
    conn.close()


def start(where, issue: str, rows: int) -> float:
    ledger = Ledger(where, issue)
    began = time.perf_counter()
    recipients = ((i, f"reader{i}@example.org", "", "en") for i in range(1, rows + 1))
    assert ledger.start(recipients, "example.org") == rows
    ledger.close()
    return time.perf_counter() - began


def work(where, issue: str, k: int, go, counts, slot: int, workers: int) -> None:
    ledger = Ledger(where, issue)
    name = f"bench-{slot}"
    done = 0
    cursor = ledger.start_after(slot / workers)  # as a send's workers spread (workers.share)
    outcomes: list[Outcome] = []
    go.wait()
    while True:
        # as a send does: the last batch's outcomes recorded in the commit of the next claim
        batch, next_cursor, _, _ = ledger.claim(name, k, 300.0, cursor, outcomes=outcomes)
        done += len(outcomes)
        outcomes = [Outcome(d.subscriber_id, State.SENT, "250 OK") for d in batch]
        if not batch and next_cursor == 0:
            if cursor == 0:
                break
            cursor = 0
            continue
        cursor = next_cursor
    counts[slot] = done
    ledger.close()


def run(where, issue: str, workers: int, k: int) -> tuple[float, int]:
    fork = multiprocessing.get_context("fork")
    go = fork.Event()
    counts = fork.Array("q", workers)
    procs = [fork.Process(target=work, args=(where, issue, k, go, counts, n, workers))
             for n in range(workers)]  # fmt: skip
    for p in procs:
        p.start()
    time.sleep(0.5)  # every worker connected and waiting
    began = time.perf_counter()
    go.set()
    for p in procs:
        p.join()
        assert p.exitcode == 0
    return time.perf_counter() - began, sum(counts)


def bench(label: str, where, rows: int, k: int) -> None:
    started = time.perf_counter()
    fill(where, rows)
    print(f"{label}: {rows:,} subscribers in {time.perf_counter() - started:.1f} s", flush=True)
    for workers in WORKERS:
        issue = f"bench-{workers}"
        took = start(where, issue, rows)
        elapsed, marked = run(where, issue, workers, k)
        assert marked == rows, (marked, rows)
        ledger = Ledger(where, issue)
        counts = {s: n for (_, s), n in ledger.counts().items()}
        ledger.close()
        assert counts == {State.SENT: rows}, counts
        print(
            f"{label}: {workers} worker(s), k = {k}: {rows:,} rows claimed and marked in "
            f"{elapsed:.1f} s = {rows / elapsed:,.0f} rows/s (ledger filled in {took:.1f} s)",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--k", type=int, default=50)
    parser.add_argument("--url", help="an empty PostgreSQL database to use instead")
    parser.add_argument("--only", choices=("postgres", "sqlite"))
    args = parser.parse_args()
    if args.only != "sqlite":
        if args.url:
            bench("PostgreSQL", store.PgUrl(args.url), args.rows, args.k)
        else:
            from tests.pg_server import Cluster

            cluster = Cluster()
            try:
                bench("PostgreSQL", store.PgUrl(cluster.create("bench")), args.rows, args.k)
            finally:
                cluster.close()
    if args.only != "postgres":
        with tempfile.TemporaryDirectory() as folder:
            bench("SQLite", Path(folder) / "bench.db", args.rows, args.k)


if __name__ == "__main__":
    main()
