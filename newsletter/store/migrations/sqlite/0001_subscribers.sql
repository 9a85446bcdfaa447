-- 1: subscribers and their audit trail.
-- AUTOINCREMENT so that an id, which signed links carry, is never given to someone else
-- after a removal. email_key is what uniqueness is about: the local part is case-sensitive
-- by the RFCs, the domain is not.
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
