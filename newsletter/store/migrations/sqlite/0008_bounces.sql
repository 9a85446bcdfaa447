-- 8: what comes back after a send: bounces (DSN), complaints (ARF), mailto unsubscribes,
-- and the refusals a server gave during the send itself.
-- - `bounce_messages`: each message read once, by a fingerprint (the SHA-256 of its bytes;
-- `send:ISSUE:ID` for a refusal during a send). Recording it and its events is one
-- commit; moving it out of the mailbox comes after, so a crash between the two finds it
-- recorded and only moves it: never counted twice.
-- - `bounce_events`: one per report and recipient, with the class, the RFC 3463 status,
-- the server's own words, how it was matched to a delivery and what it did.
-- - `mailbox_uids`: POP3 has no folders: the UIDLs already recorded, deleted next time.
CREATE TABLE bounce_messages (
    fingerprint   TEXT PRIMARY KEY,
    origin        TEXT NOT NULL,
    received_at   TEXT NOT NULL,
    outcome       TEXT NOT NULL
                  CHECK (outcome IN ('processed', 'ignored', 'unrecognised')),
    note          TEXT NOT NULL DEFAULT ''
);
CREATE TABLE bounce_events (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    fingerprint   TEXT NOT NULL REFERENCES bounce_messages (fingerprint),
    at            TEXT NOT NULL,
    class         TEXT NOT NULL
                  CHECK (class IN ('hard', 'soft', 'blocked', 'complaint', 'unsubscribe',
                                   'ignored', 'unrecognised')),
    source        TEXT NOT NULL,
    subscriber_id INTEGER,
    email         TEXT NOT NULL DEFAULT '',
    issue_id      TEXT,
    status        TEXT NOT NULL DEFAULT '',
    diagnostic    TEXT NOT NULL DEFAULT '',
    domain        TEXT NOT NULL DEFAULT '',
    matched_by    TEXT NOT NULL DEFAULT '',
    action        TEXT NOT NULL DEFAULT ''
);
CREATE INDEX bounce_events_subscriber ON bounce_events (subscriber_id, issue_id);
CREATE INDEX bounce_events_at ON bounce_events (at);
CREATE TABLE mailbox_uids (
    mailbox       TEXT NOT NULL,
    uid           TEXT NOT NULL,
    fingerprint   TEXT NOT NULL,
    PRIMARY KEY (mailbox, uid)
) WITHOUT ROWID;
