//! Teams end to end over HTTP on every backend: the role matrix, isolation between orgs, the
//! audit entry of every change, team-scoped API keys (created and revoked by team members,
//! verified with their `team_id`), deletion refused while keys live, and members who leave the
//! org leaving its teams.

use meterline_e2e::{Account, Backend, Reply, Server, call};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

#[track_caller]
fn expect(reply: &Reply, status: StatusCode, code: Option<&str>) {
    match code {
        Some(code) => reply.assert_problem(status, code),
        None => assert_eq!(reply.status, status, "{}", reply.body),
    }
}

struct Fixture {
    server: Server,
    owner: Account,
    admin: Account,
    member: Account,
    other_member: Account,
    outsider: Account,
    org: String,
}

impl Fixture {
    async fn new(backend: Backend) -> Self {
        // Members leave and are invited back within a minute: no mail throttle here.
        let settings = [
            ("AUTH_IP_LIMIT_PER_MIN", "0"),
            ("MAIL_PER_EMAIL_PER_MIN", "0"),
        ];
        let server = Server::start_with(backend, &settings).await;
        let owner = server.account().await;
        let admin = server.account().await;
        let member = server.account().await;
        let other_member = server.account().await;
        let outsider = server.account().await;
        let org = server.org(&owner, "Org A").await;
        let fixture = Self {
            server,
            owner,
            admin,
            member,
            other_member,
            outsider,
            org,
        };
        for (who, role) in [
            (&fixture.admin, "admin"),
            (&fixture.member, "member"),
            (&fixture.other_member, "member"),
        ] {
            fixture
                .server
                .add_member(&fixture.owner, &fixture.org, who, role)
                .await;
        }
        fixture
    }

    fn path(&self, rest: &str) -> String {
        format!("/v1/orgs/{}{rest}", self.org)
    }

    async fn call(&self, who: &Account, method: Method, rest: &str, body: Value) -> Reply {
        call(&self.server, method, &self.path(rest), &who.token, body).await
    }

    async fn team(&self, who: &Account, name: &str) -> String {
        let reply = self
            .call(who, Method::POST, "/teams", json!({"name": name}))
            .await;
        expect(&reply, StatusCode::CREATED, None);
        assert_eq!(reply.body["name"], name);
        assert_eq!(reply.body["org_id"], self.org.as_str());
        let id = reply.body["id"].as_str().expect("id").to_owned();
        assert!(id.starts_with("team_"), "{id}");
        id
    }

    async fn add(&self, who: &Account, team: &str, body: Value) -> Reply {
        self.call(who, Method::POST, &format!("/teams/{team}/members"), body)
            .await
    }

    async fn team_members(&self, who: &Account, team: &str) -> Vec<String> {
        let reply = self
            .call(
                who,
                Method::GET,
                &format!("/teams/{team}/members"),
                Value::Null,
            )
            .await;
        expect(&reply, StatusCode::OK, None);
        reply.body["data"]
            .as_array()
            .expect("data")
            .iter()
            .map(|m| m["user_id"].as_str().expect("user_id").to_owned())
            .collect()
    }

    async fn key(&self, who: &Account, body: Value) -> Reply {
        self.call(who, Method::POST, "/api-keys", body).await
    }

    /// The org's audit entries as (action, actor, target), oldest first.
    async fn audited(&self) -> Vec<(String, String, String)> {
        let log = self
            .call(
                &self.owner,
                Method::GET,
                "/audit-log?limit=100",
                Value::Null,
            )
            .await;
        expect(&log, StatusCode::OK, None);
        let entries = log.body["data"].as_array().expect("entries");
        for entry in entries {
            assert!(entry["request_id"].is_string(), "{entry}");
        }
        entries
            .iter()
            .rev()
            .map(|e| {
                let text = |field: &str| e[field].as_str().unwrap_or_default().to_owned();
                (text("action"), text("actor_user_id"), text("target"))
            })
            .collect()
    }
}

async fn the_role_matrix(backend: Backend) {
    let f = Fixture::new(backend).await;
    let (owner, admin, member, other_member, outsider) =
        (&f.owner, &f.admin, &f.member, &f.other_member, &f.outsider);

    // Creating: owners and admins; a member is refused, an outsider does not see the org.
    let core = f.team(owner, "Core").await;
    let web = f.team(admin, "Web").await;
    let refused = f
        .call(member, Method::POST, "/teams", json!({"name": "Mine"}))
        .await;
    expect(&refused, StatusCode::FORBIDDEN, Some("forbidden"));
    let hidden = f
        .call(outsider, Method::POST, "/teams", json!({"name": "Mine"}))
        .await;
    expect(&hidden, StatusCode::NOT_FOUND, Some("not_found"));
    let taken = f
        .call(admin, Method::POST, "/teams", json!({"name": "core"}))
        .await;
    expect(&taken, StatusCode::CONFLICT, Some("team_name_taken"));
    let invalid = f
        .call(owner, Method::POST, "/teams", json!({"name": "  "}))
        .await;
    expect(
        &invalid,
        StatusCode::UNPROCESSABLE_ENTITY,
        Some("validation_failed"),
    );
    let unknown_field = f
        .call(
            owner,
            Method::POST,
            "/teams",
            json!({"name": "X", "colour": "red"}),
        )
        .await;
    assert!(
        unknown_field.status.is_client_error(),
        "{}",
        unknown_field.body
    );

    // Reading: every member; not an outsider.
    for who in [owner, admin, member] {
        let listed = f.call(who, Method::GET, "/teams", Value::Null).await;
        expect(&listed, StatusCode::OK, None);
        let names: Vec<&str> = listed.body["data"]
            .as_array()
            .expect("data")
            .iter()
            .filter_map(|t| t["name"].as_str())
            .collect();
        assert_eq!(names, ["Core", "Web"]);
        let one = f
            .call(who, Method::GET, &format!("/teams/{core}"), Value::Null)
            .await;
        expect(&one, StatusCode::OK, None);
        assert_eq!(one.body["id"], core.as_str());
        assert!(one.body["created_at"].is_string());
    }
    for rest in [
        "/teams".to_owned(),
        format!("/teams/{core}"),
        format!("/teams/{core}/members"),
    ] {
        let hidden = f.call(outsider, Method::GET, &rest, Value::Null).await;
        expect(&hidden, StatusCode::NOT_FOUND, Some("not_found"));
    }
    let paged = f
        .call(owner, Method::GET, "/teams?limit=1", Value::Null)
        .await;
    expect(&paged, StatusCode::OK, None);
    assert_eq!(paged.body["data"].as_array().map(Vec::len), Some(1));
    assert!(paged.body["next_cursor"].is_string());
    for missing in ["team_01jabcdefghjkmnpqrstvwxyz0", "nonsense"] {
        let reply = f
            .call(
                owner,
                Method::GET,
                &format!("/teams/{missing}"),
                Value::Null,
            )
            .await;
        expect(&reply, StatusCode::NOT_FOUND, Some("not_found"));
    }

    // Adding members: owners and admins, by email or id; again is 200 and changes nothing.
    let by_member = f.add(member, &core, json!({"email": member.email})).await;
    expect(&by_member, StatusCode::FORBIDDEN, Some("forbidden"));
    let added = f.add(admin, &core, json!({"email": member.email})).await;
    expect(&added, StatusCode::CREATED, None);
    assert_eq!(
        (added.body["user_id"].as_str(), added.body["email"].as_str()),
        (Some(member.id.as_str()), Some(member.email.as_str()))
    );
    assert!(added.body["added_at"].is_string());
    let again = f.add(owner, &core, json!({"user_id": member.id})).await;
    expect(&again, StatusCode::OK, None);
    assert_eq!(again.body["added_at"], added.body["added_at"]);
    let stranger = f.add(owner, &core, json!({"email": outsider.email})).await;
    expect(&stranger, StatusCode::NOT_FOUND, Some("user_not_found"));
    let stranger = f.add(owner, &core, json!({"user_id": outsider.id})).await;
    expect(&stranger, StatusCode::NOT_FOUND, Some("user_not_found"));
    let nobody = f
        .add(owner, &core, json!({"email": "nobody-at-all@example.com"}))
        .await;
    expect(&nobody, StatusCode::NOT_FOUND, Some("user_not_found"));
    for body in [
        json!({}),
        json!({"user_id": member.id, "email": member.email}),
    ] {
        let reply = f.add(owner, &core, body).await;
        expect(
            &reply,
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("validation_failed"),
        );
    }
    let bad_email = f.add(owner, &core, json!({"email": "not an email"})).await;
    expect(
        &bad_email,
        StatusCode::UNPROCESSABLE_ENTITY,
        Some("validation_failed"),
    );
    let no_team = f
        .add(
            owner,
            "team_01jabcdefghjkmnpqrstvwxyz0",
            json!({"email": member.email}),
        )
        .await;
    expect(&no_team, StatusCode::NOT_FOUND, Some("not_found"));
    for who in [owner, admin, member, other_member] {
        assert_eq!(f.team_members(who, &core).await, [member.id.as_str()]);
    }
    assert!(f.team_members(owner, &web).await.is_empty());

    // Removing: not someone else as a plain member; oneself, yes; owners and admins, anyone.
    let remove = |who: &Account, target: &str| {
        let rest = format!("/teams/{core}/members/{target}");
        let who = who.clone();
        let f = &f;
        async move { f.call(&who, Method::DELETE, &rest, Value::Null).await }
    };
    expect(
        &remove(other_member, &member.id).await,
        StatusCode::FORBIDDEN,
        Some("forbidden"),
    );
    expect(
        &remove(member, &member.id).await,
        StatusCode::NO_CONTENT,
        None,
    );
    assert!(f.team_members(owner, &core).await.is_empty());
    expect(
        &remove(member, &member.id).await,
        StatusCode::NOT_FOUND,
        Some("member_not_found"),
    );
    expect(
        &f.add(admin, &core, json!({"user_id": member.id})).await,
        StatusCode::CREATED,
        None,
    );
    expect(
        &remove(admin, &member.id).await,
        StatusCode::NO_CONTENT,
        None,
    );
    expect(
        &remove(admin, &member.id).await,
        StatusCode::NOT_FOUND,
        Some("member_not_found"),
    );
    expect(
        &remove(outsider, &member.id).await,
        StatusCode::NOT_FOUND,
        Some("not_found"),
    );

    // Deleting: owners and admins.
    let rest = format!("/teams/{web}");
    expect(
        &f.call(member, Method::DELETE, &rest, Value::Null).await,
        StatusCode::FORBIDDEN,
        Some("forbidden"),
    );
    expect(
        &f.call(outsider, Method::DELETE, &rest, Value::Null).await,
        StatusCode::NOT_FOUND,
        Some("not_found"),
    );
    expect(
        &f.call(admin, Method::DELETE, &rest, Value::Null).await,
        StatusCode::NO_CONTENT,
        None,
    );
    expect(
        &f.call(admin, Method::DELETE, &rest, Value::Null).await,
        StatusCode::NOT_FOUND,
        Some("not_found"),
    );
    expect(
        &f.call(owner, Method::GET, &rest, Value::Null).await,
        StatusCode::NOT_FOUND,
        Some("not_found"),
    );

    // Every change, and only the changes, in the audit log.
    let team_entries: Vec<_> = f
        .audited()
        .await
        .into_iter()
        .filter(|(action, _, _)| action.starts_with("team."))
        .collect();
    let entry = |action: &str, actor: &Account, target: &str| {
        (action.to_owned(), actor.id.clone(), target.to_owned())
    };
    assert_eq!(
        team_entries,
        [
            entry("team.created", owner, &core),
            entry("team.created", admin, &web),
            entry("team.member_added", admin, &member.id),
            entry("team.member_left", member, &member.id),
            entry("team.member_added", admin, &member.id),
            entry("team.member_removed", admin, &member.id),
            entry("team.deleted", admin, &web),
        ]
    );
}

async fn orgs_are_isolated(backend: Backend) {
    let f = Fixture::new(backend).await;
    let team = f.team(&f.owner, "Core").await;
    // The outsider owns org B; org A's team does not exist there.
    let other = f.server.org(&f.outsider, "Org B").await;
    let in_b = |rest: String| format!("/v1/orgs/{other}{rest}");
    let token = &f.outsider.token;
    for (method, rest, body) in [
        (Method::GET, format!("/teams/{team}"), Value::Null),
        (Method::DELETE, format!("/teams/{team}"), Value::Null),
        (Method::GET, format!("/teams/{team}/members"), Value::Null),
        (
            Method::POST,
            format!("/teams/{team}/members"),
            json!({"email": f.outsider.email}),
        ),
        (
            Method::DELETE,
            format!("/teams/{team}/members/{}", f.outsider.id),
            Value::Null,
        ),
    ] {
        let reply = call(&f.server, method, &in_b(rest), token, body).await;
        expect(&reply, StatusCode::NOT_FOUND, Some("not_found"));
    }
    let listed = call(
        &f.server,
        Method::GET,
        &in_b("/teams".into()),
        token,
        Value::Null,
    )
    .await;
    expect(&listed, StatusCode::OK, None);
    assert_eq!(listed.body["data"], json!([]));
    // Another org's team is no team of this org for keys either (422 on team_id).
    let key = call(
        &f.server,
        Method::POST,
        &in_b("/api-keys".into()),
        token,
        json!({"name": "k", "team_id": team}),
    )
    .await;
    expect(
        &key,
        StatusCode::UNPROCESSABLE_ENTITY,
        Some("validation_failed"),
    );
    assert_eq!(key.body["errors"][0]["field"], "team_id");
    let filtered = call(
        &f.server,
        Method::GET,
        &in_b(format!("/api-keys?team_id={team}")),
        token,
        Value::Null,
    )
    .await;
    expect(
        &filtered,
        StatusCode::UNPROCESSABLE_ENTITY,
        Some("validation_failed"),
    );
    // Org A's team is untouched, and B's log holds nothing about it.
    let still = f
        .call(
            &f.owner,
            Method::GET,
            &format!("/teams/{team}"),
            Value::Null,
        )
        .await;
    expect(&still, StatusCode::OK, None);
    let log = call(
        &f.server,
        Method::GET,
        &in_b("/audit-log".into()),
        token,
        Value::Null,
    )
    .await;
    expect(&log, StatusCode::OK, None);
    let actions: Vec<&str> = log.body["data"]
        .as_array()
        .expect("data")
        .iter()
        .filter_map(|e| e["action"].as_str())
        .collect();
    assert_eq!(actions, ["org.created"]);
}

async fn team_members_manage_their_teams_keys(backend: Backend) {
    let f = Fixture::new(backend).await;
    let (owner, member, other_member) = (&f.owner, &f.member, &f.other_member);
    let core = f.team(owner, "Core").await;
    let web = f.team(owner, "Web").await;
    expect(
        &f.add(owner, &core, json!({"user_id": member.id})).await,
        StatusCode::CREATED,
        None,
    );

    // A team member creates a key for their team, and only for it.
    let created = f.key(member, json!({"name": "ci", "team_id": core})).await;
    expect(&created, StatusCode::CREATED, None);
    assert_eq!(created.body["team_id"], core.as_str());
    let team_key = created.body["key"].as_str().expect("key").to_owned();
    let team_key_id = created.body["id"].as_str().expect("id").to_owned();
    for body in [
        json!({"name": "x", "team_id": web}),
        json!({"name": "x"}),
        json!({"name": "x", "team_id": null}),
    ] {
        let refused = f.key(member, body).await;
        expect(&refused, StatusCode::FORBIDDEN, Some("forbidden"));
    }
    let refused = f
        .key(other_member, json!({"name": "x", "team_id": core}))
        .await;
    expect(&refused, StatusCode::FORBIDDEN, Some("forbidden"));
    for team in ["team_01jabcdefghjkmnpqrstvwxyz0", "garbage"] {
        let unknown = f.key(member, json!({"name": "x", "team_id": team})).await;
        expect(
            &unknown,
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("validation_failed"),
        );
        assert_eq!(unknown.body["errors"][0]["field"], "team_id");
    }
    let wide = f.key(owner, json!({"name": "wide"})).await;
    expect(&wide, StatusCode::CREATED, None);
    assert_eq!(wide.body["team_id"], Value::Null);
    let wide_id = wide.body["id"].as_str().expect("id").to_owned();
    let by_owner = f
        .key(owner, json!({"name": "owner's", "team_id": core}))
        .await;
    expect(&by_owner, StatusCode::CREATED, None);
    let by_owner_id = by_owner.body["id"].as_str().expect("id").to_owned();

    // The team key authenticates, and says whose it is.
    let verified = f
        .server
        .metered("/v1/verify", Some(&team_key), Value::Null)
        .await;
    expect(&verified, StatusCode::OK, None);
    assert_eq!(verified.body["team_id"], core.as_str());
    assert_eq!(verified.body["org_id"], f.org.as_str());
    assert_eq!(verified.body["key_id"], team_key_id.as_str());
    let wide_key = wide.body["key"].as_str().expect("key");
    let verified = f
        .server
        .metered("/v1/verify", Some(wide_key), Value::Null)
        .await;
    expect(&verified, StatusCode::OK, None);
    assert_eq!(verified.body["team_id"], Value::Null);

    // Listing filters by team.
    let listed = f
        .call(
            member,
            Method::GET,
            &format!("/api-keys?team_id={core}"),
            Value::Null,
        )
        .await;
    expect(&listed, StatusCode::OK, None);
    let ids: Vec<&str> = listed.body["data"]
        .as_array()
        .expect("data")
        .iter()
        .filter_map(|k| k["id"].as_str())
        .collect();
    assert_eq!(ids, [by_owner_id.as_str(), team_key_id.as_str()]);
    let all = f.call(member, Method::GET, "/api-keys", Value::Null).await;
    assert_eq!(all.body["data"].as_array().map(Vec::len), Some(3));
    let none = f
        .call(
            member,
            Method::GET,
            &format!("/api-keys?team_id={web}"),
            Value::Null,
        )
        .await;
    assert_eq!(none.body["data"], json!([]));
    let bad = f
        .call(
            member,
            Method::GET,
            "/api-keys?team_id=garbage",
            Value::Null,
        )
        .await;
    expect(
        &bad,
        StatusCode::UNPROCESSABLE_ENTITY,
        Some("validation_failed"),
    );

    // Revoking: a team member revokes their team's keys only.
    let revoke = |who: &Account, key: &str| {
        let (who, rest) = (who.clone(), format!("/api-keys/{key}"));
        let f = &f;
        async move { f.call(&who, Method::DELETE, &rest, Value::Null).await }
    };
    expect(
        &revoke(member, &wide_id).await,
        StatusCode::FORBIDDEN,
        Some("forbidden"),
    );
    expect(
        &revoke(other_member, &team_key_id).await,
        StatusCode::FORBIDDEN,
        Some("forbidden"),
    );
    expect(
        &revoke(member, "key_01jabcdefghjkmnpqrstvwxyz0").await,
        StatusCode::NOT_FOUND,
        Some("api_key_not_found"),
    );

    // A team with live keys is not deleted.
    let core_path = format!("/teams/{core}");
    let delete_core = || f.call(owner, Method::DELETE, &core_path, Value::Null);
    expect(
        &delete_core().await,
        StatusCode::CONFLICT,
        Some("team_has_active_keys"),
    );
    expect(
        &revoke(member, &team_key_id).await,
        StatusCode::NO_CONTENT,
        None,
    );
    let refused = f
        .server
        .metered("/v1/verify", Some(&team_key), Value::Null)
        .await;
    expect(&refused, StatusCode::UNAUTHORIZED, Some("api_key_revoked"));
    expect(
        &delete_core().await,
        StatusCode::CONFLICT,
        Some("team_has_active_keys"),
    );
    expect(
        &revoke(member, &by_owner_id).await,
        StatusCode::NO_CONTENT,
        None,
    );
    expect(&delete_core().await, StatusCode::NO_CONTENT, None);

    // Audited, with the team in the key's state.
    let log = f
        .call(owner, Method::GET, "/audit-log?limit=100", Value::Null)
        .await;
    let created_entry = log.body["data"]
        .as_array()
        .expect("data")
        .iter()
        .find(|e| e["action"] == "api_key.created" && e["target"] == team_key_id.as_str())
        .cloned()
        .expect("audited");
    assert_eq!(created_entry["actor_user_id"], member.id.as_str());
    assert_eq!(created_entry["after"]["team_id"], core.as_str());
    let revoked_by_member = log.body["data"]
        .as_array()
        .expect("data")
        .iter()
        .filter(|e| e["action"] == "api_key.revoked" && e["actor_user_id"] == member.id.as_str())
        .count();
    assert_eq!(revoked_by_member, 2);
}

async fn leaving_the_org_leaves_its_teams(backend: Backend) {
    let f = Fixture::new(backend).await;
    let (owner, member) = (&f.owner, &f.member);
    let core = f.team(owner, "Core").await;
    expect(
        &f.add(owner, &core, json!({"email": member.email})).await,
        StatusCode::CREATED,
        None,
    );
    assert_eq!(f.team_members(owner, &core).await, [member.id.as_str()]);

    let left = f
        .call(
            member,
            Method::DELETE,
            &format!("/members/{}", member.id),
            Value::Null,
        )
        .await;
    expect(&left, StatusCode::NO_CONTENT, None);
    assert!(f.team_members(owner, &core).await.is_empty());
    // No longer a member of anything here.
    let hidden = f
        .call(member, Method::GET, &format!("/teams/{core}"), Value::Null)
        .await;
    expect(&hidden, StatusCode::NOT_FOUND, Some("not_found"));

    // Coming back does not restore the team membership, nor its rights over team keys.
    f.server.add_member(owner, &f.org, member, "member").await;
    assert!(f.team_members(owner, &core).await.is_empty());
    let refused = f.key(member, json!({"name": "x", "team_id": core})).await;
    expect(&refused, StatusCode::FORBIDDEN, Some("forbidden"));
    expect(
        &f.call(
            member,
            Method::DELETE,
            &format!("/teams/{core}/members/{}", member.id),
            Value::Null,
        )
        .await,
        StatusCode::NOT_FOUND,
        Some("member_not_found"),
    );
    // Added again, a member again.
    expect(
        &f.add(owner, &core, json!({"user_id": member.id})).await,
        StatusCode::CREATED,
        None,
    );
    assert_eq!(f.team_members(owner, &core).await, [member.id.as_str()]);
}

meterline_e2e::on_every_backend!(
    the_role_matrix,
    orgs_are_isolated,
    team_members_manage_their_teams_keys,
    leaving_the_org_leaves_its_teams,
);
