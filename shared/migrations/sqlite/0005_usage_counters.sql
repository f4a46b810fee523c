-- Usage counters per org, meter and hour/day/month (UTC), written in the same transaction as
-- the usage_events rows that make each event count once.
CREATE TABLE usage_counters (
    org_id       TEXT NOT NULL,
    granularity  TEXT NOT NULL,
    period_start INTEGER NOT NULL,
    meter        TEXT NOT NULL,
    quantity     INTEGER NOT NULL,
    PRIMARY KEY (org_id, granularity, period_start, meter)
);
