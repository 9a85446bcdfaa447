"""Bounces, complaints and mailto unsubscribes: the mail that comes back after a send.

    tokens    the signed local parts: bounces+TOKEN@ (VERP, one per message) and
              unsubscribe+TOKEN@ (the List-Unsubscribe mailto, one per person)
    parse     one raw message -> what it says (DSN, ARF, auto-reply, mailto...), stdlib email
    classify  RFC 3463 status codes and ARF feedback types -> hard, soft, blocked, ...
    book      match a report to a delivery, record it once, take people off the list
    mailbox   IMAP(S) and POP3(S) readers: commit first, then move (or delete)

Nothing here acts on an address alone: only a token we signed, or a Message-ID that our own
ledger gave, names the person a report is about.
"""
