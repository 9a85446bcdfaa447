"""What an editor meets while composing: French titles, YAML mistakes, the scaffolds,
subjects cut in an inbox, alt text, template mistakes, and the output folder's rights."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from newsletter.build import build_issue, write_build
from newsletter.config import load_settings
from newsletter.render import Templates

from .conftest import DEMO_ISSUE


@pytest.fixture
def demo_build(workdir: Path):
    settings = load_settings(None, environ={})
    return build_issue(workdir / "issues" / DEMO_ISSUE, settings.identity, Templates())


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o755), (0o027, 0o750), (0o002, 0o775)])
def test_the_output_folder_follows_the_umask(demo_build, workdir: Path, umask, mode) -> None:
    old = os.umask(umask)
    try:
        out = write_build(demo_build, workdir / "build" / "x")
        write_build(demo_build, out)  # a rebuild replaces it with the same rights
    finally:
        os.umask(old)
    assert stat.S_IMODE(out.stat().st_mode) == mode
    assert stat.S_IMODE((out / "en.html").stat().st_mode) == mode & 0o666
