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


# --- PostgreSQL: one private server per session, one database per test ----------------------

PG_TEMPLATE = "nl_template"


@pytest.fixture(scope="session")
def pg_cluster():
    """A private PostgreSQL (tests/pg_server.py) with a migrated template database. Without
    PostgreSQL here the tests that need it skip, except in CI, where they fail."""
    from newsletter import store

    from . import pg_server

    why = pg_server.available()
    if why is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL is needed in CI: {why}")
        pytest.skip(f"no PostgreSQL here: {why}")
    cluster = pg_server.Cluster()
    try:
        store.connect(cluster.create(PG_TEMPLATE)).close()
        yield cluster
    finally:
        cluster.close()


@pytest.fixture
def pg_url(pg_cluster):
    """A database of its own, cloned from the migrated template (a file copy)."""
    import secrets

    from newsletter.store import PgUrl

    name = f"t_{secrets.token_hex(6)}"
    url = pg_cluster.create(name, template=PG_TEMPLATE)
    yield PgUrl(url)
    pg_cluster.drop(name)


@pytest.fixture(params=["sqlite", "postgres"])
def db_where(request: pytest.FixtureRequest, tmp_path: Path):
    """The database of a conformance test: a SQLite file, then a PostgreSQL database."""
    if request.param == "sqlite":
        return tmp_path / "news.db"
    return request.getfixturevalue("pg_url")


@pytest.fixture(scope="session")
def browser():
    """One Debian chromium for every browser test (each test takes its own context)."""
    from .browser import CHROMIUM, CHROMIUM_FLAGS

    if not CHROMIUM.exists():
        if os.environ.get("CI"):
            pytest.fail("Debian's chromium is missing; .ci/run installs it")
        pytest.skip("needs Debian's chromium")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS, headless=True
        )
        yield launched
        launched.close()
