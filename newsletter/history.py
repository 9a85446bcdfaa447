"""One person's whole history, oldest first: how and when they joined, changes of language
and name, every issue sent to them, bounces, complaints, unsubscribes with their channel.

A list of plain events read from the store (the audit trail, the send ledger, the bounce
records), for `subscribers show` to print; each source adds its own kinds.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass


@dataclass(frozen=True)
class Happening:
    at: str  # ISO 8601, UTC
    kind: str  # join, language, name, unsubscribe, resubscribe, status, update, remove,
    #            sent (or failed, deferred...: a delivery), and a bounce class
    route: str  # how: the channel, the issue, the report's source
    detail: str


def history(conn: sqlite3.Connection, subscriber_id: int) -> list[Happening]:
    events = [
        Happening(r["at"], r["kind"], r["route"], r["detail"])
        for r in conn.execute(
            "SELECT at, kind, route, detail FROM subscriber_events WHERE subscriber_id = ?"
            " ORDER BY id",
            (subscriber_id,),
        )
    ]
    for r in conn.execute(
        "SELECT d.issue_id, d.edition, d.state, d.last_reply, coalesce(d.updated_at,"
        " s.started_at) AS at FROM deliveries d JOIN sends s USING (issue_id)"
        " WHERE d.subscriber_id = ? ORDER BY s.started_at",
        (subscriber_id,),
    ):
        detail = f"{r['edition']} edition" + (f": {r['last_reply']}" if r["last_reply"] else "")
        events.append(Happening(r["at"], r["state"], f"issue {r['issue_id']}", detail))
    for r in conn.execute(
        "SELECT at, class, source, issue_id, status, diagnostic, matched_by, action"
        " FROM bounce_events WHERE subscriber_id = ? ORDER BY id",
        (subscriber_id,),
    ):
        route = r["source"] + (f", issue {r['issue_id']}" if r["issue_id"] else "")
        detail = " ".join(x for x in (r["status"], repr(r["diagnostic"][:120])) if x)
        detail += f" (matched by {r['matched_by']})" if r["matched_by"] else ""
        detail += f" -> {r['action']}" if r["action"] else ""
        kind = "mailto" if r["class"] == "unsubscribe" else r["class"]  # the request; the
        events.append(Happening(r["at"], kind, route, detail))  # unsubscribe itself follows
    # Within one second (timestamps have no more), what causes comes before what follows:
    # joining, then the sends, then the reports on them, then the changes they made.
    return sorted(events, key=lambda e: (e.at, _RANK.get(e.kind, 3)))


_RANK = {"join": 0, "resubscribe": 0, "pending": 1, "sending": 1, "sent": 1, "deferred": 1,
         "failed": 1, "uncertain": 1, "skipped": 1, "hard": 2, "soft": 2, "blocked": 2,
         "complaint": 2, "mailto": 2, "ignored": 2, "unrecognised": 2}  # fmt: skip
