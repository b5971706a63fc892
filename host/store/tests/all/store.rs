//! Behaviour of the store on both backends (see `common` for the harness).

use crate::common::TestDb;
use serde_json::json;
use sluice_store::{
    Cursor, Delivery, EventId, IngestedEvent, InstallationId, NewEvent, NewInstallation,
    NormalizeOutcome, RawEventStatus, SecretBytes, StateWrite, Store, StoreError, Writes,
    WritesApply,
};

both_backends!(
    migrations_are_idempotent,
    installation_lifecycle,
    installation_conflicts,
    secret_roundtrip,
    secret_bound_to_its_slot,
    wrong_master_key_is_a_crypto_error,
    commit_stores_raw_and_events,
    duplicate_delivery_is_counted_not_stored,
    concurrent_duplicates_store_once,
    same_content_under_a_new_id_is_a_duplicate,
    failed_normalization_is_a_dead_letter,
    state_writes_are_committed,
    event_cursor_pages_in_order,
    failing_commit_leaves_nothing,
    commit_to_unknown_or_deleted_installation,
    captured_secrets_commit_with_the_delivery,
    secret_changes_are_audited_without_values,
    secret_changes_are_announced,
    cursor_never_skips_under_concurrent_writers,
    redelivery_does_not_reapply_writes,
);

pub(crate) fn iid(s: &str) -> InstallationId {
    InstallationId::parse(s).unwrap()
}

pub(crate) async fn install(
    store: &Store,
    id: &str,
    driver: &str,
    account_key: Option<&str>,
) -> InstallationId {
    let id = iid(id);
    store
        .create_installation(NewInstallation {
            id: id.clone(),
            driver_id: crate::common::driver(driver),
            settings: json!({"tolerance_seconds": 300}),
            account_key: account_key.map(Into::into),
        })
        .await
        .unwrap();
    id
}

/// A well-formed event id derived from a test label, so the same label is the same id.
fn eid(label: &str) -> EventId {
    const ALPHABET: &[u8] = b"0123456789abcdefghjkmnpqrstvwxyz";
    let mut state: u64 = 0xcbf2_9ce4_8422_2325;
    let body: String = (0..26)
        .map(|i| {
            for b in label.bytes().chain([i as u8]) {
                state = (state ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
            }
            ALPHABET[(state >> 59) as usize] as char
        })
        .collect();
    EventId::parse(&format!("evt_{body}")).unwrap()
}

/// The label a test event's record carries.
pub(crate) fn label(e: &sluice_store::StoredEvent) -> String {
    body_json(&e.data)["label"].as_str().unwrap().to_owned()
}

pub(crate) fn normalized(provider_event_id: &str, event_ids: &[&str]) -> IngestedEvent {
    IngestedEvent {
        provider_event_id: provider_event_id.into(),
        event_type: "charge.succeeded".into(),
        account_key: Some("acct_1".into()),
        payload: format!(r#"{{"id":"{provider_event_id}"}}"#).into_bytes(),
        api_version: None,
        outcome: NormalizeOutcome::Normalized(
            event_ids
                .iter()
                .map(|id| NewEvent {
                    event_id: eid(id),
                    event_type: "payment.succeeded".into(),
                    subject: Some("ch_1".into()),
                    time: "2023-03-17T19:10:39Z".into(),
                    data: json!({"label": id, "amount": {"amount_minor": 1099, "currency": "USD"}})
                        .to_string(),
                })
                .collect(),
        ),
    }
}

fn failed(provider_event_id: &str, reason: &str) -> IngestedEvent {
    IngestedEvent {
        provider_event_id: provider_event_id.into(),
        event_type: "charge.weird".into(),
        account_key: None,
        payload: b"\x00not json\xff".to_vec(),
        api_version: Some("2026-07".into()),
        outcome: NormalizeOutcome::Failed {
            reason: reason.into(),
        },
    }
}

pub(crate) fn delivery(
    id: &InstallationId,
    events: Vec<IngestedEvent>,
    state_writes: Vec<StateWrite>,
) -> Delivery {
    Delivery {
        installation_id: id.clone(),
        driver_id: crate::common::driver("stripe"),
        driver_version: "0.1.0".into(),
        received_at: "2026-01-02T03:04:05Z".into(),
        events,
        writes: Writes {
            state: state_writes,
            secrets: Vec::new(),
        },
        writes_apply: WritesApply::UnlessDuplicate,
    }
}

fn set(key: &str, value: &[u8]) -> StateWrite {
    StateWrite::Set {
        key: key.into(),
        value: value.to_vec(),
    }
}

fn body_json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap()
}

async fn migrations_are_idempotent(db: &TestDb) {
    let first = db.store().await;
    let id = install(&first, "inst_a", "stripe", None).await;
    first.ping().await.unwrap();
    // Connecting again re-runs the migrator: a no-op that keeps the data.
    let second = db.store().await;
    second.ping().await.unwrap();
    assert!(second.get_installation(&id).await.unwrap().is_some());
    let third = db.store().await;
    assert_eq!(third.list_installations().await.unwrap().len(), 1);
    if db.backend == sluice_store::Backend::Sqlite {
        let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(third.pool())
            .await
            .unwrap();
        assert_eq!(mode, "wal");
        let fk: i64 = sqlx::query_scalar("PRAGMA foreign_keys")
            .fetch_one(third.pool())
            .await
            .unwrap();
        assert_eq!(fk, 1);
    }
    first.close().await;
    second.close().await;
    third.close().await;
}

async fn installation_lifecycle(db: &TestDb) {
    let store = db.store().await;
    let a = store
        .create_installation(NewInstallation {
            id: iid("inst_shop_42"),
            driver_id: crate::common::driver("shopify"),
            settings: json!({"poll_interval": 5, "webhook_topics": ["orders/create"]}),
            account_key: Some("shop42.myshopify.com".into()),
        })
        .await
        .unwrap();
    assert!(a.created_at.ends_with('Z'), "{}", a.created_at);
    assert!(chrono::DateTime::parse_from_rfc3339(&a.created_at).is_ok());
    assert!(a.secret_names.is_empty());

    let got = store.get_installation(&a.id).await.unwrap().unwrap();
    assert_eq!(got, a);
    let b = install(&store, InstallationId::generate().as_str(), "stripe", None).await;

    let list = store.list_installations().await.unwrap();
    let ids: Vec<_> = list.iter().map(|i| i.id.clone()).collect();
    assert_eq!(ids.len(), 2);
    assert!(ids.contains(&a.id) && ids.contains(&b));

    let found = store
        .find_by_account_key(&crate::common::driver("shopify"), "shop42.myshopify.com")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.id, a.id);
    assert!(
        store
            .find_by_account_key(&crate::common::driver("stripe"), "shop42.myshopify.com")
            .await
            .unwrap()
            .is_none()
    );

    assert!(store.delete_installation(&a.id).await.unwrap());
    assert!(!store.delete_installation(&a.id).await.unwrap());
    assert!(store.get_installation(&a.id).await.unwrap().is_none());
    assert!(
        store
            .find_by_account_key(&crate::common::driver("shopify"), "shop42.myshopify.com")
            .await
            .unwrap()
            .is_none()
    );
    let list = store.list_installations().await.unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].id, b);
    assert!(
        !store
            .delete_installation(&iid("never_existed"))
            .await
            .unwrap()
    );
    assert!(
        store
            .get_installation(&iid("never_existed"))
            .await
            .unwrap()
            .is_none()
    );
    store.close().await;
}

async fn installation_conflicts(db: &TestDb) {
    let store = db.store().await;
    let a = install(&store, "inst_a", "stripe", Some("acct_1")).await;

    let dup_id = store
        .create_installation(NewInstallation {
            id: a.clone(),
            driver_id: crate::common::driver("hotmart"),
            settings: json!({}),
            account_key: None,
        })
        .await;
    assert!(
        matches!(dup_id, Err(StoreError::Conflict(ref m)) if m.contains("inst_a")),
        "{dup_id:?}"
    );

    let dup_key = store
        .create_installation(NewInstallation {
            id: iid("inst_b"),
            driver_id: crate::common::driver("stripe"),
            settings: json!({}),
            account_key: Some("acct_1".into()),
        })
        .await;
    assert!(
        matches!(dup_key, Err(StoreError::Conflict(ref m)) if m.contains("account key")),
        "{dup_key:?}"
    );
    // Nothing half-created.
    assert!(
        store
            .get_installation(&iid("inst_b"))
            .await
            .unwrap()
            .is_none()
    );

    // Same key on another driver, and several installations without a key: fine.
    install(&store, "inst_c", "shopify", Some("acct_1")).await;
    install(&store, "inst_d", "stripe", None).await;
    install(&store, "inst_e", "stripe", None).await;

    // Once the holder is deleted its key is free, but its id stays taken.
    assert!(store.delete_installation(&a).await.unwrap());
    install(&store, "inst_b", "stripe", Some("acct_1")).await;
    let reuse = store
        .create_installation(NewInstallation {
            id: a.clone(),
            driver_id: crate::common::driver("stripe"),
            settings: json!({}),
            account_key: None,
        })
        .await;
    assert!(matches!(reuse, Err(StoreError::Conflict(_))), "{reuse:?}");
    store.close().await;
}

async fn secret_roundtrip(db: &TestDb) {
    let store = db.store().await;
    let id = install(&store, "inst_a", "stripe", None).await;
    store
        .put_secret(&id, "webhook_secret", b"whsec_one")
        .await
        .unwrap();
    store
        .put_secret(&id, "api_key", b"sk_test_1")
        .await
        .unwrap();
    let got = store
        .get_secret(&id, "webhook_secret")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.expose(), b"whsec_one");
    assert_eq!(format!("{got:?}"), "[redacted]");

    // Upsert replaces.
    store
        .put_secret(&id, "webhook_secret", b"whsec_two")
        .await
        .unwrap();
    assert_eq!(
        store
            .get_secret(&id, "webhook_secret")
            .await
            .unwrap()
            .unwrap()
            .expose(),
        b"whsec_two"
    );
    assert!(store.get_secret(&id, "missing").await.unwrap().is_none());
    assert_eq!(
        store.secret_names(&id).await.unwrap(),
        ["api_key", "webhook_secret"]
    );
    let inst = store.get_installation(&id).await.unwrap().unwrap();
    assert_eq!(inst.secret_names, ["api_key", "webhook_secret"]);
    let listed = store.list_installations().await.unwrap();
    assert_eq!(listed[0].secret_names, ["api_key", "webhook_secret"]);

    // Binary values survive.
    let binary: Vec<u8> = (0..=255).collect();
    store.put_secret(&id, "bin", &binary).await.unwrap();
    assert_eq!(
        store
            .get_secret(&id, "bin")
            .await
            .unwrap()
            .unwrap()
            .expose(),
        &binary[..]
    );

    // The value is not stored in clear.
    let rows: Vec<Vec<u8>> = sqlx::query_scalar("SELECT ciphertext FROM secrets")
        .fetch_all(store.pool())
        .await
        .unwrap();
    assert!(
        rows.iter()
            .all(|c| !c.windows(9).any(|w| w == b"whsec_two"))
    );

    // Unknown installation: NotFound. Deleting the installation deletes its secrets.
    let missing = store.put_secret(&iid("nope"), "x", b"y").await;
    assert!(matches!(missing, Err(StoreError::NotFound)), "{missing:?}");
    assert!(store.delete_installation(&id).await.unwrap());
    assert!(
        store
            .get_secret(&id, "webhook_secret")
            .await
            .unwrap()
            .is_none()
    );
    assert!(store.secret_names(&id).await.unwrap().is_empty());
    assert!(matches!(
        store.put_secret(&id, "x", b"y").await,
        Err(StoreError::NotFound)
    ));
    store.close().await;
}

async fn secret_bound_to_its_slot(db: &TestDb) {
    let store = db.store().await;
    let a = install(&store, "inst_a", "stripe", None).await;
    let b = install(&store, "inst_b", "stripe", None).await;
    store
        .put_secret(&a, "webhook_secret", b"whsec_a")
        .await
        .unwrap();

    // Copy the ciphertext to another name of the same installation...
    sqlx::query(
        "INSERT INTO secrets (installation_id, name, ciphertext, updated_at) \
         SELECT installation_id, 'api_key', ciphertext, updated_at FROM secrets \
         WHERE installation_id = $1 AND name = 'webhook_secret'",
    )
    .bind(a.as_str())
    .execute(store.pool())
    .await
    .unwrap();
    // ...and to the same name of another installation.
    sqlx::query(
        "INSERT INTO secrets (installation_id, name, ciphertext, updated_at) \
         SELECT $2, name, ciphertext, updated_at FROM secrets \
         WHERE installation_id = $1 AND name = 'webhook_secret'",
    )
    .bind(a.as_str())
    .bind(b.as_str())
    .execute(store.pool())
    .await
    .unwrap();

    let moved = store.get_secret(&a, "api_key").await;
    assert!(matches!(moved, Err(StoreError::Crypto)), "{moved:?}");
    let moved = store.get_secret(&b, "webhook_secret").await;
    assert!(matches!(moved, Err(StoreError::Crypto)), "{moved:?}");
    assert_eq!(
        store
            .get_secret(&a, "webhook_secret")
            .await
            .unwrap()
            .unwrap()
            .expose(),
        b"whsec_a"
    );
    store.close().await;
}

async fn wrong_master_key_is_a_crypto_error(db: &TestDb) {
    let right = db.store_with_key([1; 32]).await;
    let id = install(&right, "inst_a", "stripe", None).await;
    right
        .put_secret(&id, "webhook_secret", b"whsec_a")
        .await
        .unwrap();
    let wrong = db.store_with_key([2; 32]).await;
    let got = wrong.get_secret(&id, "webhook_secret").await;
    assert!(matches!(got, Err(StoreError::Crypto)), "{got:?}");
    assert_eq!(
        right
            .get_secret(&id, "webhook_secret")
            .await
            .unwrap()
            .unwrap()
            .expose(),
        b"whsec_a"
    );
    right.close().await;
    wrong.close().await;
}

async fn commit_stores_raw_and_events(db: &TestDb) {
    let store = db.store().await;
    let id = install(&store, "inst_a", "stripe", None).await;
    let out = store
        .commit_delivery(delivery(
            &id,
            vec![
                normalized("evt_1", &["ce_1a", "ce_1b"]),
                normalized("evt_2", &[]),
            ],
            vec![],
        ))
        .await
        .unwrap();
    assert_eq!((out.stored, out.duplicates, out.events), (2, 0, 2));
    assert_eq!(store.count_raw_events(&id).await.unwrap(), 2);

    let events = store
        .list_events(Some(&id), Cursor::START, 100)
        .await
        .unwrap();
    assert_eq!(events.len(), 2);
    assert!(events[0].cursor < events[1].cursor);
    assert_eq!(events[0].id, eid("ce_1a"));
    assert_eq!(label(&events[1]), "ce_1b");
    assert_eq!(body_json(&events[0].data)["amount"]["amount_minor"], 1099);
    assert_eq!(
        (events[0].event_type.as_str(), events[0].subject.as_deref()),
        ("payment.succeeded", Some("ch_1"))
    );
    assert_eq!(events[0].time, "2023-03-17T19:10:39Z");
    // Provenance comes from the raw event both were normalized from.
    let raw_id = events[0].raw_event_id;
    assert_eq!(events[1].raw_event_id, raw_id);
    assert_eq!(
        (
            events[0].driver_id.as_str(),
            events[0].driver_version.as_str(),
            events[0].provider_event_id.as_str(),
            events[0].provider_event_type.as_str()
        ),
        ("stripe", "0.1.0", "evt_1", "charge.succeeded")
    );

    let raw = store.raw_event(&id, raw_id).await.unwrap().unwrap();
    assert_eq!(raw.provider_event_id, "evt_1");
    assert_eq!(raw.payload, br#"{"id":"evt_1"}"#);
    assert_eq!(raw.status, RawEventStatus::Normalized);
    assert_eq!(raw.failure_reason, None);
    assert_eq!(raw.account_key.as_deref(), Some("acct_1"));
    assert_eq!(
        (raw.driver_id.as_str(), raw.driver_version.as_str()),
        ("stripe", "0.1.0")
    );
    assert_eq!(raw.received_at, "2026-01-02T03:04:05Z");
    assert_eq!(raw.api_version, None);
    assert_eq!(raw.installation_id, id);
    assert!(
        store
            .raw_event(&iid("other"), raw_id)
            .await
            .unwrap()
            .is_none()
    );
    assert!(store.list_failed(&id).await.unwrap().is_empty());
    store.close().await;
}

async fn duplicate_delivery_is_counted_not_stored(db: &TestDb) {
    let store = db.store().await;
    let id = install(&store, "inst_a", "stripe", None).await;
    let first = store
        .commit_delivery(delivery(&id, vec![normalized("evt_1", &["ce_1"])], vec![]))
        .await
        .unwrap();
    assert_eq!((first.stored, first.duplicates, first.events), (1, 0, 1));
    // The redelivery's normalized events carry other ids: they must not be stored either.
    let again = store
        .commit_delivery(delivery(
            &id,
            vec![
                normalized("evt_1", &["ce_1_retry"]),
                normalized("evt_2", &["ce_2"]),
            ],
            vec![],
        ))
        .await
        .unwrap();
    assert_eq!((again.stored, again.duplicates, again.events), (1, 1, 1));
    // A duplicate inside one delivery counts too.
    let inner = store
        .commit_delivery(delivery(
            &id,
            vec![
                normalized("evt_3", &["ce_3"]),
                normalized("evt_3", &["ce_3_dup"]),
            ],
            vec![],
        ))
        .await
        .unwrap();
    assert_eq!((inner.stored, inner.duplicates, inner.events), (1, 1, 1));
    assert_eq!(store.count_raw_events(&id).await.unwrap(), 3);
    let ids: Vec<_> = store
        .list_events(Some(&id), Cursor::START, 100)
        .await
        .unwrap()
        .iter()
        .map(label)
        .collect();
    assert_eq!(ids, ["ce_1", "ce_2", "ce_3"]);

    // The same provider event id under another installation is a different event.
    let other = install(&store, "inst_b", "stripe", None).await;
    let out = store
        .commit_delivery(delivery(
            &other,
            vec![normalized("evt_1", &["ce_b1"])],
            vec![],
        ))
        .await
        .unwrap();
    assert_eq!(out.stored, 1);
    store.close().await;
}

/// Shopify's webhook id is an unsigned header: a captured body replayed under a new id is
/// the same event. The same body under another type, or in another installation, is not.
async fn same_content_under_a_new_id_is_a_duplicate(db: &TestDb) {
    let store = db.store().await;
    let id = install(&store, "inst_a", "shopify", None).await;
    let order = |webhook_id: &str, topic: &str, ce: &str| {
        let mut event = normalized(webhook_id, &[ce]);
        event.event_type = topic.into();
        event.payload = br#"{"id":820982911946154508,"total_price":"403.00"}"#.to_vec();
        event
    };
    let first = store
        .commit_delivery(delivery(
            &id,
            vec![order("b54557e4", "orders/create", "ce_1")],
            vec![set("k", b"1")],
        ))
        .await
        .unwrap();
    assert_eq!((first.stored, first.duplicates, first.events), (1, 0, 1));
    let replay = store
        .commit_delivery(delivery(
            &id,
            vec![order("forged-id", "orders/create", "ce_2")],
            vec![set("k", b"2")],
        ))
        .await
        .unwrap();
    assert_eq!((replay.stored, replay.duplicates, replay.events), (0, 1, 0));
    // A redelivery's writes do not apply, whichever key found it.
    assert_eq!(
        store.get_state(&id, "k").await.unwrap().as_deref(),
        Some(&b"1"[..])
    );
    // Inside one delivery (and so one batch) too.
    let inner = store
        .commit_delivery(delivery(
            &id,
            vec![
                order("c1", "orders/paid", "ce_3"),
                order("c2", "orders/paid", "ce_4"),
            ],
            vec![],
        ))
        .await
        .unwrap();
    assert_eq!((inner.stored, inner.duplicates, inner.events), (1, 1, 1));
    let other = install(&store, "inst_b", "shopify", None).await;
    let elsewhere = store
        .commit_delivery(delivery(
            &other,
            vec![order("b54557e4", "orders/create", "ce_5")],
            vec![],
        ))
        .await
        .unwrap();
    assert_eq!(elsewhere.stored, 1);
    assert_eq!(
        labels_eventually(&store, &["ce_1", "ce_3", "ce_5"]).await,
        ["ce_1", "ce_3", "ce_5"]
    );
    store.close().await;
}

/// The whole log's labels once it holds `expected` (or after 10 s). On PostgreSQL an event
/// is readable once every transaction older than it has ended, anywhere on the server:
/// another test's transaction (creating its database, say) can hold it back for longer
/// than `list_events` waits for a reader's own writes.
async fn labels_eventually(store: &Store, expected: &[&str]) -> Vec<String> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let labels: Vec<String> = store
            .list_events(None, Cursor::START, 100)
            .await
            .unwrap()
            .iter()
            .map(label)
            .collect();
        if labels == expected || std::time::Instant::now() > deadline {
            return labels;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

async fn concurrent_duplicates_store_once(db: &TestDb) {
    let store = db.store().await;
    let id = install(&store, "inst_a", "stripe", None).await;
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let store = store.clone();
            let d = delivery(
                &id,
                vec![normalized("evt_same", &["ce_same"])],
                vec![set("cursor", b"c1")],
            );
            tokio::spawn(async move { store.commit_delivery(d).await })
        })
        .collect();
    let (mut stored, mut duplicates, mut events) = (0, 0, 0);
    for task in tasks {
        let out = task.await.unwrap().unwrap();
        stored += out.stored;
        duplicates += out.duplicates;
        events += out.events;
    }
    assert_eq!((stored, duplicates, events), (1, 7, 1));
    assert_eq!(store.count_raw_events(&id).await.unwrap(), 1);
    assert_eq!(
        store
            .list_events(Some(&id), Cursor::START, 100)
            .await
            .unwrap()
            .len(),
        1
    );
    store.close().await;
}

async fn failed_normalization_is_a_dead_letter(db: &TestDb) {
    let store = db.store().await;
    let id = install(&store, "inst_a", "stripe", None).await;
    let out = store
        .commit_delivery(delivery(
            &id,
            vec![
                failed("evt_bad", "unknown currency \"XXX\""),
                normalized("evt_ok", &["ce_ok"]),
            ],
            vec![],
        ))
        .await
        .unwrap();
    assert_eq!((out.stored, out.duplicates, out.events), (2, 0, 1));
    let dead = store.list_failed(&id).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].provider_event_id, "evt_bad");
    assert_eq!(dead[0].event_type, "charge.weird");
    assert_eq!(dead[0].reason, "unknown currency \"XXX\"");
    let raw = store.raw_event(&id, dead[0].id).await.unwrap().unwrap();
    assert_eq!(raw.status, RawEventStatus::Failed);
    assert_eq!(
        raw.failure_reason.as_deref(),
        Some("unknown currency \"XXX\"")
    );
    assert_eq!(raw.payload, b"\x00not json\xff");
    assert_eq!(raw.account_key, None);
    // The API version the delivery named is kept for a later re-normalization.
    assert_eq!(raw.api_version.as_deref(), Some("2026-07"));
    let events = store
        .list_events(Some(&id), Cursor::START, 100)
        .await
        .unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(label(&events[0]), "ce_ok");
    // A redelivery of the failed event is a duplicate, not a second dead letter.
    let again = store
        .commit_delivery(delivery(&id, vec![failed("evt_bad", "again")], vec![]))
        .await
        .unwrap();
    assert_eq!((again.stored, again.duplicates), (0, 1));
    assert_eq!(store.list_failed(&id).await.unwrap().len(), 1);
    store.close().await;
}

async fn state_writes_are_committed(db: &TestDb) {
    let store = db.store().await;
    let id = install(&store, "inst_a", "stripe", None).await;
    assert!(store.get_state(&id, "cursor").await.unwrap().is_none());
    // A poll that found nothing still advances its cursor.
    let out = store
        .commit_delivery(delivery(
            &id,
            vec![],
            vec![set("cursor", b"1000"), set("token_exp", b"\x00\x01")],
        ))
        .await
        .unwrap();
    assert_eq!(out, Default::default());
    assert_eq!(
        store.get_state(&id, "cursor").await.unwrap().unwrap(),
        b"1000"
    );
    assert_eq!(
        store.get_state(&id, "token_exp").await.unwrap().unwrap(),
        b"\x00\x01"
    );
    // Overwrite, with events, in order: the last write to a key wins.
    store
        .commit_delivery(delivery(
            &id,
            vec![normalized("evt_1", &["ce_1"])],
            vec![
                set("cursor", b"1500"),
                set("cursor", b"2000"),
                StateWrite::Delete {
                    key: "token_exp".into(),
                },
            ],
        ))
        .await
        .unwrap();
    assert_eq!(
        store.get_state(&id, "cursor").await.unwrap().unwrap(),
        b"2000"
    );
    assert!(store.get_state(&id, "token_exp").await.unwrap().is_none());
    // Deleting a missing key is fine; state is per installation.
    let other = install(&store, "inst_b", "stripe", None).await;
    store
        .commit_delivery(delivery(
            &other,
            vec![],
            vec![
                StateWrite::Delete {
                    key: "nothing".into(),
                },
                set("cursor", b"9"),
            ],
        ))
        .await
        .unwrap();
    assert_eq!(
        store.get_state(&id, "cursor").await.unwrap().unwrap(),
        b"2000"
    );
    assert_eq!(
        store.get_state(&other, "cursor").await.unwrap().unwrap(),
        b"9"
    );
    store.close().await;
}

async fn event_cursor_pages_in_order(db: &TestDb) {
    let store = db.store().await;
    let a = install(&store, "inst_a", "stripe", None).await;
    let b = install(&store, "inst_b", "stripe", None).await;
    let mut expected = Vec::new();
    for i in 0..7 {
        let (inst, tag) = if i % 3 == 2 { (&b, "b") } else { (&a, "a") };
        let ce = format!("ce_{tag}_{i}");
        store
            .commit_delivery(delivery(
                inst,
                vec![normalized(&format!("evt_{i}"), &[&ce])],
                vec![],
            ))
            .await
            .unwrap();
        expected.push(ce);
    }

    let mut seen = Vec::new();
    let mut cursor = Cursor::START;
    let mut last = Cursor::START;
    loop {
        let page = store.list_events(None, cursor, 3).await.unwrap();
        assert!(page.len() <= 3);
        if page.is_empty() {
            break;
        }
        for e in &page {
            assert!(e.cursor > last, "the cursor must increase");
            last = e.cursor;
            seen.push(label(e));
        }
        cursor = page.last().unwrap().cursor;
    }
    assert_eq!(seen, expected);
    // An empty page past the end; limit 0 gives nothing.
    assert!(
        store
            .list_events(None, cursor, 100)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .list_events(None, Cursor::START, 0)
            .await
            .unwrap()
            .is_empty()
    );

    let only_b: Vec<_> = store
        .list_events(Some(&b), Cursor::START, 100)
        .await
        .unwrap()
        .iter()
        .map(label)
        .collect();
    assert_eq!(only_b, ["ce_b_2", "ce_b_5"]);
    let a_page = store.list_events(Some(&a), Cursor::START, 2).await.unwrap();
    assert_eq!(a_page.len(), 2);
    let a_rest = store
        .list_events(Some(&a), a_page[1].cursor, 100)
        .await
        .unwrap();
    assert_eq!(a_rest.len(), 3);

    // A deleted installation's events stay readable.
    assert!(store.delete_installation(&b).await.unwrap());
    assert_eq!(
        store
            .list_events(Some(&b), Cursor::START, 100)
            .await
            .unwrap()
            .len(),
        2
    );
    store.close().await;
}

async fn failing_commit_leaves_nothing(db: &TestDb) {
    let store = db.store().await;
    let id = install(&store, "inst_a", "stripe", None).await;
    store
        .commit_delivery(delivery(
            &id,
            vec![normalized("evt_1", &["ce_taken"])],
            vec![set("cursor", b"1")],
        ))
        .await
        .unwrap();

    // evt_2 is fine, evt_3 reuses an existing CloudEvent id: the whole delivery fails.
    let err = store
        .commit_delivery(delivery(
            &id,
            vec![
                normalized("evt_2", &["ce_2"]),
                failed("evt_dead", "x"),
                normalized("evt_3", &["ce_taken"]),
            ],
            vec![set("cursor", b"2")],
        ))
        .await;
    assert!(matches!(err, Err(StoreError::Conflict(_))), "{err:?}");
    assert_eq!(store.count_raw_events(&id).await.unwrap(), 1);
    assert_eq!(
        store
            .list_events(None, Cursor::START, 100)
            .await
            .unwrap()
            .len(),
        1
    );
    assert!(store.list_failed(&id).await.unwrap().is_empty());
    assert_eq!(store.get_state(&id, "cursor").await.unwrap().unwrap(), b"1");

    // Nothing of the failed delivery was kept: it now commits as new.
    let retry = store
        .commit_delivery(delivery(
            &id,
            vec![normalized("evt_2", &["ce_2"])],
            vec![set("cursor", b"2")],
        ))
        .await
        .unwrap();
    assert_eq!((retry.stored, retry.duplicates, retry.events), (1, 0, 1));
    assert_eq!(store.count_raw_events(&id).await.unwrap(), 2);
    assert_eq!(store.get_state(&id, "cursor").await.unwrap().unwrap(), b"2");
    store.close().await;
}

async fn commit_to_unknown_or_deleted_installation(db: &TestDb) {
    let store = db.store().await;
    let err = store
        .commit_delivery(delivery(
            &iid("ghost"),
            vec![normalized("evt_1", &["ce_1"])],
            vec![],
        ))
        .await;
    assert!(matches!(err, Err(StoreError::NotFound)), "{err:?}");
    let id = install(&store, "inst_a", "stripe", None).await;
    assert!(store.delete_installation(&id).await.unwrap());
    let err = store
        .commit_delivery(delivery(
            &id,
            vec![normalized("evt_1", &["ce_1"])],
            vec![set("k", b"v")],
        ))
        .await;
    assert!(matches!(err, Err(StoreError::NotFound)), "{err:?}");
    assert_eq!(store.count_raw_events(&id).await.unwrap(), 0);
    assert!(store.get_state(&id, "k").await.unwrap().is_none());
    store.close().await;
}

/// Tokens captured from a provider response are stored with the delivery, or not at all.
async fn captured_secrets_commit_with_the_delivery(db: &TestDb) {
    let store = db.store().await;
    let id = install(&store, "inst_a", "hotmart", None).await;
    let token = || {
        vec![(
            "access_token".to_string(),
            SecretBytes::new(b"tok_1".to_vec()),
        )]
    };

    let mut d = delivery(&id, vec![normalized("evt_1", &["ce_1"])], vec![]);
    d.writes.secrets = token();
    store.commit_delivery(d).await.unwrap();
    let got = store
        .get_secret(&id, "access_token")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.expose(), b"tok_1");

    // A delivery that fails (reused CloudEvent id) must not replace the token.
    let mut d = delivery(&id, vec![normalized("evt_2", &["ce_1"])], vec![]);
    d.writes.secrets = vec![(
        "access_token".to_string(),
        SecretBytes::new(b"tok_2".to_vec()),
    )];
    assert!(store.commit_delivery(d).await.is_err());
    let got = store
        .get_secret(&id, "access_token")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.expose(), b"tok_1");
}

/// Every secret change is in the audit log, oldest first: set through the API or captured
/// with a delivery, never a failed one, and never a value.
async fn secret_changes_are_audited_without_values(db: &TestDb) {
    let store = db.store().await;
    let id = install(&store, "inst_a", "hotmart", None).await;
    store.put_secret(&id, "hottok", b"h-1").await.unwrap();
    store.put_secret(&id, "hottok", b"h-2").await.unwrap();
    let mut d = delivery(&id, vec![normalized("evt_1", &["ce_1"])], vec![]);
    d.writes.secrets = vec![("access_token".into(), SecretBytes::new(b"tok_1".to_vec()))];
    store.commit_delivery(d).await.unwrap();
    // A delivery that fails writes no audit entry either.
    let mut d = delivery(&id, vec![normalized("evt_2", &["ce_1"])], vec![]);
    d.writes.secrets = vec![("access_token".into(), SecretBytes::new(b"tok_2".to_vec()))];
    assert!(store.commit_delivery(d).await.is_err());
    // Nor a secret for an installation that is not there.
    assert!(matches!(
        store.put_secret(&iid("inst_gone"), "hottok", b"x").await,
        Err(StoreError::NotFound)
    ));

    let audit = store.secret_audit(&id).await.unwrap();
    let seen: Vec<(&str, &str)> = audit
        .iter()
        .map(|c| (c.name.as_str(), c.action.as_str()))
        .collect();
    assert_eq!(
        seen,
        [
            ("hottok", "set"),
            ("hottok", "set"),
            ("access_token", "captured")
        ]
    );
    assert!(
        audit
            .iter()
            .all(|c| c.at.ends_with('Z') && c.at.len() >= 20)
    );
    assert!(
        store
            .secret_audit(&iid("inst_gone"))
            .await
            .unwrap()
            .is_empty()
    );
    store.close().await;
}

/// Every change of an installation's secrets is told to this process's watchers before the
/// call returns, and on PostgreSQL to every node listening: set, rotated, captured (as it
/// arrives, and with a delivery), forgotten, and the installation deleted.
async fn secret_changes_are_announced(db: &TestDb) {
    let store = db.store().await;
    let id = install(&store, "inst_told", "hotmart", None).await;
    let told = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let seen = told.clone();
    store.watch_secret_changes(move |id| seen.lock().unwrap().push(id.to_string()));
    let mut listener = store.listen_changes().await.unwrap();
    assert_eq!(
        listener.is_some(),
        db.backend == sluice_store::Backend::Postgres
    );
    let count = || {
        told.lock()
            .unwrap()
            .iter()
            .filter(|i| *i == "inst_told")
            .count()
    };

    store.put_secret(&id, "hottok", b"h-1").await.unwrap();
    assert_eq!(count(), 1, "set");
    store
        .rotate_secret(&id, "hottok", b"h-2", 60, 1_700_000_000)
        .await
        .unwrap();
    assert_eq!(count(), 2, "rotated");
    let token = (
        "access_token".to_string(),
        SecretBytes::new(b"tok".to_vec()),
    );
    store
        .put_captured_secrets(&id, std::slice::from_ref(&token))
        .await
        .unwrap();
    assert_eq!(count(), 3, "captured");
    let mut d = delivery(&id, vec![normalized("evt_told", &["ce_told"])], vec![]);
    d.writes.secrets = vec![token];
    store.commit_delivery(d).await.unwrap();
    assert_eq!(count(), 4, "captured with a delivery");
    assert_eq!(store.forget_tokens(&id).await.unwrap(), ["access_token"]);
    assert_eq!(count(), 5, "forgotten");
    assert!(store.delete_installation(&id).await.unwrap());
    assert_eq!(count(), 6, "deleted");
    if let Some(listener) = listener.as_mut() {
        for _ in 0..6 {
            let change = tokio::time::timeout(std::time::Duration::from_secs(5), listener.next())
                .await
                .expect("a notification within 5 s")
                .unwrap();
            assert_eq!(change, Some(sluice_store::Change::Secrets(id.clone())));
        }
    }
    store.close().await;
}

/// Two stores on one database (two nodes, each with its writer) commit concurrently while a
/// reader pages through the log with small pages: the reader ends up with every event, each
/// once, in the log's order — it never skipped one that committed late.
async fn cursor_never_skips_under_concurrent_writers(db: &TestDb) {
    let nodes = [db.store().await, db.store().await];
    let id = install(&nodes[0], "inst_a", "stripe", None).await;
    let expected: usize = 8 * (0..40).map(|n| 1 + n % 3).sum::<usize>();

    // The reader pages until it has seen as many events as were written (an event may
    // become readable a moment after its commit, never before), or gives up after 30 s.
    let reader = {
        let store = nodes[1].clone();
        tokio::spawn(async move {
            let mut seen = Vec::new();
            let mut cursor = Cursor::START;
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
            while seen.len() < expected && std::time::Instant::now() < deadline {
                let page = store.list_events(None, cursor, 5).await.unwrap();
                if let Some(last) = page.last() {
                    cursor = last.cursor;
                }
                seen.extend(page.into_iter().map(|e| label(&e)));
            }
            // Nothing more may come: a skip would have shown up as a missing label.
            seen.extend(
                store
                    .list_events(None, cursor, 5)
                    .await
                    .unwrap()
                    .iter()
                    .map(label),
            );
            seen
        })
    };
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let store = nodes[w % 2].clone();
            let id = id.clone();
            tokio::spawn(async move {
                for n in 0..40 {
                    let labels: Vec<String> = (0..1 + (n % 3))
                        .map(|k| format!("ce_{w}_{n}_{k}"))
                        .collect();
                    let refs: Vec<&str> = labels.iter().map(String::as_str).collect();
                    store
                        .commit_delivery(delivery(
                            &id,
                            vec![normalized(&format!("evt_{w}_{n}"), &refs)],
                            vec![],
                        ))
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for writer in writers {
        writer.await.unwrap();
    }
    let seen = reader.await.unwrap();

    let all: Vec<String> = nodes[0]
        .list_events(None, Cursor::START, 10_000)
        .await
        .unwrap()
        .iter()
        .map(label)
        .collect();
    assert_eq!(all.len(), expected, "every event was committed");
    assert_eq!(
        seen, all,
        "the paging reader saw the log, in order, without a gap"
    );
    for store in nodes {
        store.close().await;
    }
}

/// A redelivery (every event a duplicate) does not re-apply the state or the secrets its
/// first delivery wrote; a delivery with new events does.
async fn redelivery_does_not_reapply_writes(db: &TestDb) {
    let store = db.store().await;
    let id = install(&store, "inst_a", "stripe", None).await;
    store
        .commit_delivery(delivery(
            &id,
            vec![normalized("evt_1", &["ce_1"])],
            vec![set("cursor", b"first")],
        ))
        .await
        .unwrap();
    // A later delivery moved the state on.
    store
        .commit_delivery(delivery(
            &id,
            vec![normalized("evt_2", &["ce_2"])],
            vec![set("cursor", b"second")],
        ))
        .await
        .unwrap();
    // evt_1 again, carrying its old write: a duplicate, the state stays.
    let mut again = delivery(
        &id,
        vec![normalized("evt_1", &["ce_1_again"])],
        vec![set("cursor", b"first")],
    );
    again.writes.secrets = vec![("access_token".into(), SecretBytes::new(b"old".to_vec()))];
    let out = store.commit_delivery(again).await.unwrap();
    assert_eq!((out.stored, out.duplicates), (0, 1));
    assert_eq!(
        store.get_state(&id, "cursor").await.unwrap().unwrap(),
        b"second"
    );
    assert!(
        store
            .get_secret(&id, "access_token")
            .await
            .unwrap()
            .is_none()
    );
    // `Always` (a poll's cursor) applies even when every event is a duplicate.
    let mut poll = delivery(
        &id,
        vec![normalized("evt_2", &["ce_2_again"])],
        vec![set("cursor", b"third")],
    );
    poll.writes_apply = WritesApply::Always;
    store.commit_delivery(poll).await.unwrap();
    assert_eq!(
        store.get_state(&id, "cursor").await.unwrap().unwrap(),
        b"third"
    );
    store.close().await;
}
