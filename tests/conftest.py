"""Shared fixtures: a copy of the demo content, clean settings, the CLI as a user runs it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from newsletter.config import Settings, load_settings

ROOT = Path(__file__).resolve().parent.parent
DEMO_ISSUE = "2017-11"


def clean_env(**extra: str) -> dict[str, str]:
    """The process environment without any NEWSLETTER_ setting of the developer's."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
    env.update(extra)
    return env


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder holding a copy of the demo content, as the current directory."""
    shutil.copytree(ROOT / "issues", tmp_path / "issues")
    monkeypatch.chdir(tmp_path)
    for key in list(os.environ):
        if key.startswith("NEWSLETTER_"):
            monkeypatch.delenv(key)
    return tmp_path


@pytest.fixture
def settings(workdir: Path) -> Settings:
    return load_settings(None, environ={"NEWSLETTER_DB": str(workdir / "test.db")})


def run_cli(*args: str, cwd: Path, env: dict[str, str] | None = None, input: str | None = None):
    """Run `python -m newsletter ARGS` in a subprocess, as a user would."""
    return subprocess.run(
        [sys.executable, "-m", "newsletter", *args],
        cwd=cwd,
        env=env or clean_env(),
        capture_output=True,
        text=True,
        input=input,
        timeout=120,
    )


@pytest.fixture
def cli(workdir: Path):
    def run(*args: str, **env: str):
        return run_cli(*args, cwd=workdir, env=clean_env(**env))

    return run
