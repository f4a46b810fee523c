-- Organizations, memberships and the audit log.
-- owner_count is kept with the org so "never zero owners" is one conditional update.
CREATE TABLE orgs (
    id             TEXT PRIMARY KEY,
    name           TEXT NOT NULL,
    rate_limit_rpm INTEGER,
    created_at     INTEGER NOT NULL,
    owner_count    INTEGER NOT NULL
);

CREATE TABLE memberships (
    org_id    TEXT NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    user_id   TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    email     TEXT NOT NULL,
    role      TEXT NOT NULL,
    joined_at INTEGER NOT NULL,
    PRIMARY KEY (org_id, user_id)
);
CREATE INDEX memberships_by_user ON memberships (user_id, org_id);

-- Kept when its org is deleted: the record of who did what outlives the org.
CREATE TABLE audit_log (
    id            TEXT PRIMARY KEY,
    org_id        TEXT NOT NULL,
    actor_user_id TEXT NOT NULL,
    action        TEXT NOT NULL,
    target        TEXT NOT NULL,
    before_json   TEXT,
    after_json    TEXT,
    ip            TEXT,
    user_agent    TEXT,
    request_id    TEXT,
    at            INTEGER NOT NULL
);
CREATE INDEX audit_log_by_org ON audit_log (org_id, id);
