"""Command line: the only place that chains the stages. Errors become one-line messages here."""

from __future__ import annotations

import sqlite3
import sys
from pathlib import Path

import click

from .cli_archive import archive
from .cli_bounces import bounces
from .cli_build import build, check
from .cli_compose import compose, new
from .cli_context import AppContext
from .cli_preview import preview
from .cli_send import due, schedule, send, status
from .cli_signup import show, signup_form
from .cli_subscribers import serve, subscribers
from .db import describe, is_busy
from .errors import NewsletterError
from .exits import EXIT_TABLE, Exit
from .subscribers import SqliteStore


class _Group(click.Group):
    """Turns NewsletterError into `error: file:line: message`, exit status 2, no traceback."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except NewsletterError as exc:
            click.echo(f"error: {exc}", err=True)
            ctx.exit(Exit.BAD_INPUT)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            ctx.exit(Exit.INTERRUPTED)
        except sqlite3.OperationalError as exc:
            if not is_busy(exc):
                app = ctx.obj if isinstance(ctx.obj, AppContext) else None
                where = app.settings.db_path if app is not None else "NEWSLETTER_DB"
                click.echo(f"error: {describe(exc, where)}", err=True)
                ctx.exit(Exit.BAD_INPUT)
            click.echo(
                "error: the database is busy: another newsletter command is writing to it; "
                "run this again when that one ends",
                err=True,
            )
            ctx.exit(Exit.BAD_INPUT)


@click.group(
    cls=_Group, context_settings={"help_option_names": ["-h", "--help"]}, epilog=EXIT_TABLE
)
@click.option(
    "--env-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Settings file read before the environment (the environment wins). [default: .env]",
)
@click.pass_context
def main(ctx: click.Context, env_file: Path | None) -> None:
    """Bilingual newsletter: compose briefs, build editions, preview, keep subscribers, send."""
    ctx.obj = AppContext(env_file=env_file or Path(".env"), env_file_given=env_file is not None)
    ctx.call_on_close(lambda: _say_merges(ctx.obj))


def _say_merges(app: AppContext) -> None:
    """After a command that opened the database: what the case-merging migration merged,
    said once."""
    if app._settings is None or not app.settings.db_path.is_file():
        return
    try:
        with SqliteStore(app.settings.db_path) as store:
            notes = store.merge_notes()
    except (NewsletterError, sqlite3.Error):
        return  # the command itself said what is wrong with the database
    for note in notes:
        click.echo(f"note: {note}", err=True)


main.add_command(new)
main.add_command(compose)
main.add_command(build)
main.add_command(check)
main.add_command(preview)
main.add_command(subscribers)
main.add_command(serve)
main.add_command(signup_form)
subscribers.add_command(show)
main.add_command(send)
main.add_command(status)
main.add_command(due)
main.add_command(schedule)
main.add_command(archive)
main.add_command(bounces)


def run() -> None:
    """The console script: click's usage errors too become one line, `error: ...`."""
    try:
        status = main.main(prog_name="newsletter", standalone_mode=False)
    except click.exceptions.NoArgsIsHelpError as exc:  # `newsletter` alone: the help
        click.echo(exc.ctx.get_help() if exc.ctx else main.get_help(click.Context(main)))
        sys.exit(0)
    except click.UsageError as exc:
        where = exc.ctx.command_path if exc.ctx else "newsletter"
        click.echo(f"error: {exc.format_message().rstrip('.')}; see '{where} --help'", err=True)
        sys.exit(Exit.BAD_INPUT)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.Abort:
        click.echo("Aborted!", err=True)
        sys.exit(1)
    sys.exit(status if isinstance(status, int) else 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(run())
