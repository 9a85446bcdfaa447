"""What happened to one person's mail: every issue sent to them (the send ledger) and every
report about it (bounces, complaints, mailto unsubscribes, refusals during a send), oldest
first. `subscribers show` prints it as a section beside the audit trail and the consent.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Happening:
    at: str  # ISO 8601, UTC
    kind: str  # a delivery's state (sent, failed, deferred...) or a report's class
    route: str  # the issue; the report's source
    detail: str


# One person's ids: their own, and those of the rows the case-merging migration merged into
# it, which the ledger still names (its rows are never rewritten).
_IDS = "(SELECT :id UNION SELECT merged_id FROM subscriber_merges WHERE kept_id = :id)"


def sends_and_reports(conn: Any, subscriber_id: int) -> list[Happening]:
    events = []
    for r in conn.execute(
        "SELECT d.issue_id, d.edition, d.state, d.last_reply, coalesce(d.updated_at,"
        " s.started_at) AS at FROM deliveries d JOIN sends s USING (issue_id)"
        f" WHERE d.subscriber_id IN {_IDS} ORDER BY s.started_at",
        {"id": subscriber_id},
    ):
        detail = f"{r['edition']} edition" + (f": {r['last_reply']}" if r["last_reply"] else "")
        events.append(Happening(r["at"], r["state"], f"issue {r['issue_id']}", detail))
    for r in conn.execute(
        "SELECT at, class, source, issue_id, status, diagnostic, matched_by, action"
        f" FROM bounce_events WHERE subscriber_id IN {_IDS} ORDER BY id",
        {"id": subscriber_id},
    ):
        route = r["source"] + (f", issue {r['issue_id']}" if r["issue_id"] else "")
        detail = " ".join(x for x in (r["status"], repr(r["diagnostic"][:120])) if x)
        detail += f" (matched by {r['matched_by']})" if r["matched_by"] else ""
        detail += f" -> {r['action']}" if r["action"] else ""
        kind = "mailto" if r["class"] == "unsubscribe" else r["class"]
        events.append(Happening(r["at"], kind, route, detail))
    # within one second (timestamps have no more), a send comes before the reports on it
    return sorted(events, key=lambda e: (e.at, e.kind not in _SENDS))


_SENDS = {"pending", "sending", "sent", "deferred", "failed", "uncertain", "skipped"}
