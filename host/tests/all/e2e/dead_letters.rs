//! Failed normalizations through the real binary: retried by the host with backoff, dead
//! after the last attempt, listed, and replayed once a fixed driver version is loaded —
//! each replayed event's records stored once, however often it is replayed.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};
use sluice_testkit::{Backend, Sluice, both_backends, test_driver};

both_backends!(dead_letters_are_retried_then_replayed => sqlite_dead_letters_are_retried_then_replayed, postgres_dead_letters_are_retried_then_replayed);

fn body(id: &str) -> Vec<u8> {
    format!(r#"{{"id":"{id}","note":"dead letter e2e"}}"#).into_bytes()
}

async fn dead_letters(sluice: &Sluice, id: &str) -> Vec<Value> {
    let resp = sluice
        .admin(
            Method::GET,
            &format!("/v1/dead-letters?installation_id={id}"),
            None,
        )
        .await;
    resp.expect_status(200);
    resp.json["dead_letters"].as_array().unwrap().clone()
}

async fn dead_letters_are_retried_then_replayed(backend: Backend) {
    let env = [
        ("SLUICE_RETRIES_MAX_ATTEMPTS", "3"),
        ("SLUICE_RETRIES_BASE_MS", "200"),
    ];
    let Some(mut sluice) = Sluice::start_with_env(backend, &env).await else {
        return;
    };
    let inst = sluice
        .create_installation("faulty", json!({"mode": "normalize-error"}))
        .await;
    let id = inst["installation_id"].as_str().unwrap().to_string();
    for n in 0..3 {
        let resp = sluice
            .post_webhook(&id, &[], body(&format!("evt_dl_{n}")))
            .await;
        resp.expect_status(200);
    }

    // Retried by the host until the attempts are spent: then dead, with the reason.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let letters = dead_letters(&sluice, &id).await;
        assert_eq!(letters.len(), 3, "{letters:?}");
        if letters.iter().all(|l| l["status"] == "dead") {
            for l in &letters {
                assert_eq!(l["attempts"], 3, "{l}");
                assert_eq!(l["reason"], "driver error: boom", "{l}");
                assert_eq!(l["next_attempt_at"], Value::Null);
            }
            break;
        }
        assert!(Instant::now() < deadline, "not dead yet: {letters:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(sluice.events(&id).await.is_empty());

    // Replaying with the same driver fails again, and changes nothing else.
    let first = dead_letters(&sluice, &id).await[0]["raw_event_id"]
        .as_i64()
        .unwrap();
    let resp = sluice
        .admin(
            Method::POST,
            &format!("/v1/raw-events/{first}/replay"),
            None,
        )
        .await;
    resp.expect_status(200);
    assert_eq!(resp.json["replayed"]["normalized"], false, "{}", resp.text);
    assert_eq!(resp.json["replayed"]["reason"], "driver error: boom");

    // The fixed release of the driver (0.1.1) replaces the broken one.
    std::fs::copy(
        test_driver("faulty-fixed"),
        sluice.drivers_dir().join("faulty.wasm"),
    )
    .unwrap();
    sluice.restart().await;
    let info = sluice.driver_info("faulty").await;
    assert_eq!(info["version"], "0.1.1");

    // One by id, then the rest in bulk; a second replay stores nothing more.
    let resp = sluice
        .admin(
            Method::POST,
            &format!("/v1/raw-events/{first}/replay"),
            None,
        )
        .await;
    resp.expect_status(200);
    assert_eq!(
        (
            resp.json["replayed"]["normalized"].as_bool(),
            resp.json["replayed"]["events"].as_u64()
        ),
        (Some(true), Some(1)),
        "{}",
        resp.text
    );
    let resp = sluice
        .admin(
            Method::POST,
            &format!("/v1/installations/{id}/dead-letters/replay"),
            None,
        )
        .await;
    resp.expect_status(200);
    assert_eq!(
        resp.json,
        json!({"normalized": 2, "failed": 0, "events": 2})
    );
    let again = sluice
        .admin(
            Method::POST,
            &format!("/v1/raw-events/{first}/replay"),
            None,
        )
        .await;
    assert_eq!(again.json["replayed"]["normalized"], false);
    let resp = sluice
        .admin(
            Method::POST,
            &format!("/v1/installations/{id}/dead-letters/replay"),
            None,
        )
        .await;
    assert_eq!(
        resp.json,
        json!({"normalized": 0, "failed": 0, "events": 0})
    );

    assert!(dead_letters(&sluice, &id).await.is_empty());
    let mut ids = sluice.provider_event_ids(&id).await;
    ids.sort();
    assert_eq!(ids, ["evt_dl_0", "evt_dl_1", "evt_dl_2"]);
    let resp = sluice
        .admin(Method::POST, "/v1/raw-events/999999/replay", None)
        .await;
    resp.expect_status(404);
}
