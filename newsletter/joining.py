"""Several hosts, one send (PostgreSQL): one host starts it (`send`: the recipient list is
fixed, the editions frozen, in one commit); any number of others join it (`send --join`):
they read the same frozen editions from the database and claim rows from the same ledger.

Nothing here coordinates the hosts: the ledger's rows do (see ledger.py). This module only
says whether there is a send to join, and whether one is being sent right now (a second
`send` is then told to join rather than resume it).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from .config import Settings
from .errors import DeliveryError
from .ledger import Ledger, SendState
from .prepared import Prepared, thaw
from .store import PgUrl


@dataclass(frozen=True)
class Sender:
    """A worker seen sending this issue lately."""

    worker: str
    host: str
    pid: int


def require_postgres(settings: Settings) -> None:
    if not isinstance(settings.db_path, PgUrl):
        raise DeliveryError(
            "--join is for a send shared by several hosts, with NEWSLETTER_DB=postgresql://...;"
            " with a SQLite file one send runs at a time (it uses every core: --workers)"
        )


def senders(ledger: Ledger, lease: float) -> list[Sender]:
    """Who is sending this issue now: workers not finished and seen within two leases, by
    the database's clock (a worker says it lives four times a lease)."""
    return [Sender(r["worker"], r["host"], r["pid"]) for r in ledger.live_workers(2 * lease)]


def just_started(ledger: Ledger, lease: float) -> bool:
    """Started within one lease and no worker joined yet: its first host may not have one
    running yet. (Once they have joined, `senders` says whether they still run.)"""
    info = ledger.info()
    if info is None or info.state is not SendState.ACTIVE or ledger.workers():
        return False
    started = dt.datetime.fromisoformat(info.started_at).timestamp()
    return ledger.clock() - started < lease


def refuse_second_start(ledger: Ledger, issue_dir: Path, lease: float) -> None:
    """A `send` (not --join) of an issue that hosts are sending now: it must not resume it
    (a resume relabels rows and may rebuild the editions): it is told to join."""
    who = senders(ledger, lease)
    if not who and not just_started(ledger, lease):
        return
    hosts = ", ".join(sorted({s.host for s in who}))
    now = f"being sent now ({len(who)} worker(s) on {hosts})" if who else "starting right now"
    raise DeliveryError(
        f"issue {ledger.issue_id} is {now}; to help, run: newsletter send {issue_dir} --join"
    )


def prepare_join(settings: Settings, ledger: Ledger, issue_dir: Path) -> Prepared:
    """What a joining host sends: the editions frozen when the send started."""
    info = ledger.info()
    if info is None:
        raise DeliveryError(
            f"issue {ledger.issue_id} has no send to join; start it on one host first: "
            f"newsletter send {issue_dir}"
        )
    if info.state is SendState.HELD:
        # stopped by Ctrl-C, or by failures in a row: resuming it is a person's call
        raise DeliveryError(
            f"issue {ledger.issue_id}: its send is held (stopped by Ctrl-C, or by failures "
            f"in a row); resume it with: newsletter send {issue_dir} (not --join)"
        )
    prepared = thaw(settings, ledger.issue_id, issue_dir, ledger.frozen())
    prepared.refuse_another_key(info.options)
    return prepared
