//! Conformance cases for invitations and the security log, run on every backend.

use super::open;

mod cases {
    use super::super::orgs::{audit, created, membership};
    use super::super::{now, signed_up};
    use crate::domain::{AuditOrigin, Invitation, Org, PageRequest, Role, SecurityEvent, UserId};
    use crate::store::{Store, StoreError, UserRecord};
    use std::sync::Arc;

    fn invitation(org: &Org, to: &UserRecord, role: Role, by: &UserId) -> Invitation {
        Invitation::new(&org.id, &org.name, to.user.email.clone(), role, by, now())
    }

    async fn invited(store: &dyn Store, org: &Org, to: &UserRecord, role: Role) -> Invitation {
        let by = UserId::generate();
        let made = invitation(org, to, role, &by);
        store
            .create_invitation(&made, None, &audit(&org.id, &by, "invitation.created"))
            .await
            .expect("create invitation");
        made
    }

    pub async fn invitations_are_found_from_their_org_and_their_address_only(
        store: Arc<dyn Store>,
    ) {
        let owner = signed_up(&*store).await;
        let (ann, bob) = (signed_up(&*store).await, signed_up(&*store).await);
        let org = created(&*store, &owner, "Acme").await;
        let other = created(&*store, &owner, "Other").await;
        let first = invited(&*store, &org, &ann, Role::Admin).await;
        let second = invited(&*store, &org, &bob, Role::Member).await;
        let elsewhere = invited(&*store, &other, &ann, Role::Member).await;

        let read = |found: Option<Invitation>| found.expect("found");
        assert_eq!(
            read(
                store
                    .org_invitation(&org.id, &first.id)
                    .await
                    .expect("read")
            ),
            first
        );
        assert_eq!(
            read(
                store
                    .invitation_to(&ann.user.email, &first.id)
                    .await
                    .expect("read")
            ),
            first
        );
        assert_eq!(
            read(
                store
                    .invitation_of_org_to(&org.id, &ann.user.email)
                    .await
                    .expect("read")
            ),
            first
        );
        // Another org's id, or someone else's, is not found.
        assert_eq!(
            store
                .org_invitation(&other.id, &first.id)
                .await
                .expect("read"),
            None
        );
        assert_eq!(
            store
                .invitation_to(&bob.user.email, &first.id)
                .await
                .expect("read"),
            None
        );
        assert_eq!(
            store
                .invitation_of_org_to(&other.id, &bob.user.email)
                .await
                .expect("read"),
            None
        );
        // Newest first, each list only its own, paged.
        let page = store
            .org_invitations(&org.id, &PageRequest::first(1))
            .await
            .expect("list");
        assert_eq!(page.items, std::slice::from_ref(&second));
        let next = page.next(1).expect("a second page");
        let rest = store.org_invitations(&org.id, &next).await.expect("list");
        assert_eq!(rest.items, std::slice::from_ref(&first));
        assert_eq!(rest.next_cursor, None);
        let to_ann = store
            .invitations_to(&ann.user.email, &PageRequest::first(10))
            .await
            .expect("list");
        assert_eq!(to_ann.items, [elsewhere, first]);
        let log = store
            .audit_log(&org.id, &PageRequest::first(10))
            .await
            .expect("log");
        assert_eq!(
            log.items
                .iter()
                .filter(|e| e.action == "invitation.created")
                .count(),
            2
        );
    }

    pub async fn a_new_invitation_replaces_the_last(store: Arc<dyn Store>) {
        let owner = signed_up(&*store).await;
        let ann = signed_up(&*store).await;
        let org = created(&*store, &owner, "Acme").await;
        let first = invited(&*store, &org, &ann, Role::Member).await;
        let second = invitation(&org, &ann, Role::Admin, &owner.user.id);
        store
            .create_invitation(
                &second,
                Some(&first),
                &audit(&org.id, &owner.user.id, "invitation.created"),
            )
            .await
            .expect("replace");
        assert_eq!(
            store
                .org_invitation(&org.id, &first.id)
                .await
                .expect("read"),
            None
        );
        assert_eq!(
            store
                .invitation_to(&ann.user.email, &first.id)
                .await
                .expect("read"),
            None
        );
        let listed = store
            .invitations_to(&ann.user.email, &PageRequest::first(10))
            .await
            .expect("list");
        assert_eq!(listed.items, std::slice::from_ref(&second));
        // Replacing one that is gone changes nothing.
        let third = invitation(&org, &ann, Role::Member, &owner.user.id);
        let stale = store
            .create_invitation(
                &third,
                Some(&first),
                &audit(&org.id, &owner.user.id, "invitation.created"),
            )
            .await;
        assert!(matches!(stale, Err(StoreError::Conflict)), "{stale:?}");
        assert_eq!(
            store
                .org_invitation(&org.id, &third.id)
                .await
                .expect("read"),
            None
        );
        assert_eq!(
            store
                .invitation_of_org_to(&org.id, &ann.user.email)
                .await
                .expect("read"),
            Some(second)
        );
    }

    pub async fn racing_accepts_make_one_member(store: Arc<dyn Store>) {
        let owner = signed_up(&*store).await;
        let ann = signed_up(&*store).await;
        let org = created(&*store, &owner, "Acme").await;
        let made = invited(&*store, &org, &ann, Role::Owner).await;
        let joined = membership(&org.id, &ann, Role::Owner);
        let racers: Vec<_> = (0..4)
            .map(|_| {
                let (store, made, joined) = (Arc::clone(&store), made.clone(), joined.clone());
                tokio::spawn(async move {
                    let entry = audit(&made.org_id, &joined.user_id, "invitation.accepted");
                    store.accept_invitation(&made, &joined, &entry).await
                })
            })
            .collect();
        let mut won = 0;
        for racer in racers {
            match racer.await.expect("task") {
                Ok(()) => won += 1,
                Err(StoreError::Conflict) => {}
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(won, 1);
        let member = store
            .member(&org.id, &ann.user.id)
            .await
            .expect("read")
            .expect("a member");
        assert_eq!(member.role, Role::Owner);
        assert_eq!(
            store.org_invitation(&org.id, &made.id).await.expect("read"),
            None
        );
        assert_eq!(
            store
                .invitation_to(&ann.user.email, &made.id)
                .await
                .expect("read"),
            None
        );
        let (_, role) = store
            .org_for_member(&org.id, &ann.user.id)
            .await
            .expect("read")
            .expect("visible");
        assert_eq!(role, Role::Owner);
        // Two owners now: the first may step down (the owner count moved with the accept).
        store
            .set_member_role(
                &membership(&org.id, &owner, Role::Admin),
                Some(Role::Owner),
                &audit(&org.id, &owner.user.id, "member.role_changed"),
            )
            .await
            .expect("another owner remains");
    }

    pub async fn an_invitation_is_deleted_once(store: Arc<dyn Store>) {
        let owner = signed_up(&*store).await;
        let ann = signed_up(&*store).await;
        let org = created(&*store, &owner, "Acme").await;
        let made = invited(&*store, &org, &ann, Role::Member).await;
        let entry = || audit(&org.id, &ann.user.id, "invitation.declined");
        assert!(
            store
                .delete_invitation(&made, &entry())
                .await
                .expect("delete")
        );
        assert!(
            !store
                .delete_invitation(&made, &entry())
                .await
                .expect("again")
        );
        let spent = store
            .accept_invitation(&made, &membership(&org.id, &ann, Role::Member), &entry())
            .await;
        assert!(matches!(spent, Err(StoreError::Conflict)), "{spent:?}");
        assert_eq!(
            store.member(&org.id, &ann.user.id).await.expect("read"),
            None
        );
        let log = store
            .audit_log(&org.id, &PageRequest::first(10))
            .await
            .expect("log");
        assert_eq!(
            log.items
                .iter()
                .filter(|e| e.action == "invitation.declined")
                .count(),
            1
        );
    }

    pub async fn a_deleted_orgs_invitations_go_with_it(store: Arc<dyn Store>) {
        let owner = signed_up(&*store).await;
        let ann = signed_up(&*store).await;
        let org = created(&*store, &owner, "Acme").await;
        let made = invited(&*store, &org, &ann, Role::Member).await;
        store
            .delete_org(&org.id, &audit(&org.id, &owner.user.id, "org.deleted"))
            .await
            .expect("delete org");
        assert_eq!(
            store.org_invitation(&org.id, &made.id).await.expect("read"),
            None
        );
        let listed = store
            .invitations_to(&ann.user.email, &PageRequest::first(10))
            .await
            .expect("list");
        assert!(listed.items.is_empty(), "{:?}", listed.items);
        let late = store
            .accept_invitation(
                &made,
                &membership(&org.id, &ann, Role::Member),
                &audit(&org.id, &ann.user.id, "invitation.accepted"),
            )
            .await;
        assert!(matches!(late, Err(StoreError::Conflict)), "{late:?}");
    }

    pub async fn a_security_log_is_its_users_alone_newest_first(store: Arc<dyn Store>) {
        let (ann, bob) = (signed_up(&*store).await, signed_up(&*store).await);
        let origin = AuditOrigin {
            ip: Some("192.0.2.1".into()),
            user_agent: Some("Agent/1".into()),
            request_id: Some("req-1".into()),
        };
        let events: Vec<SecurityEvent> = ["user.email_verified", "user.password_changed"]
            .into_iter()
            .map(|action| SecurityEvent::new(&ann.user.id, action, &origin, now()))
            .collect();
        for event in &events {
            store.append_security_event(event).await.expect("append");
        }
        let page = store
            .security_log(&ann.user.id, &PageRequest::first(1))
            .await
            .expect("log");
        assert_eq!(page.items, [events[1].clone()]);
        let rest = store
            .security_log(&ann.user.id, &page.next(1).expect("more"))
            .await
            .expect("log");
        assert_eq!(rest.items, [events[0].clone()]);
        assert_eq!(rest.next_cursor, None);
        let other = store
            .security_log(&bob.user.id, &PageRequest::first(10))
            .await
            .expect("log");
        assert!(other.items.is_empty());
    }
}

every_backend!(
    invitations_are_found_from_their_org_and_their_address_only,
    a_new_invitation_replaces_the_last,
    racing_accepts_make_one_member,
    an_invitation_is_deleted_once,
    a_deleted_orgs_invitations_go_with_it,
    a_security_log_is_its_users_alone_newest_first,
);
