"""Which issues are on the web, and when each entry was first public and last corrected.

An issue is public once its send has started (a row in the ledger's `sends`: from the first
message on, readers hold its "View in browser" link), or once an editor published it; an
editor's `unpublish` takes any issue off. Kept in the same database as the ledger.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from ..store import stamp


class Decision(StrEnum):
    PUBLISHED = "published"
    UNPUBLISHED = "unpublished"


@dataclass(frozen=True)
class Stamp:
    """When an entry (one issue in one language) was first public, and last corrected."""

    published: dt.datetime
    updated: dt.datetime


def _parse(value: str) -> dt.datetime:
    moment = dt.datetime.fromisoformat(value)
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


class ArchiveState:
    """Reads and records the archive's state on an open store connection (store.connect)."""

    def __init__(self, conn: Any):
        self.conn = conn

    def public(self) -> list[str]:
        """The ids of every issue on the web, sorted."""
        rows = self.conn.execute(
            "SELECT issue_id FROM sends"
            " UNION SELECT issue_id FROM archive_issues WHERE state = 'published'"
            " EXCEPT SELECT issue_id FROM archive_issues WHERE state = 'unpublished'"
            " ORDER BY issue_id"
        )
        return [row[0] for row in rows]

    def sent_at(self, issue_id: str) -> dt.datetime | None:
        row = self.conn.execute(
            "SELECT started_at FROM sends WHERE issue_id = ?", (issue_id,)
        ).fetchone()
        return _parse(row[0]) if row else None

    def decision(self, issue_id: str) -> tuple[Decision, dt.datetime] | None:
        row = self.conn.execute(
            "SELECT state, changed_at FROM archive_issues WHERE issue_id = ?", (issue_id,)
        ).fetchone()
        return (Decision(row[0]), _parse(row[1])) if row else None

    def decide(self, issue_id: str, decision: Decision, now: dt.datetime) -> None:
        self.conn.execute(
            "INSERT INTO archive_issues (issue_id, state, changed_at) VALUES (?, ?, ?)"
            " ON CONFLICT (issue_id) DO UPDATE SET state = excluded.state,"
            " changed_at = excluded.changed_at",
            (issue_id, decision.value, stamp(now)),
        )

    def stamps(
        self, digests: Mapping[tuple[str, str], str], now: dt.datetime
    ) -> tuple[dict[tuple[str, str], Stamp], list[tuple[str, str]]]:
        """The stamp of each (issue id, language) entry whose content has this digest, and
        the entries found corrected.

        An entry seen for the first time was public since its send started (or since it was
        published); an entry whose digest changed was corrected now. Call it inside a
        transaction: it records what it finds.
        """
        stamps = {}
        corrected = []
        for (issue_id, lang), digest in sorted(digests.items()):
            row = self.conn.execute(
                "SELECT digest, published_at, updated_at FROM archive_entries"
                " WHERE issue_id = ? AND lang = ?",
                (issue_id, lang),
            ).fetchone()
            if row is None:
                decided = self.decision(issue_id)
                first = self.sent_at(issue_id) or (decided[1] if decided else None) or now
                self.conn.execute(
                    "INSERT INTO archive_entries (issue_id, lang, digest, published_at,"
                    " updated_at) VALUES (?, ?, ?, ?, ?)",
                    (issue_id, lang, digest, stamp(first), stamp(first)),
                )
                stamps[issue_id, lang] = Stamp(_parse(stamp(first)), _parse(stamp(first)))
                continue
            published, updated = _parse(row["published_at"]), _parse(row["updated_at"])
            if row["digest"] != digest:
                corrected.append((issue_id, lang))
                updated = _parse(stamp(now))
                self.conn.execute(
                    "UPDATE archive_entries SET digest = ?, updated_at = ?"
                    " WHERE issue_id = ? AND lang = ?",
                    (digest, stamp(updated), issue_id, lang),
                )
            stamps[issue_id, lang] = Stamp(published, updated)
        return stamps, corrected
