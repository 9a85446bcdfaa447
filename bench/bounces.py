"""What bounce handling costs: a VERP token per message (the send's hot path), and reading
DSNs into the database (parse, classify, match, record), on a throwaway SQLite file.

    .venv/bin/python bench/bounces.py [N]

Prints figures; asserts nothing.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from newsletter.bounces.book import Book  # noqa: E402
from newsletter.bounces.tokens import bounce_token, unsubscribe_mailto  # noqa: E402
from newsletter.ledger import Ledger  # noqa: E402
from newsletter.subscribers import SqliteStore  # noqa: E402
from tests import bounce_fixtures as fx  # noqa: E402

KEY = b"k" * 32


def main(n: int) -> None:
    started = time.perf_counter()
    for sid in range(1, n + 1):
        bounce_token(KEY, sid, "2017-11", 20_400)
        unsubscribe_mailto(KEY, "bounce.example.org", sid)
    per = (time.perf_counter() - started) / n
    print(f"VERP token + mailto token: {per * 1e6:.1f} µs a message")

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.db"
        with SqliteStore(path) as store:
            store.import_rows(
                (fx_row(i) for i in range(1, n + 1)), source="bench", default_language="en"
            )
        ledger = Ledger(path, "2017-11")
        ledger.start(
            ((i, f"reader{i}@example.org", "", "en") for i in range(1, n + 1)), "example.org"
        )
        ledger.close()
        reports = []
        for sid in range(1, n + 1):
            token = bounce_token(KEY, sid, "2017-11", int(time.time() // 86400))
            sent = fx.Sent(f"bounces+{token}@bounce.example.org", f"reader{sid}@example.org",
                           f"<m{sid}@example.org>", "<x>")  # fmt: skip
            status = ("5.1.1", "5.2.2", "4.4.7")[sid % 3]
            reports.append(fx.dsn(sent, status, f"550 {status} no", message_id=f"<d{sid}@x>"))
        with SqliteStore(path) as store:
            book = Book(store, KEY)
            started = time.perf_counter()
            for n_read, raw in enumerate(reports):
                book.read(raw, f"bench {n_read}")
            elapsed = time.perf_counter() - started
            again = time.perf_counter()
            for raw in reports[:1000]:
                book.read(raw, "again")
            known = (time.perf_counter() - again) / min(1000, len(reports))
    print(f"{n:,} DSNs read and recorded in {elapsed:.2f} s: {n / elapsed:,.0f}/s "
          f"({elapsed / n * 1e3:.2f} ms each, one commit each)")  # fmt: skip
    print(f"a DSN already recorded: {known * 1e3:.2f} ms (found by its fingerprint)")


def fx_row(i: int):
    from newsletter.subscribers import Row

    return Row(f"reader{i}@example.org")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 3000)
