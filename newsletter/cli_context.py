"""What every command receives: the settings file, settings loaded on first use."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import click

from .config import Settings, load_settings
from .errors import StoreError
from .store import not_a_file, set_aside_instead


@dataclass
class AppContext:
    env_file: Path
    env_file_given: bool = False
    _settings: Settings | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = load_settings(self.env_file, required=self.env_file_given)
            for warning in self._settings.unknown:
                click.echo(f"warning: {warning}", err=True)
        return self._settings


pass_app = click.make_pass_decorator(AppContext)


def _issue_folder(ctx: click.Context, param: click.Parameter, value: Path | None) -> Path | None:
    # issues/2017-11/issue.toml names the issue as well as its folder does
    if value is None:
        return None
    return value.parent if value.name == "issue.toml" and value.is_file() else value


# An issue folder; a missing or wrong one is explained by content.not_an_issue when read.
issue_dir_argument = click.argument(
    "issue_dir", type=click.Path(path_type=Path), callback=_issue_folder
)
optional_issue_dir_argument = click.argument(
    "issue_dir", type=click.Path(path_type=Path), callback=_issue_folder, required=False
)


def issue_id_from(value: str) -> str:
    """An issue id, also when given as its folder (`issues/2017-11`, as `send` and `build`
    take it) or its manifest: the id is the folder's name."""
    path = Path(value)
    if path.name == "issue.toml":
        path = path.parent
    return path.name if len(path.parts) > 1 else value


def as_issue_id(ctx: click.Context, param: click.Parameter, value: str) -> str:
    """issue_id_from, as a click callback."""
    return issue_id_from(value)


def need_db(settings: Settings, fix: str = "'subscribers import' or 'add' makes a new one") -> None:
    """For a command that reads or changes the list or a send: no database means it runs in
    another folder than the one holding newsletter.db (NEWSLETTER_DB is relative). Making an
    empty one there would answer falsely ("not sent", no subscribers) and leave a stray file
    with its own signing secret."""
    if isinstance(settings.db_path, Path) and not settings.db_path.is_file():  # not a URL
        copied = set_aside_instead(settings.db_path)
        if copied is not None:
            raise copied
        if settings.db_path.is_dir():
            raise not_a_file(settings.db_path)
        raise StoreError(
            "no database here; run this in the folder that holds it, or set NEWSLETTER_DB "
            f"to its path ({fix})",
            settings.db_path.absolute(),
        )
