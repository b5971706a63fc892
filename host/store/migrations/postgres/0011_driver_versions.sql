-- Every driver version the host was given, content-addressed by the sha256 of its
-- component, with the bytes themselves (so every node of a deployment can load it), the
-- history of which version of each driver was active (the newest activation is the
-- active one; rollback goes to the one active before it), and an installation's pin to a
-- version.
CREATE TABLE driver_versions (
    sha256       TEXT PRIMARY KEY NOT NULL,
    driver_id    TEXT NOT NULL,
    version      TEXT NOT NULL,
    wit_version  TEXT NOT NULL,
    size_bytes   BIGINT NOT NULL,
    component    BYTEA NOT NULL,
    source       TEXT NOT NULL,     -- 'upload' | 'directory'
    added_at     TEXT NOT NULL
);
CREATE INDEX driver_versions_driver ON driver_versions (driver_id, added_at);

CREATE TABLE driver_activations (
    id           BIGSERIAL PRIMARY KEY,
    driver_id    TEXT NOT NULL,
    sha256       TEXT NOT NULL REFERENCES driver_versions (sha256) ON DELETE CASCADE,
    reason       TEXT NOT NULL,     -- 'upload' | 'directory' | 'activate' | 'rollback'
    activated_at TEXT NOT NULL
);
CREATE INDEX driver_activations_driver ON driver_activations (driver_id, id);

ALTER TABLE installations ADD COLUMN driver_sha256 TEXT REFERENCES driver_versions (sha256);
