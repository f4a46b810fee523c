-- Teams inside an org, their members, and API keys scoped to a team.
-- name_key is the lower-cased name: unique per org. key_count counts the team's unrevoked
-- keys, so "no deletion while keys are live" is one conditional delete.
CREATE TABLE teams (
    id         TEXT PRIMARY KEY,
    org_id     TEXT NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    name       TEXT NOT NULL,
    name_key   TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    key_count  INTEGER NOT NULL DEFAULT 0,
    UNIQUE (org_id, name_key)
);
CREATE INDEX teams_by_org ON teams (org_id, id);

-- A membership counts only while the user has been an org member since before added_at
-- (memberships.joined_at <= added_at), so leaving the org voids it without a delete here.
CREATE TABLE team_members (
    team_id  TEXT NOT NULL REFERENCES teams (id) ON DELETE CASCADE,
    org_id   TEXT NOT NULL,
    user_id  TEXT NOT NULL,
    added_at INTEGER NOT NULL,
    PRIMARY KEY (team_id, user_id)
);
CREATE INDEX team_members_by_org_user ON team_members (org_id, user_id);

ALTER TABLE api_keys ADD COLUMN team_id TEXT;
CREATE INDEX api_keys_by_team ON api_keys (org_id, team_id, id);
