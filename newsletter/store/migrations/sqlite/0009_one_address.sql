-- 9: one person, one address. Addresses are now compared without regard to case, the
-- local part too (every mailbox provider does; RFC 5321 allows either), so that
-- KEVIN.Smith@Example.ORG and kevin.smith@example.org stop getting two copies. Rows that
-- differ only in case are merged into the one with the most restrictive status (a
-- complaint, then an unsubscribe, then a bounce, then the oldest): its history takes the
-- other's (audit trail, consent records, bounce reports), `subscriber_merges` keeps what
-- was merged (links already mailed to the other still find the person; the CLI says what
-- it merged), and the keys are folded everywhere they are kept.
CREATE TABLE subscriber_merges (
    merged_id     INTEGER PRIMARY KEY,
    kept_id       INTEGER NOT NULL,
    email         TEXT NOT NULL,
    status        TEXT NOT NULL,
    language      TEXT NOT NULL,
    at            TEXT NOT NULL,
    reported      INTEGER NOT NULL DEFAULT 0
);
INSERT INTO subscriber_merges (merged_id, kept_id, email, status, language, at)
    SELECT s.id,
           (SELECT k.id FROM subscribers k WHERE lower(k.email_key) = lower(s.email_key)
            ORDER BY CASE k.status WHEN 'complained' THEN 0 WHEN 'unsubscribed' THEN 1
                                   WHEN 'bounced' THEN 2 ELSE 3 END, k.id
            LIMIT 1),
           s.email, s.status, s.language, strftime('%Y-%m-%dT%H:%M:%S+00:00', 'now')
    FROM subscribers s
    WHERE EXISTS (SELECT 1 FROM subscribers o
                  WHERE o.id != s.id AND lower(o.email_key) = lower(s.email_key));
DELETE FROM subscriber_merges WHERE merged_id = kept_id;
UPDATE subscriber_events
    SET subscriber_id = (SELECT kept_id FROM subscriber_merges
                         WHERE merged_id = subscriber_events.subscriber_id)
    WHERE subscriber_id IN (SELECT merged_id FROM subscriber_merges);
INSERT INTO subscriber_events (subscriber_id, email, at, kind, route, detail)
    SELECT kept_id, lower(email), at, 'update', 'migration:same-address',
           'merged #' || merged_id || ' ' || email || ' (' || status || ', ' || language
           || ') into this subscriber: the same address in another case'
    FROM subscriber_merges;
UPDATE bounce_events
    SET subscriber_id = (SELECT kept_id FROM subscriber_merges
                         WHERE merged_id = bounce_events.subscriber_id)
    WHERE subscriber_id IN (SELECT merged_id FROM subscriber_merges);
DELETE FROM subscribers WHERE id IN (SELECT merged_id FROM subscriber_merges);
UPDATE subscribers SET email_key = lower(email_key);
UPDATE subscriber_events SET email = lower(email);

-- Consent records are append-only; here, once, their key column takes the new key and a
-- merged person's records follow them to the row kept (what they prove is untouched),
-- and the guard is set again in the same transaction.
DROP TRIGGER consents_no_update;
UPDATE consents
    SET email = lower(email),
        subscriber_id = coalesce((SELECT kept_id FROM subscriber_merges
                                  WHERE merged_id = consents.subscriber_id), subscriber_id);
CREATE TRIGGER consents_no_update BEFORE UPDATE ON consents
BEGIN
    SELECT RAISE(ABORT, 'consent records are append-only');
END;
-- one open signup request per address whatever its case: the latest stays
DELETE FROM signup_requests WHERE confirmed_at IS NULL AND id NOT IN
    (SELECT max(id) FROM signup_requests WHERE confirmed_at IS NULL
     GROUP BY lower(email_key));
UPDATE signup_requests
    SET email_key = lower(email_key),
        subscriber_id = coalesce((SELECT kept_id FROM subscriber_merges
                                  WHERE merged_id = signup_requests.subscriber_id),
                                 subscriber_id);
