//! `GET /v1/events?wait=`: a long-poll answers as soon as an event after the cursor is
//! committed (woken by the commit: its own look again is set a minute apart here, so only
//! the commit can answer it sooner), and with an empty page after `wait` when nothing
//! arrives; filters by installation, driver and type. How soon after the commit it answers
//! is printed, not held to a bound: a latency is the benchmark's to measure.

use std::time::{Duration, Instant};

use reqwest::Method;
use sluice_testkit::{Backend, Sluice, both_backends, stripe_charge_payload};

both_backends!(long_polls_wake_on_commit => sqlite_long_polls_wake_on_commit, postgres_long_polls_wake_on_commit);

async fn long_polls_wake_on_commit(backend: Backend) {
    let env = [("SLUICE_SERVER_LONG_POLL_RECHECK_MS", "60000")];
    let Some(sluice) = Sluice::start_with_env(backend, &env).await else {
        return;
    };
    let (inst, secret) = sluice.stripe_installation().await;
    let page = |query: String| {
        let sluice = &sluice;
        async move {
            sluice
                .admin(Method::GET, &format!("/v1/events?{query}"), None)
                .await
        }
    };

    // Nothing arrives: an empty page after the wait, with the cursor unchanged.
    let started = Instant::now();
    let resp = page(format!("installation_id={inst}&wait=1")).await;
    let waited = started.elapsed();
    resp.expect_status(200);
    assert_eq!(resp.json["events"], serde_json::json!([]), "{}", resp.text);
    let cursor = resp.json["next_cursor"].as_str().unwrap().to_string();
    assert!(
        waited >= Duration::from_millis(950) && waited < Duration::from_secs(20),
        "{waited:?}"
    );

    // A commit wakes a waiting reader. The delivery lands 300 ms into a 30 s wait; the
    // reader's own look again is a minute away, so without the wake it would answer only
    // at the end of its wait.
    let query = format!("installation_id={inst}&after={cursor}&wait=30");
    let url = sluice.url(&format!("/v1/events?{query}"));
    let token = sluice.admin_token.clone();
    let waiting = tokio::spawn(async move {
        let resp = reqwest::Client::new()
            .get(url)
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        let at = Instant::now();
        (at, resp.json::<serde_json::Value>().await.unwrap())
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    sluice
        .post_stripe(&inst, &secret, &stripe_charge_payload())
        .await
        .expect_status(200);
    let committed = Instant::now();
    let (answered, body) = waiting.await.unwrap();
    let after_commit = answered.saturating_duration_since(committed);
    eprintln!("long-poll answered {after_commit:?} after the delivery's 200");
    assert!(
        after_commit < Duration::from_secs(15),
        "answered {after_commit:?} after the commit: not woken by it"
    );
    let events = body["events"].as_array().unwrap();
    assert_eq!(events.len(), 1, "{body}");
    assert_eq!(events[0]["type"], "payment.succeeded");
    assert_eq!(
        events[0]["sluiceprovidereventid"],
        "evt_3RTqw0RMEOaIvYpU1k2TFajH"
    );

    // Filters: driver and exact type.
    let count = |query: String| {
        let page = &page;
        async move {
            let resp = page(query).await;
            resp.expect_status(200);
            resp.json["events"].as_array().unwrap().len()
        }
    };
    assert_eq!(
        count("driver_id=stripe&type=payment.succeeded".into()).await,
        1
    );
    assert_eq!(count("driver_id=faulty".into()).await, 0);
    assert_eq!(
        count(format!("installation_id={inst}&type=refund.succeeded")).await,
        0
    );
    for bad in ["wait=31", "wait=soon", "driver_id=Not%20A%20Driver"] {
        let resp = page(bad.into()).await;
        resp.expect_status(400);
    }
}
