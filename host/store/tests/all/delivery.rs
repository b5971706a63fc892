//! Delivery state on both backends: an endpoint's outbox keeps each installation's order,
//! the next due time never points at an event waiting behind its installation's head,
//! leases exclude other owners, replays, backlog and signing keys.

use crate::common::TestDb;
use crate::store::{delivery, install, label, normalized};
use sluice_store::{
    Attempt, AttemptOutcome, DeliveryStatus, EndpointFilter, NewEndpoint, ReplayOne, Store,
    StoredEvent,
};

both_backends!(
    an_outbox_keeps_order_per_installation,
    leases_and_signing_keys
);

const NOW: i64 = 1_000_000;

fn attempt(event: &StoredEvent, n: i64, status: i64) -> Attempt {
    Attempt {
        event_id: event.id.to_string(),
        attempt: n,
        at: NOW,
        duration_ms: 3,
        status: Some(status),
        error: (status >= 300).then(|| format!("the endpoint answered {status}")),
        response: None,
    }
}

async fn endpoint(store: &Store) -> sluice_store::Endpoint {
    store
        .create_endpoint(
            &NewEndpoint {
                url: "https://engine.example.com/hook".into(),
                ..NewEndpoint::default()
            },
            b"0123456789abcdef01234567",
        )
        .await
        .unwrap()
}

/// The consumers' read of the log does not wait for events held back by an older
/// transaction (PostgreSQL); a consumer looks again, and so does this.
async fn page_of(store: &Store, after: sluice_store::Cursor, n: usize) -> Vec<StoredEvent> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let page = store.log_page(after, 100).await.unwrap();
        if page.len() >= n || std::time::Instant::now() > deadline {
            return page;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

fn labels(due: &[sluice_store::DueDelivery]) -> Vec<String> {
    due.iter().map(|d| label(&d.event)).collect()
}

async fn an_outbox_keeps_order_per_installation(db: &TestDb) {
    let store = db.store().await;
    let a = install(&store, "inst_a", "stripe", None).await;
    let b = install(&store, "inst_b", "stripe", None).await;
    let ep = endpoint(&store).await;
    for (inst, events) in [(&a, ["a1", "a2", "a3"].as_slice()), (&b, &["b1", "b2"])] {
        for e in events {
            let raw = normalized(&format!("raw_{e}"), &[e]);
            store
                .commit_delivery(delivery(inst, vec![raw], vec![]))
                .await
                .unwrap();
        }
    }
    let id = ep.id.as_str();
    assert!(store.claim_sink(id, "n1", NOW, NOW + 30_000).await.unwrap());
    let state = store.sink_state(id).await.unwrap().unwrap();
    let page = page_of(&store, state.cursor, 5).await;
    assert_eq!(
        page.len(),
        5,
        "events committed after the endpoint was created"
    );
    let all: Vec<&StoredEvent> = page.iter().collect();
    let last = page.last().unwrap().cursor;
    assert!(
        store
            .enqueue_deliveries(&ep.id, "n1", &all, last, NOW, NOW + 30_000)
            .await
            .unwrap()
    );
    let by_label = |l: &str| page.iter().find(|e| label(e) == l).unwrap().clone();

    // Only each installation's oldest pending event is due.
    let due = store.due_deliveries(&ep.id, NOW, 10).await.unwrap();
    assert_eq!(labels(&due), ["a1", "b1"]);
    store
        .record_attempt(
            &ep.id,
            &attempt(&by_label("a1"), 1, 503),
            AttemptOutcome::RetryAt(NOW + 5_000),
        )
        .await
        .unwrap();
    assert_eq!(
        labels(&store.due_deliveries(&ep.id, NOW, 10).await.unwrap()),
        ["b1"]
    );
    for l in ["b1", "b2"] {
        store
            .record_attempt(
                &ep.id,
                &attempt(&by_label(l), 1, 200),
                AttemptOutcome::Delivered,
            )
            .await
            .unwrap();
    }
    // a2 and a3 could go at NOW, but wait behind a1: the next due time is a1's.
    assert!(
        store
            .due_deliveries(&ep.id, NOW, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store.next_delivery_due(&ep.id).await.unwrap(),
        Some(NOW + 5_000)
    );
    let due = store.due_deliveries(&ep.id, NOW + 5_000, 10).await.unwrap();
    assert_eq!(labels(&due), ["a1"]);
    assert_eq!(due[0].attempts, 1);
    store
        .record_attempt(
            &ep.id,
            &attempt(&by_label("a1"), 2, 500),
            AttemptOutcome::Dead,
        )
        .await
        .unwrap();
    assert_eq!(
        labels(&store.due_deliveries(&ep.id, NOW, 10).await.unwrap()),
        ["a2"]
    );
    let dead = store
        .list_deliveries(&ep.id, Some(DeliveryStatus::Dead), 10)
        .await
        .unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!((dead[0].attempts, dead[0].last_status), (2, Some(500)));
    let attempts = store.list_attempts(&ep.id, None, 10).await.unwrap();
    assert_eq!(attempts.len(), 4, "newest first: {attempts:?}");
    assert_eq!(attempts[0].status, Some(500));

    // Replayed, a1 heads its installation again, before a2.
    assert_eq!(
        store
            .replay_delivery(&ep, by_label("a1").id.as_str(), NOW)
            .await
            .unwrap(),
        ReplayOne::Replayed
    );
    let due = store.due_deliveries(&ep.id, NOW, 10).await.unwrap();
    assert_eq!(labels(&due), ["a1"]);
    assert_eq!(due[0].attempts, 0, "a fresh schedule");

    // An event past the position is not replayed out of order.
    let raw = normalized("raw_a4", &["a4"]);
    store
        .commit_delivery(delivery(&a, vec![raw], vec![]))
        .await
        .unwrap();
    let a4 = page_of(&store, last, 1).await.remove(0);
    assert_eq!(
        store
            .replay_delivery(&ep, a4.id.as_str(), NOW)
            .await
            .unwrap(),
        ReplayOne::NotYetTaken
    );
    // Backlog: a1, a2, a3 pending in the outbox, a4 still in the log.
    let backlog = store.endpoint_backlog(&ep).await.unwrap();
    assert_eq!((backlog.pending, backlog.dead), (4, 0));
    assert_eq!(
        backlog.oldest_received_at.as_deref(),
        Some("2026-01-02T03:04:05Z")
    );

    // By time: every event behind the position, received since then (b1 and b2 again).
    let replayed = store
        .replay_endpoint_since(&ep, "2026-01-01T00:00:00Z", NOW)
        .await
        .unwrap();
    assert_eq!(replayed, 5);
    assert_eq!(
        labels(&store.due_deliveries(&ep.id, NOW, 10).await.unwrap()),
        ["a1", "b1"]
    );
    assert_eq!(
        store
            .replay_endpoint_since(&ep, "2027-01-01T00:00:00Z", NOW)
            .await
            .unwrap(),
        0
    );

    // A filter narrows what is taken in and what is counted.
    let narrow = EndpointFilter {
        installation_id: Some(b.clone()),
        ..EndpointFilter::default()
    };
    assert!(narrow.matches(&by_label("b1")) && !narrow.matches(&by_label("a1")));
}

async fn leases_and_signing_keys(db: &TestDb) {
    let store = db.store().await;
    let ep = endpoint(&store).await;
    let id = ep.id.as_str();
    assert!(store.claim_sink(id, "n1", NOW, NOW + 1_000).await.unwrap());
    assert!(
        !store
            .claim_sink(id, "n2", NOW + 999, NOW + 2_000)
            .await
            .unwrap()
    );
    assert!(
        store
            .claim_sink(id, "n1", NOW + 500, NOW + 1_500)
            .await
            .unwrap(),
        "renewed"
    );
    // Expired: another owner takes it, and the first can no longer move the position.
    assert!(
        store
            .claim_sink(id, "n2", NOW + 1_500, NOW + 2_500)
            .await
            .unwrap()
    );
    let cursor = store.sink_state(id).await.unwrap().unwrap().cursor;
    assert!(
        !store
            .enqueue_deliveries(&ep.id, "n1", &[], cursor, NOW, NOW)
            .await
            .unwrap()
    );
    assert!(!store.advance_sink(id, "n1", cursor).await.unwrap());
    assert!(store.advance_sink(id, "n2", cursor).await.unwrap());
    store.release_sink(id, "n2").await.unwrap();
    assert!(
        store
            .claim_sink(id, "n3", NOW + 1_600, NOW + 2_600)
            .await
            .unwrap(),
        "released"
    );

    let keys = store.endpoint_signing_keys(&ep.id, NOW).await.unwrap();
    assert_eq!(keys.current.expose(), b"0123456789abcdef01234567");
    assert!(keys.previous.is_none());
    store
        .rotate_endpoint_secret(&ep.id, b"new key new key new key!", NOW + 60_000, NOW)
        .await
        .unwrap();
    let keys = store
        .endpoint_signing_keys(&ep.id, NOW + 59_999)
        .await
        .unwrap();
    assert_eq!(keys.current.expose(), b"new key new key new key!");
    assert_eq!(keys.previous.unwrap().expose(), b"0123456789abcdef01234567");
    let keys = store
        .endpoint_signing_keys(&ep.id, NOW + 60_000)
        .await
        .unwrap();
    assert!(keys.previous.is_none(), "the grace is over");

    assert!(store.delete_endpoint(&ep.id).await.unwrap());
    assert!(!store.delete_endpoint(&ep.id).await.unwrap());
    assert!(store.endpoint(&ep.id).await.unwrap().is_none());
    assert!(
        !store
            .claim_sink(id, "n3", NOW + 9_000, NOW + 10_000)
            .await
            .unwrap()
    );
}
