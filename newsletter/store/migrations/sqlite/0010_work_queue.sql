-- 10: the ledger as a work queue. A worker claims rows in batches: each `sending` row
-- names its `owner` and a `lease_until` (epoch seconds); a worker renews its leases
-- while it lives, and a row whose lease has lapsed is turned `uncertain` by any other
-- worker (its message may have gone). Outcomes are recorded only where the owner still
-- holds the row. send_workers: who took part in a send, their share and when last seen.
ALTER TABLE deliveries ADD COLUMN owner TEXT;
ALTER TABLE deliveries ADD COLUMN lease_until REAL;
CREATE TABLE send_workers (
    issue_id      TEXT NOT NULL,
    worker        TEXT NOT NULL,
    host          TEXT NOT NULL,
    pid           INTEGER NOT NULL,
    started_at    REAL NOT NULL,
    seen_at       REAL NOT NULL,
    sent          INTEGER NOT NULL DEFAULT 0,
    failed        INTEGER NOT NULL DEFAULT 0,
    deferred      INTEGER NOT NULL DEFAULT 0,
    uncertain     INTEGER NOT NULL DEFAULT 0,
    finished_at   REAL,
    PRIMARY KEY (issue_id, worker)
);
