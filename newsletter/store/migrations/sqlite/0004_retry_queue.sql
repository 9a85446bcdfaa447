-- 4: a real retry queue and sends that remember themselves.
-- - `deferred`: a temporary refusal waiting for `next_attempt`; `first_attempt` starts the
-- clock after which it expires (NEWSLETTER_RETRY_FOR). Old retries (pending with
-- attempts) become deferred. SQLite cannot change a CHECK, so the table is rebuilt.
-- - `sends` keeps the issue folder, the options given (rate, cap, concurrency: reused on
-- resume), a state (`held` after Ctrl-C: only `send` resumes it, not `due`), and the
-- frozen editions, so a resume or a retry days later sends what was checked.
-- - `schedules`: sends waiting for their time.
CREATE TABLE deliveries_v4 (
    issue_id      TEXT NOT NULL REFERENCES sends (issue_id),
    subscriber_id INTEGER NOT NULL,
    email         TEXT NOT NULL,
    name          TEXT NOT NULL DEFAULT '',
    edition       TEXT NOT NULL CHECK (edition IN ('en', 'fr', 'bilingual')),
    state         TEXT NOT NULL DEFAULT 'pending'
                  CHECK (state IN ('pending', 'sending', 'sent', 'deferred', 'failed',
                                   'uncertain', 'skipped')),
    attempts      INTEGER NOT NULL DEFAULT 0,
    last_reply    TEXT NOT NULL DEFAULT '',
    updated_at    TEXT,
    next_attempt  REAL NOT NULL DEFAULT 0,
    first_attempt REAL,
    message_id    TEXT NOT NULL,
    PRIMARY KEY (issue_id, subscriber_id)
) WITHOUT ROWID;
INSERT INTO deliveries_v4 (issue_id, subscriber_id, email, name, edition, state, attempts,
                           last_reply, updated_at, next_attempt, first_attempt, message_id)
    SELECT issue_id, subscriber_id, email, name, edition,
           CASE WHEN state = 'pending' AND attempts > 0 THEN 'deferred' ELSE state END,
           attempts, last_reply, updated_at, next_attempt,
           CASE WHEN attempts > 0 THEN unixepoch(updated_at) END, message_id
    FROM deliveries;
DROP TABLE deliveries;
ALTER TABLE deliveries_v4 RENAME TO deliveries;
CREATE INDEX deliveries_state ON deliveries (issue_id, state, next_attempt);

ALTER TABLE sends ADD COLUMN issue_dir TEXT NOT NULL DEFAULT '';
ALTER TABLE sends ADD COLUMN options TEXT NOT NULL DEFAULT '{}';
ALTER TABLE sends ADD COLUMN state TEXT NOT NULL DEFAULT 'active'
    CHECK (state IN ('active', 'held', 'done'));
UPDATE sends SET state = 'done' WHERE finished_at IS NOT NULL;

CREATE TABLE frozen_editions (
    issue_id      TEXT NOT NULL,
    edition       TEXT NOT NULL,
    frozen        TEXT NOT NULL,
    PRIMARY KEY (issue_id, edition)
);

CREATE TABLE schedules (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    issue_id      TEXT NOT NULL,
    issue_dir     TEXT NOT NULL,
    at            REAL NOT NULL,
    zone          TEXT NOT NULL,
    grace         REAL NOT NULL,
    rebuild       INTEGER NOT NULL DEFAULT 0,
    options       TEXT NOT NULL DEFAULT '{}',
    inputs        TEXT NOT NULL DEFAULT '{}',
    state         TEXT NOT NULL DEFAULT 'scheduled'
                  CHECK (state IN ('scheduled', 'started', 'missed', 'cancelled',
                                   'refused')),
    note          TEXT NOT NULL DEFAULT '',
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL
);
CREATE UNIQUE INDEX schedules_waiting ON schedules (issue_id) WHERE state = 'scheduled';
