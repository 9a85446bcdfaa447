-- 2: the delivery ledger. One row per (issue, subscriber), written when a send starts,
-- so the recipient list is fixed then. `state` moves pending -> sending -> sent | failed,
-- or back to pending with a later next_attempt for a temporary failure; a row found in
-- `sending` when a send starts was in flight when the last one died: it becomes
-- `uncertain` and is resent only on request. The message id is chosen once, so a resent
-- message carries the same id as the first (receivers can tell it is the same message).
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
