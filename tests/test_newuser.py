"""What a new user or a list owner runs into: each test is a surprise found by using the tool
as the README says, and what it should do instead. In-process (CliRunner), on a copy of the
demo content."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from newsletter.cli import main

from .conftest import DEMO_ISSUE


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
