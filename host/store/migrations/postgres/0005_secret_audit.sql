-- Every change to an installation's secrets: which secret, how it changed, when. Never a
-- value, nor anything derived from one.
CREATE TABLE secret_audit (
    seq BIGSERIAL PRIMARY KEY,
    installation_id TEXT NOT NULL,
    name TEXT NOT NULL,
    action TEXT NOT NULL,
    at TEXT NOT NULL
);
CREATE INDEX secret_audit_installation ON secret_audit (installation_id, seq);
