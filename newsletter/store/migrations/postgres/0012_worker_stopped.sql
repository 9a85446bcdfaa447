-- 12: send_workers.stopped, as in ../sqlite/0012_worker_stopped.sql: why a worker's pass
-- ended early, '' when it ran to the end.
ALTER TABLE send_workers ADD COLUMN stopped text NOT NULL DEFAULT '';
