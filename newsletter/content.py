"""Read briefs (front matter + Markdown) and issue manifests into frozen values.

Everything is validated here, once: downstream code trusts a `Brief` and an `Issue`.
"""

from __future__ import annotations

import datetime as dt
import difflib
import re
import tomllib
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .errors import ContentError

LANGS = ("en", "fr")
BRIEFS_DIR = "briefs"
MANIFEST = "issue.toml"
SLUG_RE = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
FRONT_MATTER_KEYS = {"title", "date", "source", "link", "image", "tags"}
# What a manifest may hold, per table ("" = the top level): anything else is a typo that
# would be ignored ([bilingue], subjet), so it stops the build as a brief's unknown key does.
MANIFEST_KEYS = {
    "": ("number", "date", "briefs", "en", "fr", "bilingual"),
    "en": ("subject", "preheader", "intro"),
    "fr": ("subject", "preheader", "intro"),
    "bilingual": ("subject", "preheader"),
}


@dataclass(frozen=True)
class Image:
    src: str
    alt: str


@dataclass(frozen=True)
class BriefText:
    """One brief in one language."""

    lang: str
    title: str
    date: dt.date
    source: str
    link: str | None
    image: Image | None
    tags: tuple[str, ...]
    body: str  # Markdown
    path: Path
    body_line: int  # line of the file where the body starts, for messages


@dataclass(frozen=True)
class Brief:
    slug: str
    en: BriefText | None
    fr: BriefText | None

    def text(self, lang: str) -> BriefText | None:
        return self.en if lang == "en" else self.fr

    @property
    def languages(self) -> tuple[str, ...]:
        return tuple(lang for lang in LANGS if self.text(lang) is not None)

    @property
    def date(self) -> dt.date:
        return min(t.date for t in (self.en, self.fr) if t is not None)


@dataclass(frozen=True)
class IssueText:
    """What an issue says in one language."""

    subject: str
    preheader: str
    intro: str  # Markdown, may be empty


@dataclass(frozen=True)
class Issue:
    id: str
    path: Path  # the issue's folder
    number: int
    date: dt.date
    text: dict[str, IssueText]  # "en", "fr"
    briefs: tuple[Brief, ...]
    bilingual_subject: str | None  # optional [bilingual] overrides; else both joined
    bilingual_preheader: str | None


# Characters the templates cannot carry. Word writes a manual line break as U+000B and a
# page break as U+000C: in Markdown a line break inside a paragraph reads as a space, so
# both become a space. Every other control character (C0 but tab and line ends, DEL, C1) and
# the noncharacters U+FFFE and U+FFFF are refused with their line: they are invisible, MJML
# cannot take most of them, and a guess at what they stood for would hide a damaged file.
_AS_SPACE = str.maketrans({"\v": " ", "\f": " "})
_REFUSED = re.compile("[\x00-\x08\x0e-\x1f\x7f-\x9f\ufffe\uffff\ud800-\udfff]")


def _refused(char: str, where: str = "") -> str:
    """What is wrong with a refused character (`where`: " at column 4"), and what to do."""
    code = f"U+{ord(char):04X}"
    if "\x80" <= char <= "\x9f":
        return (
            f"invisible control character {code}{where}, often a Windows quote or dash read "
            "as Latin-1; type that character again"
        )
    if char in "\ufffe\uffff":
        return f"{code}{where} is no character (a stray byte-order mark?); delete it"
    if "\ud800" <= char <= "\udfff":
        return f"half a character ({code}){where}; write the whole character, not its escape"
    return f"invisible control character {code}{where}; delete it (it came with a paste?)"


def clean_text(value: str, path: Path, line: int | None, what: str = "") -> str:
    """`value` with Word's line and page breaks as spaces, or a ContentError at `line` for
    a character the templates cannot carry (see _REFUSED)."""
    value = value.translate(_AS_SPACE)
    bad = _REFUSED.search(value)
    if bad:
        raise ContentError(f"{what}{_refused(bad.group())}", path, line)
    return value


class _Loader(yaml.SafeLoader):
    """YAML where a plain value is text (or nothing, when empty): a brief holds no numbers or
    yes/no, and YAML 1.1 would read `title: No` as false, `title: 12:30` as 750 and
    `source: ON` as true. Dates are checked here, with their line."""


_Loader.yaml_implicit_resolvers = {
    key: [(tag, regexp) for tag, regexp in resolvers if tag == "tag:yaml.org,2002:null"]
    for key, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def read_text(path: Path) -> str:
    """A content file as text (UTF-8, BOM and CRLF tolerated), or a ContentError with its line."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ContentError(f"cannot read file ({exc.strerror})", path) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ContentError("not valid UTF-8; save the file as UTF-8", path, line) from None
    text = text.removeprefix("\ufeff").replace("\r\n", "\n").translate(_AS_SPACE)
    bad = _REFUSED.search(text)
    if bad:
        line = text.count("\n", 0, bad.start()) + 1
        column = bad.start() - text.rfind("\n", 0, bad.start())
        raise ContentError(_refused(bad.group(), f" at column {column}"), path, line)
    return text


def split_brief_name(path: Path) -> tuple[str, str]:
    """`slug.en.md` -> ("slug", "en"), or a ContentError saying what name is expected."""
    parts = path.name.split(".")
    if len(parts) != 3 or parts[2] != "md":
        raise ContentError(
            "a brief file is named SLUG.LANG.md, e.g. syria-ceasefire.fr.md; rename it", path
        )
    slug, lang = parts[0], parts[1]
    if lang not in LANGS:
        raise ContentError(f"unknown language suffix '.{lang}'; use .en.md or .fr.md", path)
    if not SLUG_RE.match(slug):
        fix = f" (e.g. {suggest_slug(slug)}.{lang}.md)" if suggest_slug(slug) else ""
        raise ContentError(
            f"slug '{slug}' must be lowercase letters, digits and hyphens; rename the file{fix}",
            path,
        )
    return slug, lang


def _quoted(line: str) -> str:
    """`key: value` with the value in double quotes, as YAML reads it literally."""
    key, _, value = line.partition(":")
    value = value.strip().replace("\\", "\\\\").replace('"', '\\"')
    return f'{key.strip()}: "{value}"'


def _yaml_problem(exc: yaml.YAMLError, front: list[str]) -> tuple[int, str]:
    """The file line and the message for a YAML error in the front matter `front` (whose
    first line is the file's line 2): what is wrong, at which column, and what to write.

    French punctuation is the usual cause: `title: Hydro-Québec : un contrat record` reads
    as a key `title: Hydro-Québec` holding a mapping."""
    problem = str(getattr(exc, "problem", None) or "invalid YAML")
    context = str(getattr(exc, "context", None) or "")
    mark = getattr(exc, "problem_mark", None)
    # Where the broken value starts: the opening bracket or quote, not where the parser
    # gave up (often the next line).
    if any(word in context for word in ("flow", "quoted", "alias", "anchor", "tag")):
        mark = getattr(exc, "context_mark", None) or mark
    if mark is None:
        return 2, f"{problem}; check the quotes and brackets"
    row, column = mark.line, mark.column + 1
    text = front[row] if row < len(front) else ""
    char = text[mark.column : mark.column + 1]
    quote_it = f"; quote the whole value: {_quoted(text)}" if ":" in text else ""
    if problem.startswith("mapping values are not allowed"):
        message = (
            f"the ': ' at column {column} cannot stand inside a value without quotes"
            f"{quote_it or '; put the value in double quotes'}"
        )
    elif "flow sequence" in context or "flow mapping" in context:
        end = "]" if "sequence" in context else "}"
        message = (
            f"the '{char}' at column {column} opens a {'list' if end == ']' else 'table'} "
            f"that is not closed; close it with '{end}' on this line, or, if the bracket is "
            f"part of the text, {(quote_it or '; quote the whole value')[2:]}"
        )
    elif "quoted scalar" in context:
        message = (
            f"the quote at column {column} is not closed; end the value with the same "
            f"quote ({char}) on this line"
        )
    elif char == "\t":
        message = f"a tab at column {column}; indent with spaces"
    elif "expected <block end>" in problem:
        message = f"text after a closing quote or bracket at column {column}{quote_it}"
    elif "cannot start any token" in problem or "alias" in context or "anchor" in context:
        message = f"a value cannot start with '{char}' (column {column}) without quotes{quote_it}"
    else:
        message = f"{problem} at column {column}; check the quotes and brackets{quote_it}"
    return row + 2, message


def read_brief_text(path: Path) -> BriefText:
    _, lang = split_brief_name(path)
    text = read_text(path)
    lines = text.split("\n")
    if not lines or lines[0].strip() != "---":
        raise ContentError("no front matter: start the file with a line '---'", path, 1)
    try:
        end = next(i for i in range(1, len(lines)) if lines[i].strip() in ("---", "..."))
    except StopIteration:
        raise ContentError(
            "front matter is not closed: add a line '---' after it", path, 1
        ) from None
    try:
        meta = yaml.load("\n".join(lines[1:end]), Loader=_Loader) or {}
    except yaml.YAMLError as exc:
        line, message = _yaml_problem(exc, lines[1:end])
        raise ContentError(f"broken front matter: {message}", path, line) from None
    if not isinstance(meta, dict):
        raise ContentError("front matter must be 'key: value' lines", path, 2)

    def line_of(key: str) -> int:
        for i in range(1, end):
            if lines[i].startswith(f"{key}:"):
                return i + 1
        return 1

    # What YAML escapes decode to ("\x1c" in double quotes) was not in the file itself.
    meta = {key: _clean_yaml(value, path, line_of(str(key)), f"'{key}' holds ")
            for key, value in meta.items()}  # fmt: skip
    unknown = sorted(set(map(str, meta)) - FRONT_MATTER_KEYS)
    if unknown:
        close = difflib.get_close_matches(unknown[0], FRONT_MATTER_KEYS, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise ContentError(
            f"unknown front matter key '{unknown[0]}'{hint}; allowed: "
            + ", ".join(sorted(FRONT_MATTER_KEYS)),
            path,
            line_of(unknown[0]),
        )
    for key in ("title", "date", "source"):
        if meta.get(key) in (None, ""):
            raise ContentError(f"missing '{key}' in the front matter; add '{key}: ...'", path, 2)
    for key in ("title", "date", "source", "link"):
        if meta.get(key) is not None and not isinstance(meta[key], str):
            # `title: [Breaking] news` is a list to YAML: brackets and braces need quotes
            line = line_of(key)
            raise ContentError(
                f"'{key}' must be one line of text; quote it: {_quoted(lines[line - 1])}",
                path,
                line,
            )
    date = meta["date"]
    if isinstance(date, dt.datetime):
        date = date.date()
    if not isinstance(date, dt.date):
        try:
            date = dt.date.fromisoformat(str(date))
        except ValueError:
            raise ContentError(
                f"invalid date '{meta['date']}'; write it as YYYY-MM-DD, e.g. 2017-11-11",
                path,
                line_of("date"),
            ) from None
    link = meta.get("link")
    if link is not None and not isinstance(link, str):
        raise ContentError("'link' must be a URL", path, line_of("link"))
    image = None
    if meta.get("image") is not None:
        img = meta["image"]
        if not isinstance(img, dict) or not img.get("src"):
            raise ContentError("'image' needs 'src' and 'alt' keys", path, line_of("image"))
        if img.get("alt") is None:  # alt: "" is a choice (decoration); no alt is not
            raise ContentError(
                "image has no 'alt' text; describe the picture for readers who cannot see "
                'it, or write alt: "" if it is only decoration',
                path,
                line_of("image"),
            )
        image = Image(src=str(img["src"]), alt=str(img["alt"]).strip())
    tags = meta.get("tags") or []
    if isinstance(tags, str):
        tags = [t.strip() for t in tags.split(",") if t.strip()]
    if not isinstance(tags, list):
        raise ContentError("'tags' must be a list, e.g. [syria, diplomacy]", path, line_of("tags"))
    return BriefText(
        lang=lang,
        title=str(meta["title"]).strip(),
        date=date,
        source=str(meta["source"]).strip(),
        link=link,
        image=image,
        tags=tuple(str(t) for t in tags),
        body="\n".join(lines[end + 1 :]).strip("\n"),
        path=path,
        body_line=end + 2,
    )


def _clean_yaml(value: Any, path: Path, line: int, what: str) -> Any:
    """Front matter with clean_text applied to every string, in lists and tables too."""
    if isinstance(value, str):
        return clean_text(value, path, line, what)
    if isinstance(value, list):
        return [_clean_yaml(item, path, line, what) for item in value]
    if isinstance(value, dict):
        return {key: _clean_yaml(item, path, line, what) for key, item in value.items()}
    return value


def read_briefs(briefs_dir: Path) -> dict[str, Brief]:
    """Every brief under `briefs_dir`, by slug."""
    texts: dict[str, dict[str, BriefText]] = {}
    if not briefs_dir.is_dir():
        return {}
    for path in sorted(briefs_dir.iterdir()):
        # editors' and tools' own files: hidden, backups (x.md~, #x.md#), a README
        if path.name.startswith((".", "#")) or path.name.endswith("~") or path.is_dir():
            continue
        if path.name.lower() in ("readme.md", "readme.txt"):
            continue
        slug, _ = split_brief_name(path)
        bt = read_brief_text(path)
        texts.setdefault(slug, {})[bt.lang] = bt
    return {slug: Brief(slug, t.get("en"), t.get("fr")) for slug, t in texts.items()}


def briefs_dir_for(issue_dir: Path) -> Path:
    """Briefs live beside the issue folders: issues/briefs/."""
    if issue_dir.name in ("", ".."):  # "." or "..": the folder's own name says where it is
        issue_dir = issue_dir.resolve()
    return issue_dir.parent / BRIEFS_DIR


def _manifest_line(text: str, needle: str) -> int | None:
    for number, line in enumerate(text.split("\n"), 1):
        if needle in line:
            return number
    return None


def parse_toml(text: str, path: Path) -> dict[str, Any]:
    """A manifest's TOML, or a ContentError naming its line and what to check there."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        match = re.search(r"\(at line (\d+), column \d+\)", str(exc))
        line = int(match.group(1)) if match else None
        reason = re.sub(r"\s*\(at line.*\)", "", str(exc))
        raise ContentError(
            f"invalid TOML: {reason}; check the quotes, brackets and '=' of this line "
            '(texts go in "quotes", lists in [brackets])',
            path,
            line,
        ) from None


def suggest_slug(text: str) -> str:
    """The slug a title or a mistyped slug most likely meant: `Hydro Québec` is
    `hydro-quebec`; a file name given for a slug loses its `.fr.md`."""
    text = re.sub(r"\.(en|fr)\.md$|\.md$", "", text.strip())
    plain = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return "-".join(re.findall(r"[a-z0-9]+", plain.lower()))


def not_an_issue(issue_dir: Path) -> ContentError:
    """Why `issue_dir` (given on the command line) holds no issue, and the likely fix."""
    return wrong_issue_folder(issue_dir) or ContentError(
        f"no {MANIFEST} here; create one with 'newsletter new issue'", issue_dir
    )


def wrong_issue_folder(issue_dir: Path) -> ContentError | None:
    """The error for a path that cannot become an issue folder: a missing one (often the
    issue id without `issues/`, or a typo), the issues folder itself, the briefs folder.
    None for a folder that only lacks its issue.toml so far."""
    issue_dir = Path(issue_dir)
    # Where issues are: in or beside the folder given, else the usual ./issues.
    homes = [issue_dir, issue_dir.parent, Path("issues")]
    issues = sorted({p.parent for home in homes for p in home.glob(f"*/{MANIFEST}")})
    example = f"e.g. {issues[-1].as_posix()}" if issues else "e.g. issues/2017-11"
    if issue_dir in {p.parent for p in issues}:
        problem = "this folder holds the issues; give one of them"
    elif issue_dir.name == BRIEFS_DIR:
        problem = "this is the briefs folder; give an issue folder"
    elif issue_dir.is_dir():
        return None
    else:
        named = [p for p in issues if p.name == issue_dir.name]
        close = difflib.get_close_matches(issue_dir.name, [p.name for p in issues], 1, 0.8)
        guess = named[0] if named else next((p for p in issues if p.name in close), None)
        if guess is not None:
            problem = f"no such issue folder; did you mean {guess.as_posix()}?"
            return ContentError(problem, issue_dir)
        problem = "no such issue folder; give the path of an issue"
    return ContentError(f"{problem}, {example}", issue_dir)


def read_issue(issue_dir: Path, briefs: dict[str, Brief] | None = None) -> Issue:
    """Read `issue_dir/issue.toml` and the briefs it selects, from `briefs` when the caller
    has read the briefs folder already (the archive reads many issues), else from disk."""
    issue_dir = Path(issue_dir)
    path = issue_dir / MANIFEST
    if not path.is_file():
        raise not_an_issue(issue_dir)
    text = read_text(path)
    data = parse_toml(text, path)
    _unknown_manifest_keys(data, text, path)

    kinds = {
        int: "a whole number; write it like number = 2",
        str: 'a quoted text; write it like subject = "..."',
        list: 'a list; write it like briefs = ["slug-one", "slug-two"]',
    }

    def need(table: dict[str, Any], key: str, kind: type, where: str = "") -> Any:
        value = table.get(key)
        if not isinstance(value, kind) or isinstance(value, bool) and kind is int:
            section = where.rstrip(".")
            raise ContentError(
                f"'{where}{key}' is missing or not {kinds[kind]}",
                path,
                _key_line(text, section, key) or _key_line(text, section, None),
            )
        return value

    def clean(section: str, key: str, value: str) -> str:
        # A TOML escape ("\u001c") decodes to what the file itself could not hold.
        line = _key_line(text, section, key)
        return clean_text(value, path, line, f"[{section}] {key} holds ").strip()

    number = need(data, "number", int)
    date = data.get("date")
    if not isinstance(date, dt.date) or isinstance(date, dt.datetime):
        raise ContentError(
            "'date' is missing or not a date; write date = 2017-11-13 (no quotes)",
            path,
            _manifest_line(text, "date ="),
        )
    texts: dict[str, IssueText] = {}
    for lang in LANGS:
        table = data.get(lang)
        if not isinstance(table, dict):
            raise ContentError(
                f"missing [{lang}] table with subject, preheader and intro", path, None
            )
        subject = clean(lang, "subject", need(table, "subject", str, f"{lang}."))
        if not subject:
            raise ContentError(
                f"[{lang}] subject is empty; write the line readers see in their inbox",
                path,
                _key_line(text, lang, "subject"),
            )
        texts[lang] = IssueText(
            subject=subject,
            preheader=clean(lang, "preheader", str(table.get("preheader", ""))),
            intro=clean(lang, "intro", str(table.get("intro", ""))),
        )
    bilingual = data.get("bilingual", {})
    if not isinstance(bilingual, dict):
        raise ContentError(
            "'bilingual' must be a table: [bilingual] with subject and preheader",
            path,
            _key_line(text, "", "bilingual"),
        )
    bilingual = {
        key: clean("bilingual", key, value) if isinstance(value, str) else value
        for key, value in bilingual.items()
    }
    slugs = need(data, "briefs", list)
    available = read_briefs(briefs_dir_for(issue_dir)) if briefs is None else briefs
    seen: set[str] = set()
    briefs = []
    for slug in slugs:
        line = _manifest_line(text, f'"{slug}"') or _manifest_line(text, f"'{slug}'")
        if not isinstance(slug, str):
            raise ContentError("every entry of 'briefs' must be a quoted slug", path, line)
        if slug in seen:
            raise ContentError(
                f"brief '{slug}' is listed twice; remove one of the entries",
                path,
                _second_line(text, slug),
            )
        seen.add(slug)
        if slug not in available:
            close = difflib.get_close_matches(slug, list(available), n=1, cutoff=0.5)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ContentError(
                f"brief '{slug}' not found in {briefs_dir_for(issue_dir)}/{hint}", path, line
            )
        briefs.append(available[slug])
    if not briefs:
        raise ContentError("the issue selects no briefs; list slugs in briefs = [...]", path)
    return Issue(
        id=issue_dir.resolve().name,
        path=issue_dir,
        number=number,
        date=date,
        text=texts,
        briefs=tuple(briefs),
        bilingual_subject=str(bilingual["subject"]) if bilingual.get("subject") else None,
        bilingual_preheader=str(bilingual["preheader"]) if bilingual.get("preheader") else None,
    )


def _unknown_manifest_keys(data: dict[str, Any], text: str, path: Path) -> None:
    for section, allowed in MANIFEST_KEYS.items():
        table = data.get(section, {}) if section else data
        if not isinstance(table, dict):
            continue  # a table of the wrong type: read_issue says so
        for key in table:
            if key in allowed:
                continue
            close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            where = f" in [{section}]" if section else ""
            line = _key_line(text, section, key) or (
                None if section else _key_line(text, key, None)
            )
            raise ContentError(
                f"unknown key '{key}'{where}{hint}; allowed: {', '.join(allowed)}", path, line
            )


def _key_line(text: str, section: str, key: str | None) -> int | None:
    """The line of `key = ...` inside `[section]` ("" = top level); of `[section]` if no key."""
    current = ""
    for number, line in enumerate(text.split("\n"), 1):
        stripped = line.strip()
        if stripped.startswith("[") and not stripped.startswith("[["):
            current = stripped.strip("[]").strip()
            if key is None and current == section:
                return number
            continue
        if key is not None and current == section and re.match(rf"{re.escape(key)}\s*=", stripped):
            return number
    return None


toml_key_line = _key_line  # also names the line of a colour in the theme file (theme.py)


def _second_line(text: str, slug: str) -> int | None:
    hits = [
        n
        for n, line in enumerate(text.split("\n"), 1)
        if f'"{slug}"' in line or f"'{slug}'" in line
    ]
    return hits[1] if len(hits) > 1 else (hits[0] if hits else None)
