//! The authorization lifecycle's storage on both backends: rotation with a grace period,
//! single-use OAuth states, grants and their account keys, the refresh lease, revocation.

use crate::common::TestDb;
use serde_json::json;
use sluice_store::{
    AuthStatus, GrantUpdate, InstallationId, NewInstallation, RefreshFailure, SecretBytes, Store,
    StoreError,
};

both_backends!(
    rotation_keeps_the_previous_value_for_its_grace,
    oauth_states_are_single_use,
    grants_record_status_scopes_and_account_keys,
    one_lease_holder_at_a_time,
    revocation_forgets_captured_tokens_only,
);

async fn install(store: &Store, id: &str, driver: &str) -> InstallationId {
    let id = InstallationId::parse(id).unwrap();
    store
        .create_installation(NewInstallation {
            id: id.clone(),
            driver_id: crate::common::driver(driver),
            settings: json!({}),
            account_key: None,
        })
        .await
        .unwrap();
    id
}

fn actions(changes: &[sluice_store::SecretChange]) -> Vec<(String, String)> {
    changes
        .iter()
        .map(|c| (c.name.clone(), c.action.clone()))
        .collect()
}

async fn rotation_keeps_the_previous_value_for_its_grace(db: &TestDb) {
    let store = db.store().await;
    let id = install(&store, "inst_rot", "stripe").await;
    let err = store
        .rotate_secret(&id, "webhook_secret", b"new", 60, 1_000)
        .await;
    assert!(
        matches!(err, Err(StoreError::InvalidInput(_))),
        "nothing to rotate: {err:?}"
    );
    store
        .put_secret(&id, "webhook_secret", b"old")
        .await
        .unwrap();
    let until = store
        .rotate_secret(&id, "webhook_secret", b"new", 60, 1_000)
        .await
        .unwrap();
    assert_eq!(until, Some(1_060));
    let primary = store
        .get_secret(&id, "webhook_secret")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(primary.expose(), b"new");
    let previous = store
        .previous_secret(&id, "webhook_secret", 1_059)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(previous.expose(), b"old");
    assert!(
        store
            .previous_secret(&id, "webhook_secret", 1_060)
            .await
            .unwrap()
            .is_none()
    );
    // The sealed previous value is its own slot: it does not open as the primary.
    let sealed = store.sealed_secrets(&id).await.unwrap();
    let (ciphertext, at) = sealed[0].previous.clone().unwrap();
    assert_eq!(at, 1_060);
    assert!(matches!(
        store.open_secret(&id, "webhook_secret", &ciphertext),
        Err(StoreError::Crypto)
    ));
    // Nothing is retired before its time, then exactly once.
    assert!(
        store
            .retire_expired_secrets(1_059)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store.retire_expired_secrets(1_060).await.unwrap(),
        [(id.clone(), "webhook_secret".to_string())]
    );
    assert!(
        store
            .retire_expired_secrets(2_000)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        store.sealed_secrets(&id).await.unwrap()[0]
            .previous
            .is_none()
    );
    // No grace: nothing kept. A plain set drops a previous value too.
    assert_eq!(
        store
            .rotate_secret(&id, "webhook_secret", b"newer", 0, 3_000)
            .await
            .unwrap(),
        None
    );
    store
        .rotate_secret(&id, "webhook_secret", b"newest", 60, 3_000)
        .await
        .unwrap();
    store
        .put_secret(&id, "webhook_secret", b"set")
        .await
        .unwrap();
    assert!(
        store
            .previous_secret(&id, "webhook_secret", 3_001)
            .await
            .unwrap()
            .is_none()
    );
    let s = |a: &str| ("webhook_secret".to_string(), a.to_string());
    assert_eq!(
        actions(&store.secret_audit(&id).await.unwrap()),
        [
            s("set"),
            s("rotated"),
            s("retired"),
            s("rotated"),
            s("rotated"),
            s("set")
        ]
    );
    let other = InstallationId::parse("inst_nobody").unwrap();
    assert!(matches!(
        store
            .rotate_secret(&other, "webhook_secret", b"x", 1, 1)
            .await,
        Err(StoreError::NotFound)
    ));
}

async fn oauth_states_are_single_use(db: &TestDb) {
    let store = db.store().await;
    let id = install(&store, "inst_state", "acme").await;
    store
        .put_oauth_state(
            "state-one",
            &id,
            "https://h/oauth/callback",
            b"verifier-1",
            1_600,
            1_000,
        )
        .await
        .unwrap();
    assert!(store.take_oauth_state("state-two").await.unwrap().is_none());
    let taken = store.take_oauth_state("state-one").await.unwrap().unwrap();
    assert_eq!(taken.installation_id, id);
    assert_eq!(taken.redirect_uri, "https://h/oauth/callback");
    assert_eq!(taken.code_verifier.expose(), b"verifier-1");
    assert_eq!(taken.expires_at, 1_600);
    assert!(
        store.take_oauth_state("state-one").await.unwrap().is_none(),
        "used up"
    );
    // The table holds digests, not states; expired ones go when the next is stored.
    store
        .put_oauth_state("old", &id, "u", b"v", 1_100, 1_000)
        .await
        .unwrap();
    let stored: Vec<String> = sqlx::query_scalar("SELECT state_hash FROM oauth_states")
        .fetch_all(store.pool())
        .await
        .unwrap();
    assert_eq!(stored.len(), 1);
    assert_ne!(stored[0], "old");
    store
        .put_oauth_state("new", &id, "u", b"v", 3_000, 2_000)
        .await
        .unwrap();
    assert!(
        store.take_oauth_state("old").await.unwrap().is_none(),
        "expired, dropped"
    );
}

async fn grants_record_status_scopes_and_account_keys(db: &TestDb) {
    let store = db.store().await;
    let a = install(&store, "inst_grant_a", "stripe").await;
    let b = install(&store, "inst_grant_b", "stripe").await;
    assert!(store.auth_record(&a).await.unwrap().is_none());
    let grant = GrantUpdate {
        scopes: vec!["read_write".into()],
        token_expires_at: Some(5_000),
        account_key: Some("acct_123".into()),
        status: Some((AuthStatus::Active, None)),
        refreshed: false,
    };
    store.record_grant(&a, grant.clone()).await.unwrap();
    let record = store.auth_record(&a).await.unwrap().unwrap();
    assert_eq!(
        (
            record.status,
            record.scopes.clone(),
            record.token_expires_at
        ),
        (
            AuthStatus::Active,
            vec!["read_write".to_string()],
            Some(5_000)
        )
    );
    assert!(record.authorized_at.is_some() && record.refreshed_at.is_none());
    assert_eq!(
        store
            .get_installation(&a)
            .await
            .unwrap()
            .unwrap()
            .account_key
            .as_deref(),
        Some("acct_123")
    );
    // One account, one live installation of the driver.
    assert!(matches!(
        store.record_grant(&b, grant.clone()).await,
        Err(StoreError::Conflict(_))
    ));
    assert!(
        store.auth_record(&b).await.unwrap().is_none(),
        "nothing recorded for b"
    );
    // Failures count up and back off; a success clears them.
    store
        .record_refresh_failure(
            &a,
            RefreshFailure {
                error: "503".into(),
                retry_at: 6_000,
                needs_reauth: None,
            },
            5_500,
        )
        .await
        .unwrap();
    store
        .record_refresh_failure(
            &a,
            RefreshFailure {
                error: "invalid_grant".into(),
                retry_at: 7_000,
                needs_reauth: Some("refused".into()),
            },
            5_600,
        )
        .await
        .unwrap();
    let record = store.auth_record(&a).await.unwrap().unwrap();
    assert_eq!(
        (
            record.refresh_failures,
            record.failing_since,
            record.next_refresh_at
        ),
        (2, Some(5_500), Some(7_000))
    );
    assert_eq!(
        (record.status, record.reason.as_deref()),
        (AuthStatus::NeedsReauth, Some("refused"))
    );
    assert!(
        store
            .due_refreshes(10_000, 10_000)
            .await
            .unwrap()
            .is_empty(),
        "needs_reauth is not refreshed"
    );
    store
        .record_grant(
            &a,
            GrantUpdate {
                refreshed: true,
                account_key: None,
                ..grant
            },
        )
        .await
        .unwrap();
    let record = store.auth_record(&a).await.unwrap().unwrap();
    assert_eq!(
        (
            record.status,
            record.refresh_failures,
            record.last_error.clone()
        ),
        (AuthStatus::Active, 0, None)
    );
    assert!(record.refreshed_at.is_some());
    assert_eq!(
        store.due_refreshes(4_999, 0).await.unwrap(),
        Vec::<InstallationId>::new()
    );
    assert_eq!(
        store.due_refreshes(5_000, 0).await.unwrap(),
        std::slice::from_ref(&a)
    );
    assert_eq!(store.auth_records().await.unwrap().len(), 1);
}

async fn one_lease_holder_at_a_time(db: &TestDb) {
    let store = db.store().await;
    let id = install(&store, "inst_lease", "hotmart").await;
    assert!(
        store
            .take_refresh_lease(&id, "node-a", 100, 160)
            .await
            .unwrap()
    );
    assert!(
        !store
            .take_refresh_lease(&id, "node-b", 120, 180)
            .await
            .unwrap(),
        "held by a"
    );
    assert!(
        store
            .take_refresh_lease(&id, "node-a", 121, 181)
            .await
            .unwrap(),
        "a may renew"
    );
    assert!(
        store
            .take_refresh_lease(&id, "node-b", 181, 241)
            .await
            .unwrap(),
        "a's lease expired"
    );
    store.release_refresh_lease(&id, "node-a").await.unwrap();
    assert!(
        !store
            .take_refresh_lease(&id, "node-a", 182, 242)
            .await
            .unwrap(),
        "a cannot release b's"
    );
    store.release_refresh_lease(&id, "node-b").await.unwrap();
    // Many takers at once (different nodes): exactly one wins.
    let mut takers = Vec::new();
    for n in 0..16 {
        let (store, id) = (store.clone(), id.clone());
        takers.push(tokio::spawn(async move {
            store
                .take_refresh_lease(&id, &format!("node-{n}"), 300, 360)
                .await
                .unwrap()
        }));
    }
    let mut won = 0;
    for t in takers {
        won += usize::from(t.await.unwrap());
    }
    assert_eq!(won, 1);
}

async fn revocation_forgets_captured_tokens_only(db: &TestDb) {
    let store = db.store().await;
    let id = install(&store, "inst_revoke", "shopify").await;
    store
        .put_secret(&id, "webhook_secret", b"app-secret")
        .await
        .unwrap();
    store
        .put_captured_secrets(
            &id,
            &[
                ("access_token".into(), SecretBytes::new(b"shpat_1".to_vec())),
                (
                    "refresh_token".into(),
                    SecretBytes::new(b"shprt_1".to_vec()),
                ),
            ],
        )
        .await
        .unwrap();
    assert_eq!(
        store.secret_names(&id).await.unwrap(),
        ["access_token", "refresh_token", "webhook_secret"]
    );
    let mut forgotten = store.forget_tokens(&id).await.unwrap();
    forgotten.sort();
    assert_eq!(forgotten, ["access_token", "refresh_token"]);
    assert_eq!(store.secret_names(&id).await.unwrap(), ["webhook_secret"]);
    store
        .set_auth_status(&id, AuthStatus::Revoked, Some("app/uninstalled"))
        .await
        .unwrap();
    let record = store.auth_record(&id).await.unwrap().unwrap();
    assert_eq!(
        (record.status, record.reason.as_deref()),
        (AuthStatus::Revoked, Some("app/uninstalled"))
    );
    let audit = actions(&store.secret_audit(&id).await.unwrap());
    assert_eq!(
        audit.iter().filter(|(_, a)| a == "deleted").count(),
        2,
        "{audit:?}"
    );
    assert!(
        store.forget_tokens(&id).await.unwrap().is_empty(),
        "nothing left to forget"
    );
}
