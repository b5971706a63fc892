-- Scheduled polling: when each polled installation is due, who is polling it now (a
-- lease, so several nodes poll each installation once at a time), and how its last polls
-- went. Times are Unix milliseconds (providers' Retry-After can be fractional).
CREATE TABLE poll_schedule (
    installation_id      TEXT PRIMARY KEY NOT NULL,
    interval_ms          BIGINT NOT NULL,
    next_poll_at         BIGINT NOT NULL,
    paused               BIGINT NOT NULL DEFAULT 0,
    last_poll_at         BIGINT,
    last_error           TEXT,
    consecutive_failures BIGINT NOT NULL DEFAULT 0,
    lease_owner          TEXT,
    lease_until          BIGINT
);
CREATE INDEX poll_schedule_due ON poll_schedule (next_poll_at);
