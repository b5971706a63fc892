-- Delivery beyond the cursor API. The event log is the outbox: every normalized event is
-- in it, committed with its delivery, in commit order. Each consumer the host drives (a
-- webhook endpoint, the NATS sink) keeps a committed position in it and a lease, so one
-- node at a time drains it. Times are Unix milliseconds.

-- Outbound webhook endpoints; soft-deleted so their ids are never reused.
CREATE TABLE endpoints (
    id                    TEXT PRIMARY KEY NOT NULL,  -- ep_…
    url                   TEXT NOT NULL,
    description           TEXT,
    installation_id       TEXT,                       -- only this installation's events
    driver_id             TEXT,                       -- only this driver's events
    event_types           TEXT,                       -- JSON array of types; NULL for all
    rate_limit_per_sec    BIGINT,                     -- NULL: unlimited
    disabled              BIGINT NOT NULL DEFAULT 0,
    secret                BYTEA NOT NULL,             -- sealed signing key (see crypto)
    previous_secret       BYTEA,                      -- the rotated-out key, during its grace
    previous_secret_until BIGINT,
    created_at            TEXT NOT NULL,
    deleted_at            TEXT
);

-- One row per consumer: how far into the log it has taken events (for an endpoint: into
-- its outbox below; for the NATS sink: published and acknowledged), who drains it now,
-- and how its last attempts went (the circuit breaker's state).
CREATE TABLE delivery_sinks (
    id                   TEXT PRIMARY KEY NOT NULL,   -- ep_… or 'nats'
    cursor_tx            BIGINT NOT NULL,
    cursor_seq           BIGINT NOT NULL,
    lease_owner          TEXT,
    lease_until          BIGINT,
    consecutive_failures BIGINT NOT NULL DEFAULT 0,
    last_error           TEXT,
    circuit_open_until   BIGINT
);

-- An endpoint's outbox: each matching event, pending until delivered or dead.
CREATE TABLE deliveries (
    endpoint_id     TEXT NOT NULL,
    event_id        TEXT NOT NULL,
    event_tx        BIGINT NOT NULL,                  -- its place in the log
    event_seq       BIGINT NOT NULL,
    installation_id TEXT NOT NULL,
    status          TEXT NOT NULL,                    -- 'pending' | 'delivered' | 'dead'
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    enqueued_at     BIGINT NOT NULL,
    finished_at     BIGINT,
    last_status     BIGINT,                           -- the endpoint's last HTTP status
    last_error      TEXT,
    last_response   TEXT,                             -- its last answer, cut short
    PRIMARY KEY (endpoint_id, event_id)
);
-- The head of each installation's pending deliveries: the only one sent (order).
CREATE INDEX deliveries_pending ON deliveries (endpoint_id, installation_id, event_tx, event_seq)
    WHERE status = 'pending';
CREATE INDEX deliveries_finished ON deliveries (finished_at) WHERE status = 'delivered';

CREATE TABLE delivery_attempts (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    endpoint_id TEXT NOT NULL,
    event_id    TEXT NOT NULL,
    attempt     BIGINT NOT NULL,
    at          BIGINT NOT NULL,
    duration_ms BIGINT NOT NULL,
    status      BIGINT,                               -- HTTP status; NULL when none came
    error       TEXT,
    response    TEXT
);
CREATE INDEX delivery_attempts_endpoint ON delivery_attempts (endpoint_id, id);
CREATE INDEX delivery_attempts_at ON delivery_attempts (at);
