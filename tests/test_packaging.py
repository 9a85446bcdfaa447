"""The wheel as `pip install newsletter` would install it: it carries its templates, and runs
from a folder that holds only the editor's content."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from newsletter.schema import MIGRATIONS

from .conftest import ROOT, clean_env, run_cli

pytest.importorskip("setuptools.command.bdist_wheel")  # setuptools >= 70.1 builds wheels


def _pip(*args: str, cwd: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q", *args],
        cwd=cwd, check=True, capture_output=True, timeout=300,
    )  # fmt: skip


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project built into a wheel (from a copy of its sources) and installed in a folder."""
    source = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    for folder in ("newsletter", "templates"):
        shutil.copytree(
            ROOT / folder, source / folder, ignore=shutil.ignore_patterns("__pycache__")
        )
    wheels = tmp_path_factory.mktemp("wheels")
    _pip("wheel", ".", "--no-deps", "--no-build-isolation", "--no-index", "-w", str(wheels),
         cwd=source)  # fmt: skip
    (wheel,) = wheels.glob("newsletter-*.whl")
    site = tmp_path_factory.mktemp("site")
    _pip("install", "--no-deps", "--no-index", "--target", str(site), str(wheel), cwd=site)
    return site


def test_the_wheel_carries_every_template(installed: Path) -> None:
    shipped = {p.relative_to(ROOT / "templates") for p in (ROOT / "templates").rglob("*.*")}
    inside = installed / "newsletter" / "templates"
    assert {p.relative_to(inside) for p in inside.rglob("*.*")} == shipped


def test_the_wheel_carries_every_module(installed: Path) -> None:
    """Every subpackage, not only those pyproject.toml happened to list when it was written:
    `send` imports newsletter.bounces, and a wheel without it cannot send at all."""
    shipped = {p.relative_to(ROOT).as_posix() for p in (ROOT / "newsletter").rglob("*.py")}
    inside = {p.relative_to(installed).as_posix() for p in (installed / "newsletter").rglob("*.py")}
    assert shipped - inside == set()
    env = clean_env(PYTHONPATH=str(installed))
    probe = subprocess.run(
        [sys.executable, "-c", "import newsletter.campaign, newsletter.cli_bounces"],
        cwd=installed, env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert probe.returncode == 0, probe.stderr


def test_the_installed_tool_builds_with_its_own_templates(installed: Path, workdir: Path) -> None:
    env = clean_env(PYTHONPATH=str(installed))  # ahead of the checkout's editable install
    probe = subprocess.run(
        [sys.executable, "-c", "import newsletter.config as c; print(c.SHIPPED_TEMPLATES)"],
        cwd=workdir, env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert Path(probe.stdout.strip()) == installed / "newsletter" / "templates"
    result = run_cli("build", "issues/2017-11", cwd=workdir, env=env)
    assert result.returncode == 0, result.stderr
    html = (workdir / "build" / "2017-11" / "fr.html").read_text("utf-8")
    assert html.startswith("<!DOCTYPE html>") and 'lang="fr-CA"' in html
    assert (installed / "newsletter" / "signup" / "pages.py").is_file()  # subpackages too
    assert (installed / "newsletter" / "bounces" / "book.py").is_file()
    migrations = installed / "newsletter" / "store" / "migrations"
    assert (migrations / "postgres" / "0010_schema.sql").is_file()
    assert len(list((migrations / "sqlite").glob("*.sql"))) == len(MIGRATIONS)
