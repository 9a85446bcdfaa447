"""Every edition through Debian's SpamAssassin, local tests only: a score of 0 or less.

The rules that fire on a message's body and headers alone are the ones our templates can
earn or avoid (hidden text, colours, markup ratios); network tests (DNS blocklists,
Razor, DKIM lookups) are about the sending infrastructure, and need the network.
"""

from __future__ import annotations

import email
import email.policy
import mailbox
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from newsletter.build import build_issue
from newsletter.config import load_settings
from newsletter.render import Templates

from .conftest import DEMO_ISSUE, ROOT

SPAMASSASSIN = shutil.which("spamassassin")
# Locally the test may skip without the program; under CI (which installs it) it must run.
UNDER_CI = os.environ.get("CI", "").lower() not in ("", "0", "false")
pytestmark = pytest.mark.skipif(
    SPAMASSASSIN is None and not UNDER_CI,
    reason="needs Debian's spamassassin (bash .ci/run installs it)",
)
STATUS = re.compile(r"score=(-?\d+(?:\.\d+)?)\s+required=\S+\s+tests=(\S*)")


def spam_scores(messages: dict[str, bytes], home: Path) -> dict[str, tuple[float, list[str]]]:
    """name -> (score, rules that fired), from one run of `spamassassin -L -t` over an mbox."""
    assert SPAMASSASSIN, "spamassassin is not installed: apt-get install spamassassin"
    box_path = home / "editions.mbox"
    box = mailbox.mbox(box_path)
    for name, raw in messages.items():
        msg = email.message_from_bytes(raw, policy=email.policy.compat32)
        msg["X-Edition"] = name
        box.add(msg)
    box.close()
    result = subprocess.run(
        [SPAMASSASSIN, "-L", "-t", "--mbox", "--cf=use_bayes 0", "--cf=bayes_auto_learn 0"],
        stdin=box_path.open("rb"),
        capture_output=True,
        env={**os.environ, "HOME": str(home)},  # nothing learnt or written in the real home
        timeout=300,
        check=True,
    )
    out_path = home / "scored.mbox"
    out_path.write_bytes(result.stdout)
    scores = {}
    for msg in mailbox.mbox(out_path):
        status = " ".join(str(msg.get("X-Spam-Status") or "").split())
        found = STATUS.search(status)
        assert found, f"no X-Spam-Status in spamassassin's output: {result.stderr[-500:]!r}"
        scores[str(msg["X-Edition"])] = (float(found[1]), found[2].split(","))
    return scores


def test_every_edition_scores_zero_or_less(tmp_path: Path) -> None:
    settings = load_settings(None, environ={})
    build = build_issue(ROOT / "issues" / DEMO_ISSUE, settings.identity, Templates())
    scores = spam_scores({e.name: e.eml for e in build.editions}, tmp_path)
    assert sorted(scores) == ["bilingual", "en", "fr"]
    for name, (score, rules) in scores.items():
        assert "HTML_FONT_LOW_CONTRAST" not in rules, name  # the preheader is hidden honestly
        assert score <= 0, f"{name}: {score} ({', '.join(rules)})"
