-- 6: the list's own id, random, which every link's signature covers (see tokens.py): two
-- lists that share NEWSLETTER_SECRET no longer accept each other's links. Links mailed
-- before this migration were signed without it; they stay valid for 90 days (CASL asks
-- for 60 after sending), and only for the subscribers who existed then.
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
