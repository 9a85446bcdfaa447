"""The demo issue's editions, compared with the copies checked into tests/golden/, so that
any change to what readers get shows up in review.

Refresh them after an intended change, then read the diff:

    UPDATE_GOLDEN=1 .venv/bin/pytest tests/test_golden.py && git diff tests/golden/

The HTML is stored with a line break between adjacent tags (`>` `<`), which MJML writes
on very long lines, so that a diff shows the element that changed; nothing else differs.
"""

from __future__ import annotations

import difflib
import itertools
import os
import re
from pathlib import Path

import pytest

from newsletter.build import build_issue
from newsletter.config import load_settings
from newsletter.render import Templates

from .conftest import DEMO_ISSUE, ROOT

GOLDEN = Path(__file__).resolve().parent / "golden"
UPDATE = os.environ.get("UPDATE_GOLDEN") == "1"


def reviewable(html: str) -> str:
    return re.sub(r">(?=<)", ">\n", html)


@pytest.fixture(scope="module")
def outputs() -> dict[str, str]:
    # The embedded defaults only: a developer's .env or NEWSLETTER_ variables stay out.
    settings = load_settings(None, environ={})
    build = build_issue(ROOT / "issues" / DEMO_ISSUE, settings.identity, Templates())
    files = {}
    for edition in build.editions:
        files[f"{edition.name}.html"] = reviewable(edition.html)
        files[f"{edition.name}.txt"] = edition.text
    return files


@pytest.mark.parametrize(
    "name", [f"{e}.{x}" for e in ("en", "fr", "bilingual") for x in ("html", "txt")]
)
def test_the_demo_edition_is_as_reviewed(outputs: dict[str, str], name: str) -> None:
    golden = GOLDEN / name
    if UPDATE:
        golden.write_text(outputs[name], "utf-8")
        pytest.skip(f"rewrote {golden.relative_to(ROOT)}: review it with git diff")
    assert golden.is_file(), f"no {golden}; write it with UPDATE_GOLDEN=1"
    expected = golden.read_text("utf-8")
    if outputs[name] != expected:  # the lines that differ, not 80 KB of assertion diff
        diff = difflib.unified_diff(
            expected.splitlines(),
            outputs[name].splitlines(),
            f"golden/{name}",
            "built",
            n=1,
            lineterm="",
        )
        pytest.fail(
            "\n".join(itertools.islice(diff, 40))
            + "\nIf the change is intended: UPDATE_GOLDEN=1 .venv/bin/pytest tests/test_golden.py"
        )
