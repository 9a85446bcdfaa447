-- 11: send_workers.machine: this machine's boot and PID namespace, beside the host name.
-- Two containers that share a host name (`--network host`) each see only their own
-- processes: a worker of the other one must not be taken for a dead one of ours.
ALTER TABLE send_workers ADD COLUMN machine TEXT NOT NULL DEFAULT '';
