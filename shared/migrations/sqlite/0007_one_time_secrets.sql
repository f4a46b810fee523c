-- One-time secrets (verification and reset tokens, login codes, OAuth state), hashed only.
-- One live secret per purpose and subject: a new one replaces the last.
CREATE TABLE one_time_secrets (
    purpose     TEXT NOT NULL,
    subject     TEXT NOT NULL,
    secret_hash TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    attempts    INTEGER NOT NULL DEFAULT 0,
    payload     TEXT,
    PRIMARY KEY (purpose, subject)
);
CREATE INDEX one_time_secrets_by_expiry ON one_time_secrets (expires_at);
