"""What a new user or a list owner runs into: each test is a surprise found by using the tool
as the README says, and what it should do instead. In-process (CliRunner), on a copy of the
demo content."""

from __future__ import annotations

import datetime as dt
import io
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import time_machine
from click.testing import CliRunner

from newsletter.cli import main
from newsletter.subscribers import SqliteStore, Status

from .conftest import DEMO_ISSUE, ROOT, clean_env

SOME_DAY = dt.datetime(2098, 12, 6, 20, 0, tzinfo=dt.UTC)  # a month before the --at below


def invoke(workdir: Path, *args: str, input: str | None = None, **env: str):
    env_file = workdir / "empty.env"  # so a developer's own .env is not read
    env_file.touch()
    return CliRunner().invoke(
        main,
        ["--env-file", str(env_file), *args],
        env={"NEWSLETTER_DB": str(workdir / "news.db"), **env},
        input=input,
    )


def test_check_does_not_say_ok_to_an_issue_send_refuses(workdir: Path) -> None:
    composed = invoke(workdir, "compose", "--date", "2017-11-27")
    assert composed.exit_code == 0, composed.output
    check = invoke(workdir, "check", "issues/2017-11-27")
    # still a warning while composing (exit 0), but never "ok": send refuses it
    assert check.exit_code == 0, check.output
    last = check.stdout.strip().splitlines()[-1]
    assert last == (
        "not ready to send: 3 warning(s) above stop a real send, first: en: preheader is "
        "still the placeholder of 'newsletter compose'"
    )
    build = invoke(workdir, "build", "issues/2017-11-27")
    assert build.exit_code == 0 and build.stdout.strip().splitlines()[-1] == last
    demo = invoke(workdir, "check", f"issues/{DEMO_ISSUE}")
    assert demo.stdout.strip().splitlines()[-1] == "ok"


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        # the issue id without its folder, as `archive publish` and `schedule cancel` take it
        ("2017-11", "2017-11: no such issue folder; did you mean issues/2017-11?"),
        ("issues/2017-1", "issues/2017-1: no such issue folder; did you mean issues/2017-11?"),
        ("issues", "issues: this folder holds the issues; give one of them, e.g. issues/2017-11"),
        (
            "issues/briefs",
            "issues/briefs: this is the briefs folder; give an issue folder, e.g. issues/2017-11",
        ),
        (
            "issues/2099-01",
            "issues/2099-01: no such issue folder; give the path of an issue, e.g. issues/2017-11",
        ),
    ],
)
@pytest.mark.parametrize("command", ["build", "check", "send", "status", "preview"])
def test_a_wrong_issue_path_says_which_one_was_meant(
    workdir: Path, monkeypatch: pytest.MonkeyPatch, command: str, given: str, expected: str
) -> None:
    def started(*args):
        raise AssertionError("the preview started instead of saying what is wrong")

    monkeypatch.setattr("newsletter.cli_preview.listen", started)
    before = sorted(p.relative_to(workdir) for p in workdir.rglob("*"))
    result = invoke(workdir, command, given)
    assert (result.exit_code, result.stderr) == (2, f"error: {expected}\n")
    assert "new issue" not in result.stderr  # nothing to create: it exists, or was mistyped
    after = sorted(p.relative_to(workdir) for p in workdir.rglob("*") if p.name != "empty.env")
    assert after == before


def test_the_manifest_names_its_issue(workdir: Path) -> None:
    check = invoke(workdir, "check", f"issues/{DEMO_ISSUE}/issue.toml")
    assert check.exit_code == 0, check.output
    assert check.stdout.endswith("has no fr version (En anglais seulement)\nok\n")
    assert invoke(workdir, "subscribers", "add", "ann@example.org").exit_code == 0
    status = invoke(workdir, "status", f"issues/{DEMO_ISSUE}/issue.toml")
    assert (status.exit_code, status.stdout) == (0, f"issue {DEMO_ISSUE} has not been sent.\n")


def test_a_brief_written_the_day_of_the_last_issue_goes_in_the_next(workdir: Path) -> None:
    assert invoke(workdir, "compose", "--date", "2017-11-27").exit_code == 0
    late = workdir / "issues" / "briefs" / "late-news.en.md"
    late.write_text(
        '---\ntitle: "Late news"\ndate: 2017-11-27\nsource: "EIRNS"\n---\nIt happened.\n', "utf-8"
    )
    result = invoke(workdir, "compose", "--date", "2017-12-04")
    assert result.exit_code == 0, result.output
    assert "  2017-11-27  late-news  [en]" in result.stdout
    manifest = (workdir / "issues" / "2017-12-04" / "issue.toml").read_text("utf-8")
    assert '    "late-news",\n]' in manifest and "churchill" not in manifest


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (
            "[bilingual]",
            "[bilingue]",
            ":34: unknown key 'bilingue' (did you mean 'bilingual'?); allowed: number, date, "
            "briefs, en, fr, bilingual",
        ),
        (
            'subject = "News / Brèves No. 1 —',
            'subjet = "News / Brèves No. 1 —',
            ":35: unknown key 'subjet' in [bilingual] (did you mean 'subject'?); allowed: "
            "subject, preheader",
        ),
        (
            "number = 1",
            "number = 1\nissue = 1",
            ":2: unknown key 'issue'; allowed: number, date, briefs, en, fr, bilingual",
        ),  # fmt: skip
    ],
)
def test_a_typo_in_the_manifest_stops_the_build(
    workdir: Path, old: str, new: str, expected: str
) -> None:
    manifest = workdir / "issues" / DEMO_ISSUE / "issue.toml"
    text = manifest.read_text("utf-8")
    assert text.count(old) == 1
    manifest.write_text(text.replace(old, new), "utf-8")
    result = invoke(workdir, "check", f"issues/{DEMO_ISSUE}")
    assert (result.exit_code, result.stderr) == (
        2,
        f"error: issues/{DEMO_ISSUE}/issue.toml{expected}\n",
    )


class _CtrlC(io.RawIOBase):
    """Standard input of someone who presses Ctrl-C at the question."""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if not len(buffer):  # click's test runner looks whether the stream gives bytes
            return 0
        raise KeyboardInterrupt


@pytest.mark.parametrize(
    ("answer", "status", "said"),
    [
        ("n\n", 1, "nothing sent\n"),
        # a timer or a pipe that forgot --yes
        (
            "",
            2,
            "error: nothing sent: no answer to the question (standard input is not a "
            "terminal); add --yes to send without asking\n",
        ),  # fmt: skip
        (_CtrlC(), 130, "\ninterrupted: nothing sent\n"),
    ],
)
def test_a_send_not_confirmed_says_why_and_sends_nothing(
    workdir: Path, answer, status: int, said: str
) -> None:
    imported = invoke(workdir, "subscribers", "import", str(ROOT / "samples" / "subscribers.csv"))
    assert imported.exit_code == 0, imported.output
    secret = "s" * 32  # so that no line about a generated secret comes first
    result = invoke(workdir, "send", f"issues/{DEMO_ISSUE}", input=answer, NEWSLETTER_SECRET=secret)
    assert "Send it now? [y/N]:" in result.stdout
    assert (result.exit_code, result.stderr) == (status, said)
    assert not (workdir / "outbox").exists()
    assert invoke(workdir, "status", f"issues/{DEMO_ISSUE}").stdout == (
        f"issue {DEMO_ISSUE} has not been sent.\n"
    )


def test_status_says_what_held_means_and_how_to_resume(workdir: Path) -> None:
    env = {**clean_env(), "NEWSLETTER_DB": str(workdir / "news.db")}
    imported = invoke(workdir, "subscribers", "import", str(ROOT / "samples" / "subscribers.csv"))
    assert imported.exit_code == 0, imported.output
    # one message a second into the outbox, and Ctrl-C once the first is written
    proc = subprocess.Popen(
        [sys.executable, "-m", "newsletter", "send", f"issues/{DEMO_ISSUE}", "--yes"]
        + ["--rate", "1", "--concurrency", "1"],
        cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    outbox = workdir / "outbox" / DEMO_ISSUE
    deadline = time.monotonic() + 60
    while not any(outbox.glob("*.eml")) and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    sent = len(list(outbox.glob("*.eml")))
    assert 1 <= sent < 8
    status = invoke(workdir, "status", f"issues/{DEMO_ISSUE}")
    assert status.exit_code == 0, status.output
    assert status.stdout.splitlines()[-1] == (
        f"held: stopped by Ctrl-C or paused (see the workers above), {8 - sent} left; "
        f"run 'newsletter send issues/{DEMO_ISSUE}' to resume"
    )
    resumed = invoke(workdir, "send", f"issues/{DEMO_ISSUE}", "--yes", "--rate", "0")
    assert resumed.exit_code == 0, resumed.output
    done = invoke(workdir, "status", f"issues/{DEMO_ISSUE}").stdout
    assert done.startswith(f"issue {DEMO_ISSUE} (done,") and "resume" not in done


def test_an_issue_given_as_its_folder_where_an_id_is_asked(workdir: Path) -> None:
    assert invoke(workdir, "db", "migrate").exit_code == 0  # a list, nobody on it yet
    published = invoke(workdir, "archive", "publish", f"issues/{DEMO_ISSUE}", "--unsent")
    assert published.exit_code == 0, published.output
    assert published.stdout.startswith(f"published {DEMO_ISSUE}\n")
    assert (workdir / "site" / "en" / DEMO_ISSUE / "index.html").is_file()
    taken = invoke(workdir, "archive", "unpublish", f"issues/{DEMO_ISSUE}/")
    assert taken.stdout.startswith(f"took {DEMO_ISSUE} off the web\n"), taken.output
    imported = invoke(workdir, "subscribers", "import", str(ROOT / "samples" / "subscribers.csv"))
    assert imported.exit_code == 0, imported.output
    with time_machine.travel(SOME_DAY, tick=False):  # --at: within a year of now
        at = invoke(workdir, "send", f"issues/{DEMO_ISSUE}", "--at", "2099-01-05 07:00")
    assert at.exit_code == 0, at.output
    cancelled = invoke(workdir, "schedule", "cancel", f"issues/{DEMO_ISSUE}")
    assert (cancelled.exit_code, cancelled.stdout) == (
        0,
        f"cancelled: issue {DEMO_ISSUE} at 2099-01-05 07:00 EST (12:00 UTC)\n",
    )


def test_schedule_list_names_its_columns(workdir: Path) -> None:
    imported = invoke(workdir, "subscribers", "import", str(ROOT / "samples" / "subscribers.csv"))
    assert imported.exit_code == 0, imported.output
    with time_machine.travel(SOME_DAY, tick=False):
        at = invoke(workdir, "send", f"issues/{DEMO_ISSUE}", "--at", "2099-01-05 07:00")
    assert at.exit_code == 0, at.output
    listed = invoke(workdir, "schedule", "list")
    assert listed.stdout.splitlines() == [
        "#  issue    time                              state",
        "1  2017-11  2099-01-05 07:00 EST (12:00 UTC)  scheduled",
    ]


def test_remove_says_what_it_erases_and_what_the_audit_keeps(workdir: Path) -> None:
    assert invoke(workdir, "subscribers", "add", "bob@example.com", "--name", "Bob").exit_code == 0
    shown_help = invoke(workdir, "subscribers", "remove", "--help").stdout
    assert "entirely" not in shown_help
    assert "The address stays in the audit trail" in shown_help
    removed = invoke(workdir, "subscribers", "remove", "bob@example.com")
    assert removed.stdout == (
        "removed bob@example.com (name, language, status); the audit trail keeps the address\n"
    )
    # what the help and the line promise, `show` gives
    shown = invoke(workdir, "subscribers", "show", "bob@example.com").stdout
    assert shown.startswith("bob@example.com\n  status      removed on ")
    assert "Bob" not in shown


def test_serve_help_names_the_signup_pages(workdir: Path) -> None:
    # the README sends visitors to /subscribe and /abonnement, served by `serve`
    assert "/subscribe and /abonnement" in " ".join(
        invoke(workdir, "serve", "--help").stdout.split()
    )


@pytest.mark.parametrize(
    ("typed", "meant"),
    [
        ("Hydro Québec", "hydro-quebec"),
        ("Hydro-Québec : contrat « record » !", "hydro-quebec-contrat-record"),
        ("hydro-quebec.fr.md", "hydro-quebec"),  # the file name for the slug
    ],
)
def test_a_slug_typed_as_a_title_gets_the_slug_to_type(
    workdir: Path, typed: str, meant: str
) -> None:
    result = invoke(workdir, "new", "brief", typed)
    assert (result.exit_code, result.stderr) == (
        2,
        f"error: slug '{typed}' must be lowercase letters, digits and hyphens, e.g. {meant}\n",
    )
    assert invoke(workdir, "new", "brief", meant).exit_code == 0  # and the suggestion works


def test_a_brief_file_with_a_title_for_a_name_gets_the_name_to_give(workdir: Path) -> None:
    brief = workdir / "issues" / "briefs" / "Hydro Québec.fr.md"
    brief.write_text('---\ntitle: "x"\ndate: 2017-11-12\nsource: "a"\n---\nx\n', "utf-8")
    result = invoke(workdir, "check", f"issues/{DEMO_ISSUE}")
    assert result.stderr == (
        f"error: {brief.relative_to(workdir).as_posix()}: slug 'Hydro Québec' must be lowercase "
        "letters, digits and hyphens; rename the file (e.g. hydro-quebec.fr.md)\n"
    )


def test_an_export_imported_elsewhere_keeps_off_who_left(workdir: Path) -> None:
    for address in ("ann@example.org", "bob@example.org", "cy@example.org", "di@example.org"):
        assert invoke(workdir, "subscribers", "add", address).exit_code == 0
    assert invoke(workdir, "subscribers", "unsubscribe", "bob@example.org").exit_code == 0
    with SqliteStore(workdir / "news.db") as store:
        store.set_status(store.find("cy@example.org").id, Status.COMPLAINED, "test")
        store.set_status(store.find("di@example.org").id, Status.BOUNCED, "test")
    exported = workdir / "list.csv"
    assert invoke(workdir, "subscribers", "export", str(exported)).exit_code == 0
    # the list moves to a new database, as the export's help says it can
    moved = {"NEWSLETTER_DB": str(workdir / "moved.db")}
    imported = invoke(workdir, "subscribers", "import", str(exported), **moved)
    assert imported.exit_code == 0, imported.output
    assert imported.stdout.splitlines() == [
        f"imported {exported}: 1 added, 0 updated, 0 unchanged, 0 rejected",
        "3 added as having left (the file's status column says so): they are sent nothing, "
        "and stay off when imported again",
    ]
    listed = invoke(workdir, "subscribers", "list", **moved).stdout.splitlines()
    assert [line.split("\t")[:3] for line in listed] == [
        ["ann@example.org", "both", "active"],
        ["bob@example.org", "both", "unsubscribed"],
        ["cy@example.org", "both", "complained"],
        ["di@example.org", "both", "bounced"],
    ]
    # importing the file again, even with --resubscribe, makes nobody active who left
    again = invoke(workdir, "subscribers", "import", str(exported), "--resubscribe",
                   "--consent", "express", "--note", "asked again", **moved)  # fmt: skip
    assert again.exit_code == 0, again.output
    assert invoke(workdir, "subscribers", "list", "--status", "active", **moved).stdout == (
        "ann@example.org\tboth\tactive\t\n"
    )


def test_a_status_column_the_import_cannot_read_rejects_the_row(workdir: Path) -> None:
    csv_file = workdir / "other.csv"
    csv_file.write_text(
        "email,status\nann@example.org,subscribed\nbob@example.org,pending\n", "utf-8"
    )
    result = invoke(workdir, "subscribers", "import", str(csv_file))
    assert result.exit_code == 1
    assert (
        f"{csv_file}:3: unknown status 'pending'; use active, unsubscribed, bounced or "
        "complained (an export of the list says which)"
    ) in result.stdout
    assert invoke(workdir, "subscribers", "list").stdout == "ann@example.org\tboth\tactive\t\n"


def test_an_import_says_when_the_file_says_an_active_person_left(workdir: Path) -> None:
    assert invoke(workdir, "subscribers", "add", "ann@example.org").exit_code == 0
    csv_file = workdir / "old.csv"
    csv_file.write_text("email,status\nann@example.org,unsubscribed\n", "utf-8")
    result = invoke(workdir, "subscribers", "import", str(csv_file))
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[-1] == (
        f"{csv_file}:2: ann@example.org: the file says unsubscribed, but they are active here; "
        "left as is (if the file is right: newsletter subscribers unsubscribe ann@example.org)"
    )


@pytest.mark.parametrize(
    "args",
    [
        ["status", f"issues/{DEMO_ISSUE}"],
        ["send", f"issues/{DEMO_ISSUE}", "--dry-run"],
        ["send", f"issues/{DEMO_ISSUE}", "--yes"],
        ["schedule", "list"],
        ["subscribers", "list"],
        ["subscribers", "count"],
        ["subscribers", "show", "ann@example.org"],
        ["subscribers", "export"],
        ["bounces", "list"],
    ],
)
def test_a_command_run_in_the_wrong_folder_does_not_answer_from_a_new_empty_list(
    workdir: Path, monkeypatch: pytest.MonkeyPatch, args: list[str]
) -> None:
    # the list and its sends live in ./news.db; the editor runs a command from issues/
    env_file = workdir / "empty.env"
    env_file.touch()
    db = {"NEWSLETTER_DB": "news.db"}
    assert (
        CliRunner().invoke(main, ["subscribers", "add", "ann@example.org"], env=db).exit_code == 0
    )
    elsewhere = workdir / "issues"
    before = sorted(elsewhere.rglob("*"))
    monkeypatch.chdir(elsewhere)
    args = [arg.replace("issues/", "") for arg in args]
    result = CliRunner().invoke(main, ["--env-file", str(env_file), *args], env=db)
    assert (result.exit_code, result.stderr) == (
        2,
        f"error: {elsewhere / 'news.db'}: no database here; run this in the folder that holds "
        "it, or set NEWSLETTER_DB to its path ('subscribers import' or 'add' makes a new one)\n",
    )
    assert sorted(elsewhere.rglob("*")) == before  # no stray database, no new secret


def test_signup_form_is_not_signed_with_a_secret_the_server_does_not_have(workdir: Path) -> None:
    result = invoke(workdir, "signup-form")
    assert result.exit_code == 2
    assert result.stderr.endswith(
        "signup-form signs the form with its secret: run it where 'newsletter serve' runs)\n"
    )
    assert not (workdir / "news.db").exists() and not (workdir / "news.db.secret").exists()


def test_sending_again_says_who_joined_since_and_is_not_on_the_issue(workdir: Path) -> None:
    imported = invoke(workdir, "subscribers", "import", str(ROOT / "samples" / "subscribers.csv"))
    assert imported.exit_code == 0, imported.output
    assert invoke(workdir, "send", f"issues/{DEMO_ISSUE}", "--yes").exit_code == 0
    assert invoke(workdir, "subscribers", "add", "late@example.org").exit_code == 0
    again = invoke(workdir, "send", f"issues/{DEMO_ISSUE}", "--yes")
    assert again.exit_code == 0, again.output
    lines = again.stdout.splitlines()
    assert lines[0] == f"nothing left to send for issue {DEMO_ISSUE}."
    assert lines[-1].startswith("1 subscriber(s) joined after this send started (")
    assert lines[-1].endswith(
        "), when its list was fixed: late@example.org; they get the next issue"
    )
    assert len(list((workdir / "outbox" / DEMO_ISSUE).glob("*.eml"))) == 8


def test_a_setting_written_in_lower_case_is_said_to_be_ignored(workdir: Path) -> None:
    env_file = workdir / "lower.env"
    env_file.write_text("# mine\nnewsletter_title_en=Our News\n", "utf-8")
    result = CliRunner().invoke(
        main, ["--env-file", str(env_file), "subscribers", "add", "ann@example.org"],
        env={"NEWSLETTER_DB": str(workdir / "news.db")},
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert result.stderr == (
        f"warning: {env_file}:2: newsletter_title_en is not a setting, ignored: names are "
        "upper case, NEWSLETTER_TITLE_EN\n"
    )


def test_archive_takes_the_issues_folder_option_as_compose_names_it(workdir: Path) -> None:
    (workdir / "issues").rename(workdir / "content")
    assert invoke(workdir, "db", "migrate").exit_code == 0
    result = invoke(
        workdir, "archive", "publish", DEMO_ISSUE, "--unsent", "--issues-dir", "content"
    )
    assert result.exit_code == 0, result.output
    assert (workdir / "site" / "en" / DEMO_ISSUE / "index.html").is_file()
