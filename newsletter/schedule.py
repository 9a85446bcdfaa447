"""Scheduled sends: when a time is meant, what was frozen, and what changed since.

A time is read in the newsletter's zone (NEWSLETTER_TIMEZONE), or as ISO 8601 with its own
offset. A wall-clock time that does not exist (the spring-forward gap) or happens twice
(the fall-back hour) is refused: an editor must not learn at 7 a.m. which one we guessed.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from . import store
from .content import Issue
from .errors import NewsletterError

DEFAULT_GRACE = 2 * 3600.0
MAX_GRACE = 7 * 86400.0  # an issue later than that is better sent anew
MAX_AHEAD = 366 * 86400.0  # further ahead than that, the year is a typo


class ScheduleError(NewsletterError):
    """A time that cannot be scheduled, or a schedule that cannot be changed."""


class ScheduleState(StrEnum):
    SCHEDULED = "scheduled"
    STARTED = "started"
    MISSED = "missed"  # its time passed by more than its grace (the machine was off)
    CANCELLED = "cancelled"
    REFUSED = "refused"  # its content changed after freezing, or no longer passes the checks


@dataclass(frozen=True)
class Schedule:
    id: int
    issue_id: str
    issue_dir: str
    at: float  # UTC epoch seconds
    zone: str
    grace: float
    rebuild: bool
    options: dict
    inputs: dict[str, str]
    state: ScheduleState
    note: str

    def when(self) -> str:
        return format_when(self.at, self.zone)


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ScheduleError(
            f"NEWSLETTER_TIMEZONE={name!r} is not a time zone; write one such as "
            "America/Toronto or America/Vancouver"
        ) from None


_DATE_ALONE = re.compile(r"\d{4}-?\d{2}-?\d{2}")
_DATE_AND_TIME = re.compile(
    r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}(?::?\d{2})?)?"
)


def parse_when(text: str, zone_name: str, now: float) -> float:
    """UTC epoch seconds of `text`: `2026-12-07 07:00` in the zone, or ISO 8601 with offset."""
    tz = zone(zone_name)
    if _DATE_ALONE.fullmatch(text.strip()):
        # fromisoformat reads it as midnight, which nobody scheduling an issue means
        raise ScheduleError(
            f"--at {text!r} has no time of day; add one, as {text.strip()} 07:00 ({zone_name})"
        )
    try:
        # only a date and a time (fromisoformat alone also takes week dates, 2027-W02, and
        # a date with an offset, 2026-12-07-05:00, as midnight or as the offset's hour)
        if not _DATE_AND_TIME.fullmatch(text.strip()):
            raise ValueError(text)
        when = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise ScheduleError(
            f"--at {text!r} is not a time; write it as 2026-12-07 07:00 ({zone_name}) or "
            "with an offset, 2026-12-07T07:00-05:00"
        ) from None
    if when.tzinfo is None:
        first, second = when.replace(tzinfo=tz, fold=0), when.replace(tzinfo=tz, fold=1)
        if first.utcoffset() != second.utcoffset():
            back = first.astimezone(dt.UTC).astimezone(tz).replace(tzinfo=None)
            if back != when:
                raise ScheduleError(
                    f"--at {text!r} does not exist in {zone_name}: the clocks skip that hour "
                    "(daylight saving time starts); choose another time"
                )
            options = " or ".join(f"{when:%Y-%m-%dT%H:%M}{_offset(t)}" for t in (first, second))
            raise ScheduleError(
                f"--at {text!r} happens twice in {zone_name} (the clocks go back that night); "
                f"write which one with its offset: {options}"
            )
        when = first
    at = when.timestamp()
    if at <= now:
        raise ScheduleError(
            f"--at {text!r} is in the past (it is now {format_when(now, zone_name)}); "
            "give a later time, or send now without --at"
        )
    if at - now > MAX_AHEAD:
        raise ScheduleError(
            f"--at {text!r} is more than a year ahead (it is now {format_when(now, zone_name)}); "
            "check the year"
        )
    return at


def _offset(when: dt.datetime) -> str:
    offset = when.utcoffset() or dt.timedelta()
    minutes = int(offset.total_seconds() // 60)
    sign = "-" if minutes < 0 else "+"
    return f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def format_when(at: float, zone_name: str) -> str:
    """`2026-12-07 07:00 EST (12:00 UTC)`."""
    local = dt.datetime.fromtimestamp(at, zone(zone_name))
    utc = dt.datetime.fromtimestamp(at, dt.UTC)
    same_day = utc.date() == local.date()
    utc_text = f"{utc:%H:%M} UTC" if same_day else f"{utc:%Y-%m-%d %H:%M} UTC"
    return f"{local:%Y-%m-%d %H:%M} {local.tzname()} ({utc_text})"


# --- what an issue is made of --------------------------------------------------------------


def inputs(issue: Issue, templates_dir: Path) -> dict[str, str]:
    """A hash of every file the editions are built from, by path (absent files included:
    a translation added later changes an edition too)."""
    paths = [issue.path / "issue.toml"]
    for brief in issue.briefs:
        for lang in ("en", "fr"):
            text = brief.text(lang)
            other = brief.text("fr" if lang == "en" else "en")
            if text is not None:
                paths.append(text.path)
            elif other is not None:
                paths.append(other.path.with_name(f"{brief.slug}.{lang}.md"))
    paths.extend(p for p in sorted(Path(templates_dir).iterdir()) if p.is_file())
    return {str(p.resolve()): _hash(p) for p in paths}


def changed(before: Mapping[str, str]) -> list[str]:
    """The files of `before` whose content is not what it was (or that came or went), as
    paths from the current folder when they are under it."""
    return [_shown(path) for path, digest in before.items() if _hash(Path(path)) != digest]


def _shown(path: str) -> str:
    relative = os.path.relpath(path)
    return path if relative.startswith("..") else relative


def _hash(path: Path) -> str:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except FileNotFoundError:
        return "absent"
    except OSError:
        return "unreadable"


# --- the schedule book ---------------------------------------------------------------------


def _schedule(row: Any) -> Schedule:
    return Schedule(
        id=row["id"],
        issue_id=row["issue_id"],
        issue_dir=row["issue_dir"],
        at=row["at"],
        zone=row["zone"],
        grace=row["grace"],
        rebuild=bool(row["rebuild"]),
        options=json.loads(row["options"]),
        inputs=json.loads(row["inputs"]),
        state=ScheduleState(row["state"]),
        note=row["note"],
    )


class Book:
    """The schedules in the database (a SQLite file or a postgresql:// URL)."""

    def __init__(self, path: Path | str):
        self.conn = store.connect(path)

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Book:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def add(
        self,
        issue_id: str,
        issue_dir: Path,
        at: float,
        zone_name: str,
        grace: float,
        rebuild: bool,
        options: Mapping[str, object],
        inputs: Mapping[str, str],
        frozen: Mapping[str, str],
    ) -> Schedule:
        with self.conn.transaction():
            waiting = self.waiting(issue_id)
            if waiting is not None:
                raise ScheduleError(
                    f"issue {issue_id} is already scheduled for {waiting.when()}; cancel it "
                    f"first: newsletter schedule cancel {waiting.id}"
                )
            schedule_id = self.conn.execute(
                "INSERT INTO schedules (issue_id, issue_dir, at, zone, grace, rebuild, options,"
                " inputs, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " RETURNING id",
                (
                    issue_id,
                    str(Path(issue_dir).resolve()),
                    at,
                    zone_name,
                    grace,
                    int(rebuild),
                    json.dumps(dict(options), sort_keys=True),
                    json.dumps(dict(inputs), sort_keys=True),
                    store.stamp(),
                    store.stamp(),
                ),
            ).fetchone()[0]
            self.conn.execute("DELETE FROM frozen_editions WHERE issue_id = ?", (issue_id,))
            self.conn.executemany(
                "INSERT INTO frozen_editions (issue_id, edition, frozen) VALUES (?, ?, ?)",
                [(issue_id, name, data) for name, data in frozen.items()],
            )
        schedule = self.get(schedule_id)
        assert schedule is not None
        return schedule

    def get(self, schedule_id: int) -> Schedule | None:
        row = self.conn.execute("SELECT * FROM schedules WHERE id = ?", (schedule_id,)).fetchone()
        return _schedule(row) if row else None

    def waiting(self, issue_id: str) -> Schedule | None:
        row = self.conn.execute(
            "SELECT * FROM schedules WHERE issue_id = ? AND state = 'scheduled'", (issue_id,)
        ).fetchone()
        return _schedule(row) if row else None

    def all(self) -> list[Schedule]:
        rows = self.conn.execute("SELECT * FROM schedules ORDER BY at, id")
        return [_schedule(r) for r in rows]

    def due(self, now: float) -> list[Schedule]:
        rows = self.conn.execute(
            "SELECT * FROM schedules WHERE state = 'scheduled' AND at <= ? ORDER BY at, id",
            (now,),
        )
        return [_schedule(r) for r in rows]

    def mark(self, schedule_id: int, state: ScheduleState, note: str = "") -> bool:
        """Move a waiting schedule on; False if it was no longer waiting (another `due`)."""
        with self.conn.transaction():
            cur = self.conn.execute(
                "UPDATE schedules SET state = ?, note = ?, updated_at = ?"
                " WHERE id = ? AND state = 'scheduled'",
                (state.value, note, store.stamp(), schedule_id),
            )
        return cur.rowcount == 1

    def cancel(self, key: str) -> Schedule:
        """Cancel the waiting schedule numbered `key`, or of the issue named `key`."""
        found = self.get(int(key)) if key.isdigit() else self.waiting(key)
        if found is None or found.state is not ScheduleState.SCHEDULED:
            raise ScheduleError(
                f"no waiting schedule {key!r}; 'newsletter schedule list' shows them"
            )
        self.mark(found.id, ScheduleState.CANCELLED, "cancelled by the user")
        return found
