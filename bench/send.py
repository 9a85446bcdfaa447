"""Send the demo issue to N generated subscribers on loopback, beside Postfix's smtp-source at
the same message size and the same number of connections, and a plain smtplib loop.

Run:   .venv/bin/python bench/send.py                     # N = 1,000 and 100,000 (minutes)
       .venv/bin/python bench/send.py --sizes 1000,20000  # a quicker run

Needs a C compiler (cc) for the receiver, and Postfix's /usr/sbin/smtp-source (package postfix).
Everything stays on 127.0.0.1; generated addresses use example.org/.com/.net only.

The receiver is bench/receiver.c, built here: a minimal SMTP server (one thread a connection,
PIPELINING, CHUNKING, end of data found with memmem) that is not the bottleneck, which Postfix's
single-threaded smtp-sink is at these rates. Its CPU share is printed beside each row.

- ours:         the same campaign functions as `newsletter send` (start, then run), in a fresh
                process per measurement, against a fresh SQLite file of N subscribers (40% en,
                30% fr, 30% both): one worker process with all the connections, then one worker
                per core sharing them; with DKIM (RSA-2048 and Ed25519) too; and with claims of
                32 rows (`send --batch 32`) instead of the default 4 x connections + 16; and
                with one connection a worker. The connections are the machine's, shared by
                its workers (4 by default: the all-cores row is `newsletter send` untold).
                Subscriber generation and the build are not timed.
- smtp-source:  Postfix's C client sending messages of our mean size over the same number of
                connections, each reused for all its messages (-d); and over one a core, beside
                the send with one connection a worker. For the headline goal, the all-cores
                send at the largest N and smtp-source take turns (--repeat, 3), and each
                keeps its best run.
- plain loop:   `message.build_message` (EmailMessage) and `smtplib.send_message` over a new
                connection per message, one at a time, as most scripts do.
- ledger alone: claim + mark of N rows by the same worker processes at the same k, no SMTP
                (bench/ledger.py), --repeat runs, the best kept: a floor for the ledger's
                share of the send's CPU per message (inside a send the same calls cost more).

Prints msg/s, sender CPU µs per message (the worker processes included), peak RSS of the
largest sending process, the receiver's CPU share and what it counted; then the goals of
issue #13 as PASS/MISS. A bench prints figures; it never fails (exit status 0 unless it could
not run at all).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import shutil
import smtplib
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from newsletter import campaign, db  # noqa: E402
from newsletter.config import load_settings  # noqa: E402
from newsletter.delivery import SendOptions  # noqa: E402
from newsletter.ledger import Ledger, State, send_lock  # noqa: E402
from newsletter.message import build_message  # noqa: E402
from newsletter.normalise import email_key  # noqa: E402
from newsletter.subscribers import open_store  # noqa: E402

SMTP_SOURCE = "/usr/sbin/smtp-source"
RECEIVER_C = ROOT / "bench" / "receiver.c"
CHILD = ROOT / "bench" / "child.py"
ISSUE = ROOT / "issues" / "2017-11"
DOMAINS = ("example.org", "example.com", "example.net")
EDITION_OF = {"en": "en", "fr": "fr", "both": "bilingual"}
SECRET = "bench-secret-0123456789abcdef0123456789abcdef"
BIG_BATCH = 32  # the claim size of the `--batch` row (the default is 4 x concurrency + 16)
DJANGO_NEWSLETTER = 150  # msg/s, measured by the issue (#13) at 142-154: not re-measured here


# --- generated subscribers ------------------------------------------------------------------


def language(i: int) -> str:
    """40% en, 30% fr, 30% both, interleaved."""
    return ("en", "en", "en", "en", "fr", "fr", "fr", "both", "both", "both")[i % 10]


def subscriber(i: int) -> tuple[str, str, str]:
    """(email, name, language) of generated subscriber i; reserved domains only."""
    lang = language(i)
    name = {"en": f"Reader {i}", "fr": f"Éloïse Lecteur {i}", "both": ""}[lang]
    return f"reader{i}@{DOMAINS[i % 3]}", name, lang


def make_db(path: Path, n: int) -> None:
    """N active subscribers, inserted in one transaction (the import path is far slower)."""
    conn = db.connect(path)
    now = "2017-11-01T00:00:00+00:00"
    rows = (
        (email, email_key(email), name, lang, now, now)
        for email, name, lang in (subscriber(i) for i in range(1, n + 1))
    )
    with db.transaction(conn):
        conn.executemany(
            "INSERT INTO subscribers (email, email_key, name, language, status, joined_at,"
            " join_source, consent_note, updated_at)"
            " VALUES (?, ?, ?, ?, 'active', ?, 'bench', '', ?)",
            rows,
        )
    conn.close()


def settings_for(workdir: Path, port: int, dkim: str = ""):
    environ = {
        "NEWSLETTER_DB": str(workdir / "bench.db"),
        "NEWSLETTER_OUTBOX": str(workdir / "outbox"),
        "NEWSLETTER_SMTP_HOST": "127.0.0.1",
        "NEWSLETTER_SMTP_PORT": str(port),
        "NEWSLETTER_SMTP_SECURITY": "none",
        "NEWSLETTER_SECRET": SECRET,
        "NEWSLETTER_ARCHIVE_DIR": str(workdir / "site"),
    }
    if dkim:
        environ |= {
            "NEWSLETTER_DKIM_KEY": dkim,
            "NEWSLETTER_DKIM_SELECTOR": "bench",
            "NEWSLETTER_DKIM_DOMAIN": "example.org",
        }
    return load_settings(None, environ=environ)


def cpu_seconds() -> float:
    """This process and its children that have ended (the worker processes)."""
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        r = resource.getrusage(who)
        total += r.ru_utime + r.ru_stime
    return total


def peak_rss_mb(pid: int | str = "self") -> float:
    """VmHWM, the peak RSS of this process image. Not ru_maxrss: after fork+exec that keeps
    the parent's peak, so a child would report at least the parent's size."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise LookupError("no VmHWM")


# --- the children: each measurement runs in a fresh process ---------------------------------


def child_ours(args: argparse.Namespace) -> dict:
    """Our send, as `newsletter send ISSUE --yes` does it after the confirmation."""
    settings = settings_for(Path(args.workdir), args.port, args.dkim)
    prepared = campaign.prepare(settings, Path(args.issue))
    rss_prepared = peak_rss_mb()
    given = {"concurrency": args.concurrency, "workers": args.workers, "batch": args.batch or None}
    with send_lock(settings.db_path), open_store(settings) as store:
        ledger = Ledger(settings.db_path, prepared.issue_id)
        try:
            cpu0, t0 = cpu_seconds(), time.perf_counter()
            fixed = campaign.start(store, ledger, prepared, given)
            t_fixed = time.perf_counter()
            options, _ = campaign.options_for(settings, {}, given)
            result = campaign.run(prepared, ledger, options)
            wall, cpu = time.perf_counter() - t0, cpu_seconds() - cpu0
            counts = ledger.counts()
        finally:
            ledger.close()
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {
        "sent": result.progress.sent,
        "fixed": fixed,
        "ledger_sent": sum(n for (_, s), n in counts.items() if s is State.SENT),
        "wall": wall,
        "fix_wall": t_fixed - t0,
        "cpu": cpu,
        "rss_prepared": rss_prepared,
        "rss": max(peak_rss_mb(), children),
    }


def child_plain(args: argparse.Namespace) -> dict:
    """What most scripts do: EmailMessage per recipient, a new SMTP connection per message."""
    settings = settings_for(Path(args.workdir), args.port)
    prepared = campaign.prepare(settings, Path(args.issue), test=True)
    assert prepared.build is not None
    editions = {e.name: e.rendered for e in prepared.build.editions}
    sent = 0
    cpu0, t0 = cpu_seconds(), time.perf_counter()
    for i in range(1, args.n + 1):
        email, name, lang = subscriber(i)
        edition = editions[EDITION_OF[lang]]
        msg = build_message(edition, prepared.recipient(None, email, name), settings.identity)
        with smtplib.SMTP("127.0.0.1", args.port, timeout=30) as smtp:
            smtp.send_message(msg)
        sent += 1
    wall, cpu = time.perf_counter() - t0, cpu_seconds() - cpu0
    return {"sent": sent, "wall": wall, "cpu": cpu, "rss": peak_rss_mb()}


def child_sizes(args: argparse.Namespace) -> dict:
    """Bytes of each edition as sent, and the mean over the generated mix."""
    settings = settings_for(Path(args.workdir), args.port)
    prepared = campaign.prepare(settings, Path(args.issue), test=True)
    sizes = {}
    email, person, _ = subscriber(1)
    for name in EDITION_OF.values():
        data = prepared.editions[name].render(
            prepared.recipient(None, email, person), "<bench.123456.0123456789ab@example.org>"
        )
        sizes[name] = len(data)
    mix = [EDITION_OF[language(i)] for i in range(10)]
    return {"sizes": sizes, "mean": round(sum(sizes[e] for e in mix) / len(mix))}


def child_ledger(args: argparse.Namespace) -> dict:
    """The ledger alone, as a send's workers use it (bench/ledger.py): N rows claimed k at
    a time and marked, by `workers` processes over one SQLite file. Their CPU per row."""
    import ledger as alone  # bench/ledger.py

    path = Path(args.workdir) / "ledger.db"
    alone.fill(path, args.n)
    alone.start(path, "bench", args.n)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    _, marked = alone.run(path, "bench", args.workers, args.batch)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"rows": marked, "cpu_per_row": cpu / marked}


CHILDREN = {"ours": child_ours, "plain": child_plain, "sizes": child_sizes, "ledger": child_ledger}


# --- the receiver ------------------------------------------------------------------------------


class Receiver:
    """bench/receiver.c on a free loopback port: counts messages, reports its CPU time."""

    def __init__(self, workdir: Path):
        binary = workdir / "receiver"
        built = subprocess.run(
            ["cc", "-O2", "-pthread", "-o", str(binary), str(RECEIVER_C)],
            capture_output=True,
            text=True,
        )
        if built.returncode:
            raise SystemExit(f"cannot build the receiver: {built.stderr.strip()}")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.count_file = workdir / "received.count"
        self.proc = subprocess.Popen(
            [str(binary), "127.0.0.1", str(self.port), str(self.count_file)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 5
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port)):
                break
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("the receiver did not start")
            time.sleep(0.05)

    def messages(self) -> int:
        with contextlib.suppress(OSError, ValueError):
            return int(self.count_file.read_text().strip() or 0)
        return 0

    def wait_for(self, count: int, timeout: float = 3.0) -> int:
        deadline = time.monotonic() + timeout
        while (got := self.messages()) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return got

    def cpu(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()


# --- the parent ------------------------------------------------------------------------------


def run_child(kind: str, args: argparse.Namespace, workdir: Path, port: int, **extra) -> dict:
    # (through bench/child.py: the workers then import what they do under `newsletter send`)
    cmd = [sys.executable, str(CHILD), "--child", kind, "--workdir", str(workdir)]
    cmd += ["--port", str(port), "--issue", args.issue]
    for key, value in extra.items():
        cmd += [f"--{key}", str(value)]
    timeout = 120 + extra.get("n", 0) / 50  # at least 50 messages/s, or something is wrong
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if proc.returncode:
        raise SystemExit(f"{kind} failed:\n{proc.stdout}\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def measured(receiver: Receiver, expect: int, fn) -> tuple[dict, int, float]:
    """Run fn(); return its result, what the receiver counted, and the receiver's CPU share."""
    count0, cpu0, t0 = receiver.messages(), receiver.cpu(), time.perf_counter()
    result = fn()
    got = receiver.wait_for(count0 + expect) - count0
    share = (receiver.cpu() - cpu0) / (time.perf_counter() - t0)
    return result, got, share


def smtp_source(port: int, count: int, size: int, sessions: int) -> dict:
    cmd = [SMTP_SOURCE, "-d", "-l", str(size), "-m", str(count), "-s", str(sessions)]
    cmd += ["-M", "bench.example.org", "-f", "news@example.org", "-t", "reader@example.net"]
    cmd += [f"127.0.0.1:{port}"]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = t0 + 120 + count / 50
    rss = 0.0
    while (waited := os.wait4(proc.pid, os.WNOHANG))[0] == 0:
        if time.perf_counter() > deadline:
            proc.kill()
            raise SystemExit("smtp-source took too long")
        with contextlib.suppress(OSError, LookupError, ValueError):
            rss = max(rss, peak_rss_mb(proc.pid))  # read while it runs: a zombie has none
        time.sleep(0.005)
    wall = time.perf_counter() - t0
    _, status, usage = waited
    if os.waitstatus_to_exitcode(status):
        raise SystemExit(f"smtp-source failed: {proc.stderr.read().decode()}")
    return {"sent": count, "wall": wall, "cpu": usage.ru_utime + usage.ru_stime, "rss": rss}


def dkim_key(workdir: Path, kind: str) -> Path:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

    key = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        if kind == "rsa"
        else ed25519.Ed25519PrivateKey.generate()
    )
    path = workdir / f"dkim-{kind}.pem"
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return path


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="1000,100000", help="subscriber counts N, e.g. 1000")
    parser.add_argument("--connections", type=int, default=4, help="in all, for every method")
    parser.add_argument(
        "--dkim-n", type=int, default=0, help="N for the DKIM rows (default: the largest N)"
    )
    parser.add_argument("--source-messages", type=int, default=20000)
    parser.add_argument("--plain-messages", type=int, default=500)
    parser.add_argument(
        "--repeat", type=int, default=3, help="turns of ours and smtp-source; the best counts"
    )
    parser.add_argument("--issue", default=str(ISSUE))
    # used by the parent to start a child measurement
    parser.add_argument("--child", choices=sorted(CHILDREN), help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--workers", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--concurrency", type=int, default=4, help=argparse.SUPPRESS)
    parser.add_argument("--dkim", default="", help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(CHILDREN[args.child](args)))
        return
    if not os.access(SMTP_SOURCE, os.X_OK):
        raise SystemExit(f"{SMTP_SOURCE} is missing: install the postfix package")
    sizes = [int(s) for s in args.sizes.split(",")]
    c = args.connections
    cores = len(os.sched_getaffinity(0))
    top = Path(tempfile.mkdtemp(prefix="bench-send-"))
    receiver = Receiver(top)
    rows: list[tuple[str, dict, int, float]] = []
    try:
        info = run_child("sizes", args, top, receiver.port)
        mean = info["mean"]
        print(
            "message sizes as sent: "
            + ", ".join(f"{k} {v:,} B" for k, v in info["sizes"].items())
            + f"; mean over the mix (40% en, 30% fr, 30% both) {mean:,} B"
        )
        print(
            f"receiver on 127.0.0.1:{receiver.port}; {cores} CPUs; load average "
            + " ".join(f"{x:.2f}" for x in os.getloadavg()),
            flush=True,
        )

        def ours(n: int, workers: int, dkim: str, batch: int, conns: int) -> dict:
            workdir = Path(tempfile.mkdtemp(prefix=f"ours-{n}-", dir=top))
            make_db(workdir / "bench.db", n)
            extra = {"n": n, "workers": workers, "concurrency": conns}
            if dkim:
                extra["dkim"] = str(dkim_key(workdir, dkim))
            if batch:
                extra["batch"] = batch
            try:
                return run_child("ours", args, workdir, receiver.port, **extra)
            finally:
                shutil.rmtree(workdir, ignore_errors=True)

        # (the connections are the machine's, shared among the workers)
        plans = [(n, 1, "", 0, c) for n in sizes] + [(n, cores, "", 0, c) for n in sizes]
        # at the N of the send they are set beside: at 20,000 a send's fixed costs (its
        # workers' start, the list's fix) added about 70 µs a message to the DKIM rows
        dkim_n = args.dkim_n or sizes[-1]
        plans += [(dkim_n, cores, "rsa", 0, c), (dkim_n, cores, "ed25519", 0, c)]
        plans += [(sizes[-1], cores, "", BIG_BATCH, c)]  # send --batch 32: fewer commits
        # one connection a worker, set beside smtp-source with as many sessions
        plans += [(sizes[-1], cores, "", 0, cores)]
        m = args.source_messages
        headline = (sizes[-1], cores, "", 0, c)
        source_runs = []
        for n, workers, dkim, batch, conns in plans:
            runs = []
            # The headline (all cores, the untold default) and smtp-source at the same
            # connections take turns, `repeat` times each, and each keeps its best run: this
            # machine's noise (whole runs of this bench gave 0.66x to 0.97x) falls on both
            # alike. smtp-source alone used to get its best of 3, against one run of ours.
            for _ in range(args.repeat if (n, workers, dkim, batch, conns) == headline else 1):
                runs.append(
                    measured(
                        receiver,
                        n,
                        lambda n=n, w=workers, d=dkim, b=batch, e=conns: ours(n, w, d, b, e),
                    )
                )
                if (n, workers, dkim, batch, conns) == headline:
                    source_runs.append(
                        measured(receiver, m, lambda: smtp_source(receiver.port, m, mean, c))
                    )
            res, got, share = min(runs, key=lambda run: run[0]["wall"])
            res["size"] = mean
            if len(runs) > 1:
                print("  ours, each turn: " + ", ".join(
                    f"{r[0]['sent'] / r[0]['wall']:,.0f}" for r in runs) + " msg/s; smtp-source: "
                    + ", ".join(f"{r[0]['sent'] / r[0]['wall']:,.0f}" for r in source_runs)
                    + " msg/s")  # fmt: skip
            label = f"ours {workers}w {conns}conn" + (f" DKIM {dkim}" if dkim else "")
            label += f" --batch {batch}" if batch else ""
            rows.append((label, res, got, share))
            print(
                f"  {label} N={n:,}: ledger sent {res['ledger_sent']:,}; recipient list fixed "
                f"in {res['fix_wall']:.2f} s",
                flush=True,
            )
        # the ledger's share of a send: its CPU alone, at the same k and workers, over the
        # send's CPU per message
        shares = {}
        # (as many runs as the headline's turns, the best kept, as the headline keeps its own)
        for batch in (SendOptions(concurrency=max(1, c // cores)).k, BIG_BATCH):
            each = []
            for _ in range(args.repeat):
                workdir = Path(tempfile.mkdtemp(prefix="ledger-", dir=top))
                alone = run_child("ledger", args, workdir, receiver.port, n=sizes[-1],
                                  workers=cores, batch=batch)  # fmt: skip
                each.append(alone["cpu_per_row"])
                shutil.rmtree(workdir, ignore_errors=True)
            shares[batch] = min(each)
            print(f"  ledger alone, {cores} workers, k={batch}: {min(each) * 1e6:.1f} µs of CPU "
                  f"per row (claim + mark), best of {' / '.join(f'{x * 1e6:.1f}' for x in each)}",
                  flush=True)  # fmt: skip
        res, got, share = min(source_runs, key=lambda run: run[0]["wall"])  # the machine's best
        res["size"] = mean
        rows.append((f"smtp-source -d (s={c})", res, got, share))
        runs = [
            measured(receiver, m, lambda: smtp_source(receiver.port, m, mean, cores))
            for _ in range(args.repeat)
        ]
        res, got, share = min(runs, key=lambda run: run[0]["wall"])
        res["size"] = mean
        rows.append((f"smtp-source -d (s={cores})", res, got, share))
        p = args.plain_messages
        res, got, share = measured(
            receiver, p, lambda: run_child("plain", args, top, receiver.port, n=p)
        )
        res["size"] = mean
        rows.append(("plain loop (c=1) conn/msg", res, got, share))
    finally:
        receiver.stop()
        shutil.rmtree(top, ignore_errors=True)

    print("load average at the end: " + " ".join(f"{x:.2f}" for x in os.getloadavg()))
    print()
    head = (
        f"{'method':<26} {'messages':>9} {'size B':>7} {'wall s':>7} {'msg/s':>7} "
        f"{'CPU µs/msg':>10} {'peak RSS MB':>11} {'recv CPU':>8} {'recv got':>9}"
    )
    print(head)
    print("-" * len(head))
    for label, r, got, share in rows:
        print(
            f"{label:<26} {r['sent']:>9,} {r['size']:>7,} {r['wall']:>7.2f} "
            f"{r['sent'] / r['wall']:>7,.0f} {r['cpu'] / r['sent'] * 1e6:>10.0f} "
            f"{r['rss']:>11.1f} {share:>7.0%} {got:>9,}"
        )

    def rate(row: tuple[str, dict, int, float]) -> float:
        return row[1]["sent"] / row[1]["wall"]

    k = len(sizes)
    one_small, one_big = rows[0], rows[k - 1]
    all_big = rows[2 * k - 1]
    dkim_rsa, dkim_ed, big_batch = rows[2 * k], rows[2 * k + 1], rows[2 * k + 2]
    one_each, source, source_one_each, plain = rows[2 * k + 3], rows[-3], rows[-2], rows[-1]
    cpu_us = all_big[1]["cpu"] / all_big[1]["sent"] * 1e6
    (k_default, ledger_default), (_, ledger_big) = shares.items()
    share_default = ledger_default * 1e6 / cpu_us
    share_big = ledger_big / (big_batch[1]["cpu"] / big_batch[1]["sent"])
    goals = [
        (f"all cores, N={all_big[1]['sent']:,} / smtp-source, same size and connections >= 1.0",
         rate(all_big) / rate(source), rate(all_big) / rate(source) >= 1.0),
        (f"one worker, N={one_big[1]['sent']:,} / smtp-source (for the record)",
         rate(one_big) / rate(source), True),
        (f"all cores --batch {BIG_BATCH} / smtp-source (for the record)",
         rate(big_batch) / rate(source), True),
        (f"1 connection a worker, {cores} workers / smtp-source s={cores} (for the record)",
         rate(one_each) / rate(source_one_each), True),
        ("sender CPU per message, all cores, everything included <= 100 µs",
         cpu_us, cpu_us <= 100),
        (f"all cores / django-newsletter ({DJANGO_NEWSLETTER} msg/s, from the issue) > 25",
         rate(all_big) / DJANGO_NEWSLETTER, rate(all_big) / DJANGO_NEWSLETTER > 25),
        ("all cores / plain loop > 10",
         rate(all_big) / rate(plain), rate(all_big) / rate(plain) > 10),
        ("DKIM RSA-2048, all cores / without DKIM >= 0.5",
         rate(dkim_rsa) / rate(all_big), rate(dkim_rsa) / rate(all_big) >= 0.5),
        ("DKIM Ed25519, all cores / without DKIM >= 0.5",
         rate(dkim_ed) / rate(all_big), rate(dkim_ed) / rate(all_big) >= 0.5),
        # a floor, not the goal's figure: inside a send the same calls cost more (their pages
        # reloaded after the other worker's commits, among the messages' memory traffic)
        (f"ledger alone (k={k_default}) / the send's CPU per message <= 0.20 (a floor of its "
         "share)", share_default, share_default <= 0.20),
        (f"ledger alone (k={BIG_BATCH}) / the --batch {BIG_BATCH} send's (for the record)",
         share_big, True),
        (f"peak RSS N={one_big[1]['sent']:,} / N={one_small[1]['sent']:,}, one worker <= 1.2",
         one_big[1]["rss"] / one_small[1]["rss"], one_big[1]["rss"] / one_small[1]["rss"] <= 1.2),
    ]  # fmt: skip
    print()
    for text, ratio, ok in goals:
        print(f"{'PASS' if ok else 'MISS'}  {text}: {ratio:.2f}")


if __name__ == "__main__":
    main()
