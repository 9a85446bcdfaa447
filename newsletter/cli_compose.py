"""`newsletter new brief|issue` and `newsletter compose`."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import click

from .compose import new_brief as scaffold_brief
from .compose import past_issues, unused_briefs, write_issue
from .errors import ContentError

issues_option = click.option(
    "--issues-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("issues"),
    show_default=True,
    help="Folder holding briefs/ and one folder per issue.",
)
date_option = click.option(
    "--date",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    help="Date of the issue (default: today).",
)
id_option = click.option("--id", "issue_id", help="Folder name of the issue (default: its date).")


@click.group()
def new() -> None:
    """Scaffold a brief or an issue."""


@new.command("brief")
@click.argument("slug")
@click.option("--lang", type=click.Choice(["en", "fr"]), help="Only this language (default: both).")
@issues_option
def new_brief(slug: str, lang: str | None, issues_dir: Path) -> None:
    """Create issues/briefs/SLUG.en.md and SLUG.fr.md to fill in."""
    fresh = not issues_dir.exists()
    made = scaffold_brief(issues_dir, slug, (lang,) if lang else ("en", "fr"), dt.date.today())
    _say_if_new(issues_dir, fresh)
    for path in made:
        click.echo(f"created {path}")


def _say_if_new(issues_dir: Path, fresh: bool) -> None:
    """A first brief or issue started the content folder: say where, in case this is not
    the project's folder (the command was run from elsewhere)."""
    if fresh:
        click.echo(
            f"no {issues_dir}/ folder was here ({Path.cwd()}): started one; run from your "
            "project's folder, or give --issues-dir, if that is not what you meant"
        )


def _next_issue(issues_dir: Path, date: dt.datetime | None, issue_id: str | None, slugs):
    day = date.date() if date else dt.date.today()
    previous = past_issues(issues_dir)
    number = max((p.number for p in previous), default=0) + 1
    return write_issue(issues_dir, issue_id or day.isoformat(), number, day, slugs)


@new.command("issue")
@issues_option
@date_option
@id_option
def new_issue(issues_dir: Path, date: dt.datetime | None, issue_id: str | None) -> None:
    """Create an empty issue manifest to fill in."""
    fresh = not issues_dir.exists()
    manifest = _next_issue(issues_dir, date, issue_id, [])
    _say_if_new(issues_dir, fresh)
    click.echo(f"created {manifest}")


@click.command()
@issues_option
@date_option
@id_option
def compose(issues_dir: Path, date: dt.datetime | None, issue_id: str | None) -> None:
    """Create the next issue, pre-selecting the briefs dated since the last issue (up to
    --date) that no issue has used yet, oldest first: reorder or trim them in issue.toml."""
    day = date.date() if date else dt.date.today()
    fresh, last = unused_briefs(issues_dir, until=day)
    since = f"since issue {last.number} ({last.date})" if last else "so far"
    if not fresh:
        raise ContentError(
            f"no brief dated {since} is left for a new issue; write one with "
            "'newsletter new brief SLUG'",
            issues_dir / "briefs",
        )
    manifest = _next_issue(issues_dir, date, issue_id, [b.slug for b in fresh])
    click.echo(f"created {manifest} with {len(fresh)} brief(s) dated {since}:")
    for brief in fresh:
        langs = "+".join(brief.languages)
        click.echo(f"  {brief.date}  {brief.slug}  [{langs}]")
    click.echo("Reorder or trim the list, write the subject and intro, then build it.")
