//! Organizations end to end over HTTP: the whole role matrix, tenant isolation, the audit log
//! of every change, concurrent demotions and pagination, on every store backend.

use meterline_e2e::{Account, Backend, Reply, Server, call};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::cell::RefCell;
use std::collections::HashSet;

#[track_caller]
fn expect(reply: &Reply, status: StatusCode, code: Option<&str>) {
    match code {
        Some(code) => reply.assert_problem(status, code),
        None => assert_eq!(reply.status, status, "{}", reply.body),
    }
}

/// One expected audit entry: action, actor, target.
type Audited = (String, String, String);

struct Fixture {
    server: Server,
    owner: Account,
    admin: Account,
    member: Account,
    org: String,
    audited: RefCell<Vec<Audited>>,
}

impl Fixture {
    async fn new(backend: Backend) -> Self {
        let server = Server::start_with(backend, &[("AUTH_IP_LIMIT_PER_MIN", "0")]).await;
        let owner = server.account().await;
        let admin = server.account().await;
        let member = server.account().await;
        let org = server.org(&owner, "Org A").await;
        let fixture = Self {
            server,
            owner,
            admin,
            member,
            org,
            audited: RefCell::new(Vec::new()),
        };
        fixture.audited.borrow_mut().push((
            "org.created".into(),
            fixture.owner.id.clone(),
            fixture.org.clone(),
        ));
        let (admin, member, owner) = (
            fixture.admin.clone(),
            fixture.member.clone(),
            fixture.owner.clone(),
        );
        fixture.join(&owner, &admin, "admin").await;
        fixture.join(&owner, &member, "member").await;
        fixture
    }

    /// `actor` invites `target`, who accepts: the only way into an org.
    async fn join(&self, actor: &Account, target: &Account, role: &str) {
        let invitation = self.server.add_member(actor, &self.org, target, role).await;
        let id = invitation["id"].as_str().expect("id").to_owned();
        let mut audited = self.audited.borrow_mut();
        audited.push(("invitation.created".into(), actor.id.clone(), id.clone()));
        audited.push(("invitation.accepted".into(), target.id.clone(), id));
    }

    fn path(&self, rest: &str) -> String {
        format!("/v1/orgs/{}{rest}", self.org)
    }

    async fn put(
        &self,
        actor: &Account,
        target: &Account,
        role: &str,
        status: StatusCode,
        code: Option<&str>,
    ) -> Reply {
        let reply = call(
            &self.server,
            Method::POST,
            &self.path("/members"),
            &actor.token,
            json!({"email": target.email, "role": role}),
        )
        .await;
        expect(&reply, status, code);
        match status {
            StatusCode::ACCEPTED => self.audited.borrow_mut().push((
                "invitation.created".into(),
                actor.id.clone(),
                reply.body["invitation"]["id"]
                    .as_str()
                    .unwrap_or_default()
                    .into(),
            )),
            StatusCode::OK if reply.body["role"] == role => self.audited.borrow_mut().push((
                "member.role_changed".into(),
                actor.id.clone(),
                target.id.clone(),
            )),
            _ => {}
        }
        reply
    }

    async fn remove(
        &self,
        actor: &Account,
        target: &Account,
        status: StatusCode,
        code: Option<&str>,
    ) {
        let reply = call(
            &self.server,
            Method::DELETE,
            &self.path(&format!("/members/{}", target.id)),
            &actor.token,
            Value::Null,
        )
        .await;
        expect(&reply, status, code);
        if status == StatusCode::NO_CONTENT {
            let action = if actor.id == target.id {
                "member.left"
            } else {
                "member.removed"
            };
            self.audited
                .borrow_mut()
                .push((action.into(), actor.id.clone(), target.id.clone()));
        }
    }
}

async fn the_role_matrix(backend: Backend) {
    let f = Fixture::new(backend).await;
    let (owner, admin, member) = (f.owner.clone(), f.admin.clone(), f.member.clone());
    let server = &f.server;

    // Reading: every member.
    for who in [&owner, &admin, &member] {
        let org = call(server, Method::GET, &f.path(""), &who.token, Value::Null).await;
        expect(&org, StatusCode::OK, None);
        let members = call(
            server,
            Method::GET,
            &f.path("/members"),
            &who.token,
            Value::Null,
        )
        .await;
        expect(&members, StatusCode::OK, None);
        assert_eq!(members.body["data"].as_array().map(Vec::len), Some(3));
    }
    let roles: Vec<Value> = {
        let mut roles = Vec::new();
        for who in [&owner, &admin, &member] {
            roles.push(
                call(server, Method::GET, &f.path(""), &who.token, Value::Null)
                    .await
                    .body["role"]
                    .clone(),
            );
        }
        roles
    };
    assert_eq!(roles, [json!("owner"), json!("admin"), json!("member")]);

    // Settings: owner and admin.
    for (who, status, code) in [
        (&owner, StatusCode::OK, None),
        (&admin, StatusCode::OK, None),
        (&member, StatusCode::FORBIDDEN, Some("forbidden")),
    ] {
        let name = format!("Renamed by {}", who.email);
        let reply = call(
            server,
            Method::PATCH,
            &f.path(""),
            &who.token,
            json!({"name": name, "rate_limit_rpm": 600}),
        )
        .await;
        expect(&reply, status, code);
        if status == StatusCode::OK {
            assert_eq!(
                (
                    reply.body["name"].as_str(),
                    reply.body["rate_limit_rpm"].as_u64()
                ),
                (Some(name.as_str()), Some(600))
            );
            f.audited
                .borrow_mut()
                .push(("org.updated".into(), who.id.clone(), f.org.clone()));
        }
    }
    let bad = call(
        server,
        Method::PATCH,
        &f.path(""),
        &owner.token,
        json!({"rate_limit_rpm": 0, "name": " "}),
    )
    .await;
    expect(
        &bad,
        StatusCode::UNPROCESSABLE_ENTITY,
        Some("validation_failed"),
    );
    assert_eq!(bad.body["errors"].as_array().map(Vec::len), Some(2));

    // Audit log: owner and admin.
    for (who, status, code) in [
        (&owner, StatusCode::OK, None),
        (&admin, StatusCode::OK, None),
        (&member, StatusCode::FORBIDDEN, Some("forbidden")),
    ] {
        let reply = call(
            server,
            Method::GET,
            &f.path("/audit-log"),
            &who.token,
            Value::Null,
        )
        .await;
        expect(&reply, status, code);
    }

    // Adding members: owner and admin; only an owner grants owner.
    let newcomers = [
        server.account().await,
        server.account().await,
        server.account().await,
    ];
    f.join(&owner, &newcomers[0], "member").await;
    f.join(&admin, &newcomers[1], "member").await;
    f.put(
        &member,
        &newcomers[2],
        "member",
        StatusCode::FORBIDDEN,
        Some("forbidden"),
    )
    .await;
    f.put(
        &admin,
        &newcomers[2],
        "owner",
        StatusCode::FORBIDDEN,
        Some("forbidden"),
    )
    .await;
    // An address without an account is invited like any other (the same answer).
    let unknown = call(
        server,
        Method::POST,
        &f.path("/members"),
        &owner.token,
        json!({"email": "nobody@example.com", "role": "member"}),
    )
    .await;
    expect(&unknown, StatusCode::ACCEPTED, None);
    f.audited.borrow_mut().push((
        "invitation.created".into(),
        owner.id.clone(),
        unknown.body["invitation"]["id"]
            .as_str()
            .unwrap_or_default()
            .into(),
    ));
    let invalid = call(
        server,
        Method::POST,
        &f.path("/members"),
        &owner.token,
        json!({"email": "x", "role": "king"}),
    )
    .await;
    expect(
        &invalid,
        StatusCode::UNPROCESSABLE_ENTITY,
        Some("validation_failed"),
    );
    assert_eq!(invalid.body["errors"].as_array().map(Vec::len), Some(2));

    // Changing roles: owner and admin; only an owner touches owner.
    f.put(&admin, &newcomers[0], "admin", StatusCode::OK, None)
        .await;
    f.put(
        &member,
        &newcomers[1],
        "admin",
        StatusCode::FORBIDDEN,
        Some("forbidden"),
    )
    .await;
    f.put(
        &admin,
        &owner,
        "member",
        StatusCode::FORBIDDEN,
        Some("forbidden"),
    )
    .await;
    f.put(
        &admin,
        &newcomers[1],
        "owner",
        StatusCode::FORBIDDEN,
        Some("forbidden"),
    )
    .await;
    let same = f
        .put(&owner, &newcomers[0], "admin", StatusCode::OK, None)
        .await;
    assert_eq!(same.body["role"], "admin");
    f.audited.borrow_mut().pop(); // Setting the role a member already has changes (and audits) nothing.
    f.put(&owner, &newcomers[1], "owner", StatusCode::OK, None)
        .await;

    // The last owner can be neither demoted nor removed... while there is another owner, they can.
    f.put(&owner, &newcomers[1], "member", StatusCode::OK, None)
        .await;
    f.put(
        &owner,
        &owner,
        "admin",
        StatusCode::CONFLICT,
        Some("last_owner"),
    )
    .await;
    f.remove(&owner, &owner, StatusCode::CONFLICT, Some("last_owner"))
        .await;

    // Removing: owner and admin remove others (not owners); anyone leaves.
    f.remove(
        &member,
        &newcomers[0],
        StatusCode::FORBIDDEN,
        Some("forbidden"),
    )
    .await;
    f.remove(&admin, &owner, StatusCode::FORBIDDEN, Some("forbidden"))
        .await;
    f.remove(&admin, &newcomers[0], StatusCode::NO_CONTENT, None)
        .await;
    f.remove(&owner, &newcomers[1], StatusCode::NO_CONTENT, None)
        .await;
    f.remove(
        &owner,
        &newcomers[1],
        StatusCode::NOT_FOUND,
        Some("member_not_found"),
    )
    .await;
    f.remove(&member, &member, StatusCode::NO_CONTENT, None)
        .await;
    let gone = call(server, Method::GET, &f.path(""), &member.token, Value::Null).await;
    expect(&gone, StatusCode::NOT_FOUND, Some("not_found"));

    // A member's password change is theirs alone: it is not in the org's log.
    let changed = call(
        server,
        Method::POST,
        "/v1/auth/password",
        &admin.token,
        json!({"current_password": "correct horse battery", "new_password": "another long secret"}),
    )
    .await;
    expect(&changed, StatusCode::NO_CONTENT, None);

    // Every change above is in the log, newest first, with its actor and before/after.
    let log = call(
        server,
        Method::GET,
        &f.path("/audit-log?limit=100"),
        &owner.token,
        Value::Null,
    )
    .await;
    expect(&log, StatusCode::OK, None);
    let entries = log.body["data"].as_array().expect("entries").clone();
    let seen: Vec<Audited> = entries
        .iter()
        .rev()
        .map(|e| {
            (
                e["action"].as_str().unwrap_or_default().into(),
                e["actor_user_id"].as_str().unwrap_or_default().into(),
                e["target"].as_str().unwrap_or_default().into(),
            )
        })
        .collect();
    assert_eq!(seen, *f.audited.borrow());
    for entry in &entries {
        assert_eq!(entry["org_id"], f.org.as_str());
        assert!(
            entry["request_id"].is_string()
                && entry["ip"] == "127.0.0.1"
                && entry["at"].is_string(),
            "{entry}"
        );
        match entry["action"].as_str() {
            Some("org.created" | "invitation.created") => {
                assert!(entry["before"].is_null() && entry["after"].is_object())
            }
            Some("member.removed" | "member.left") => {
                assert!(entry["before"].is_object() && entry["after"].is_null())
            }
            _ => assert!(
                entry["before"].is_object() && entry["after"].is_object(),
                "{entry}"
            ),
        }
    }
    let demotion = entries
        .iter()
        .find(|e| e["action"] == "member.role_changed" && e["target"] == newcomers[1].id.as_str())
        .expect("demotion");
    assert_eq!(
        (
            demotion["before"]["role"].as_str(),
            demotion["after"]["role"].as_str()
        ),
        (Some("owner"), Some("member"))
    );

    // Deleting: only an owner; afterwards the org is gone for everyone.
    for who in [&admin] {
        expect(
            &call(server, Method::DELETE, &f.path(""), &who.token, Value::Null).await,
            StatusCode::FORBIDDEN,
            Some("forbidden"),
        );
    }
    expect(
        &call(
            server,
            Method::DELETE,
            &f.path(""),
            &owner.token,
            Value::Null,
        )
        .await,
        StatusCode::NO_CONTENT,
        None,
    );
    for who in [&owner, &admin] {
        expect(
            &call(server, Method::GET, &f.path(""), &who.token, Value::Null).await,
            StatusCode::NOT_FOUND,
            Some("not_found"),
        );
    }
    let mine = call(server, Method::GET, "/v1/orgs", &owner.token, Value::Null).await;
    assert_eq!(mine.body["data"], json!([]));
}

async fn tenants_are_isolated(backend: Backend) {
    let f = Fixture::new(backend).await;
    let server = &f.server;
    let outsider = server.account().await;
    let org_b = server.org(&outsider, "Org B").await;
    let victim = f.member.id.clone();
    let invitation = server
        .invite(&f.owner, &f.org, "invitee@example.com", "member")
        .await;
    let invitation = invitation["id"].as_str().expect("id").to_owned();
    let routes = |org: &str| {
        vec![
            (Method::GET, format!("/v1/orgs/{org}"), Value::Null),
            (
                Method::PATCH,
                format!("/v1/orgs/{org}"),
                json!({"name": "pwned"}),
            ),
            (Method::DELETE, format!("/v1/orgs/{org}"), Value::Null),
            (Method::GET, format!("/v1/orgs/{org}/members"), Value::Null),
            (
                Method::POST,
                format!("/v1/orgs/{org}/members"),
                json!({"email": "x@example.com", "role": "owner"}),
            ),
            (
                Method::DELETE,
                format!("/v1/orgs/{org}/members/{victim}"),
                Value::Null,
            ),
            (
                Method::GET,
                format!("/v1/orgs/{org}/audit-log"),
                Value::Null,
            ),
            (
                Method::GET,
                format!("/v1/orgs/{org}/invitations"),
                Value::Null,
            ),
            (
                Method::DELETE,
                format!("/v1/orgs/{org}/invitations/{invitation}"),
                Value::Null,
            ),
        ]
    };
    // A user of org B gets 404 on every org A route; so does anyone for a made-up org.
    for (method, path, body) in routes(&f.org)
        .into_iter()
        .chain(routes("org_01jzzzzzzzzzzzzzzzzzzzzzzz"))
        .chain(routes("not-an-id"))
    {
        let reply = call(server, method.clone(), &path, &outsider.token, body).await;
        expect(&reply, StatusCode::NOT_FOUND, Some("not_found"));
    }
    // And org A's owner sees nothing of org B.
    for (method, path, body) in routes(&org_b) {
        let reply = call(server, method.clone(), &path, &f.owner.token, body).await;
        expect(&reply, StatusCode::NOT_FOUND, Some("not_found"));
    }
    // Nothing changed: org A intact, org B intact.
    let org_a = call(
        server,
        Method::GET,
        &f.path(""),
        &f.owner.token,
        Value::Null,
    )
    .await;
    assert_eq!(org_a.body["name"], "Org A");
    let invitations = call(
        server,
        Method::GET,
        &f.path("/invitations"),
        &f.owner.token,
        Value::Null,
    )
    .await;
    assert_eq!(invitations.body["data"][0]["id"], invitation.as_str());
    assert_eq!(
        call(
            server,
            Method::GET,
            &f.path("/members"),
            &f.owner.token,
            Value::Null
        )
        .await
        .body["data"]
            .as_array()
            .map(Vec::len),
        Some(3)
    );
    let mine = call(
        server,
        Method::GET,
        "/v1/orgs",
        &outsider.token,
        Value::Null,
    )
    .await;
    assert_eq!(mine.body["data"].as_array().map(Vec::len), Some(1));
    // /me lists each user's own memberships with roles.
    let me = server.me(&f.admin.token).await;
    assert_eq!(
        me.body["memberships"],
        json!([{"org_id": f.org, "name": "Org A", "role": "admin"}])
    );
}

async fn concurrent_demotions_leave_an_owner(backend: Backend) {
    // One address is invited to three orgs in a row: no mail throttle here.
    let settings = [
        ("AUTH_IP_LIMIT_PER_MIN", "0"),
        ("MAIL_PER_EMAIL_PER_MIN", "0"),
    ];
    let server = Server::start_with(backend, &settings).await;
    let (a, b) = (server.account().await, server.account().await);
    for round in 0..3 {
        let org = server.org(&a, &format!("Race {round}")).await;
        let members = format!("/v1/orgs/{org}/members");
        server.add_member(&a, &org, &b, "owner").await;
        let (first, second) = tokio::join!(
            call(
                &server,
                Method::POST,
                &members,
                &a.token,
                json!({"email": b.email, "role": "admin"})
            ),
            call(
                &server,
                Method::POST,
                &members,
                &b.token,
                json!({"email": a.email, "role": "admin"})
            ),
        );
        let statuses = [first.status, second.status];
        assert_eq!(
            statuses.iter().filter(|s| **s == StatusCode::OK).count(),
            1,
            "{statuses:?}"
        );
        // The loser was refused by the atomic owner check (409 `last_owner` or `conflict`), or,
        // when it ran just after the winner, as an admin who may no longer touch owners (403).
        for reply in [&first, &second] {
            if reply.status != StatusCode::OK {
                let code = reply.body["code"].as_str().unwrap_or_default();
                assert!(
                    ["last_owner", "conflict", "forbidden"].contains(&code),
                    "{}",
                    reply.body
                );
            }
        }
        let listed = call(&server, Method::GET, &members, &a.token, Value::Null).await;
        let listed = if listed.status == StatusCode::OK {
            listed
        } else {
            call(&server, Method::GET, &members, &b.token, Value::Null).await
        };
        let owners = listed.body["data"]
            .as_array()
            .expect("members")
            .iter()
            .filter(|m| m["role"] == "owner")
            .count();
        assert_eq!(owners, 1);
    }
}

async fn orgs_page_newest_first_exactly_once(backend: Backend) {
    let server = Server::start_with(backend, &[("AUTH_IP_LIMIT_PER_MIN", "0")]).await;
    let owner = server.account().await;
    let mut created = Vec::new();
    for i in 0..250 {
        created.push(server.org(&owner, &format!("Org {i:03}")).await);
    }
    created.reverse();
    let mut seen = Vec::new();
    let mut path = "/v1/orgs?limit=100".to_owned();
    let mut pages = 0;
    loop {
        let reply = call(&server, Method::GET, &path, &owner.token, Value::Null).await;
        expect(&reply, StatusCode::OK, None);
        pages += 1;
        let data = reply.body["data"].as_array().expect("data");
        assert!(data.len() <= 100);
        seen.extend(
            data.iter()
                .map(|o| o["id"].as_str().expect("id").to_owned()),
        );
        match reply.body["next_cursor"].as_str() {
            Some(cursor) => path = format!("/v1/orgs?limit=100&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen.len(), 250);
    assert_eq!(seen.iter().collect::<HashSet<_>>().len(), 250);
    assert_eq!(seen, created);
    for bad in [
        "/v1/orgs?limit=0",
        "/v1/orgs?limit=101",
        "/v1/orgs?cursor=%21%21",
    ] {
        expect(
            &call(&server, Method::GET, bad, &owner.token, Value::Null).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("validation_failed"),
        );
    }
    expect(
        &call(
            &server,
            Method::GET,
            "/v1/orgs?limit=abc",
            &owner.token,
            Value::Null,
        )
        .await,
        StatusCode::BAD_REQUEST,
        Some("invalid_query"),
    );
}

meterline_e2e::on_every_backend!(
    the_role_matrix,
    tenants_are_isolated,
    concurrent_demotions_leave_an_owner,
    orgs_page_newest_first_exactly_once,
);
