"""A send meets its machine: one send per database whatever its path, private files, a full
disk, a read-only folder, a database moved away mid-send, a crash seen by `status`, options
kept on resume, and the systemd units that run `due` and `serve`."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from newsletter.ledger import Ledger, SendState, State
from newsletter.subscribers import SqliteStore

from .conftest import DEMO_ISSUE, ROOT, clean_env, run_cli
from .smtp_server import Handler, Server
from .test_send import (
    SECRET,
    _spawn_send,
    add_people,
    env_for,
    ledger_rows,
    ledger_states,
    many,
    send,
)


def _one_error(result) -> str:
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    return errors[0]


@contextlib.contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Path]:
    """A small file system of its own, or a skip where this machine cannot mount one."""
    path.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True
    )
    if mounted.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(folder: Path) -> Path:
    """Take every free byte of the file system `folder` is on."""
    filler = folder / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for size in (65536, 4096, 1):
            with contextlib.suppress(OSError):
                while True:
                    os.write(fd, b"\0" * size)
    finally:
        os.close(fd)
    return filler


def test_the_database_and_its_journal_files_are_private(workdir: Path) -> None:
    os.umask(0o022)  # the usual one, which leaves new files readable by everyone
    add_people(workdir)
    # an open connection keeps the -wal and -shm files, which SQLite removes on last close
    with Server(Handler()) as server, SqliteStore(workdir / "news.db"):
        assert send(workdir, server.port, "--yes").returncode == 0
        for name in ("news.db", "news.db-wal", "news.db-shm"):
            path = workdir / name
            assert path.exists(), name
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, name


def test_the_same_database_through_a_symlink_runs_no_second_send(workdir: Path) -> None:
    people = many(6)
    add_people(workdir, people)
    (workdir / "other").mkdir()
    (workdir / "other" / "link.db").symlink_to(workdir / "news.db")
    handler = Handler(script={"reader2@example.org": ["hold-keep"]})
    with Server(handler) as server:
        proc = _spawn_send(workdir, server.port, "--concurrency", "1")
        try:
            assert handler.holding.wait(60)
            linked = {"NEWSLETTER_DB": str(workdir / "other" / "link.db")}
            second = send(workdir, server.port, "--yes", **linked)
            assert second.returncode == 2
            assert "another send is running on this database" in _one_error(second)
            due = run_cli("due", cwd=workdir, env=env_for(workdir, server.port, **linked))
            assert due.returncode == 0 and "a send is running" in due.stdout
        finally:
            handler.gate.set()
            proc.communicate(timeout=60)
        assert proc.returncode == 0
        for address, _, _ in people:
            assert handler.copies(address) == 1, address


def test_a_full_disk_under_the_database_gives_one_line_and_loses_nothing(workdir: Path) -> None:
    with tmpfs(workdir / "small", "8m") as small:
        env = {"NEWSLETTER_DB": str(small / "news.db")}
        people = many(40)
        with SqliteStore(small / "news.db") as store:  # the database on the small disk
            for email_, name, language in people:
                store.add(email_, name=name, language=language, source="test")
        filler = fill(small)
        with Server(Handler()) as server:
            full = send(workdir, server.port, "--yes", **env)
            assert full.returncode == 2
            line = _one_error(full)
            assert line.startswith(f"error: {small / 'news.db'}: ") or "send-lock" in line
            assert "disk is full" in line or "No space left" in line, line
            assert server.handler.received == []
            filler.unlink()
            again = send(workdir, server.port, "--yes", **env)
            assert again.returncode == 0, again.stderr
            for address, _, _ in people:
                assert server.handler.copies(address) == 1, address


def test_a_full_outbox_disk_stops_the_send_and_it_resumes(workdir: Path) -> None:
    add_people(workdir, many(5))
    with tmpfs(workdir / "small", "2m") as small:
        env = clean_env(
            NEWSLETTER_DB=str(workdir / "news.db"),
            NEWSLETTER_SECRET=SECRET,
            NEWSLETTER_OUTBOX=str(small / "outbox"),
        )
        (small / "outbox" / DEMO_ISSUE).mkdir(parents=True)
        filler = fill(small)
        full = run_cli("send", f"issues/{DEMO_ISSUE}", "--yes", cwd=workdir, env=env)
        assert full.returncode == 2
        assert "cannot write to the outbox: No space left on device" in _one_error(full)
        states = ledger_states(workdir)
        assert set(states.values()) == {State.PENDING}  # the message in hand was given back
        filler.unlink()
        resumed = run_cli("send", f"issues/{DEMO_ISSUE}", "--yes", cwd=workdir, env=env)
        assert resumed.returncode == 0, resumed.stderr
        assert len(list((small / "outbox" / DEMO_ISSUE).glob("*.eml"))) == 5


def test_a_read_only_database_folder_gives_one_line(workdir: Path) -> None:
    with tmpfs(workdir / "ro", "1m") as folder:
        env = {"NEWSLETTER_DB": str(folder / "news.db")}
        with SqliteStore(folder / "news.db") as store:
            store.add("anne@example.org", name="Anne", language="en", source="test")
        remounted = subprocess.run(["mount", "-o", "remount,ro", str(folder)], capture_output=True)
        if remounted.returncode:
            pytest.skip("cannot remount read-only here")
        result = send(workdir, 1, "--yes", **env)
        assert result.returncode == 2
        line = _one_error(result)
        assert str(folder) in line
        assert "read-only" in line.lower() or "Read-only" in line


def test_a_database_moved_away_mid_send_stops_it_and_it_resumes(workdir: Path) -> None:
    people = many(8)
    add_people(workdir, people)
    handler = Handler(script={"reader3@example.org": ["hold-keep"]})
    with Server(handler) as server:
        proc = _spawn_send(workdir, server.port, "--concurrency", "1")
        assert handler.holding.wait(60)
        aside = workdir / "aside"
        aside.mkdir()
        for suffix in ("", "-wal", "-shm"):
            os.rename(workdir / f"news.db{suffix}", aside / f"news.db{suffix}")
        handler.gate.set()
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 2, err
        errors = [line for line in err.decode().splitlines() if line.startswith("error:")]
        assert errors == [
            f"error: {workdir / 'news.db'}: the database was moved or deleted during the send; "
            "put it back, then run send again (it resumes; messages in flight then are reported "
            "uncertain)"
        ]
        for suffix in ("", "-wal", "-shm"):
            os.rename(aside / f"news.db{suffix}", workdir / f"news.db{suffix}")
        resumed = send(workdir, server.port, "--yes")
        assert resumed.returncode == 0, resumed.stderr
        for address, _, _ in people:
            assert handler.copies(address) == 1, address


def test_status_after_a_crash_names_the_messages_in_flight_uncertain(workdir: Path) -> None:
    add_people(workdir, many(6))
    victim = "reader2@example.org"
    handler = Handler(script={victim: ["hold-keep"]})
    with Server(handler) as server:
        proc = _spawn_send(workdir, server.port, "--concurrency", "1", "--batch", "4")
        assert handler.holding.wait(60)
        running = run_cli("status", f"issues/{DEMO_ISSUE}", cwd=workdir, env=env_for(workdir, 1))
        # up to k = 4 rows (--batch) are held by the running send
        assert re.search(
            r"a send is running: [1-4] message\(s\) claimed \(in flight", running.stdout
        )
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        handler.gate.set()
    status = run_cli("status", f"issues/{DEMO_ISSUE}", cwd=workdir, env=env_for(workdir, 1))
    assert status.returncode == 0, status.stderr
    assert re.search(
        r"[1-4] message\(s\) were claimed by the last send when it stopped", status.stdout
    )
    assert "next in line): now uncertain" in status.stdout
    assert f"uncertain  {victim}: claimed by a send that stopped" in status.stdout
    assert ledger_states(workdir)[victim] is State.UNCERTAIN


def test_due_ends_a_send_whose_last_rows_were_in_flight_when_it_was_killed(
    workdir: Path,
) -> None:
    # all six claimed at once (k = 20): once `status` has turned them uncertain, nothing is
    # due and nothing is sending, and the send used to stay active for good
    add_people(workdir, many(6))
    handler = Handler(script={"reader2@example.org": ["hold-keep"]})
    with Server(handler) as server:
        proc = _spawn_send(workdir, server.port, "--concurrency", "1")
        assert handler.holding.wait(60)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        handler.gate.set()
        status = run_cli("status", f"issues/{DEMO_ISSUE}", cwd=workdir, env=env_for(workdir, 1))
        assert "were claimed by the last send when it stopped" in status.stdout, status.stdout
        due = run_cli("due", cwd=workdir, env=env_for(workdir, server.port))
    assert due.returncode == 1, due.stderr  # it ended with uncertain readers, as send says
    assert due.stdout == f"issue {DEMO_ISSUE}: ended; nothing was left to send\n"
    assert f"issue {DEMO_ISSUE}: 0 failed, " in due.stderr and " uncertain; " in due.stderr
    ledger = Ledger(workdir / "news.db", DEMO_ISSUE)
    try:
        assert ledger.info().state is SendState.DONE
    finally:
        ledger.close()
    assert len(handler.received) <= 3  # nothing sent again: reader3 on were never attempted


def test_a_paced_send_holds_no_row_while_the_rate_holds_it_back(workdir: Path) -> None:
    # at 5 messages a second, a worker claims a row when its message may go: killed, it
    # leaves one reader uncertain, not the dozen a claim would otherwise hold
    add_people(workdir, many(40))
    handler = Handler()
    with Server(handler) as server:
        proc = _spawn_send(workdir, server.port, "--concurrency", "1", "--rate", "5")
        deadline = time.monotonic() + 60
        while len(handler.received) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        out = proc.stdout.read().decode()
        assert "1 connection(s), rate 5/s, no cap, a row claimed as each may go" in out, out
        resumed = send(workdir, server.port, "--yes")
        assert resumed.returncode in (0, 1), resumed.stderr
    states = ledger_states(workdir)
    assert sum(s is State.UNCERTAIN for s in states.values()) <= 1
    for address, _, _ in many(40):
        assert handler.copies(address) <= 1, address


def test_a_send_that_reaches_its_hourly_cap_with_the_last_message_ends_at_once(
    workdir: Path,
) -> None:
    # paced, a thread waits for the limiter before it claims: with nothing left it must
    # not wait out the hour first (it did: run_cli's timeout ended it)
    add_people(workdir, many(3))
    with Server(Handler()) as server:
        result = send(workdir, server.port, "--yes", "--hourly-cap", "3")
        assert result.returncode == 0, result.stderr
        assert "3 sent" in result.stdout
        assert len(server.handler.received) == 3


def test_at_its_hourly_cap_a_send_holds_no_row_whatever_its_connections(workdir: Path) -> None:
    # four threads each waiting for the limiter: none claims a row the cap holds back
    add_people(workdir, many(30))
    handler = Handler()
    with Server(handler) as server:
        proc = _spawn_send(workdir, server.port, "--concurrency", "4", "--hourly-cap", "2")
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                states = list(ledger_states(workdir).values())
                if states.count(State.SENT) == 2:
                    break
                time.sleep(0.05)
            assert states.count(State.SENT) == 2, states
            time.sleep(1.5)  # the threads wait at the cap now: a row claimed would show
            states = list(ledger_states(workdir).values())
            assert State.SENDING not in states and states.count(State.PENDING) == 28
        finally:
            proc.send_signal(signal.SIGINT)
            proc.communicate(timeout=60)
    assert len(handler.received) == 2


def test_rate_and_concurrency_given_at_the_start_hold_on_resume(workdir: Path) -> None:
    add_people(workdir, many(8))
    handler = Handler(script={"reader1@example.org": ["hold-keep"]})
    stamps = handler.stamps
    with Server(handler) as server:
        proc = _spawn_send(workdir, server.port, "--concurrency", "1", "--rate", "10")
        assert handler.holding.wait(60)
        proc.send_signal(signal.SIGINT)
        handler.gate.set()
        proc.communicate(timeout=60)
        assert proc.returncode == 130
        before = len(stamps)
        resumed = send(workdir, server.port, "--yes")  # no options given again
        assert resumed.returncode == 0, resumed.stderr
        assert "1 connection(s), rate 10/s" in resumed.stdout
    resumed_stamps = stamps[before:]
    assert len(resumed_stamps) == 6
    # a lower bound only: at 10 a second, six messages cannot take less than half a second
    assert resumed_stamps[-1] - resumed_stamps[0] >= 0.45


def test_every_service_may_write_the_folder_it_runs_in() -> None:
    # the database (relative NEWSLETTER_DB) and its -wal/-shm live in WorkingDirectory: a
    # service that may not write there cannot open it (serve's unsubscribe links went dead)
    for unit in sorted((ROOT / "deploy").glob("newsletter-*.service")):
        fields = dict(line.split("=", 1) for line in unit.read_text().splitlines() if "=" in line)
        writable = fields.get("ReadWritePaths", "").split()
        assert fields["WorkingDirectory"] in writable, unit.name


def test_the_systemd_units_verify(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        if os.environ.get("CI"):
            pytest.fail("systemd-analyze is missing; .ci/run installs the systemd package")
        pytest.skip("no systemd-analyze here")
    bin_dir = Path(sys.executable).parent
    assert (bin_dir / "newsletter").exists()
    units = sorted((ROOT / "deploy").glob("newsletter-*"))
    assert {u.name for u in units} == {
        "newsletter-bounces.service",
        "newsletter-bounces.timer",
        "newsletter-due.service",
        "newsletter-due.timer",
        "newsletter-serve.service",
    }
    for unit in units:
        text = unit.read_text().replace("/srv/newsletter/.venv/bin", str(bin_dir))
        (tmp_path / unit.name).write_text(text)
    result = subprocess.run(
        [analyze, "verify", *[str(tmp_path / u.name) for u in units]],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stderr.strip() == ""
    timer = (tmp_path / "newsletter-due.timer").read_text()
    assert "OnCalendar=*-*-* *:*:00" in timer
    assert "ExecStart=" in (tmp_path / "newsletter-due.service").read_text()


def test_a_send_started_by_the_previous_version_resumes_after_the_upgrade(workdir: Path) -> None:
    """Schema 3 had no `deferred` state and kept no editions: its retries become deferred
    rows, and `send` builds the editions again to finish the send."""
    import sqlite3

    from newsletter import db
    from newsletter.schema import MIGRATIONS

    people = many(3)
    conn = sqlite3.connect(workdir / "news.db", isolation_level=None)
    conn.create_function("nl_ascii_email", 1, db._ascii_email)
    conn.create_function("nl_email_key", 1, db.email_key_v1)
    for script in MIGRATIONS[:3]:  # the schema as the previous version left the file
        for statement in db._statements(script):
            conn.execute(statement)
    conn.execute("PRAGMA user_version = 3")
    ids = {}
    for email_, name, language in people:
        ids[email_] = conn.execute(
            "INSERT INTO subscribers (email, email_key, name, language, joined_at, join_source,"
            " updated_at) VALUES (?, ?, ?, ?, '2026-11-01', 'test', '2026-11-01')",
            (email_, email_, name, language),
        ).lastrowid
    conn.execute(
        "INSERT INTO sends (issue_id, started_at) VALUES (?, '2026-11-30T12:00:00+00:00')",
        (DEMO_ISSUE,),
    )
    for (email_, name, _), state, attempts in zip(
        people, ("sent", "pending", "pending"), (1, 2, 0), strict=True
    ):
        conn.execute(
            "INSERT INTO deliveries (issue_id, subscriber_id, email, name, edition, state,"
            " attempts, updated_at, next_attempt, message_id)"
            " VALUES (?, ?, ?, ?, 'en', ?, ?, '2026-11-30T12:00:00+00:00', 0, ?)",
            (DEMO_ISSUE, ids[email_], email_, name, state, attempts, f"<{email_}>"),
        )
    conn.close()
    rows = ledger_rows(workdir)  # opening it migrates it
    assert [rows[p[0]][:2] for p in people] == [
        (State.SENT, 1),
        (State.DEFERRED, 2),
        (State.PENDING, 0),
    ]
    with Server(Handler()) as server:
        resumed = send(workdir, server.port, "--yes")
        assert resumed.returncode == 0, resumed.stderr
        assert "rebuilt from the files now" in resumed.stdout
        assert [server.handler.copies(p[0]) for p in people] == [0, 1, 1]


def test_the_hourly_cap_counts_what_went_before_from_when_it_went(workdir: Path) -> None:
    """Messages sent 59 minutes ago free their places in a minute, not in an hour: they
    were all counted as sent at the start of the run."""
    import datetime as dt
    import threading

    from newsletter import store
    from newsletter.pacing import Limiter

    ids = add_people(workdir, many(5))
    ledger = Ledger(workdir / "news.db", "earlier")
    try:
        ledger.start([(n, email, "", "en") for email, n in ids.items()], "example.org")
        now = dt.datetime.now(dt.UTC)
        ago = {1: 3599, 2: 3000, 3: 60, 4: 7200}  # seconds; the fifth is never sent
        with ledger._tx() as conn:
            for n, seconds in ago.items():
                conn.execute(
                    "UPDATE deliveries SET state = 'sent', updated_at = ? WHERE subscriber_id = ?",
                    (store.stamp(now - dt.timedelta(seconds=seconds)), n),
                )
        got = ledger.sent_within(3600, 10)
        assert [round(a, -1) for a in got] == [3600, 3000, 60]  # the longest ago first
        assert [round(a, -1) for a in ledger.sent_within(3600, 2)] == [3000, 60]  # the last 2
    finally:
        ledger.close()
    # a cap of 2 with one place taken 3599.5 s ago: it is free in half a second
    stop = threading.Event()
    threading.Timer(10, stop.set).start()  # (an hour's wait would be cut off here: a fail)
    limiter = Limiter(0, 2, [3599.5, 60.0])
    assert limiter.wait(stop) is True
    stop.set()
