-- The authorization lifecycle: secret rotation, pending OAuth flows, each installation's
-- grant and refresh bookkeeping. Never a token value (tokens are secrets, sealed).

-- The value a rotated secret replaced, kept for its grace period: webhook checks accept
-- it until `previous_until` (Unix seconds); outbound requests never use it.
ALTER TABLE secrets ADD COLUMN previous_ciphertext BYTEA;
ALTER TABLE secrets ADD COLUMN previous_until BIGINT;

-- One pending OAuth authorization: single-use (deleted when used), bound to its
-- installation, expiring. Keyed by the state's SHA-256, so reading the table does not
-- give anyone a state to complete a flow with.
CREATE TABLE oauth_states (
    state_hash      TEXT PRIMARY KEY NOT NULL,
    installation_id TEXT NOT NULL,
    redirect_uri    TEXT NOT NULL,
    code_verifier   BYTEA NOT NULL,      -- PKCE verifier, sealed like a secret
    expires_at      BIGINT NOT NULL    -- Unix seconds
);
CREATE INDEX oauth_states_expiry ON oauth_states (expires_at);

CREATE TABLE installation_auth (
    installation_id  TEXT PRIMARY KEY NOT NULL,
    status           TEXT NOT NULL,     -- pending | active | needs_reauth | revoked
    reason           TEXT,              -- why, for needs_reauth and revoked
    scopes           TEXT NOT NULL,     -- granted scopes, JSON array
    token_expires_at BIGINT,           -- Unix seconds; NULL when the token does not expire
    authorized_at    TEXT,
    refreshed_at     TEXT,
    refresh_failures BIGINT NOT NULL DEFAULT 0,
    failing_since    BIGINT,           -- first failure of the current run of failures
    next_refresh_at  BIGINT,           -- earliest retry after a failure
    last_error       TEXT,
    lease_owner      TEXT,              -- the node refreshing now
    lease_until      BIGINT,
    updated_at       TEXT NOT NULL
);
CREATE INDEX installation_auth_expiry ON installation_auth (token_expires_at);
