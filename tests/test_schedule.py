"""Scheduled sends and the retry queue under a controlled clock (time-machine), with a real
SMTP server on 127.0.0.1: nothing leaves early, it leaves on the next `due`, two `due` at
once give one copy each, and what was frozen is what goes (or the send says what changed)."""

from __future__ import annotations

import datetime as dt
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import time_machine
from click.testing import CliRunner

from newsletter.cli import main
from newsletter.ledger import Ledger, State
from newsletter.subscribers import SqliteStore

from .conftest import DEMO_ISSUE
from .smtp_server import Handler, Server
from .test_send import add_people, env_for, ledger_rows, many

TORONTO = ZoneInfo("America/Toronto")
ISSUE = f"issues/{DEMO_ISSUE}"


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=TORONTO)


def cli(env: dict[str, str], *args: str):
    return CliRunner().invoke(main, list(args), env=env)


def test_a_scheduled_send_leaves_on_the_first_due_after_its_time(workdir: Path) -> None:
    ids = add_people(workdir)
    with Server(Handler()) as server, time_machine.travel(at("2026-12-06 20:00"), tick=False) as t:
        env = env_for(workdir, server.port)
        scheduled = cli(env, "send", ISSUE, "--at", "2026-12-07 07:00", "--yes")
        assert scheduled.exit_code == 0, scheduled.output
        assert "scheduled for 2026-12-07 07:00 EST (12:00 UTC) (schedule 1)" in scheduled.output
        assert "en 1, fr 1, bilingual 1 (3 in all)" in scheduled.output
        assert "scheduled" in cli(env, "schedule", "list").output
        assert "is scheduled for 2026-12-07 07:00" in cli(env, "status", ISSUE).output
        # someone leaves after scheduling: the list is read when the send starts
        with SqliteStore(workdir / "news.db") as store:
            store.unsubscribe(ids["anne@example.org"], "web")
        t.move_to(at("2026-12-07 06:59:59"))
        early = cli(env, "due")
        assert early.exit_code == 0 and early.output == ""
        assert server.handler.received == []
        t.move_to(at("2026-12-07 07:00:00"))
        on_time = cli(env, "due")
        assert on_time.exit_code == 0, on_time.output
        assert "issue 2017-11: starting" in on_time.output
        assert sorted(r.rcpt for r in server.handler.received) == [
            "alex@example.net",
            "marie@example.org",
        ]
        t.shift(60)
        assert cli(env, "due").output == ""  # nothing more to do
        assert len(server.handler.received) == 2
        listed = cli(env, "schedule", "list").output
        assert "started" in listed and "2026-12-07 07:00 EST" in listed
        assert listed.rstrip().endswith("; the send is done")  # not "started" alone


def test_two_due_at_once_give_one_copy_each(workdir: Path) -> None:
    people = many(30)
    add_people(workdir, people)
    with Server(Handler()) as server:
        env = env_for(workdir, server.port)
        when = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=3)
        scheduled = cli(env, "send", ISSUE, "--at", when.isoformat(timespec="seconds"))
        assert scheduled.exit_code == 0, scheduled.output
        while dt.datetime.now(dt.UTC) < when + dt.timedelta(seconds=1):
            time.sleep(0.1)
        procs = [
            subprocess.Popen(
                [sys.executable, "-m", "newsletter", "due"],
                cwd=workdir,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(2)
        ]
        outputs = [p.communicate(timeout=120) for p in procs]
        assert [p.returncode for p in procs] == [0, 0], outputs
        assert sum("issue 2017-11: starting" in out for out, _ in outputs) == 1, outputs
        for address, _, _ in people:
            assert server.handler.copies(address) == 1, address


@pytest.mark.parametrize(
    "when, zone, message",
    [
        (
            "2027-03-14 02:30",
            "America/Toronto",
            "error: --at '2027-03-14 02:30' does not exist in America/Toronto: the clocks skip "
            "that hour (daylight saving time starts); choose another time",
        ),
        (
            "2027-11-07 01:30",
            "America/Toronto",
            "error: --at '2027-11-07 01:30' happens twice in America/Toronto (the clocks go back "
            "that night); write which one with its offset: 2027-11-07T01:30-04:00 or "
            "2027-11-07T01:30-05:00",
        ),
        (
            "2026-11-30 07:00",
            "America/Toronto",
            "error: --at '2026-11-30 07:00' is in the past (it is now 2026-12-06 20:00 EST "
            "(2026-12-07 01:00 UTC)); give a later time, or send now without --at",
        ),
        (
            "next monday",
            "America/Toronto",
            "error: --at 'next monday' is not a time; write it as 2026-12-07 07:00 "
            "(America/Toronto) or with an offset, 2026-12-07T07:00-05:00",
        ),
        (
            "2027-01-04 07:00",
            "Mars/Olympus_Mons",
            "error: NEWSLETTER_TIMEZONE='Mars/Olympus_Mons': is not a time zone; write one "
            "such as America/Toronto or America/Vancouver",
        ),
        (
            "2027-01-04",
            "America/Toronto",
            "error: --at '2027-01-04' has no time of day; add one, as 2027-01-04 07:00 "
            "(America/Toronto)",
        ),
        (
            "2027-W02-1",
            "America/Toronto",
            "error: --at '2027-W02-1' is not a time; write it as 2026-12-07 07:00 "
            "(America/Toronto) or with an offset, 2026-12-07T07:00-05:00",
        ),
        (
            "2027-01-04-05:00",
            "America/Toronto",
            "error: --at '2027-01-04-05:00' is not a time; write it as 2026-12-07 07:00 "
            "(America/Toronto) or with an offset, 2026-12-07T07:00-05:00",
        ),
        (
            # it used to be booked, then crash every command that showed it (year 10000 UTC)
            "9999-12-31 23:59",
            "America/Toronto",
            "error: --at '9999-12-31 23:59' is more than a year ahead (it is now 2026-12-06 "
            "20:00 EST (2026-12-07 01:00 UTC)); check the year",
        ),
    ],
    ids=[
        "DST gap",
        "ambiguous",
        "past",
        "not a time",
        "unknown zone",
        "date alone",
        "week",
        "date and offset",
        "years ahead",
    ],  # fmt: skip
)
def test_times_that_cannot_be_scheduled(workdir: Path, when: str, zone: str, message: str):
    add_people(workdir)
    env = env_for(workdir, 1, NEWSLETTER_TIMEZONE=zone)
    with time_machine.travel(at("2026-12-06 20:00"), tick=False):
        result = cli(env, "send", ISSUE, "--at", when, "--yes")
    assert result.exit_code == 2
    assert result.output.splitlines()[-1] == message
    listed = cli(env_for(workdir, 1), "schedule", "list")
    assert "nothing scheduled" in listed.output


def test_a_grace_of_more_than_a_week_is_refused(workdir: Path) -> None:
    add_people(workdir)
    env = env_for(workdir, 1)
    with time_machine.travel(at("2026-12-06 20:00"), tick=False):
        result = cli(env, "send", ISSUE, "--at", "2026-12-07 07:00", "--grace", "8d", "--yes")
        week = cli(env, "send", ISSUE, "--at", "2026-12-07 07:00", "--grace", "7d", "--yes")
    assert result.exit_code == 2
    assert "Invalid value for --grace: at most 7 d: an issue later than that is better sent" in (
        result.output
    )
    assert week.exit_code == 0, week.output
    assert "it may start up to 7 d late" in week.output


def test_an_ambiguous_time_with_its_offset_is_taken(workdir: Path) -> None:
    add_people(workdir)
    env = env_for(workdir, 1)
    with time_machine.travel(at("2026-12-06 20:00"), tick=False):
        result = cli(env, "send", ISSUE, "--at", "2027-11-07T01:30-05:00")
    assert result.exit_code == 0, result.output
    assert "2027-11-07 01:30 EST (06:30 UTC)" in result.output


def test_a_cancelled_schedule_sends_nothing(workdir: Path) -> None:
    add_people(workdir)
    with Server(Handler()) as server, time_machine.travel(at("2026-12-06 20:00"), tick=False) as t:
        env = env_for(workdir, server.port)
        assert cli(env, "send", ISSUE, "--at", "2026-12-07 07:00").exit_code == 0
        # a second schedule, or a send now, is refused while one waits
        again = cli(env, "send", ISSUE, "--at", "2026-12-08 07:00")
        assert again.exit_code == 2 and "newsletter schedule cancel 1" in again.output
        now = cli(env, "send", ISSUE, "--yes")
        assert now.exit_code == 2 and "newsletter schedule cancel 1" in now.output
        cancelled = cli(env, "schedule", "cancel", DEMO_ISSUE)
        assert cancelled.exit_code == 0, cancelled.output
        assert "cancelled: issue 2017-11 at 2026-12-07 07:00 EST" in cancelled.output
        t.move_to(at("2026-12-07 07:01"))
        assert cli(env, "due").output == ""
        assert server.handler.received == []
        assert "cancelled" in cli(env, "schedule", "list").output
        twice = cli(env, "schedule", "cancel", "1")
        assert twice.exit_code == 2
        assert twice.output.strip() == (
            "error: no waiting schedule '1'; 'newsletter schedule list' shows them"
        )


def test_a_brief_changed_after_scheduling_stops_the_send(workdir: Path) -> None:
    add_people(workdir)
    brief = workdir / "issues" / "briefs" / "putin-trump-syria-statement.en.md"
    with Server(Handler()) as server, time_machine.travel(at("2026-12-06 20:00"), tick=False) as t:
        env = env_for(workdir, server.port)
        assert cli(env, "send", ISSUE, "--at", "2026-12-07 07:00").exit_code == 0
        brief.write_text(brief.read_text().replace("Syria", "Syrie", 1))
        t.move_to(at("2026-12-07 07:00"))
        result = cli(env, "due")
        assert result.exit_code == 1
        assert server.handler.received == []
        (line,) = result.output.splitlines()
        assert line.startswith("issue 2017-11: refused: changed since it was scheduled: ")
        assert "issues/briefs/putin-trump-syria-statement.en.md;" in line
        assert "schedule it with --rebuild" in line
        assert "refused" in cli(env, "schedule", "list").output


def test_rebuild_sends_the_issue_as_it_is_when_the_time_comes(workdir: Path) -> None:
    add_people(workdir)
    brief = workdir / "issues" / "briefs" / "putin-trump-syria-statement.en.md"
    with Server(Handler()) as server, time_machine.travel(at("2026-12-06 20:00"), tick=False) as t:
        env = env_for(workdir, server.port)
        assert cli(env, "send", ISSUE, "--at", "2026-12-07 07:00", "--rebuild").exit_code == 0
        brief.write_text(brief.read_text().replace("Syria", "Sýria-corrected", 1))
        t.move_to(at("2026-12-07 07:00"))
        assert cli(env, "due").exit_code == 0
        anne = next(r for r in server.handler.received if r.rcpt == "anne@example.org")
        assert "Sýria-corrected" in anne.message.get_body(("plain",)).get_content()


def test_a_schedule_missed_by_more_than_its_grace_is_reported_not_sent(workdir: Path) -> None:
    add_people(workdir)
    with Server(Handler()) as server, time_machine.travel(at("2026-12-06 20:00"), tick=False) as t:
        env = env_for(workdir, server.port)
        assert cli(env, "send", ISSUE, "--at", "2026-12-07 07:00", "--grace", "1h").exit_code == 0
        t.move_to(at("2026-12-07 08:30"))  # the machine was off
        result = cli(env, "due")
        assert result.exit_code == 1
        assert (
            "issue 2017-11: missed: its time (2026-12-07 07:00 EST (12:00 UTC)) passed 1 h 30 "
            "min ago, more than its grace (1 h); send it by hand or schedule it again"
        ) in result.output
        assert server.handler.received == []
        listed = cli(env, "schedule", "list").output.splitlines()[1]
        assert listed.endswith("  missed: its time (2026-12-07 07:00 EST (12:00 UTC)) passed 1 h"
                               " 30 min ago, more than its grace (1 h); send it by hand or "
                               "schedule it again")  # fmt: skip
        assert listed.count("missed") == 1
        assert cli(env, "status", ISSUE).output == (
            "issue 2017-11 has not been sent: its schedule for 2026-12-07 07:00 EST (12:00 UTC)"
            " was missed: its time (2026-12-07 07:00 EST (12:00 UTC)) passed 1 h 30 min ago, "
            "more than its grace (1 h); send it by hand or schedule it again\n"
        )


def test_greylisting_longer_than_the_old_30_s_window_loses_nobody(workdir: Path) -> None:
    add_people(workdir, many(4))
    slow = "reader1@example.org"
    handler = Handler(script={slow: ["451"] * 6})
    with Server(handler) as server, time_machine.travel(at("2026-12-07 07:00"), tick=False) as t:
        env = env_for(workdir, server.port)  # the default backoff: 60 s, doubling
        first = cli(env, "send", ISSUE, "--yes")
        assert first.exit_code == 4, first.output
        waits = []
        for _ in range(6):
            state, attempts, reply = ledger_rows(workdir)[slow]
            assert state is State.DEFERRED and reply.startswith("451 4.3.0")
            ledger = Ledger(workdir / "news.db", DEMO_ISSUE)
            next_at = ledger.next_retry()
            ledger.close()
            assert next_at is not None
            waits.append(round(next_at - time.time()))
            t.move_to(dt.datetime.fromtimestamp(next_at - 1, dt.UTC))
            assert cli(env, "due").output == ""  # a second early: nothing
            t.shift(1)
            assert "issue 2017-11: retrying 1 deferred message(s)\n" in cli(env, "due").output
        assert waits == [60, 120, 240, 480, 960, 1920]  # 62 min in all, far past 30 s
        assert ledger_rows(workdir)[slow][:2] == (State.SENT, 7)
        assert handler.copies(slow) == 1
        assert {handler.copies(f"reader{i}@example.org") for i in range(4)} == {1}


def test_a_message_deferred_past_retry_for_fails_as_expired(workdir: Path) -> None:
    add_people(workdir, many(2))
    slow = "reader1@example.org"
    handler = Handler(script={slow: ["451"] * 50})
    with Server(handler) as server, time_machine.travel(at("2026-12-07 07:00"), tick=False) as t:
        env = env_for(workdir, server.port, NEWSLETTER_RETRY_FOR="10m")
        assert cli(env, "send", ISSUE, "--yes").exit_code == 4
        for _ in range(10):
            t.shift(600)
            due = cli(env, "due")
            if ledger_rows(workdir)[slow][0] is not State.DEFERRED:
                break
            assert due.exit_code == 0, due.output  # still retrying: nothing to look at yet
        # the send ended with a failed reader: 1, as `send` would, and said once
        assert due.exit_code == 1, due.output
        assert f"issue 2017-11: 1 failed, 0 uncertain; newsletter status {ISSUE} lists" in (
            due.output
        )
        again = cli(env, "due")
        assert again.exit_code == 0 and again.output == ""
        state, attempts, reply = ledger_rows(workdir)[slow]
        assert state is State.FAILED
        assert reply.startswith("expired after 10 min: 451 4.3.0 Try again later")
        assert handler.copies(slow) == 0
        status = cli(env, "status", ISSUE)
        assert "failed     reader1@example.org: expired after 10 min" in status.output


def test_due_retries_nothing_with_another_secret_than_the_send_started_with(workdir) -> None:
    add_people(workdir, many(2))
    slow = "reader1@example.org"
    handler = Handler(script={slow: ["451"]})
    with Server(handler) as server, time_machine.travel(at("2026-12-07 07:00"), tick=False) as t:
        env = env_for(workdir, server.port)
        assert cli(env, "send", ISSUE, "--yes").exit_code == 4  # one deferred
        t.shift(3600)
        other = cli({**env, "NEWSLETTER_SECRET": "another-" + env["NEWSLETTER_SECRET"]}, "due")
        assert other.exit_code == 1, other.output
        assert (
            "issue 2017-11: refused: its send started with another signing "
            "secret, so the unsubscribe and preferences links sent from here would not work"
        ) in other.output
        assert ledger_rows(workdir)[slow][0] is State.DEFERRED and handler.copies(slow) == 0
        assert cli(env, "due").exit_code == 0  # with the right one, it goes
        assert handler.copies(slow) == 1


def test_due_in_a_folder_without_the_database_says_so_and_makes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a timer whose WorkingDirectory is wrong must not quietly make an empty list each minute
    monkeypatch.chdir(tmp_path)
    result = cli({"NEWSLETTER_DB": "news.db", "NEWSLETTER_SECRET": "s" * 40}, "due")
    assert result.exit_code == 2
    assert result.output.startswith(f"error: {tmp_path / 'news.db'}: no database here")
    assert "WorkingDirectory" in result.output and len(result.output.splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


def test_status_without_an_issue_lists_every_send_and_what_is_scheduled(workdir: Path) -> None:
    add_people(workdir)
    with Server(Handler()) as server, time_machine.travel(at("2026-12-06 20:00"), tick=False):
        env = env_for(workdir, server.port)
        assert cli(env, "status").output == (
            "nothing sent from this list yet; send an issue with: newsletter send ISSUE\n"
        )
        assert cli(env, "send", ISSUE, "--yes").exit_code == 0
        later = workdir / "issues" / "2017-12"
        shutil.copytree(workdir / ISSUE, later)
        assert cli(env, "send", str(later), "--at", "2026-12-07 07:00", "--yes").exit_code == 0
        assert cli(env, "status").output.splitlines() == [
            "issue    state  started (UTC)     sent  pending  sending  deferred  failed  uncertain",
            "2017-11  done   2026-12-07 01:00     3        0        0         0       0          0",
            "scheduled: issue 2017-12 for 2026-12-07 07:00 EST (12:00 UTC) (schedule 1)",
            "details of one: newsletter status ISSUE",
        ]


def test_due_says_what_it_takes_up_and_when_the_hourly_cap_holds_it(workdir: Path) -> None:
    import sqlite3

    from .test_send import _read_until

    add_people(workdir, many(5))
    handler = Handler(script={"reader1@example.org": ["451"]})
    with Server(handler) as server:
        env = env_for(workdir, server.port)
        assert cli(env, "send", ISSUE, "--yes").exit_code == 4  # reader1 deferred
        db = sqlite3.connect(workdir / "news.db")
        with db:  # as if cut off before two were sent; reader1's retry due
            db.execute("UPDATE deliveries SET state = 'pending', attempts = 0 "
                       "WHERE email IN ('reader2@example.org', 'reader3@example.org')")  # fmt: skip
            db.execute("UPDATE deliveries SET next_attempt = 0 WHERE state = 'deferred'")
        ledger = Ledger(workdir / "news.db", DEMO_ISSUE)
        info = ledger.info()
        assert info is not None
        # a cap of 2 an hour, kept with the send: two went a moment ago, so nothing may go
        ledger.set_options({**info.options, "hourly_cap": 2})
        ledger.close()
        proc = subprocess.Popen(
            [sys.executable, "-m", "newsletter", "due"],
            cwd=workdir,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        said = _read_until(proc, b"reached", 30).decode()
        proc.terminate()
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 143, err
        assert re.search(
            r"^issue 2017-11: resuming: 2 not yet sent, 1 deferred due for a retry\n"
            r"issue 2017-11: the hourly cap of 2 is reached: the next message may go in about "
            r"5[89] min\n", said, re.M
        ), said  # fmt: skip
        assert handler.copies("reader2@example.org") == 1  # its first copy only
        db.close()


def test_due_warns_of_weak_settings_when_it_sends_and_only_then(workdir, tmp_path) -> None:
    from .test_send import _dkim_key

    key, _ = _dkim_key(tmp_path, "ed25519")
    add_people(workdir, many(2))
    handler = Handler(script={"reader1@example.org": ["451"]})
    with Server(handler) as server:
        dkim = {"NEWSLETTER_DKIM_KEY": str(key), "NEWSLETTER_DKIM_SELECTOR": "news2017"}
        env = env_for(workdir, server.port, NEWSLETTER_DKIM_DOMAIN="example.com", **dkim)
        first = cli(env, "send", ISSUE, "--yes")
        assert first.exit_code == 4, first.output
        warning = "warning: NEWSLETTER_DKIM_DOMAIN=example.com does not match the From addresses"
        assert warning in first.output
        assert cli(env, "due").output == ""  # nothing due: quiet, warning and all
        ledger = Ledger(workdir / "news.db", DEMO_ISSUE)
        with ledger._tx() as conn:  # reader1's retry is due
            conn.execute("UPDATE deliveries SET next_attempt = 0 WHERE state = 'deferred'")
        ledger.close()
        due = cli(env, "due")
        assert due.output.count(warning) == 1, due.output
        assert due.output.index(warning) < due.output.index("issue 2017-11: retrying 1")
        assert handler.copies("reader1@example.org") == 1


def test_a_retry_time_says_how_long_until_it_or_that_it_is_due() -> None:
    from newsletter.cli_report import local_time

    now = time.time()
    assert local_time(now - 100).endswith("(due now)")  # was "(in 0 min)", a time past
    assert re.search(r"\(in 2[45] s\)$", local_time(now + 25))  # was "(in 0 min)" too
    assert re.search(r"\(in 1 h [56] min\)$", local_time(now + 3960))
