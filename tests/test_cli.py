"""The command layer: each command imports only what it uses, and `--help` none of them."""

from __future__ import annotations

import importlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import click
import pytest

from newsletter.cli import COMMANDS, main
from newsletter.render import Templates

from .conftest import DEMO_ISSUE, ROOT, clean_env

# What only sending, the web app or the preview need: `build` must not pay for it.
NOT_FOR_BUILD = (
    "dkim", "dns", "smtplib", "uvicorn", "starlette", "watchfiles", "aiosmtpd", "email_validator",
)  # fmt: skip

PROBE = """
import json, sys
from newsletter.cli import run
sys.argv = ["newsletter", *json.loads(sys.argv[1])]
try:
    run()
except SystemExit:
    pass
requests = sys.modules.get("requests")
print(json.dumps({
    "modules": sorted(sys.modules),
    "requests": type(requests).__name__ if requests else None,
}), file=sys.stderr)
"""


def _modules_after(args: list[str], cwd: Path) -> dict:
    result = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(args)],
        cwd=cwd, env=clean_env(), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    return json.loads(result.stderr.strip().splitlines()[-1])


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_the_help_summary_is_the_commands_own(name: str) -> None:
    module, attribute, summary = COMMANDS[name]
    command = getattr(importlib.import_module(f"newsletter.{module}"), attribute)
    assert isinstance(command, click.Command)
    for limit in (45, 60, 75):
        expected = command.get_short_help_str(limit)
        assert click.Command(name, help=summary).get_short_help_str(limit) == expected


def test_help_lists_every_command_without_importing_them(workdir: Path) -> None:
    loaded = _modules_after(["--help"], workdir)["modules"]
    assert not [
        m for m in loaded if m.startswith("newsletter.cli_") and m != "newsletter.cli_context"
    ]
    listed = main.get_help(click.Context(main))
    for name in COMMANDS:
        assert f"\n  {name} " in listed


def test_build_imports_neither_sending_nor_servers(workdir: Path) -> None:
    probe = _modules_after(["build", f"issues/{DEMO_ISSUE}"], workdir)
    assert (workdir / "build" / DEMO_ISSUE / "en.html").is_file()  # it did build
    heavy = [m for m in probe["modules"] if m.split(".")[0] in NOT_FOR_BUILD]
    assert heavy == []
    assert probe["requests"] == "_Deferred"  # premailer's import of it costs nothing


def test_a_deferred_module_becomes_the_real_one_when_used() -> None:
    code = (
        "import sys; from newsletter.lazy import defer_import; defer_import('json.tool');"
        "import json.tool as t; assert type(sys.modules['json.tool']).__name__ == '_Deferred';"
        "print(t.main.__module__, type(sys.modules['json.tool']).__name__)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["json.tool", "module"]


def test_only_the_shipped_templates_are_kept_compiled(tmp_path: Path) -> None:
    shipped = Templates()
    assert shipped.env.bytecode_cache is not None  # compiled once, read back by later runs
    copy = tmp_path / "templates"
    shutil.copytree(ROOT / "templates", copy)
    assert Templates(copy).env.bytecode_cache is None  # a folder per copy would pile up
    # the key follows the source and path (Jinja) and our environment's settings (ours)
    key = shipped.env.bytecode_cache.get_cache_key("email.mjml.j2", "/x/email.mjml.j2")
    assert key != shipped.env.bytecode_cache.get_cache_key("email.mjml.j2", "/y/email.mjml.j2")
