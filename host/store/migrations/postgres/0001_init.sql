-- Sluice store schema, PostgreSQL flavour. Keep in step with migrations/sqlite/0001_init.sql:
-- same tables, columns and semantics; only the types and identity columns differ.
-- Times are TEXT, RFC 3339 UTC with a `Z` suffix (the sqlx Any driver has no date types).

CREATE TABLE installations (
    id          TEXT PRIMARY KEY NOT NULL,
    driver_id   TEXT NOT NULL,
    settings    TEXT NOT NULL,          -- JSON object
    account_key TEXT,                   -- provider account the installation routes for
    created_at  TEXT NOT NULL,
    deleted_at  TEXT                    -- soft delete; the id stays taken
);

-- One live installation per (driver, account key).
CREATE UNIQUE INDEX installations_live_account_key
    ON installations (driver_id, account_key)
    WHERE deleted_at IS NULL AND account_key IS NOT NULL;

CREATE TABLE secrets (
    installation_id TEXT NOT NULL REFERENCES installations (id),
    name            TEXT NOT NULL,
    ciphertext      BYTEA NOT NULL,     -- 24-byte nonce || XChaCha20-Poly1305 ciphertext
    updated_at      TEXT NOT NULL,
    PRIMARY KEY (installation_id, name)
);

CREATE TABLE driver_state (
    installation_id TEXT NOT NULL REFERENCES installations (id),
    key             TEXT NOT NULL,
    value           BYTEA NOT NULL,
    updated_at      TEXT NOT NULL,
    PRIMARY KEY (installation_id, key)
);

CREATE TABLE raw_events (
    id                BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    installation_id   TEXT NOT NULL REFERENCES installations (id),
    provider_event_id TEXT NOT NULL,
    event_type        TEXT NOT NULL,
    account_key       TEXT,
    driver_id         TEXT NOT NULL,
    driver_version    TEXT NOT NULL,
    received_at       TEXT NOT NULL,
    payload           BYTEA NOT NULL,
    status            TEXT NOT NULL,    -- 'normalized' | 'failed'
    failure_reason    TEXT,
    UNIQUE (installation_id, provider_event_id)
);

CREATE INDEX raw_events_failed ON raw_events (installation_id, id) WHERE status = 'failed';

CREATE TABLE events (
    seq             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id              TEXT NOT NULL UNIQUE,
    installation_id TEXT NOT NULL REFERENCES installations (id),
    raw_event_id    BIGINT NOT NULL REFERENCES raw_events (id),
    type            TEXT NOT NULL,
    subject         TEXT,
    time            TEXT NOT NULL,
    body            TEXT NOT NULL       -- the CloudEvent JSON
);

CREATE INDEX events_installation_seq ON events (installation_id, seq);
