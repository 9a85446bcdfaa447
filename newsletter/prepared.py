"""What a send is made of once its issue is built, or thawed from the ledger: the compiled
editions, the links' secret, the transport and the signer, and how each reader's links are
made. The send's worker processes thaw it without loading the renderer (campaign.prepare
builds it)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from email.utils import make_msgid
from pathlib import Path
from typing import TYPE_CHECKING

from .bounces.tokens import BOUNCE_LOCAL, bounce_token, day_of, unsubscribe_mailto
from .config import Settings
from .editions import EDITIONS
from .errors import DeliveryError
from .fastmime import CompiledEdition
from .ledger import Delivery
from .message import Recipient
from .signing import Signer, signer_for
from .tokens import key_check, make_token, preferences_url, signing_key, unsubscribe_url
from .transport import Transport, transport_for

if TYPE_CHECKING:
    from .build import Build
    from .checks import Finding

KEY_CHECK = "key_check"  # in a send's kept options: the key its links were signed with


@dataclass(frozen=True)
class Prepared:
    """Everything a send needs: the compiled editions, the links' secret, the transport."""

    settings: Settings
    issue_id: str
    issue_dir: Path
    editions: Mapping[str, CompiledEdition]
    secret: bytes
    transport: Transport
    signer: Signer | None
    findings: tuple[Finding, ...] = ()
    build: Build | None = None  # None when the editions were thawed from the ledger

    def recipient(self, subscriber_id: int | None, email: str, name: str) -> Recipient:
        base = self.settings.identity.base_url
        # a test address that is not on the list gets links that lead nowhere, harmlessly
        token = make_token(self.secret, subscriber_id) if subscriber_id else "test-address"
        links = Recipient(email, name, unsubscribe_url(base, token), preferences_url(base, token))
        domain = self.settings.bounces.domain
        if not subscriber_id or not domain:
            return links
        envid = bounce_token(self.secret, subscriber_id, self.issue_id, day_of(time.time()))
        return links._replace(
            unsubscribe_mailto=unsubscribe_mailto(self.secret, domain, subscriber_id),
            envelope_from=f"{BOUNCE_LOCAL}+{envid}@{domain}",
            envid=envid,
        )

    def refuse_another_key(self, kept: Mapping[str, object]) -> None:
        """Stop a host (joining, resuming, retrying) whose links would not be signed with
        the key the send's first ones were: they would not work (different secrets)."""
        started = kept.get(KEY_CHECK)
        if started is not None and started != key_check(self.secret):
            raise DeliveryError(
                f"issue {self.issue_id}: its send started with another signing secret, so "
                "the unsubscribe and preferences links sent from here would not work; set "
                "NEWSLETTER_SECRET to the value the host that started it has"
            )

    def personalise(self, delivery: Delivery) -> Recipient:
        return self.recipient(delivery.subscriber_id, delivery.email, delivery.name)

    @property
    def blocking(self) -> list[Finding]:
        """What stops a real send: errors, and placeholders no reader should see."""
        return [f for f in self.findings if f.stops_send]

    def frozen(self) -> dict[str, str]:
        return {name: compiled.to_json() for name, compiled in self.editions.items()}

    def message_id(self) -> str:
        return make_msgid(domain=self.settings.identity.from_addr["en"].rpartition("@")[2])


def thaw(settings: Settings, issue_id: str, issue_dir: Path, frozen: Mapping[str, str]) -> Prepared:
    """A send's editions as they were frozen when it started or was scheduled."""
    missing = [name for name in EDITIONS if name not in frozen]
    if missing:
        raise DeliveryError(
            f"the send of issue {issue_id} has no frozen {missing[0]} edition; "
            "send it with --rebuild"
        )
    return Prepared(
        settings=settings,
        issue_id=issue_id,
        issue_dir=issue_dir,
        editions={name: CompiledEdition.from_json(frozen[name]) for name in EDITIONS},
        secret=signing_key(settings),  # the secret bound to this list
        transport=transport_for(settings.smtp, settings.outbox / issue_id),
        signer=signer_for(settings.dkim),
    )
