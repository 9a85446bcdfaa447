"""Send the demo issue to N generated subscribers on loopback; compare with Postfix's smtp-source
and a plain smtplib loop.

Run:   .venv/bin/python bench/send.py                      # N = 1,000 and 100,000 (a few minutes)
       .venv/bin/python bench/send.py --sizes 1000,20000   # a quicker run
       .venv/bin/python bench/send.py --profile 20000      # also cProfile our send workers

Needs Postfix's test programs /usr/sbin/smtp-sink and /usr/sbin/smtp-source (package postfix).
Everything stays on 127.0.0.1; generated addresses use example.org/.com/.net only.

One `smtp-sink` (discards messages, counts them) is the receiver for every measurement:

- ours:        `newsletter send` as the CLI does it (fix the recipient list in the ledger, then
               SendRun with --concurrency workers, one reused connection each), in a fresh
               subprocess per N against a fresh SQLite file holding N subscribers (40% en,
               30% fr, 30% both). Subscriber generation and the issue build are not timed.
- smtp-source: Postfix's C client sending pre-built messages of our mean size over the same
               number of parallel sessions, each session reusing ONE connection for all its
               messages (`-d`); also at 30 KB, and once with a new connection per message
               (no `-d`) for comparison with the plain loop.
- plain loop:  build each message with `message.build_message` (EmailMessage) and send it with
               `smtplib.SMTP(...).send_message()` over a new connection per message, one at a time.

Prints one table: method, messages, message size, wall time, messages/s, CPU ms per message
(user+sys of the sending process during the send), peak RSS of the sending process, smtp-sink's
own CPU use during the run (the sink is single-threaded; at 100% it is the limit), and how many
messages the sink counted. Then the three goals of issue 5 as PASS/MISS. A bench prints
figures; it never fails (exit status 0 unless it could not run at all).
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import json
import os
import pstats
import re
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
from newsletter.delivery import SendRun  # noqa: E402
from newsletter.ledger import Ledger, State, send_lock  # noqa: E402
from newsletter.message import build_message  # noqa: E402
from newsletter.normalise import email_key  # noqa: E402
from newsletter.subscribers import open_store  # noqa: E402

SMTP_SINK = "/usr/sbin/smtp-sink"
SMTP_SOURCE = "/usr/sbin/smtp-source"
ISSUE = ROOT / "issues" / "2017-11"
DOMAINS = ("example.org", "example.com", "example.net")
EDITION_OF = {"en": "en", "fr": "fr", "both": "bilingual"}
SECRET = "bench-secret-0123456789abcdef0123456789abcdef"


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


def settings_for(workdir: Path, port: int):
    return load_settings(
        None,
        environ={
            "NEWSLETTER_DB": str(workdir / "bench.db"),
            "NEWSLETTER_OUTBOX": str(workdir / "outbox"),
            "NEWSLETTER_SMTP_HOST": "127.0.0.1",
            "NEWSLETTER_SMTP_PORT": str(port),
            "NEWSLETTER_SMTP_SECURITY": "none",
            "NEWSLETTER_SECRET": SECRET,
        },
    )


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def peak_rss_mb(pid: int | str = "self") -> float:
    """VmHWM, the peak RSS of this process image. Not ru_maxrss: after fork+exec that keeps
    the parent's peak, so a child would report at least the parent's size."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise LookupError("no VmHWM")


# --- the children: each measurement runs in a fresh process ---------------------------------


def child_ours(args: argparse.Namespace) -> dict:
    """Our send, as `newsletter send ISSUE --yes` does it after the confirmation: the same
    campaign functions (start, then run) the CLI calls."""
    settings = settings_for(Path(args.workdir), args.port)
    prepared = campaign.prepare(settings, Path(args.issue))
    rss_prepared = peak_rss_mb()
    profiles: list[cProfile.Profile] = []
    if args.profile:
        # cProfile sees one thread: give each worker thread its own profiler, merged below
        original = SendRun._worker

        def profiled(self: SendRun) -> None:
            profile = cProfile.Profile()
            profiles.append(profile)
            profile.enable()
            try:
                original(self)
            finally:
                profile.disable()

        SendRun._worker = profiled  # type: ignore[method-assign]
    with send_lock(settings.db_path), open_store(settings) as store:
        ledger = Ledger(settings.db_path, prepared.issue_id)
        try:
            cpu0, t0 = cpu_seconds(), time.perf_counter()
            given = {"concurrency": args.concurrency}
            fixed = campaign.start(store, ledger, prepared, given)
            t_fixed = time.perf_counter()
            options, _ = campaign.options_for(settings, {}, given)
            result = campaign.run(prepared, ledger, options)
            wall, cpu = time.perf_counter() - t0, cpu_seconds() - cpu0
            counts = ledger.counts()
        finally:
            ledger.close()
    out = {
        "sent": result.progress.sent,
        "fixed": fixed,
        "ledger_sent": sum(n for (_, s), n in counts.items() if s is State.SENT),
        "wall": wall,
        "fix_wall": t_fixed - t0,
        "cpu": cpu,
        "rss_prepared": rss_prepared,
        "rss": peak_rss_mb(),
    }
    if profiles:
        stream = io.StringIO()
        stats = pstats.Stats(profiles[0], stream=stream)
        for profile in profiles[1:]:
            stats.add(profile)
        stats.sort_stats("tottime").print_stats(25)
        out["profile"] = stream.getvalue()
    return out


def child_plain(args: argparse.Namespace) -> dict:
    """What most scripts do: EmailMessage per recipient, a new SMTP connection per message."""
    settings = settings_for(Path(args.workdir), args.port)
    prepared = campaign.prepare(settings, Path(args.issue))
    assert prepared.build is not None
    editions = {e.name: e.rendered for e in prepared.build.editions}
    sent = 0
    cpu0, t0 = cpu_seconds(), time.perf_counter()
    for i in range(1, args.n + 1):
        email, name, lang = subscriber(i)
        edition = editions[EDITION_OF[lang]]
        msg = build_message(edition, prepared.recipient(i, email, name), settings.identity)
        with smtplib.SMTP("127.0.0.1", args.port, timeout=30) as smtp:
            smtp.send_message(msg)
        sent += 1
    wall, cpu = time.perf_counter() - t0, cpu_seconds() - cpu0
    return {"sent": sent, "wall": wall, "cpu": cpu, "rss": peak_rss_mb()}


def child_sizes(args: argparse.Namespace) -> dict:
    """Bytes after DATA of each edition, and the mean over the generated mix."""
    settings = settings_for(Path(args.workdir), args.port)
    prepared = campaign.prepare(settings, Path(args.issue))
    sizes = {}
    email, person, _ = subscriber(1)
    for name in EDITION_OF.values():
        payload = prepared.editions[name].smtp_payload(
            prepared.recipient(123456, email, person), "<bench.123456.0123456789ab@example.org>"
        )
        sizes[name] = len(payload)
    mix = [EDITION_OF[language(i)] for i in range(10)]
    return {"sizes": sizes, "mean": round(sum(sizes[e] for e in mix) / len(mix))}


CHILDREN = {"ours": child_ours, "plain": child_plain, "sizes": child_sizes}


# --- the sink --------------------------------------------------------------------------------


class Sink:
    """smtp-sink on a free loopback port; reads its message counter and its CPU time."""

    def __init__(self, workdir: Path):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.log = workdir / "sink.out"
        user = ["-u", "nobody"] if os.geteuid() == 0 else []
        # -c: running counters on stdout; backlog 1000 for the connection-per-message runs
        self.proc = subprocess.Popen(
            [SMTP_SINK, "-c", *user, f"127.0.0.1:{self.port}", "1000"],
            stdout=self.log.open("wb"),
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 5
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port)):
                break
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"smtp-sink did not start: {self.log.read_text()[-500:]}")
            time.sleep(0.05)

    def messages(self) -> int:
        with self.log.open("rb") as fh:
            fh.seek(max(0, self.log.stat().st_size - 200))
            found = re.findall(rb"mesg=(\d+)", fh.read())
        return int(found[-1]) if found else 0

    def wait_for(self, count: int, timeout: float = 3.0) -> int:
        deadline = time.monotonic() + timeout
        while (got := self.messages()) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return got

    def cpu(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# --- the parent ------------------------------------------------------------------------------


def run_child(kind: str, args: argparse.Namespace, workdir: Path, port: int, **extra) -> dict:
    cmd = [sys.executable, __file__, "--child", kind, "--workdir", str(workdir)]
    cmd += ["--port", str(port), "--issue", args.issue, "--concurrency", str(args.concurrency)]
    for key, value in extra.items():
        cmd += [f"--{key}", str(value)]
    timeout = 120 + extra.get("n", 0) / 50  # at least 50 messages/s, or something is wrong
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if proc.returncode:
        raise SystemExit(f"{kind} failed:\n{proc.stdout}\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def measured(sink: Sink, expect: int, fn) -> tuple[dict, int, float]:
    """Run fn(); return its result, what the sink counted, and the sink's CPU share."""
    count0, cpu0, t0 = sink.messages(), sink.cpu(), time.perf_counter()
    result = fn()
    got = sink.wait_for(count0 + expect) - count0
    share = (sink.cpu() - cpu0) / (time.perf_counter() - t0)
    return result, got, share


def smtp_source(port: int, count: int, size: int, sessions: int, reuse: bool) -> dict:
    cmd = [SMTP_SOURCE, *(["-d"] if reuse else []), "-l", str(size), "-m", str(count)]
    cmd += ["-s", str(sessions), "-M", "bench.example.org", "-f", "news@example.org"]
    cmd += ["-t", "reader@example.net", f"127.0.0.1:{port}"]
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
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"smtp-source failed: {proc.stderr.read().decode()}")
    return {
        "sent": count,
        "wall": wall,
        "cpu": usage.ru_utime + usage.ru_stime,
        "rss": rss,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="1000,100000", help="subscriber counts N, e.g. 1000")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--source-messages", type=int, default=20000)
    parser.add_argument("--plain-messages", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=3, help="smtp-source runs; the best counts")
    parser.add_argument("--profile", type=int, default=0, help="also profile ours at this N")
    parser.add_argument("--issue", default=str(ISSUE))
    # used by the parent to start a child measurement
    parser.add_argument("--child", choices=sorted(CHILDREN), help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(CHILDREN[args.child](args)))
        return
    for program in (SMTP_SINK, SMTP_SOURCE):
        if not os.access(program, os.X_OK):
            raise SystemExit(f"{program} is missing: install the postfix package")
    sizes = [int(s) for s in args.sizes.split(",")]
    c = args.concurrency
    top = tempfile.mkdtemp(prefix="bench-send-")
    sink = Sink(Path(top))
    rows: list[tuple[str, dict, int, float]] = []
    try:
        info = run_child("sizes", args, Path(top), sink.port)
        mean = info["mean"]
        print(
            "message sizes after DATA: "
            + ", ".join(f"{k} {v:,} B" for k, v in info["sizes"].items())
            + f"; mean over the mix (40% en, 30% fr, 30% both) {mean:,} B"
        )
        print(
            f"smtp-sink on 127.0.0.1:{sink.port}; {os.cpu_count()} CPUs; load average "
            + " ".join(f"{x:.2f}" for x in os.getloadavg()),
            flush=True,
        )

        def ours(n: int, profile: bool = False) -> dict:
            workdir = Path(tempfile.mkdtemp(prefix=f"ours-{n}-", dir=top))
            make_db(workdir / "bench.db", n)
            extra = {"n": n, "profile": 1} if profile else {"n": n}
            try:
                return run_child("ours", args, workdir, sink.port, **extra)
            finally:
                shutil.rmtree(workdir, ignore_errors=True)

        for n in sizes:
            res, got, share = measured(sink, n, lambda n=n: ours(n))
            res["size"] = mean
            rows.append((f"ours (c={c})", res, got, share))
            print(
                f"  ours N={n:,}: ledger sent {res['ledger_sent']:,}; recipient list fixed in "
                f"{res['fix_wall']:.2f} s; RSS after the build {res['rss_prepared']:.0f} MB",
                flush=True,
            )
        m = args.source_messages
        for label, size, reuse, count in (
            (f"smtp-source -d (s={c})", mean, True, m),
            (f"smtp-source -d (s={c})", 30000, True, m),
            (f"smtp-source (s={c}) conn/msg", mean, False, m // 4),
        ):
            runs = [
                measured(
                    sink, count, lambda s=size, r=reuse, k=count: smtp_source(sink.port, k, s, c, r)
                )
                for _ in range(args.repeat)
            ]
            res, got, share = min(runs, key=lambda run: run[0]["wall"])  # the machine's best
            res["size"] = size
            rows.append((label, res, got, share))
        p = args.plain_messages
        res, got, share = measured(
            sink, p, lambda: run_child("plain", args, Path(top), sink.port, n=p)
        )
        res["size"] = mean
        rows.append(("plain loop (c=1) conn/msg", res, got, share))
        if args.profile:
            res = ours(args.profile, profile=True)
    finally:
        sink.stop()
        shutil.rmtree(top, ignore_errors=True)

    print("load average at the end: " + " ".join(f"{x:.2f}" for x in os.getloadavg()))
    print()
    head = (
        f"{'method':<28} {'messages':>9} {'size B':>7} {'wall s':>7} {'msg/s':>7} "
        f"{'CPU ms/msg':>10} {'peak RSS MB':>11} {'sink CPU':>8} {'sink got':>9}"
    )
    print(head)
    print("-" * len(head))
    for label, r, got, share in rows:
        rate = r["sent"] / r["wall"]
        print(
            f"{label:<28} {r['sent']:>9,} {r['size']:>7,} {r['wall']:>7.2f} {rate:>7,.0f} "
            f"{r['cpu'] / r['sent'] * 1000:>10.3f} {r['rss']:>11.1f} {share:>7.0%} {got:>9,}"
        )

    def rate(row: tuple[str, dict, int, float]) -> float:
        return row[1]["sent"] / row[1]["wall"]

    ours_rows = rows[: len(sizes)]
    biggest, smallest = ours_rows[-1], ours_rows[0]
    source, plain = rows[len(sizes)], rows[-1]
    goals = [
        (
            f"ours N={biggest[1]['sent']:,} / smtp-source -d at {c} sessions, same size >= 0.5",
            rate(biggest) / rate(source),
            rate(biggest) / rate(source) >= 0.5,
        ),
        (
            f"ours N={biggest[1]['sent']:,} / plain loop > 10",
            rate(biggest) / rate(plain),
            rate(biggest) / rate(plain) > 10,
        ),
        (
            f"peak RSS N={biggest[1]['sent']:,} / N={smallest[1]['sent']:,} <= 1.2",
            biggest[1]["rss"] / smallest[1]["rss"],
            biggest[1]["rss"] / smallest[1]["rss"] <= 1.2,
        ),
    ]
    print()
    for text, ratio, ok in goals:
        print(f"{'PASS' if ok else 'MISS'}  {text}: {ratio:.2f}")
    if args.profile:
        print(f"\ncProfile of ours at N={args.profile:,}, all worker threads merged:")
        print(res["profile"])


if __name__ == "__main__":
    main()
