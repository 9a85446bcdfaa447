-- 13: nothing to change here. SQLite's 13 (../sqlite/0013_ledger_indexes.sql) gives its
-- ledger the partial indexes this schema has had from the start (deliveries_sending and
-- deliveries_deferred); the number keeps both backends at the same version.
SELECT 1;
