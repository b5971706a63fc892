//! `GET /v1/events?wait=`: a long-poll answers as soon as an event after the cursor is
//! committed (woken by the commit, not by its once-a-second look), and with an empty page
//! after `wait` when nothing arrives; filters by installation, driver and type.

use std::time::{Duration, Instant};

use reqwest::Method;
use sluice_testkit::{
    Backend, Sluice, both_backends, stripe_charge_payload, stripe_charge_variant,
};

both_backends!(long_polls_wake_on_commit => sqlite_long_polls_wake_on_commit, postgres_long_polls_wake_on_commit);

async fn long_polls_wake_on_commit(backend: Backend) {
    let Some(sluice) = Sluice::start(backend).await else {
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
        waited >= Duration::from_millis(950) && waited < Duration::from_secs(5),
        "{waited:?}"
    );

    // A commit wakes a waiting reader at once. The delivery lands 300 ms into the wait; a
    // reader that only looked again on its own would answer 700 ms after it at the soonest.
    // The bound is 100 ms after the commit; on a loaded 2-core machine one sample
    // can miss it by scheduling alone, so the best of up to three is held to it.
    let wake = |after: String, payload: Vec<u8>| {
        let (sluice, inst, secret) = (&sluice, &inst, &secret);
        async move {
            let query = format!("installation_id={inst}&after={after}&wait=10");
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
                .post_stripe(inst, secret, &payload)
                .await
                .expect_status(200);
            let committed = Instant::now();
            let (answered, body) = waiting.await.unwrap();
            (answered.saturating_duration_since(committed), body)
        }
    };
    let (mut best, body) = wake(cursor.clone(), stripe_charge_payload()).await;
    let events = body["events"].as_array().unwrap();
    assert_eq!(events.len(), 1, "{body}");
    assert_eq!(events[0]["type"], "payment.succeeded");
    assert_eq!(
        events[0]["sluiceprovidereventid"],
        "evt_3RTqw0RMEOaIvYpU1k2TFajH"
    );
    let mut next = body["next_cursor"].as_str().unwrap().to_string();
    let mut extra = 0;
    while best >= Duration::from_millis(100) && extra < 2 {
        extra += 1;
        let payload = stripe_charge_variant(
            &format!("evt_wake{extra}_{}", sluice_testkit::random_hex()),
            &format!("ch_wake{extra}"),
            "usd",
            100,
        );
        let (latency, body) = wake(next.clone(), payload).await;
        assert_eq!(body["events"].as_array().unwrap().len(), 1, "{body}");
        next = body["next_cursor"].as_str().unwrap().to_string();
        best = best.min(latency);
    }
    eprintln!(
        "long-poll answered {best:?} after the delivery's 200 (best of {})",
        extra + 1
    );
    assert!(best < Duration::from_millis(100), "{best:?}");

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
        1 + extra
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
