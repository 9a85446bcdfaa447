"""`newsletter archive build|publish|unpublish`: the public web archive, thin on top of
archive/site.py."""

from __future__ import annotations

from pathlib import Path

import click

from .archive.site import SiteBuild, build_site, publish, unpublish
from .cli_context import AppContext, as_issue_id, pass_app

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
    _report(build_site(app.settings, issues_dir, out))


@archive.command("publish")
@click.argument("issue_id", callback=as_issue_id)
@click.option("--unsent", is_flag=True, help="Publish an issue that was never sent.")
@out_option
@issues_option
@pass_app
def publish_(
    app: AppContext, issue_id: str, unsent: bool, out: Path | None, issues_dir: Path
) -> None:
    """Put an issue on the web (one taken off, or with --unsent one never sent), then rebuild."""
    result = publish(app.settings, issue_id, issues_dir, out, unsent=unsent)
    click.echo(f"published {issue_id}")
    _report(result)


@archive.command("unpublish")
@click.argument("issue_id", callback=as_issue_id)
@out_option
@issues_option
@pass_app
def unpublish_(app: AppContext, issue_id: str, out: Path | None, issues_dir: Path) -> None:
    """Take an issue off the web (sent or not), then rebuild."""
    result = unpublish(app.settings, issue_id, issues_dir, out)
    click.echo(f"took {issue_id} off the web")
    _report(result)
