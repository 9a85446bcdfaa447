"""The docs follow the code: every setting is in .env.example, every command in the README's
table, every exit status in both exit tables, and `serve --help` names what it serves.
Several changes merged at once each added their part; these fail when one is left out."""

from __future__ import annotations

import re

import click

from newsletter.cli import COMMANDS, SUBCOMMANDS, _load, main
from newsletter.config import DEFAULTS, PREFIX
from newsletter.exits import EXIT_TABLE, Exit

from .conftest import ROOT

README = (ROOT / "README.md").read_text("utf-8")


def _section(title: str) -> str:
    return README.split(f"\n{title}\n", 1)[1].split("\n#", 1)[0]


def test_every_setting_is_explained_in_env_example() -> None:
    example = (ROOT / ".env.example").read_text("utf-8")
    missing = [PREFIX + name for name in DEFAULTS if f"\n{PREFIX}{name}=" not in example]
    assert missing == []


def test_every_command_is_in_the_readme_table() -> None:
    table = _section("## Commands")
    for name in COMMANDS:
        command = main.get_command(click.Context(main), name)
        assert command is not None
        subs = sorted(command.commands) if isinstance(command, click.Group) else []
        if name in SUBCOMMANDS:
            subs += [_load(*sub).name for sub in SUBCOMMANDS[name]]
        for words in [[name]] + [[name, sub] for sub in subs]:
            # `newsletter NAME`, or a subcommand in a row of its group (`add\|remove`...)
            rows = [r for r in table.splitlines() if f"`newsletter {name}" in r]
            assert rows, name
            if len(words) == 2:
                assert any(re.search(rf"[ `|]{words[1]}\b", r) for r in rows), words


def test_every_exit_status_is_in_both_tables() -> None:
    table = _section("### Exit status")
    for status in Exit:
        assert f"\n| {status.value} |" in table, status
        assert re.search(rf"\b{status.value} ", EXIT_TABLE), status


def test_serve_help_names_every_kind_of_page_it_serves() -> None:
    command = _load(*COMMANDS["serve"][:2])
    for page in ("archive", "unsubscribe", "preferences", "signup"):
        assert page in (command.help or ""), page
