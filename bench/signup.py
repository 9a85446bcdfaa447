"""How long the signup form takes to answer, by the state of the address asked for.

The answer must not tell a stranger whether an address is on the list: neither its words
(the tests check that) nor its time. This posts the form for addresses that are new, pending,
active, unsubscribed and bounced, interleaved, against the real app under uvicorn on
127.0.0.1 (confirmations go to an outbox folder, after the answer), and prints the median
and 90th percentile of each.

Run: .venv/bin/python bench/signup.py [--per-state N]
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import socket
import statistics
import sys
import tempfile
import threading
import time
from http.client import HTTPConnection
from pathlib import Path
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import uvicorn  # noqa: E402

from newsletter.config import load_settings  # noqa: E402
from newsletter.consent import ConsentText  # noqa: E402
from newsletter.signup import pages  # noqa: E402
from newsletter.signup.requests import Limit  # noqa: E402
from newsletter.signup.stamps import make_stamp  # noqa: E402
from newsletter.subscribers import SqliteStore, Status  # noqa: E402
from newsletter.tokens import resolve_secret  # noqa: E402
from newsletter.web import create_app  # noqa: E402

STATES = ("new", "pending", "active", "unsubscribed", "bounced")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--per-state", type=int, default=200)
    args = parser.parse_args()
    n = args.per_state
    # One place asks for every address here: lift the limit per IP, not the one per address.
    pages.IP_LIMITS = (Limit(10**9, dt.timedelta(minutes=10)),)
    with tempfile.TemporaryDirectory() as folder:
        settings = load_settings(
            None,
            environ={
                "NEWSLETTER_DB": f"{folder}/bench.db",
                "NEWSLETTER_SECRET": "bench-secret-with-enough-entropy-0123",
                "NEWSLETTER_OUTBOX": f"{folder}/outbox",
            },
        )
        seed(settings, n)
        port = free_port()
        server = uvicorn.Server(
            uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="error")
        )
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        while not server.started:
            time.sleep(0.01)
        secret = resolve_secret(settings)
        order = [(state, i) for state in STATES for i in range(n)]
        random.Random(1).shuffle(order)
        times: dict[str, list[float]] = {state: [] for state in STATES}
        for state, i in order:
            fields = {
                "stamp": make_stamp(secret, dt.datetime.now(dt.UTC) - dt.timedelta(seconds=5)),
                "email": f"{state}{i}@example.org",
                "language": "en",
                "consent": "yes",
            }
            body = urlencode(fields).encode()
            conn = HTTPConnection("127.0.0.1", port)
            started = time.perf_counter()
            conn.request("POST", "/subscribe", body,
                         {"Content-Type": "application/x-www-form-urlencoded"})  # fmt: skip
            response = conn.getresponse()
            response.read()
            times[state].append(time.perf_counter() - started)
            conn.close()
            assert response.status == 303, (state, response.status)
        server.should_exit = True
        thread.join(10)
    print(f"POST /subscribe, {n} addresses per state, interleaved; answer time in ms")
    print(f"{'state':<14} {'median':>8} {'p90':>8}")
    for state in STATES:
        ms = sorted(t * 1000 for t in times[state])
        print(f"{state:<14} {statistics.median(ms):>8.2f} {ms[int(len(ms) * 0.9)]:>8.2f}")


def seed(settings, n: int) -> None:
    words = ConsentText("1", "en", "bench")
    now = dt.datetime.now(dt.UTC)
    with SqliteStore(settings.db_path) as store:
        for i in range(n):
            store.add(f"active{i}@example.org", language="en", source="bench")
            for state in (Status.UNSUBSCRIBED, Status.BOUNCED):
                person = store.add(f"{state}{i}@example.org", language="en", source="bench")
                store.set_status(person.id, state, "bench")
            store.request_signup(
                email=f"pending{i}@example.org", name="", language="en", page_language="en",
                method="web:signup", form_url="bench", text=words, limit_keys={},
                now=now - dt.timedelta(hours=1),
            )  # fmt: skip


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


if __name__ == "__main__":
    t0 = time.perf_counter()
    main()
    print(f"wall time of this run: {time.perf_counter() - t0:.2f} s")
