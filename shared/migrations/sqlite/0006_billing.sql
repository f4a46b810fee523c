-- Plans and subscriptions, kept as JSON documents (the shapes live in the domain types and are
-- the same on every backend), and the payment provider's webhook events already applied.
CREATE TABLE plans (
    id         TEXT PRIMARY KEY,
    body       TEXT NOT NULL,
    updated_at INTEGER NOT NULL
);

CREATE TABLE subscriptions (
    org_id  TEXT PRIMARY KEY,
    version INTEGER NOT NULL,
    body    TEXT NOT NULL
);

CREATE TABLE webhook_events (
    id          TEXT PRIMARY KEY,
    received_at INTEGER NOT NULL
);
