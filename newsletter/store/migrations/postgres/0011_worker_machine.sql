-- 11: send_workers.machine, as in ../sqlite/0011_worker_machine.sql: this machine's boot and
-- PID namespace, so that a container sharing a host name is not taken for this machine.
ALTER TABLE send_workers ADD COLUMN machine text NOT NULL DEFAULT '';
