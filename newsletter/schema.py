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

MIGRATIONS.append(
    # 4: joining by the web form (double opt-in) and the proof of consent.
    #
    # signup_requests: a request waiting for its confirmation click. It is not a subscriber:
    # it lives here, apart, is never mailed an issue and counted nowhere else, and goes away
    # 7 days after it was made (or once confirmed and its link has expired). One open
    # request per address; asking again refreshes it. The link carries the id and a MAC
    # over the id and `nonce`. ip and user_agent are kept only with RECORD_CONSENT_IP.
    #
    # signup_limits: one row per attempt, keyed by a keyed hash of the IP address or of the
    # address asked for, so that the limits hold across processes and restarts without
    # keeping either in clear. Rows older than a day are deleted.
    #
    # consent_texts and consents: the proof (CASL, GDPR art. 7(1)). consents is append-only
    # (the triggers refuse any change) and outlives the subscriber, like subscriber_events;
    # email is the email_key. A consent text is kept once, under the hash of its words.
    """
    CREATE TABLE signup_requests (
        id            INTEGER PRIMARY KEY AUTOINCREMENT,
        email         TEXT NOT NULL,
        email_key     TEXT NOT NULL,
        name          TEXT NOT NULL DEFAULT '',
        language      TEXT NOT NULL CHECK (language IN ('en', 'fr', 'both')),
        page_language TEXT NOT NULL CHECK (page_language IN ('en', 'fr', 'both')),
        method        TEXT NOT NULL,
        nonce         TEXT NOT NULL,
        requested_at  TEXT NOT NULL,
        expires_at    TEXT NOT NULL,
        mailed_at     TEXT,
        confirmed_at  TEXT,
        subscriber_id INTEGER,
        form_url      TEXT NOT NULL,
        text_hash     TEXT NOT NULL,
        ip            TEXT NOT NULL DEFAULT '',
        user_agent    TEXT NOT NULL DEFAULT ''
    );
    CREATE UNIQUE INDEX signup_requests_open ON signup_requests (email_key)
        WHERE confirmed_at IS NULL;
    CREATE INDEX signup_requests_expiry ON signup_requests (expires_at);

    CREATE TABLE signup_limits (
        key           TEXT NOT NULL,
        at            TEXT NOT NULL
    );
    CREATE INDEX signup_limits_key ON signup_limits (key, at);
    CREATE INDEX signup_limits_at ON signup_limits (at);

    CREATE TABLE consent_texts (
        hash          TEXT PRIMARY KEY,
        version       TEXT NOT NULL,
        language      TEXT NOT NULL,
        text          TEXT NOT NULL,
        first_used    TEXT NOT NULL
    );

    CREATE TABLE consents (
        id                 INTEGER PRIMARY KEY AUTOINCREMENT,
        subscriber_id      INTEGER NOT NULL,
        email              TEXT NOT NULL,
        basis              TEXT NOT NULL CHECK (basis IN ('express', 'implied')),
        method             TEXT NOT NULL,
        recorded_at        TEXT NOT NULL,
        consent_date       TEXT NOT NULL DEFAULT '',
        requested_at       TEXT NOT NULL DEFAULT '',
        confirmed_at       TEXT NOT NULL DEFAULT '',
        form_url           TEXT NOT NULL DEFAULT '',
        text_version       TEXT NOT NULL DEFAULT '',
        text_hash          TEXT NOT NULL DEFAULT '',
        language           TEXT NOT NULL DEFAULT '',
        request_ip         TEXT NOT NULL DEFAULT '',
        request_user_agent TEXT NOT NULL DEFAULT '',
        confirm_ip         TEXT NOT NULL DEFAULT '',
        confirm_user_agent TEXT NOT NULL DEFAULT '',
        note               TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX consents_subscriber ON consents (subscriber_id, id);
    CREATE INDEX consents_email ON consents (email);
    CREATE TRIGGER consents_no_update BEFORE UPDATE ON consents
    BEGIN
        SELECT RAISE(ABORT, 'consent records are append-only');
    END;
    CREATE TRIGGER consents_no_delete BEFORE DELETE ON consents
    BEGIN
        SELECT RAISE(ABORT, 'consent records are append-only');
    END;
    """
)
