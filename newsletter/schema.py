"""The store's schema as an ordered list of migrations: MIGRATIONS[i] brings a file to version i+1.

Append only. A released migration is never edited: a file already at its version would not
run the edit. Each script runs in its own transaction (see `db.migrate`).
"""

from __future__ import annotations

MIGRATIONS: list[str] = [
    # 1: subscribers and their audit trail.
    # AUTOINCREMENT so that an id, which signed links carry, is never given to someone else
    # after a removal. email_key is what uniqueness is about: the local part is case-sensitive
    # by the RFCs, the domain is not.
    """
    CREATE TABLE subscribers (
        id            INTEGER PRIMARY KEY AUTOINCREMENT,
        email         TEXT NOT NULL,
        email_key     TEXT NOT NULL UNIQUE,
        name          TEXT NOT NULL DEFAULT '',
        language      TEXT NOT NULL CHECK (language IN ('en', 'fr', 'both')),
        status        TEXT NOT NULL DEFAULT 'active'
                      CHECK (status IN ('active', 'unsubscribed', 'bounced', 'complained')),
        joined_at     TEXT NOT NULL,
        join_source   TEXT NOT NULL,
        consent_note  TEXT NOT NULL DEFAULT '',
        left_at       TEXT,
        left_how      TEXT,
        updated_at    TEXT NOT NULL
    );
    CREATE INDEX subscribers_status_language ON subscribers (status, language);

    -- CASL: the sender must prove consent and every unsubscribe. Rows outlive the
    -- subscriber (no foreign key), so a removal keeps its history, and an address that
    -- unsubscribed and was then removed is still not re-added by an import. email holds the
    -- email_key for that lookup.
    CREATE TABLE subscriber_events (
        id            INTEGER PRIMARY KEY AUTOINCREMENT,
        subscriber_id INTEGER NOT NULL,
        email         TEXT NOT NULL,
        at            TEXT NOT NULL,
        kind          TEXT NOT NULL
                      CHECK (kind IN ('join', 'update', 'language', 'name', 'unsubscribe',
                                      'resubscribe', 'status', 'remove')),
        route         TEXT NOT NULL,
        detail        TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX subscriber_events_subscriber ON subscriber_events (subscriber_id);
    CREATE INDEX subscriber_events_email ON subscriber_events (email);
    """,
]

MIGRATIONS.append(
    # 2: the delivery ledger. One row per (issue, subscriber), written when a send starts,
    # so the recipient list is fixed then. `state` moves pending -> sending -> sent | failed,
    # or back to pending with a later next_attempt for a temporary failure; a row found in
    # `sending` when a send starts was in flight when the last one died: it becomes
    # `uncertain` and is resent only on request. The message id is chosen once, so a resent
    # message carries the same id as the first (receivers can tell it is the same message).
    """
    CREATE TABLE sends (
        issue_id      TEXT PRIMARY KEY,
        started_at    TEXT NOT NULL,
        finished_at   TEXT
    );
    CREATE TABLE deliveries (
        issue_id      TEXT NOT NULL REFERENCES sends (issue_id),
        subscriber_id INTEGER NOT NULL,
        email         TEXT NOT NULL,
        name          TEXT NOT NULL DEFAULT '',
        edition       TEXT NOT NULL CHECK (edition IN ('en', 'fr', 'bilingual')),
        state         TEXT NOT NULL DEFAULT 'pending'
                      CHECK (state IN ('pending', 'sending', 'sent', 'failed', 'uncertain',
                                       'skipped')),
        attempts      INTEGER NOT NULL DEFAULT 0,
        last_reply    TEXT NOT NULL DEFAULT '',
        updated_at    TEXT,
        next_attempt  REAL NOT NULL DEFAULT 0,
        message_id    TEXT NOT NULL,
        PRIMARY KEY (issue_id, subscriber_id)
    ) WITHOUT ROWID;
    CREATE INDEX deliveries_state ON deliveries (issue_id, state, next_attempt);
    """
)

MIGRATIONS.append(
    # 3: addresses with a non-ASCII domain, stored as typed by 0.1.0, take their ASCII (IDNA)
    # form, the one lookups now use: otherwise someone who left under `ann@exämple.org` would
    # not be recognised, and an import would add them again. The functions are registered by
    # db.connect (SQL has no IDNA). A non-ASCII local part stays as it is: it never matched.
    """
    UPDATE subscribers SET email = nl_ascii_email(email), email_key = nl_email_key(email)
        WHERE email GLOB '*[^ -~]*';
    UPDATE subscriber_events SET email = nl_email_key(email) WHERE email GLOB '*[^ -~]*';
    UPDATE deliveries SET email = nl_ascii_email(email) WHERE email GLOB '*[^ -~]*';
    """
)

LIST_IDENTITY = (
    # The list's own id, random, which every link's signature covers (see tokens.py): two
    # lists that share NEWSLETTER_SECRET no longer accept each other's links. Links mailed
    # before this migration were signed without it; they stay valid for 90 days (CASL asks
    # for 60 after sending), and only for the subscribers who existed then.
    """
    CREATE TABLE list_identity (
        only_row      INTEGER PRIMARY KEY CHECK (only_row = 1),
        uid           TEXT NOT NULL,
        legacy_until  TEXT NOT NULL,
        legacy_max_id INTEGER NOT NULL
    );
    INSERT INTO list_identity (only_row, uid, legacy_until, legacy_max_id) VALUES (
        1,
        lower(hex(randomblob(16))),
        strftime('%Y-%m-%dT%H:%M:%SZ', 'now', '+90 days'),
        coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'subscribers'), 0)
    );
    """
)
MIGRATIONS.append(LIST_IDENTITY)
