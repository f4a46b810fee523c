//! Conformance cases for teams, their members and team-scoped API keys, run on every backend.

use super::open;

mod cases {
    use super::super::orgs::{add, audit, created};
    use super::super::{now, signed_up};
    use crate::auth::ApiKeySecret;
    use crate::domain::{
        ApiKey, ApiKeyId, Org, OrgId, PageRequest, Role, Team, TeamCreated, TeamDeleted, TeamId,
        TeamMember, TeamMemberAdded, UserId,
    };
    use crate::store::{Revoked, Store, StoreError, UserRecord};
    use std::sync::Arc;

    fn team(org: &OrgId, name: &str) -> Team {
        Team {
            id: TeamId::generate(),
            org_id: org.clone(),
            name: name.into(),
            created_at: now(),
        }
    }

    async fn made(store: &dyn Store, org: &Org, actor: &UserId, name: &str) -> Team {
        let team = team(&org.id, name);
        let done = store
            .create_team(&team, &audit(&org.id, actor, "team.created"))
            .await
            .expect("create team");
        assert_eq!(done, TeamCreated::Created);
        team
    }

    fn member(team: &Team, user: &UserRecord) -> TeamMember {
        TeamMember {
            org_id: team.org_id.clone(),
            team_id: team.id.clone(),
            user_id: user.user.id.clone(),
            email: user.user.email.clone(),
            added_at: now(),
        }
    }

    async fn add_to_team(
        store: &dyn Store,
        team: &Team,
        user: &UserRecord,
        actor: &UserId,
    ) -> TeamMemberAdded {
        store
            .add_team_member(
                &member(team, user),
                &audit(&team.org_id, actor, "team.member_added"),
            )
            .await
            .expect("add team member")
    }

    fn key(org: &OrgId, team: Option<&TeamId>) -> (ApiKey, ApiKeySecret) {
        let secret = ApiKeySecret::generate();
        let key = ApiKey {
            id: ApiKeyId::generate(),
            org_id: org.clone(),
            team_id: team.cloned(),
            name: "k".into(),
            prefix: secret.display_prefix(),
            created_at: now(),
            expires_at: None,
            last_used_at: None,
            rate_limit_rpm: None,
            revoked_at: None,
        };
        (key, secret)
    }

    async fn audited(store: &dyn Store, org: &OrgId, action: &str) -> usize {
        let log = store
            .audit_log(org, &PageRequest::first(100))
            .await
            .expect("audit log");
        log.items.iter().filter(|e| e.action == action).count()
    }

    async fn member_ids(store: &dyn Store, team: &Team) -> Vec<UserId> {
        let page = store
            .team_members(&team.org_id, &team.id, &PageRequest::first(100))
            .await
            .expect("team members");
        page.items.into_iter().map(|m| m.user_id).collect()
    }

    pub async fn teams_are_created_listed_and_isolated(store: Arc<dyn Store>) {
        let owner = signed_up(&*store).await;
        let org = created(&*store, &owner, "Acme").await;
        let other = created(&*store, &owner, "Other").await;
        let alpha = made(&*store, &org, &owner.user.id, "Alpha").await;
        let beta = made(&*store, &org, &owner.user.id, "Beta").await;
        made(&*store, &other, &owner.user.id, "Gamma").await;

        assert_eq!(
            store.team(&org.id, &alpha.id).await.expect("read"),
            Some(alpha.clone())
        );
        let listed = store
            .teams(&org.id, &PageRequest::first(100))
            .await
            .expect("list");
        assert_eq!(listed.items, vec![alpha.clone(), beta.clone()]);
        // Paging: one at a time, in order, exactly once.
        let first = store
            .teams(&org.id, &PageRequest::first(1))
            .await
            .expect("page");
        assert_eq!(first.items, vec![alpha.clone()]);
        let second = store
            .teams(&org.id, &first.next(1).expect("more"))
            .await
            .expect("page");
        assert_eq!(second.items, vec![beta.clone()]);
        assert!(second.next(1).is_none());

        // Another org sees and touches nothing of it.
        assert_eq!(store.team(&other.id, &alpha.id).await.expect("read"), None);
        let others = store
            .teams(&other.id, &PageRequest::first(100))
            .await
            .expect("list");
        assert_eq!(others.items.len(), 1);
        assert!(others.items.iter().all(|t| t.org_id == other.id));
        let foreign_delete = store
            .delete_team(
                &other.id,
                &alpha.id,
                &audit(&other.id, &owner.user.id, "team.deleted"),
            )
            .await
            .expect("delete");
        assert_eq!(foreign_delete, TeamDeleted::NotFound);
        assert!(
            store
                .team(&org.id, &alpha.id)
                .await
                .expect("read")
                .is_some()
        );
        let mut foreign = member(&alpha, &owner);
        foreign.org_id = other.id.clone();
        let foreign_add = store
            .add_team_member(
                &foreign,
                &audit(&other.id, &owner.user.id, "team.member_added"),
            )
            .await
            .expect("add");
        assert_eq!(foreign_add, TeamMemberAdded::TeamNotFound);
        assert!(member_ids(&*store, &alpha).await.is_empty());
        assert_eq!(audited(&*store, &org.id, "team.created").await, 2);
        assert_eq!(audited(&*store, &other.id, "team.created").await, 1);
        assert_eq!(audited(&*store, &other.id, "team.member_added").await, 0);
    }

    pub async fn a_team_name_is_taken_once_per_org(store: Arc<dyn Store>) {
        let owner = signed_up(&*store).await;
        let org = created(&*store, &owner, "Acme").await;
        let other = created(&*store, &owner, "Other").await;
        let first = made(&*store, &org, &owner.user.id, "Platform").await;
        let again = store
            .create_team(
                &team(&org.id, "platform"),
                &audit(&org.id, &owner.user.id, "team.created"),
            )
            .await
            .expect("create");
        assert_eq!(again, TeamCreated::NameTaken);
        assert_eq!(audited(&*store, &org.id, "team.created").await, 1);
        // Another org may use the name.
        made(&*store, &other, &owner.user.id, "Platform").await;
        // A deleted team's name is free again.
        let deleted = store
            .delete_team(
                &org.id,
                &first.id,
                &audit(&org.id, &owner.user.id, "team.deleted"),
            )
            .await
            .expect("delete");
        assert_eq!(deleted, TeamDeleted::Deleted);
        assert_eq!(audited(&*store, &org.id, "team.deleted").await, 1);
        made(&*store, &org, &owner.user.id, "PLATFORM").await;
    }

    pub async fn concurrent_creations_of_one_name_let_one_win(store: Arc<dyn Store>) {
        let owner = signed_up(&*store).await;
        let org = created(&*store, &owner, "Acme").await;
        let attempts: Vec<_> = (0..6)
            .map(|_| {
                let store = Arc::clone(&store);
                let team = team(&org.id, "Racers");
                let entry = audit(&org.id, &owner.user.id, "team.created");
                tokio::spawn(async move { store.create_team(&team, &entry).await })
            })
            .collect();
        let mut won = 0;
        for attempt in attempts {
            match attempt.await.expect("task") {
                Ok(TeamCreated::Created) => won += 1,
                Ok(TeamCreated::NameTaken) | Err(StoreError::Conflict) => {}
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(won, 1);
        let listed = store
            .teams(&org.id, &PageRequest::first(100))
            .await
            .expect("list");
        assert_eq!(listed.items.len(), 1);
        assert_eq!(audited(&*store, &org.id, "team.created").await, 1);
    }

    pub async fn team_members_are_added_once_and_removed(store: Arc<dyn Store>) {
        let owner = signed_up(&*store).await;
        let ann = signed_up(&*store).await;
        let outsider = signed_up(&*store).await;
        let org = created(&*store, &owner, "Acme").await;
        add(&*store, &org, &ann, Role::Member, &owner.user.id).await;
        let team = made(&*store, &org, &owner.user.id, "Core").await;

        assert_eq!(
            add_to_team(&*store, &team, &ann, &owner.user.id).await,
            TeamMemberAdded::Added
        );
        assert_eq!(
            add_to_team(&*store, &team, &ann, &owner.user.id).await,
            TeamMemberAdded::Already
        );
        assert_eq!(
            add_to_team(&*store, &team, &outsider, &owner.user.id).await,
            TeamMemberAdded::NotOrgMember
        );
        let read = store
            .team_member(&org.id, &team.id, &ann.user.id)
            .await
            .expect("read")
            .expect("a member");
        assert_eq!(
            (read.email.clone(), read.team_id.clone()),
            (ann.user.email.clone(), team.id.clone())
        );
        assert_eq!(member_ids(&*store, &team).await, vec![ann.user.id.clone()]);
        assert_eq!(audited(&*store, &org.id, "team.member_added").await, 1);

        let entry = audit(&org.id, &owner.user.id, "team.member_removed");
        assert!(
            store
                .remove_team_member(&org.id, &team.id, &ann.user.id, &entry)
                .await
                .expect("remove")
        );
        assert!(
            !store
                .remove_team_member(&org.id, &team.id, &ann.user.id, &entry)
                .await
                .expect("remove again")
        );
        assert!(member_ids(&*store, &team).await.is_empty());
        assert_eq!(audited(&*store, &org.id, "team.member_removed").await, 1);
    }

    pub async fn concurrent_adds_of_one_member_add_once(store: Arc<dyn Store>) {
        let owner = signed_up(&*store).await;
        let org = created(&*store, &owner, "Acme").await;
        let team = made(&*store, &org, &owner.user.id, "Core").await;
        let attempts: Vec<_> = (0..6)
            .map(|_| {
                let store = Arc::clone(&store);
                let member = member(&team, &owner);
                let entry = audit(&org.id, &owner.user.id, "team.member_added");
                tokio::spawn(async move { store.add_team_member(&member, &entry).await })
            })
            .collect();
        let mut added = 0;
        for attempt in attempts {
            match attempt.await.expect("task") {
                Ok(TeamMemberAdded::Added) => added += 1,
                Ok(TeamMemberAdded::Already) | Err(StoreError::Conflict) => {}
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(added, 1);
        assert_eq!(audited(&*store, &org.id, "team.member_added").await, 1);
    }

    pub async fn leaving_the_org_leaves_its_teams(store: Arc<dyn Store>) {
        let owner = signed_up(&*store).await;
        let ann = signed_up(&*store).await;
        let org = created(&*store, &owner, "Acme").await;
        add(&*store, &org, &ann, Role::Member, &owner.user.id).await;
        let team = made(&*store, &org, &owner.user.id, "Core").await;
        add_to_team(&*store, &team, &ann, &owner.user.id).await;
        assert_eq!(member_ids(&*store, &team).await, vec![ann.user.id.clone()]);

        store
            .remove_member(
                &org.id,
                &ann.user.id,
                Role::Member,
                &audit(&org.id, &ann.user.id, "member.left"),
            )
            .await
            .expect("leave");
        assert!(member_ids(&*store, &team).await.is_empty());
        assert!(
            store
                .team_member(&org.id, &team.id, &ann.user.id)
                .await
                .expect("read")
                .is_none()
        );

        // Coming back to the org does not bring the old team membership back...
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        add(&*store, &org, &ann, Role::Member, &owner.user.id).await;
        assert!(member_ids(&*store, &team).await.is_empty());
        // ...but they can be added again.
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        assert_eq!(
            add_to_team(&*store, &team, &ann, &owner.user.id).await,
            TeamMemberAdded::Added
        );
        assert_eq!(member_ids(&*store, &team).await, vec![ann.user.id.clone()]);
    }

    pub async fn a_team_with_live_keys_is_not_deleted(store: Arc<dyn Store>) {
        let owner = signed_up(&*store).await;
        let ann = signed_up(&*store).await;
        let org = created(&*store, &owner, "Acme").await;
        let other = created(&*store, &owner, "Other").await;
        add(&*store, &org, &ann, Role::Member, &owner.user.id).await;
        let team = made(&*store, &org, &owner.user.id, "Core").await;
        add_to_team(&*store, &team, &ann, &owner.user.id).await;
        let (scoped, secret) = key(&org.id, Some(&team.id));
        let (wide, _) = key(&org.id, None);
        for k in [&scoped, &wide] {
            store
                .create_api_key(
                    k,
                    &ApiKeySecret::generate().hash(),
                    &audit(&org.id, &owner.user.id, "api_key.created"),
                )
                .await
                .expect("create key");
        }
        // The scoped key was stored under a fresh hash above; store one with its own too.
        let (scoped2, _) = key(&org.id, Some(&team.id));
        store
            .create_api_key(
                &scoped2,
                &secret.hash(),
                &audit(&org.id, &owner.user.id, "api_key.created"),
            )
            .await
            .expect("create key");
        let by_hash = store
            .api_key_by_hash(&secret.hash())
            .await
            .expect("read")
            .expect("found");
        assert_eq!(by_hash.team_id.as_ref(), Some(&team.id));
        assert_eq!(
            store.api_key(&org.id, &scoped.id).await.expect("read"),
            Some(scoped.clone())
        );
        assert_eq!(
            store.api_key(&other.id, &scoped.id).await.expect("read"),
            None
        );
        let team_keys = store
            .team_api_keys(&org.id, &team.id, &PageRequest::first(100))
            .await
            .expect("list");
        let ids: Vec<_> = team_keys.items.iter().map(|k| k.id.clone()).collect();
        assert_eq!(ids, vec![scoped2.id.clone(), scoped.id.clone()]);
        let one = store
            .team_api_keys(&org.id, &team.id, &PageRequest::first(1))
            .await
            .expect("page");
        assert_eq!(one.items.len(), 1);
        let rest = store
            .team_api_keys(&org.id, &team.id, &one.next(1).expect("more"))
            .await
            .expect("page");
        assert_eq!(rest.items.first().map(|k| &k.id), Some(&scoped.id));
        assert!(
            store
                .team_api_keys(&other.id, &team.id, &PageRequest::first(100))
                .await
                .expect("list")
                .items
                .is_empty()
        );

        let delete = |entry| {
            let store = Arc::clone(&store);
            let (org, team) = (org.id.clone(), team.id.clone());
            async move { store.delete_team(&org, &team, &entry).await }
        };
        let refused = delete(audit(&org.id, &owner.user.id, "team.deleted"))
            .await
            .expect("delete");
        assert_eq!(refused, TeamDeleted::HasActiveKeys);
        for k in [&scoped, &scoped2] {
            let revoked = store
                .revoke_api_key(
                    &org.id,
                    &k.id,
                    now(),
                    &audit(&org.id, &owner.user.id, "api_key.revoked"),
                )
                .await
                .expect("revoke");
            assert_eq!(revoked, Revoked::Now);
        }
        // Revoking again does not count twice.
        let again = store
            .revoke_api_key(
                &org.id,
                &scoped.id,
                now(),
                &audit(&org.id, &owner.user.id, "api_key.revoked"),
            )
            .await
            .expect("revoke");
        assert_eq!(again, Revoked::Already);
        let deleted = delete(audit(&org.id, &owner.user.id, "team.deleted"))
            .await
            .expect("delete");
        assert_eq!(deleted, TeamDeleted::Deleted);
        assert_eq!(audited(&*store, &org.id, "team.deleted").await, 1);
        assert_eq!(store.team(&org.id, &team.id).await.expect("read"), None);
        assert!(
            store
                .team_member(&org.id, &team.id, &ann.user.id)
                .await
                .expect("read")
                .is_none()
        );
        // No key can be scoped to a deleted team.
        let (late, _) = key(&org.id, Some(&team.id));
        let err = store
            .create_api_key(
                &late,
                &ApiKeySecret::generate().hash(),
                &audit(&org.id, &owner.user.id, "api_key.created"),
            )
            .await
            .expect_err("team is gone");
        assert!(matches!(err, StoreError::Conflict), "got {err:?}");
        assert_eq!(store.api_key(&org.id, &late.id).await.expect("read"), None);
    }

    pub async fn an_org_with_teams_members_and_team_keys_is_deleted(store: Arc<dyn Store>) {
        let owner = signed_up(&*store).await;
        let org = created(&*store, &owner, "Acme").await;
        let team = made(&*store, &org, &owner.user.id, "Core").await;
        add_to_team(&*store, &team, &owner, &owner.user.id).await;
        let (scoped, secret) = key(&org.id, Some(&team.id));
        store
            .create_api_key(
                &scoped,
                &secret.hash(),
                &audit(&org.id, &owner.user.id, "api_key.created"),
            )
            .await
            .expect("create key");
        store
            .delete_org(&org.id, &audit(&org.id, &owner.user.id, "org.deleted"))
            .await
            .expect("delete org");
        assert!(store.org(&org.id).await.expect("read").is_none());
        assert!(
            store
                .api_key_by_hash(&secret.hash())
                .await
                .expect("read")
                .is_none()
        );
        // The owner is no org member any more, so no team member either.
        assert!(
            store
                .team_member(&org.id, &team.id, &owner.user.id)
                .await
                .expect("read")
                .is_none()
        );
    }

    pub async fn a_key_racing_its_teams_deletion_never_outlives_it(store: Arc<dyn Store>) {
        let owner = signed_up(&*store).await;
        let org = created(&*store, &owner, "Acme").await;
        for round in 0..4 {
            let team = made(&*store, &org, &owner.user.id, &format!("Team {round}")).await;
            let (scoped, _) = key(&org.id, Some(&team.id));
            let creating = {
                let store = Arc::clone(&store);
                let entry = audit(&org.id, &owner.user.id, "api_key.created");
                let scoped = scoped.clone();
                tokio::spawn(async move {
                    store
                        .create_api_key(&scoped, &ApiKeySecret::generate().hash(), &entry)
                        .await
                })
            };
            let deleting = {
                let store = Arc::clone(&store);
                let entry = audit(&org.id, &owner.user.id, "team.deleted");
                let (org, team) = (org.id.clone(), team.id.clone());
                tokio::spawn(async move { store.delete_team(&org, &team, &entry).await })
            };
            let created = creating.await.expect("task");
            let deleted = deleting.await.expect("task");
            match (created, deleted) {
                (Ok(()), Ok(TeamDeleted::HasActiveKeys)) => {
                    assert!(store.team(&org.id, &team.id).await.expect("read").is_some());
                }
                (Err(StoreError::Conflict), Ok(TeamDeleted::Deleted)) => {
                    assert_eq!(
                        store.api_key(&org.id, &scoped.id).await.expect("read"),
                        None
                    );
                }
                other => panic!("inconsistent outcome {other:?}"),
            }
        }
    }
}

every_backend!(
    teams_are_created_listed_and_isolated,
    a_team_name_is_taken_once_per_org,
    concurrent_creations_of_one_name_let_one_win,
    team_members_are_added_once_and_removed,
    concurrent_adds_of_one_member_add_once,
    leaving_the_org_leaves_its_teams,
    a_team_with_live_keys_is_not_deleted,
    a_key_racing_its_teams_deletion_never_outlives_it,
    an_org_with_teams_members_and_team_keys_is_deleted,
);
