"""`newsletter build` and `newsletter check`."""

from __future__ import annotations

from pathlib import Path

import click

from .build import Build, build_issue, write_build
from .checks import Level
from .cli_context import AppContext, issue_dir_argument, pass_app
from .exits import Exit
from .render import Templates

strict_option = click.option(
    "--strict", is_flag=True, help="Treat a brief missing in one language as an error."
)


def format_table(build: Build) -> str:
    rows = [("edition", "HTML bytes", "HTML part (encoded)", "message bytes", "warnings")]
    for e in build.editions:
        warnings = sum(1 for f in e.findings if f.level is Level.WARNING)
        errors = sum(1 for f in e.findings if f.level is Level.ERROR)
        note = str(warnings) + (f", {errors} error{'s' * (errors > 1)}" if errors else "")
        rows.append(
            (e.name, f"{len(e.html.encode()):,}", f"{e.html_part_bytes:,}", f"{len(e.eml):,}", note)
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for n, row in enumerate(rows):
        cells = [
            c.ljust(w) if i in (0, 4) else c.rjust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _findings(build: Build) -> None:
    for finding in build.findings:
        click.echo(str(finding), err=finding.level is Level.ERROR)


def _not_ready(build: Build) -> str | None:
    """What `send` would refuse although it is only a warning while composing (placeholder
    text): said after the findings, so that `check` never says "ok" to an issue `send`
    refuses."""
    blocking = [f for f in build.findings if f.blocks_send and f.level is not Level.ERROR]
    if not blocking:
        return None
    first = blocking[0]
    return (
        f"not ready to send: {len(blocking)} warning(s) above stop a real send, first: "
        f"{first.edition}: {first.message}"
    )


def _build(app: AppContext, issue_dir: Path, strict: bool) -> Build:
    return build_issue(
        issue_dir, app.settings.identity, Templates(app.settings.templates_dir), strict=strict
    )


@click.command()
@issue_dir_argument
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    help="Output folder (default: build/<issue-id>).",
)
@strict_option
@pass_app
def build(app: AppContext, issue_dir: Path, out: Path | None, strict: bool) -> None:
    """Build the en, fr and bilingual editions of an issue: HTML, text and .eml."""
    result = _build(app, issue_dir, strict)
    out = out or Path("build") / result.issue.id
    write_build(result, out)
    click.echo(format_table(result))
    _findings(result)
    click.echo(f"wrote {len(result.editions) * 3} files to {out}/")
    if result.has_errors:
        raise SystemExit(Exit.INCOMPLETE)
    if note := _not_ready(result):
        click.echo(note)


@click.command()
@issue_dir_argument
@strict_option
@pass_app
def check(app: AppContext, issue_dir: Path, strict: bool) -> None:
    """Run the build's checks without writing anything."""
    result = _build(app, issue_dir, strict)
    click.echo(format_table(result))
    _findings(result)
    if result.has_errors:
        raise SystemExit(Exit.INCOMPLETE)
    click.echo(_not_ready(result) or "ok")
