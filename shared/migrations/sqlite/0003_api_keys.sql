-- API keys: only the SHA-256 of a key is stored; the prefix is for display.
CREATE TABLE api_keys (
    id             TEXT PRIMARY KEY,
    org_id         TEXT NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    hash           TEXT NOT NULL UNIQUE,
    name           TEXT NOT NULL,
    prefix         TEXT NOT NULL,
    created_at     INTEGER NOT NULL,
    expires_at     INTEGER,
    last_used_at   INTEGER,
    rate_limit_rpm INTEGER,
    revoked_at     INTEGER
);
CREATE INDEX api_keys_by_org ON api_keys (org_id, id);
