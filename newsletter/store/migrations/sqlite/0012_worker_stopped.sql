-- 12: send_workers.stopped: why a worker's pass ended before nothing was left for it
-- ('interrupted', 'terminated', 'paused', 'failed', 'stopped'), '' when it ran to the end:
-- so that `status` tells a worker whose send was killed from one that had finished.
ALTER TABLE send_workers ADD COLUMN stopped TEXT NOT NULL DEFAULT '';
