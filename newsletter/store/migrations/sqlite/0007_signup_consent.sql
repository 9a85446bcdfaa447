-- 7: joining by the web form (double opt-in) and the proof of consent.
--
-- signup_requests: a request waiting for its confirmation click. It is not a subscriber:
-- it lives here, apart, is never mailed an issue and counted nowhere else, and goes away
-- 7 days after it was made (or once confirmed and its link has expired). One open
-- request per address; asking again refreshes it. The link carries the id and a MAC
-- over the id and `nonce`. ip and user_agent are kept only with RECORD_CONSENT_IP.
--
-- signup_limits: one row per attempt, keyed by a keyed hash of the IP address or of the
-- address asked for, so that the limits hold across processes and restarts without
-- keeping either in clear. Rows older than a day are deleted.
--
-- consent_texts and consents: the proof (CASL, GDPR art. 7(1)). consents is append-only
-- (the triggers refuse any change) and outlives the subscriber, like subscriber_events;
-- email is the email_key. A consent text is kept once, under the hash of its words.
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
