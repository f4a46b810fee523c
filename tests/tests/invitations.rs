//! Invitations end to end over HTTP on every backend: nobody becomes a member of an org
//! without consent. Adding a non-member mails an invitation (202); membership starts when the
//! invitee, with their address verified, accepts it. Account events go to the user's own
//! security log, never to an org's audit log.

use chrono::Duration;
use meterline::clock::ManualClock;
use meterline_e2e::{Account, Backend, Reply, Server, call, unique_email};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::sync::Arc;

async fn get(server: &Server, who: &Account, path: &str) -> Reply {
    call(server, Method::GET, path, &who.token, Value::Null).await
}

async fn post(server: &Server, who: &Account, path: &str, body: Value) -> Reply {
    call(server, Method::POST, path, &who.token, body).await
}

fn accept_path(id: &str) -> String {
    format!("/v1/auth/me/invitations/{id}/accept")
}

fn decline_path(id: &str) -> String {
    format!("/v1/auth/me/invitations/{id}/decline")
}

fn ids(list: &Reply) -> Vec<String> {
    assert_eq!(list.status, StatusCode::OK, "{}", list.body);
    list.body["data"]
        .as_array()
        .expect("a list")
        .iter()
        .map(|item| item["id"].as_str().expect("id").to_owned())
        .collect()
}

fn member_ids(list: &Reply) -> Vec<String> {
    assert_eq!(list.status, StatusCode::OK, "{}", list.body);
    list.body["data"]
        .as_array()
        .expect("a list")
        .iter()
        .map(|m| m["user_id"].as_str().expect("user_id").to_owned())
        .collect()
}

fn actions(log: &Reply) -> Vec<String> {
    assert_eq!(log.status, StatusCode::OK, "{}", log.body);
    log.body["data"]
        .as_array()
        .expect("a list")
        .iter()
        .map(|e| e["action"].as_str().expect("action").to_owned())
        .collect()
}

async fn adding_a_non_member_invites_them_and_membership_starts_on_accept(backend: Backend) {
    let server = Server::start(backend).await;
    let owner = server.account().await;
    let invitee = server.account().await;
    let org = server.org(&owner, "Acme").await;

    let added = post(
        &server,
        &owner,
        &format!("/v1/orgs/{org}/members"),
        json!({"email": invitee.email, "role": "admin"}),
    )
    .await;
    assert_eq!(added.status, StatusCode::ACCEPTED, "{}", added.body);
    let invitation = &added.body["invitation"];
    let mut keys: Vec<&str> = invitation
        .as_object()
        .expect("an invitation")
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "email",
            "expires_at",
            "id",
            "org_id",
            "org_name",
            "role",
            "status"
        ]
    );
    assert_eq!(invitation["org_id"], org.as_str());
    assert_eq!(invitation["org_name"], "Acme");
    assert_eq!(invitation["email"], invitee.email.as_str());
    assert_eq!(invitation["role"], "admin");
    assert_eq!(invitation["status"], "pending");
    let id = invitation["id"].as_str().expect("id").to_owned();
    assert!(id.starts_with("inv_"));
    let expires = chrono::DateTime::parse_from_rfc3339(
        invitation["expires_at"].as_str().expect("expires_at"),
    )
    .expect("a time");
    let left = expires.with_timezone(&chrono::Utc) - chrono::Utc::now();
    assert!(left > Duration::days(7) - Duration::minutes(5) && left <= Duration::days(7));
    // The invitee is mailed, naming the org.
    let mail = server.last_mail(&invitee.email, "invitation");
    assert!(mail["text"].as_str().expect("text").contains("Acme"));

    // Not a member until they accept: the org is invisible to them, the list does not hold them.
    let members = format!("/v1/orgs/{org}/members");
    assert_eq!(
        member_ids(&get(&server, &owner, &members).await),
        [owner.id.as_str()]
    );
    get(&server, &invitee, &format!("/v1/orgs/{org}"))
        .await
        .assert_problem(StatusCode::NOT_FOUND, "not_found");
    assert_eq!(
        server.me(&invitee.token).await.body["memberships"],
        json!([])
    );
    let pending = get(&server, &owner, &format!("/v1/orgs/{org}/invitations")).await;
    assert_eq!(ids(&pending), [id.as_str()]);
    assert_eq!(pending.body["data"][0]["status"], "pending");

    // With the address verified, the invitee sees the invitation and accepts it.
    server.verify_email(&invitee).await;
    let mine = get(&server, &invitee, "/v1/auth/me/invitations").await;
    assert_eq!(ids(&mine), [id.as_str()]);
    assert_eq!(mine.body["data"][0], *invitation);
    let accepted = post(&server, &invitee, &accept_path(&id), Value::Null).await;
    assert_eq!(accepted.status, StatusCode::OK, "{}", accepted.body);
    assert_eq!(accepted.body["org_id"], org.as_str());
    assert_eq!(accepted.body["user_id"], invitee.id.as_str());
    assert_eq!(accepted.body["role"], "admin");
    let mut listed = member_ids(&get(&server, &owner, &members).await);
    listed.sort();
    let mut expected = vec![owner.id.clone(), invitee.id.clone()];
    expected.sort();
    assert_eq!(listed, expected);
    let org_view = get(&server, &invitee, &format!("/v1/orgs/{org}")).await;
    assert_eq!(org_view.body["role"], "admin");

    // Spent: nothing pending, a second accept finds nothing.
    assert!(ids(&get(&server, &invitee, "/v1/auth/me/invitations").await).is_empty());
    assert!(ids(&get(&server, &owner, &format!("/v1/orgs/{org}/invitations")).await).is_empty());
    post(&server, &invitee, &accept_path(&id), Value::Null)
        .await
        .assert_problem(StatusCode::NOT_FOUND, "invitation_not_found");
    // A member is re-roled as before (200), not invited.
    let re_roled = post(
        &server,
        &owner,
        &members,
        json!({"email": invitee.email, "role": "member"}),
    )
    .await;
    assert_eq!(re_roled.status, StatusCode::OK, "{}", re_roled.body);
    assert_eq!(re_roled.body["role"], "member");

    // Every step is audited.
    let log = get(&server, &owner, &format!("/v1/orgs/{org}/audit-log")).await;
    assert_eq!(
        actions(&log),
        [
            "member.role_changed",
            "invitation.accepted",
            "invitation.created",
            "org.created"
        ]
    );
}

async fn an_address_without_an_account_is_invited_alike_and_sees_it_after_signup(backend: Backend) {
    let server = Server::start(backend).await;
    let owner = server.account().await;
    let org = server.org(&owner, "Acme").await;
    let with_account = server.account().await;
    let without = unique_email();
    let members = format!("/v1/orgs/{org}/members");
    let a = post(
        &server,
        &owner,
        &members,
        json!({"email": with_account.email, "role": "member"}),
    )
    .await;
    let b = post(
        &server,
        &owner,
        &members,
        json!({"email": without, "role": "member"}),
    )
    .await;
    // The same answer: nothing tells whether an address has an account.
    assert_eq!(
        (a.status, b.status),
        (StatusCode::ACCEPTED, StatusCode::ACCEPTED)
    );
    let shape = |reply: &Reply| {
        let mut invitation = reply.body["invitation"].clone();
        for field in ["id", "email", "expires_at"] {
            invitation[field] = Value::Null;
        }
        invitation
    };
    assert_eq!(shape(&a), shape(&b));
    server.last_mail(&without, "invitation");

    // Someone signs up with the address later, verifies it and sees the invitation.
    server.signup(&without, "correct horse battery").await;
    let tokens = server.login(&without, "correct horse battery").await;
    let newcomer = Account {
        id: server.me(&tokens.access).await.body["id"]
            .as_str()
            .expect("id")
            .into(),
        email: without.clone(),
        token: tokens.access,
    };
    server.verify_email(&newcomer).await;
    let mine = get(&server, &newcomer, "/v1/auth/me/invitations").await;
    let id = b.body["invitation"]["id"].as_str().expect("id");
    assert_eq!(ids(&mine), [id]);
    let accepted = post(&server, &newcomer, &accept_path(id), Value::Null).await;
    assert_eq!(accepted.status, StatusCode::OK, "{}", accepted.body);
}

async fn a_declined_invitation_makes_no_member(backend: Backend) {
    let server = Server::start(backend).await;
    let owner = server.account().await;
    let invitee = server.account().await;
    let org = server.org(&owner, "Acme").await;
    let invitation = server.invite(&owner, &org, &invitee.email, "member").await;
    let id = invitation["id"].as_str().expect("id");
    server.verify_email(&invitee).await;
    let declined = post(&server, &invitee, &decline_path(id), Value::Null).await;
    assert_eq!(declined.status, StatusCode::NO_CONTENT, "{}", declined.body);
    assert!(ids(&get(&server, &invitee, "/v1/auth/me/invitations").await).is_empty());
    post(&server, &invitee, &accept_path(id), Value::Null)
        .await
        .assert_problem(StatusCode::NOT_FOUND, "invitation_not_found");
    post(&server, &invitee, &decline_path(id), Value::Null)
        .await
        .assert_problem(StatusCode::NOT_FOUND, "invitation_not_found");
    let members = get(&server, &owner, &format!("/v1/orgs/{org}/members")).await;
    assert_eq!(member_ids(&members), [owner.id.as_str()]);
    let log = get(&server, &owner, &format!("/v1/orgs/{org}/audit-log")).await;
    assert_eq!(
        actions(&log),
        ["invitation.declined", "invitation.created", "org.created"]
    );
}

async fn an_unverified_invitee_can_neither_list_nor_answer(backend: Backend) {
    let server = Server::start(backend).await;
    let owner = server.account().await;
    // Anyone can sign up with anyone's address; until it is verified it proves nothing.
    let squatter = server.account().await;
    let org = server.org(&owner, "Acme").await;
    let invitation = server.invite(&owner, &org, &squatter.email, "admin").await;
    let id = invitation["id"].as_str().expect("id");
    get(&server, &squatter, "/v1/auth/me/invitations")
        .await
        .assert_problem(StatusCode::FORBIDDEN, "email_not_verified");
    for path in [accept_path(id), decline_path(id)] {
        post(&server, &squatter, &path, Value::Null)
            .await
            .assert_problem(StatusCode::FORBIDDEN, "email_not_verified");
    }
    let members = get(&server, &owner, &format!("/v1/orgs/{org}/members")).await;
    assert_eq!(member_ids(&members), [owner.id.as_str()]);
    let pending = get(&server, &owner, &format!("/v1/orgs/{org}/invitations")).await;
    assert_eq!(ids(&pending), [id]);
}

async fn another_tenant_can_neither_revoke_nor_accept_an_invitation(backend: Backend) {
    let server = Server::start(backend).await;
    let owner = server.account().await;
    let org = server.org(&owner, "Acme").await;
    let other_owner = server.account().await;
    let other_org = server.org(&other_owner, "Other").await;
    let invitee = server.account().await;
    let invitation = server.invite(&owner, &org, &invitee.email, "member").await;
    let id = invitation["id"].as_str().expect("id");

    // Another org's owner: through their own org, and through the victim org.
    for org_in_path in [&other_org, &org] {
        let reply = call(
            &server,
            Method::DELETE,
            &format!("/v1/orgs/{org_in_path}/invitations/{id}"),
            &other_owner.token,
            Value::Null,
        )
        .await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{}", reply.body);
    }
    get(
        &server,
        &other_owner,
        &format!("/v1/orgs/{org}/invitations"),
    )
    .await
    .assert_problem(StatusCode::NOT_FOUND, "not_found");
    // Someone else, verified, cannot accept, decline or see an invitation not to them.
    let someone = server.account().await;
    server.verify_email(&someone).await;
    assert!(ids(&get(&server, &someone, "/v1/auth/me/invitations").await).is_empty());
    for path in [accept_path(id), decline_path(id)] {
        post(&server, &someone, &path, Value::Null)
            .await
            .assert_problem(StatusCode::NOT_FOUND, "invitation_not_found");
    }
    post(&server, &someone, &accept_path("not-an-id"), Value::Null)
        .await
        .assert_problem(StatusCode::NOT_FOUND, "invitation_not_found");
    // Nothing changed: still pending, and it still works for its invitee.
    let pending = get(&server, &owner, &format!("/v1/orgs/{org}/invitations")).await;
    assert_eq!(ids(&pending), [id]);
    server.verify_email(&invitee).await;
    let accepted = post(&server, &invitee, &accept_path(id), Value::Null).await;
    assert_eq!(accepted.status, StatusCode::OK, "{}", accepted.body);
}

async fn an_admin_cannot_invite_an_owner(backend: Backend) {
    let server = Server::start(backend).await;
    let owner = server.account().await;
    let admin = server.account().await;
    let member = server.account().await;
    let org = server.org(&owner, "Acme").await;
    server.add_member(&owner, &org, &admin, "admin").await;
    server.add_member(&owner, &org, &member, "member").await;
    let members = format!("/v1/orgs/{org}/members");
    let invitations = format!("/v1/orgs/{org}/invitations");

    post(
        &server,
        &admin,
        &members,
        json!({"email": unique_email(), "role": "owner"}),
    )
    .await
    .assert_problem(StatusCode::FORBIDDEN, "forbidden");
    post(
        &server,
        &member,
        &members,
        json!({"email": unique_email(), "role": "member"}),
    )
    .await
    .assert_problem(StatusCode::FORBIDDEN, "forbidden");
    get(&server, &member, &invitations)
        .await
        .assert_problem(StatusCode::FORBIDDEN, "forbidden");

    // An admin invites members and admins, and revokes them; an owner's invitation to be
    // owner is the owner's to revoke.
    let by_admin = server.invite(&admin, &org, &unique_email(), "admin").await;
    let to_owner = server.invite(&owner, &org, &unique_email(), "owner").await;
    let mut listed = ids(&get(&server, &admin, &invitations).await);
    listed.sort();
    let mut expected = [&by_admin, &to_owner].map(|i| i["id"].as_str().expect("id").to_owned());
    expected.sort();
    assert_eq!(listed, expected);
    let revoke = |who: &Account, invitation: &Value| {
        let path = format!("{invitations}/{}", invitation["id"].as_str().expect("id"));
        let token = who.token.clone();
        let server = &server;
        async move { call(server, Method::DELETE, &path, &token, Value::Null).await }
    };
    revoke(&admin, &to_owner)
        .await
        .assert_problem(StatusCode::FORBIDDEN, "forbidden");
    revoke(&member, &by_admin)
        .await
        .assert_problem(StatusCode::FORBIDDEN, "forbidden");
    assert_eq!(
        revoke(&admin, &by_admin).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        revoke(&owner, &to_owner).await.status,
        StatusCode::NO_CONTENT
    );
    revoke(&owner, &to_owner)
        .await
        .assert_problem(StatusCode::NOT_FOUND, "invitation_not_found");
    assert!(ids(&get(&server, &owner, &invitations).await).is_empty());
    let log = get(&server, &owner, &format!("/v1/orgs/{org}/audit-log")).await;
    assert_eq!(
        actions(&log)[..4],
        [
            "invitation.revoked",
            "invitation.revoked",
            "invitation.created",
            "invitation.created"
        ]
    );
}

async fn an_expired_invitation_cannot_be_accepted(backend: Backend) {
    let clock = Arc::new(ManualClock::new(chrono::Utc::now()));
    let server = Server::start_clocked(backend, clock.clone()).await;
    let mut owner = server.account().await;
    let mut invitee = server.account().await;
    server.verify_email(&invitee).await;
    let org = server.org(&owner, "Acme").await;
    let invitation = server.invite(&owner, &org, &invitee.email, "member").await;
    let id = invitation["id"].as_str().expect("id");

    clock.advance(Duration::days(7) + Duration::seconds(1));
    // A week later both sign in again.
    for account in [&mut owner, &mut invitee] {
        account.token = server
            .login(&account.email, "correct horse battery")
            .await
            .access;
    }
    post(&server, &invitee, &accept_path(id), Value::Null)
        .await
        .assert_problem(StatusCode::CONFLICT, "invitation_expired");
    // No longer offered to the invitee; shown to the org as expired; no member made.
    assert!(ids(&get(&server, &invitee, "/v1/auth/me/invitations").await).is_empty());
    let listed = get(&server, &owner, &format!("/v1/orgs/{org}/invitations")).await;
    assert_eq!(listed.body["data"][0]["status"], "expired");
    let members = get(&server, &owner, &format!("/v1/orgs/{org}/members")).await;
    assert_eq!(member_ids(&members), [owner.id.as_str()]);
    // A new invitation replaces it and can be accepted.
    let again = server.invite(&owner, &org, &invitee.email, "member").await;
    let listed = get(&server, &owner, &format!("/v1/orgs/{org}/invitations")).await;
    assert_eq!(ids(&listed), [again["id"].as_str().expect("id")]);
    let accepted = post(
        &server,
        &invitee,
        &accept_path(again["id"].as_str().expect("id")),
        Value::Null,
    )
    .await;
    assert_eq!(accepted.status, StatusCode::OK, "{}", accepted.body);
}

async fn a_password_change_is_in_the_security_log_not_in_the_org_audit_log(backend: Backend) {
    let server = Server::start(backend).await;
    let owner = server.account().await;
    let member = server.account().await;
    let org = server.org(&owner, "Acme").await;
    server.add_member(&owner, &org, &member, "member").await;
    let changed = server
        .request(Method::POST, "/v1/auth/password")
        .bearer_auth(&member.token)
        .header("user-agent", "SecretBrowser/1.0")
        .json(&json!({
            "current_password": "correct horse battery",
            "new_password": "another long secret"
        }))
        .send()
        .await
        .expect("sent");
    assert_eq!(changed.status(), StatusCode::NO_CONTENT);

    let log = get(&server, &member, "/v1/auth/me/security-log").await;
    assert_eq!(log.status, StatusCode::OK, "{}", log.body);
    let event = log.body["data"]
        .as_array()
        .expect("events")
        .iter()
        .find(|e| e["action"] == "user.password_changed")
        .cloned()
        .expect("the change is in the member's own log");
    assert_eq!(event["ip"], "127.0.0.1");
    assert_eq!(event["user_agent"], "SecretBrowser/1.0");
    assert!(
        event["id"]
            .as_str()
            .is_some_and(|id| id.starts_with("sev_"))
    );
    assert!(event["at"].is_string() && event["request_id"].is_string());
    // Not in the org's log, and not in anyone else's security log.
    let audit = get(
        &server,
        &owner,
        &format!("/v1/orgs/{org}/audit-log?limit=100"),
    )
    .await;
    let entries = audit.body["data"].as_array().expect("entries");
    assert!(
        entries
            .iter()
            .all(|e| e["action"] != "user.password_changed"
                && e["user_agent"] != "SecretBrowser/1.0"),
        "{}",
        audit.body
    );
    let owners = get(&server, &owner, "/v1/auth/me/security-log").await;
    assert!(!actions(&owners).contains(&"user.password_changed".to_owned()));
}

/// Invitation mails to one address are throttled whichever org sends them: two orgs cannot
/// be used to mail one inbox twice in a minute. The refused invitation changes nothing.
async fn invitation_mails_to_one_address_are_throttled(backend: Backend) {
    let server = Server::start(backend).await;
    let (first, second) = (server.account().await, server.account().await);
    let (org_a, org_b) = (
        server.org(&first, "First").await,
        server.org(&second, "Second").await,
    );
    let target = unique_email();
    server.invite(&first, &org_a, &target, "member").await;
    let again = post(
        &server,
        &second,
        &format!("/v1/orgs/{org_b}/members"),
        json!({"email": target, "role": "member"}),
    )
    .await;
    again.assert_problem(StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    assert!(
        again.headers.contains_key("retry-after"),
        "{:?}",
        again.headers
    );
    let listed = get(&server, &second, &format!("/v1/orgs/{org_b}/invitations")).await;
    assert_eq!(ids(&listed), Vec::<String>::new());
    let mails = server.mails_to(&target);
    let invitations = mails.iter().filter(|m| m["kind"] == "invitation").count();
    assert_eq!(invitations, 1, "{mails:?}");
}

meterline_e2e::on_every_backend!(
    invitation_mails_to_one_address_are_throttled,
    adding_a_non_member_invites_them_and_membership_starts_on_accept,
    an_address_without_an_account_is_invited_alike_and_sees_it_after_signup,
    a_declined_invitation_makes_no_member,
    an_unverified_invitee_can_neither_list_nor_answer,
    another_tenant_can_neither_revoke_nor_accept_an_invitation,
    an_admin_cannot_invite_an_owner,
    an_expired_invitation_cannot_be_accepted,
    a_password_change_is_in_the_security_log_not_in_the_org_audit_log,
);
