"""One exception family. The CLI turns these into one-line messages; nothing else catches them."""

from __future__ import annotations

from pathlib import Path


def shown_dir(folder: Path | str) -> str:
    """A folder as a command typed here would name it: relative to the current folder when
    inside it (a send keeps its issue folder's absolute path)."""
    try:
        return Path(folder).relative_to(Path.cwd()).as_posix()
    except ValueError:
        return Path(folder).as_posix()


class NewsletterError(Exception):
    """A problem the user can fix: carries the file and line it is about, when there is one."""

    def __init__(self, message: str, path: Path | str | None = None, line: int | None = None):
        super().__init__(message)
        self.message = message
        self.path = Path(path) if path is not None else None
        self.line = line

    def __str__(self) -> str:
        if self.path is None:
            return self.message
        where = str(self.path) if self.line is None else f"{self.path}:{self.line}"
        return f"{where}: {self.message}"


class ContentError(NewsletterError):
    """A brief or an issue manifest cannot be read."""


class TemplateError(NewsletterError):
    """A template does not render or does not compile to HTML."""


class SettingsError(NewsletterError):
    """A setting in the environment or .env is missing or invalid."""


class StoreError(NewsletterError):
    """The subscriber store refused an operation or input (CSV import, address)."""


class DeliveryError(NewsletterError):
    """A send cannot start or cannot go on (SMTP login, TLS, connection)."""


class ArchiveError(NewsletterError):
    """The public archive cannot be built or changed as asked."""
