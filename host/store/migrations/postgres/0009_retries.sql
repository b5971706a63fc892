-- Failed normalizations are retried by the host: how many attempts were made, when the
-- next is due (Unix ms), and `dead` once the attempts are spent (replayable by hand).
ALTER TABLE raw_events ADD COLUMN attempts BIGINT NOT NULL DEFAULT 1;
ALTER TABLE raw_events ADD COLUMN next_attempt_at BIGINT;
CREATE INDEX raw_events_retry ON raw_events (next_attempt_at) WHERE status = 'failed';
