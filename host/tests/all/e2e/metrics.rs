//! `GET /metrics`: the Prometheus text exposition moves when calls happen.

use sluice_testkit::{Backend, Sluice, stripe_charge_payload};

/// The value of the first sample whose line starts with `name{` and holds every label.
fn sample(text: &str, name: &str, labels: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .find(|l| labels.iter().all(|label| l.contains(label)))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_move_when_calls_happen() {
    let Some(sluice) = Sluice::start(Backend::Sqlite).await else {
        return;
    };
    let client = reqwest::Client::new();
    let scrape = || async {
        let resp = client
            .get(sluice.url("/metrics"))
            .bearer_auth(&sluice.admin_token)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        assert!(
            resp.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/plain")
        );
        resp.text().await.unwrap()
    };
    // Behind the admin token.
    let anonymous = client.get(sluice.url("/metrics")).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);
    let (inst, secret) = sluice.stripe_installation().await;
    sluice
        .post_stripe(&inst, &secret, &stripe_charge_payload())
        .await
        .expect_status(200);
    sluice
        .post_stripe(&inst, &secret, &stripe_charge_payload())
        .await
        .expect_status(200);
    sluice
        .post_stripe(&inst, "whsec_not_the_secret", &stripe_charge_payload())
        .await
        .expect_status(401);
    // An unknown installation is answered like a bad signature, and counted as one.
    sluice
        .post_webhook("inst_nobody_here", &[], b"{}".to_vec())
        .await
        .expect_status(401);
    let text = scrape().await;
    assert_eq!(
        sample(&text, "sluice_webhooks_total", &[r#"outcome="accepted""#]),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "sluice_webhooks_total",
            &[r#"outcome="unauthorized""#]
        ),
        Some(2.0)
    );
    assert!(!text.contains("unknown_installation"), "{text}");
    assert_eq!(
        sample(
            &text,
            "sluice_webhook_events_total",
            &[r#"result="stored""#]
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &text,
            "sluice_webhook_events_total",
            &[r#"result="duplicate""#]
        ),
        Some(1.0)
    );
    let version = sluice.driver_info("stripe").await["version"]
        .as_str()
        .unwrap()
        .to_string();
    let stripe = [
        r#"driver="stripe""#,
        &format!(r#"version="{version}""#),
        r#"export="receive""#,
    ];
    let calls = sample(
        &text,
        "sluice_driver_calls_total",
        &[stripe[0], stripe[1], stripe[2], r#"outcome="ok""#],
    );
    assert!(calls.is_some_and(|n| n >= 3.0), "{text}");
    let timed = sample(&text, "sluice_driver_call_duration_seconds_count", &stripe);
    assert!(timed.is_some_and(|n| n >= 3.0), "{text}");
    assert!(text.contains("# TYPE sluice_driver_call_duration_seconds histogram"));
    // No installation id is a label: their number is unbounded.
    assert!(!text.contains(&inst), "{text}");
}
