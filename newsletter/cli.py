"""Command line: the only place that chains the stages. Errors become one-line messages here."""

from __future__ import annotations

import importlib
import sqlite3
import sys
from pathlib import Path

import click

from .cli_context import AppContext
from .errors import NewsletterError
from .exits import EXIT_TABLE, Exit
from .stopping import Terminated
from .store.target import PgUrl
from .subscribers import SqliteStore

# name -> (module, attribute, summary). A command's module is imported only when that
# command runs: `build` then pays for neither DKIM, DNS and SMTP nor the web servers, and
# `--help` for none of them. The summaries are the first sentence of each command's own
# help, repeated here for `--help` (tests/test_cli.py holds them equal).
COMMANDS = {
    "archive": (
        "cli_archive",
        "archive",
        "The public archive: a static site of every sent issue, with a feed per language.",
    ),
    "bounces": (
        "cli_bounces",
        "bounces",
        "Bounces, complaints and mailto unsubscribes: read them, record them, list them.",
    ),
    "build": (
        "cli_build",
        "build",
        "Build the en, fr and bilingual editions of an issue: HTML, text and .eml.",
    ),
    "check": ("cli_build", "check", "Run the build's checks without writing anything."),
    "compose": (
        "cli_compose",
        "compose",
        "Create the next issue, pre-selecting the briefs dated since the last issue (up to "
        "--date) that no issue has used yet, oldest first: reorder or trim them in issue.toml.",
    ),
    "db": (
        "cli_db",
        "db",
        "The database NEWSLETTER_DB names: create or upgrade its schema, copy a list into it.",
    ),
    "due": (
        "cli_schedule",
        "due",
        "Start the scheduled sends whose time has come and retry the deferred messages due.",
    ),
    "new": ("cli_compose", "new", "Scaffold a brief or an issue."),
    "preview": (
        "cli_preview",
        "preview",
        "Preview ISSUE_DIR in a browser: each edition at desktop and phone width, the text "
        "part, the inbox headers and the checks.",
    ),
    "schedule": ("cli_schedule", "schedule", "Scheduled sends: list them, cancel one."),
    "send": (
        "cli_send",
        "send",
        "Send an issue: each active subscriber gets the edition of their language.",
    ),
    "serve": (
        "cli_subscribers",
        "serve",
        "Run the web app (behind a reverse proxy in production): the public archive, the "
        "unsubscribe and preferences pages, and the signup pages /subscribe and /abonnement.",
    ),
    "signup-form": (
        "cli_signup",
        "signup_form",
        "Print the signup form as an HTML snippet to paste into another site.",
    ),
    "status": (
        "cli_status",
        "status",
        "Where the send of an issue stands: sent, pending, deferred, failed, uncertain.",
    ),
    "subscribers": (
        "cli_subscribers",
        "subscribers",
        "Keep the list: import, add, set, show, unsubscribe, reactivate, remove, list, export,"
        " count.",
    ),
}
# Subcommands that live in another module than their group: added when the group loads.
SUBCOMMANDS = {"subscribers": (("cli_signup", "show"),)}


def _load(module: str, attribute: str) -> click.Command:
    return getattr(importlib.import_module(f".{module}", __package__), attribute)


class _Group(click.Group):
    """Loads each command when it is used, and turns NewsletterError into
    `error: file:line: message`, exit status 2, no traceback."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return None
        module, attribute, _ = COMMANDS[cmd_name]
        command = _load(module, attribute)
        for sub_module, sub_attribute in SUBCOMMANDS.get(cmd_name, ()):
            sub = _load(sub_module, sub_attribute)
            if isinstance(command, click.Group) and sub.name not in command.commands:
                command.add_command(sub)
        return command

    def resolve_command(self, ctx: click.Context, args: list[str]):
        try:
            return super().resolve_command(ctx, args)
        except click.exceptions.NoSuchCommand as exc:  # click suggests from loaded commands
            raise click.exceptions.NoSuchCommand(
                exc.command_name, possibilities=list(COMMANDS), ctx=ctx
            ) from None

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        limit = formatter.width - 6 - max(map(len, COMMANDS))
        rows = [
            (name, click.Command(name, help=COMMANDS[name][2]).get_short_help_str(limit))
            for name in self.list_commands(ctx)
        ]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except NewsletterError as exc:
            click.echo(f"error: {exc}", err=True)
            ctx.exit(Exit.BAD_INPUT)
        except Terminated:  # SIGTERM before anything was sent: nothing to wind down
            click.echo("terminated", err=True)
            ctx.exit(Exit.TERMINATED)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            ctx.exit(Exit.INTERRUPTED)
        except sqlite3.OperationalError as exc:
            from .db import describe, is_busy  # here: not every command needs db

            if not is_busy(exc):
                app = ctx.obj if isinstance(ctx.obj, AppContext) else None
                where = app.settings.db_path if app is not None else "NEWSLETTER_DB"
                if not isinstance(where, Path | str) or isinstance(where, PgUrl):
                    where = "NEWSLETTER_DB"  # (a URL is never printed whole)
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
    if app._settings is None or not isinstance(app.settings.db_path, Path):
        return  # (the case-merging migration is SQLite's: a PostgreSQL list never had one)
    if not app.settings.db_path.is_file():
        return
    try:
        with SqliteStore(app.settings.db_path) as store:
            notes = store.merge_notes()
    except (NewsletterError, sqlite3.Error):
        return  # the command itself said what is wrong with the database
    for note in notes:
        click.echo(f"note: {note}", err=True)


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
