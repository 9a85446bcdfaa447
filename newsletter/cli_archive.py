"""`newsletter archive build|publish|unpublish`: the public web archive, thin on top of
archive/site.py."""

from __future__ import annotations

from pathlib import Path

import click

from .archive.site import SiteBuild, build_site, publish, unpublish
from .cli_context import AppContext, issue_id_from, need_db, pass_app

# The archive shows what the database says was sent or published: run elsewhere, an empty
# one made there would rebuild the site with no issue at all.
NEED_DB = "for a new list, 'newsletter db migrate' makes one"

out_option = click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=None,
    help="Folder of the site [default: NEWSLETTER_ARCHIVE_DIR, or site].",
)
issues_option = click.option(
    "--issues",
    "--issues-dir",  # as `new` and `compose` name it
    "issues_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("issues"),
    show_default=True,
    help="Folder holding the issue folders (and briefs/).",
)


def _report(result: SiteBuild) -> None:
    shown = ", ".join(result.issues[:5]) + (" ..." if len(result.issues) > 5 else "")
    click.echo(
        f"wrote {result.files} files to {result.out_dir}/: "
        f"{len(result.issues)} issue(s) on the web" + (f" ({shown})" if shown else "")
    )
    for issue_id, lang in result.corrected:
        click.echo(f"{issue_id} ({lang}) changed since it was published: its feed entry is updated")


@click.group()
def archive() -> None:
    """The public archive: a static site of every sent issue, with a feed per language."""


@archive.command("build")
@out_option
@issues_option
@pass_app
def build_(app: AppContext, out: Path | None, issues_dir: Path) -> None:
    """Write the site: home page, an index and a feed per language, a page per issue and
    edition, sitemap.xml. Only issues that were sent, or published, appear."""
    need_db(app.settings, NEED_DB)
    _report(build_site(app.settings, issues_dir, out))


def _where(issue: str, issues_dir: Path) -> tuple[str, Path]:
    """The issue id, and the folder holding it: an issue given as its folder
    (`/srv/news/issues/2017-11`) is looked for there, not under --issues-dir."""
    issue_id = issue_id_from(issue)
    folder = Path(issue)
    if folder.name == "issue.toml":
        folder = folder.parent
    if len(folder.parts) > 1 and (folder / "issue.toml").is_file():
        return issue_id, folder.parent
    return issue_id, issues_dir


@archive.command("publish")
@click.argument("issue")
@click.option("--unsent", is_flag=True, help="Publish an issue that was never sent.")
@out_option
@issues_option
@pass_app
def publish_(app: AppContext, issue: str, unsent: bool, out: Path | None, issues_dir: Path) -> None:
    """Put an issue on the web (one taken off, or with --unsent one never sent), then rebuild."""
    need_db(app.settings, NEED_DB)
    issue_id, issues_dir = _where(issue, issues_dir)
    result = publish(app.settings, issue_id, issues_dir, out, unsent=unsent)
    click.echo(f"published {issue_id}")
    _report(result)


@archive.command("unpublish")
@click.argument("issue")
@out_option
@issues_option
@pass_app
def unpublish_(app: AppContext, issue: str, out: Path | None, issues_dir: Path) -> None:
    """Take an issue off the web (sent or not), then rebuild."""
    need_db(app.settings, NEED_DB)
    issue_id, issues_dir = _where(issue, issues_dir)
    result = unpublish(app.settings, issue_id, issues_dir, out)
    click.echo(f"took {issue_id} off the web")
    _report(result)
