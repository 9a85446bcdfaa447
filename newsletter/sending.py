"""Everything a send needs, put together once: the built issue, its compiled editions,
the subscribers' links, the transport. The CLI drives it; the tests and bench use it."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from email.utils import make_msgid
from pathlib import Path

from .build import Build, build_issue
from .config import Settings
from .errors import DeliveryError
from .fastmime import CompiledEdition, compile_edition
from .ledger import Delivery, Ledger
from .message import Recipient
from .render import Templates
from .signing import Signer, signer_for
from .subscribers import EDITION_FOR_LANGUAGE, SqliteStore, Status, edition_for
from .tokens import make_token, preferences_url, resolve_secret, unsubscribe_url
from .transport import Transport, transport_for
from .views import EDITIONS

TEST_PREFIX = "[TEST] "


@dataclass
class Prepared:
    settings: Settings
    build: Build
    editions: dict[str, CompiledEdition]
    secret: bytes
    transport: Transport
    signer: Signer | None

    @property
    def issue_id(self) -> str:
        return self.build.issue.id

    def recipient(self, subscriber_id: int | None, email: str, name: str) -> Recipient:
        base = self.settings.identity.base_url
        # a test address that is not on the list gets links that lead nowhere, harmlessly
        token = make_token(self.secret, subscriber_id) if subscriber_id else "test-address"
        return Recipient(email, name, unsubscribe_url(base, token), preferences_url(base, token))

    def personalise(self, delivery: Delivery) -> Recipient:
        return self.recipient(delivery.subscriber_id, delivery.email, delivery.name)


def prepare(settings: Settings, issue_dir: Path, *, test: bool = False) -> Prepared:
    """Build the issue and compile each edition once; refuse a build with errors."""
    build = build_issue(issue_dir, settings.identity, Templates(settings.templates_dir))
    if build.has_errors:
        errors = [f for f in build.findings if f.level == "error"]
        raise DeliveryError(
            f"refusing to send: the build has {len(errors)} error(s), first: "
            f"{errors[0].edition}: {errors[0].message}; "
            f"fix them (newsletter check {issue_dir})"
        )
    prefix = TEST_PREFIX if test else ""
    editions = {
        e.name: compile_edition(e, settings.identity, prefix) for e in build.rendered.editions
    }
    return Prepared(
        settings=settings,
        build=build,
        editions=editions,
        secret=resolve_secret(settings),
        transport=transport_for(settings.smtp, settings.outbox / build.issue.id),
        signer=signer_for(settings.dkim),
    )


def plan(store: SqliteStore, include_lapsed: bool = False) -> Counter[str]:
    """How many subscribers would get each edition now: the active ones, less those whose
    implied consent has lapsed unless `include_lapsed` (see store.mailable)."""
    counts: Counter[str] = Counter({name: 0 for name in EDITIONS})
    for (language, status), n in store.counts().items():
        if status == Status.ACTIVE:
            counts[EDITION_FOR_LANGUAGE[language]] += n
    if not include_lapsed:
        for language, n in store.lapsed_counts().items():
            counts[EDITION_FOR_LANGUAGE[language]] -= n
    return counts


def fix_recipients(
    store: SqliteStore, ledger: Ledger, prepared: Prepared, include_lapsed: bool = False
) -> int:
    """Write the recipient list of this issue into the ledger, once: who may be mailed
    (store.mailable: active, consent not lapsed unless `include_lapsed`)."""
    domain = prepared.settings.identity.from_addr["en"].rpartition("@")[2]
    people = store.mailable(include_lapsed=include_lapsed)
    return ledger.start(((s.id, s.email, s.name, edition_for(s)) for s in people), domain)


def test_message_id(prepared: Prepared) -> str:
    return make_msgid(domain=prepared.settings.identity.from_addr["en"].rpartition("@")[2])
