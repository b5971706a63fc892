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
    rate_limit_per_sec    INTEGER,                     -- NULL: unlimited
    disabled              INTEGER NOT NULL DEFAULT 0,
    secret                BLOB NOT NULL,             -- sealed signing key (see crypto)
    previous_secret       BLOB,                      -- the rotated-out key, during its grace
    previous_secret_until INTEGER,
    created_at            TEXT NOT NULL,
    deleted_at            TEXT
);

-- One row per consumer: how far into the log it has taken events (for an endpoint: into
-- its outbox below; for the NATS sink: published and acknowledged), who drains it now,
-- and how its last attempts went (the circuit breaker's state).
CREATE TABLE delivery_sinks (
    id                   TEXT PRIMARY KEY NOT NULL,   -- ep_… or 'nats'
    cursor_tx            INTEGER NOT NULL,
    cursor_seq           INTEGER NOT NULL,
    lease_owner          TEXT,
    lease_until          INTEGER,
    consecutive_failures INTEGER NOT NULL DEFAULT 0,
    last_error           TEXT,
    circuit_open_until   INTEGER
);

-- An endpoint's outbox: each matching event, pending until delivered or dead.
CREATE TABLE deliveries (
    endpoint_id     TEXT NOT NULL,
    event_id        TEXT NOT NULL,
    event_tx        INTEGER NOT NULL,                  -- its place in the log
    event_seq       INTEGER NOT NULL,
    installation_id TEXT NOT NULL,
    status          TEXT NOT NULL,                    -- 'pending' | 'delivered' | 'dead'
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    enqueued_at     INTEGER NOT NULL,
    finished_at     INTEGER,
    last_status     INTEGER,                           -- the endpoint's last HTTP status
    last_error      TEXT,
    last_response   TEXT,                             -- its last answer, cut short
    PRIMARY KEY (endpoint_id, event_id)
);
-- The head of each installation's pending deliveries: the only one sent (order).
CREATE INDEX deliveries_pending ON deliveries (endpoint_id, installation_id, event_tx, event_seq)
    WHERE status = 'pending';
CREATE INDEX deliveries_finished ON deliveries (finished_at) WHERE status = 'delivered';

CREATE TABLE delivery_attempts (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    endpoint_id TEXT NOT NULL,
    event_id    TEXT NOT NULL,
    attempt     INTEGER NOT NULL,
    at          INTEGER NOT NULL,
    duration_ms INTEGER NOT NULL,
    status      INTEGER,                               -- HTTP status; NULL when none came
    error       TEXT,
    response    TEXT
);
CREATE INDEX delivery_attempts_endpoint ON delivery_attempts (endpoint_id, id);
CREATE INDEX delivery_attempts_at ON delivery_attempts (at);
