-- Invitations to orgs: one per org and address (a new one replaces the last). Accepted,
-- declined and revoked invitations are deleted; the org's audit log keeps their story.
CREATE TABLE invitations (
    id         TEXT PRIMARY KEY,
    org_id     TEXT NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    org_name   TEXT NOT NULL,
    email      TEXT NOT NULL,
    role       TEXT NOT NULL,
    invited_by TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    UNIQUE (org_id, email)
);
CREATE INDEX invitations_by_email ON invitations (email, id);

-- Each user's own security log (password changed, email verified ...), never an org's.
CREATE TABLE security_log (
    id         TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL,
    action     TEXT NOT NULL,
    ip         TEXT,
    user_agent TEXT,
    request_id TEXT,
    at         BIGINT NOT NULL
);
CREATE INDEX security_log_by_user ON security_log (user_id, id);
