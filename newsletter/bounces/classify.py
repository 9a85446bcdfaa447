"""What a report means for the person it is about, from its RFC 3463 status code or its
ARF feedback type (the README has the table).

    5.1.x (bad address)                    hard       off the list at once
    4.x.x, x.2.2 (even 5.2.2 mailbox full) soft       off after three issues in a row
    5.7.x (policy, reputation)             blocked    nobody: the sender is refused
    other 5.x.x                            soft       (the address may work again)
    ARF abuse, fraud                       complaint  off at once, as an unsubscribe
    ARF auth-failure and the rest,
    Action delayed/delivered/relayed,
    auto-replies                           ignored    counted only
"""

from __future__ import annotations

from enum import StrEnum


class Class(StrEnum):
    HARD = "hard"
    SOFT = "soft"
    BLOCKED = "blocked"
    COMPLAINT = "complaint"
    UNSUBSCRIBE = "unsubscribe"
    IGNORED = "ignored"
    UNRECOGNISED = "unrecognised"


SOFT_STREAK = 3  # issues in a row that soft-bounced before an address is taken off
COMPLAINT_TYPES = ("abuse", "fraud")


def classify_status(status: str, action: str = "failed") -> Class:
    """A DSN recipient's class from its Action and Status; also a refusal during a send
    (its reply's code, action `failed`)."""
    if action in ("delayed", "delivered", "relayed", "expanded"):
        return Class.IGNORED  # not a failure (yet): a later report will say
    parts = status.split(".")
    if len(parts) != 3:
        return Class.SOFT  # a failure that gives no code: nobody is taken off for it alone
    klass, subject, detail = parts
    if (subject, detail) == ("2", "2"):
        return Class.SOFT  # mailbox full is persistent-transient, whatever its class says
    if klass == "4":
        return Class.SOFT
    if klass == "5" and subject == "1":
        return Class.HARD
    if klass == "5" and subject == "7":
        return Class.BLOCKED
    if klass == "2":
        return Class.IGNORED
    return Class.SOFT


def classify_feedback(feedback_type: str) -> Class:
    return Class.COMPLAINT if feedback_type in COMPLAINT_TYPES else Class.IGNORED
