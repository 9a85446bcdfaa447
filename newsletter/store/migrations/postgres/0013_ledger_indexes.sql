-- 13: as ../sqlite/0013_ledger_indexes.sql, which gives SQLite's ledger the partial indexes
-- this schema has had from the start (deliveries_sending, deliveries_deferred): both get one
-- for the rows that failed and one for those that may have arrived, which status and the
-- end of a send list (a million rows walked for a few, otherwise). Few rows end in either
-- state, so a send writes them rarely.
CREATE INDEX deliveries_failed ON deliveries (issue_id, next_attempt) WHERE state = 'failed';
CREATE INDEX deliveries_uncertain ON deliveries (issue_id, next_attempt)
    WHERE state = 'uncertain';
