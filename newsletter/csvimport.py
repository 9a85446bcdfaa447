"""Read a subscriber CSV (as spreadsheets export it) into rows to import and rows rejected.

The file is read and checked whole before anything touches the store: a file that cannot be
read at all raises StoreError and nothing is imported; a bad row is rejected with its line.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path

from .errors import StoreError
from .normalise import MAX_NAME, check_email, clean_name, email_key, parse_language
from .subscribers import Row, Status

HEADER_HINT = "the first row must name the columns: email,name,language"

# A value starting with one of these is a formula to a spreadsheet, so `subscribers export`
# writes a `'` before it (CSV injection); import takes that `'` off again.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")

# Header names people actually use, in both languages, mapped to ours.
_COLUMN_NAMES = {
    "email": "email", "e-mail": "email", "mail": "email", "email address": "email",
    "courriel": "email", "adresse courriel": "email", "adresse": "email",
    "name": "name", "nom": "name", "full name": "name", "nom complet": "name",
    "language": "language", "lang": "language", "langue": "language",
    "status": "status", "statut": "status",
}  # fmt: skip

# What a `status` column may say (ours, as `export` writes it, and common words), in both
# languages. Anything else rejects the row: a file that says something we cannot read about
# someone must not make them an active subscriber.
_STATUS_WORDS = {
    Status.ACTIVE: ("active", "actif", "subscribed", "abonné", "abonne"),
    Status.UNSUBSCRIBED: ("unsubscribed", "désabonné", "desabonne"),
    Status.BOUNCED: ("bounced", "cleaned"),
    Status.COMPLAINED: ("complained",),
}


@dataclass(frozen=True)
class Rejected:
    line: int
    reason: str


@dataclass(frozen=True)
class Duplicate:
    line: int
    earlier_line: int
    email: str


@dataclass(frozen=True)
class ParsedFile:
    path: Path
    rows: list[Row] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)
    duplicates: list[Duplicate] = field(default_factory=list)
    unread: list[Rejected] = field(default_factory=list)  # header cells that look meant


def read_csv(path: Path) -> ParsedFile:
    """Parse `path`; StoreError (naming the file, and the line when there is one) when the
    file as a whole is unusable: unreadable, not UTF-8, empty, no email column."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise StoreError(f"cannot read: {exc.strerror}", path) from None
    try:
        text = data.decode("utf-8-sig")  # Excel's "CSV UTF-8" starts with a BOM
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise StoreError(
            f"not UTF-8 (byte 0x{data[exc.start]:02X}); save it as 'CSV UTF-8' and try again",
            path,
            line,
        ) from None
    if not text.strip():
        raise StoreError(f"the file is empty; {HEADER_HINT}", path)
    return _parse(path, text)


def unguard(value: str) -> str:
    """`value` without the `'` that an export puts before a would-be formula: `'=1` -> `=1`."""
    if value.startswith("'") and value[1:2] in FORMULA_STARTS:
        return value[1:]
    return value


def _separator(header_line: str) -> str:
    """`;` where the spreadsheet's locale uses decimal commas (French), else `,` (or a tab)."""
    counts = {sep: header_line.count(sep) for sep in (",", ";", "\t")}
    best = max(counts, key=lambda sep: counts[sep])
    return best if counts[best] else ","


def _parse(path: Path, text: str) -> ParsedFile:
    first_line = next(line for line in text.splitlines() if line.strip())
    reader = csv.reader(
        io.StringIO(text, newline=""), delimiter=_separator(first_line), strict=True
    )
    parsed = ParsedFile(path)
    columns: dict[str, int] | None = None
    width = 0
    by_key: dict[str, int] = {}  # email key -> index in parsed.rows
    line = 1
    while True:
        start = reader.line_num + 1  # a quoted field may span lines: report where a row begins
        try:
            record = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            if "end of data" in str(exc):  # an opening quote never closed: the rest is lost
                raise StoreError(
                    "a quote opened on this line is never closed; close it or remove it",
                    path,
                    start,
                ) from None
            parsed.rejected.append(
                Rejected(
                    start, f"malformed CSV ({exc}); quote whole values, doubling any quote inside"
                )
            )
            continue
        line = start
        record = [unguard(value) for value in record]
        if not any(value.strip() for value in record):
            continue
        if columns is None:
            columns = _header(path, line, record)
            width = len(record)
            parsed.unread.extend(_unread(columns, record, line))
            continue
        if len(record) > width and any(value.strip() for value in record[width:]):
            parsed.rejected.append(
                Rejected(
                    line,
                    f"{len(record)} fields but the header has {width}; "
                    "quote values that contain the separator",
                )
            )
            continue
        row = _row(record, columns, line)
        if isinstance(row, Rejected):
            parsed.rejected.append(row)
            continue
        key = email_key(row.email)
        if key in by_key:  # last one wins: the later row is the newer intention
            earlier = parsed.rows[by_key[key]]
            assert earlier.line is not None
            parsed.duplicates.append(Duplicate(line, earlier.line, row.email))
            parsed.rows[by_key[key]] = row
        else:
            by_key[key] = len(parsed.rows)
            parsed.rows.append(row)
    if not (parsed.rows or parsed.rejected):
        raise StoreError(
            "the file has a header but no subscribers; add one per line below it", path
        )
    parsed.rows.sort(key=lambda row: row.line or 0)
    return parsed


def _header(path: Path, line: int, record: list[str]) -> dict[str, int]:
    columns: dict[str, int] = {}
    for index, value in enumerate(record):
        name = _COLUMN_NAMES.get(" ".join(value.strip().casefold().split()))
        if name is None:
            continue  # other columns (joined_at, left_at... from an export) are ignored
        if name in columns:
            raise StoreError(f"two columns mean {name!r}; keep one", path, line)
        columns[name] = index
    if "email" not in columns:
        found = ", ".join(repr(value.strip()) for value in record)
        raise StoreError(f"no email column (found {found}); {HEADER_HINT}", path, line)
    return columns


# Words that give away a column meant as ours, under a header we do not know.
_HINTS = {"name": ("name", "nom", "prénom"), "language": ("lang",)}


def _unread(columns: dict[str, int], header: list[str], line: int) -> list[Rejected]:
    """Header cells that seem to mean `name` or `language`, when no column has that name:
    without a word, everyone would get the default language and no name."""
    notes = []
    for ours, words in _HINTS.items():
        if ours in columns:
            continue
        for value in header:
            if any(word in value.casefold() for word in words):
                hint = f"column {value.strip()!r} is not read; name it {ours} to import it"
                notes.append(Rejected(line, hint))
                break
    return notes


def _row(record: list[str], columns: dict[str, int], line: int) -> Row | Rejected:
    def value(name: str) -> str | None:
        index = columns.get(name)
        return record[index].strip() if index is not None and index < len(record) else None

    address = value("email") or ""
    if not address:
        return Rejected(line, "no e-mail address")
    try:
        email = check_email(address)
        language = parse_language(value("language"))
    except ValueError as exc:
        return Rejected(line, str(exc))
    said = (value("status") or "").casefold()
    status = next((st for st, words in _STATUS_WORDS.items() if said in words), None)
    if said and status is None:
        return Rejected(
            line,
            f"unknown status {value('status')!r}; use active, unsubscribed, bounced or "
            "complained (an export of the list says which)",
        )
    name = value("name")
    if name and len(clean_name(name)) > MAX_NAME:  # as the web app's preferences page
        return Rejected(
            line, f"the name is {len(clean_name(name))} characters long; keep it to {MAX_NAME}"
        )
    left = None if status is Status.ACTIVE else status  # active: as a row with no status
    return Row(email=email, name=name or None, language=language, line=line, status=left)
