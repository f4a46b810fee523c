-- Usage events, one row per (org, event id): the record that makes delivery idempotent.
CREATE TABLE usage_events (
    org_id          TEXT NOT NULL,
    event_id        TEXT NOT NULL,
    key_id          TEXT NOT NULL,
    meter           TEXT NOT NULL,
    quantity        INTEGER NOT NULL,
    occurred_at     INTEGER NOT NULL,
    properties_json TEXT,
    PRIMARY KEY (org_id, event_id)
);
