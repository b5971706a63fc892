//! The example driver of the driver guide (`examples/driver`, id `acme`) through the real
//! host: `sluice driver test`, and one signed delivery to a running server.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use sluice_testkit::{Backend, DriverTest, Sluice, both_backends, json, test_driver};

both_backends!(signed_delivery_becomes_a_cloud_event => sqlite_signed_delivery_becomes_a_cloud_event, postgres_signed_delivery_becomes_a_cloud_event);

const SECRET: &str = "acme_test_secret";
/// 2^53 + 1: a float would turn it into ...992.
const PAYMENT_ID: &str = "9007199254740993";

fn payload(event_id: &str) -> Vec<u8> {
    format!(
        r#"{{"id":"{event_id}","type":"payment.completed","created_at":"2025-03-01T12:00:00+01:00","payment":{{"id":{PAYMENT_ID},"amount":"12.34","currency":"eur"}}}}"#
    )
    .into_bytes()
}

/// `X-Acme-Signature`: `sha256=` and the hex HMAC-SHA256 of the raw body.
fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(body);
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256={hex}")
}

fn driver_test<'a>(body: &'a [u8], signature: &'a str) -> DriverTest<'a> {
    DriverTest {
        driver: test_driver("acme"),
        body,
        headers: vec![("X-Acme-Signature", signature)],
        secrets: vec![("webhook_secret", SECRET)],
        ..Default::default()
    }
}

#[test]
fn driver_test_normalizes_a_signed_payment() {
    let body = payload("ev_e2e_1");
    let signature = sign(SECRET, &body);
    let out = driver_test(&body, &signature).run();
    assert!(out.ok(), "{}", out.json);
    assert_eq!(out.exit_code, Some(0));

    let events = out.json["events"].as_array().expect("events");
    assert_eq!(events.len(), 1, "{}", out.json);
    assert_eq!(events[0]["provider_event_id"], "ev_e2e_1");
    assert_eq!(events[0]["event_type"], "payment.completed");
    let records = events[0]["records"].as_array().expect("records");
    assert_eq!(records.len(), 1, "{}", out.json);
    assert_eq!(records[0]["type"], "payment.succeeded");
    assert_eq!(records[0]["subject"], PAYMENT_ID);
    let data = &records[0]["data"];
    assert_eq!(data["kind"], "payment");
    assert_eq!(data["external_id"], PAYMENT_ID);
    assert_eq!(
        data["amount"],
        json!({"amount_minor": 1234, "currency": "EUR"})
    );
    assert_eq!(data["status"], "succeeded");
    assert_eq!(data["status_raw"], "payment.completed");
    assert_eq!(data["created_at"], "2025-03-01T11:00:00Z");
}

#[test]
fn driver_test_refuses_a_bad_signature() {
    let body = payload("ev_e2e_forged");
    for signature in [
        sign("not_the_secret", &body),
        sign(SECRET, b"another body"),
        String::new(),
        sign(SECRET, &body).replace("sha256=", "sha1="),
    ] {
        let out = driver_test(&body, &signature).run();
        assert_eq!(
            out.error_code(),
            Some("unauthorized"),
            "{signature:?}: {}",
            out.json
        );
        assert_eq!(out.exit_code, Some(1));
    }
}

async fn signed_delivery_becomes_a_cloud_event(backend: Backend) {
    let acme = std::fs::read(test_driver("acme")).expect("reading acme.wasm");
    let Some(sluice) = Sluice::start_with(backend, &[], &[("acme.wasm", &acme)]).await else {
        return;
    };
    let inst = sluice.create_installation("acme", json!({})).await;
    let id = inst["installation_id"].as_str().unwrap();
    sluice.put_secret(id, "webhook_secret", SECRET).await;

    let body = payload("ev_e2e_server");
    let forged = sign("not_the_secret", &body);
    let resp = sluice
        .post_webhook(id, &[("X-Acme-Signature", forged.as_str())], body.clone())
        .await;
    resp.expect_status(401);

    let signature = sign(SECRET, &body);
    let resp = sluice
        .post_webhook(id, &[("X-Acme-Signature", signature.as_str())], body)
        .await;
    resp.expect_status(200);
    assert_eq!(resp.json["accepted"], 1, "{}", resp.text);

    let events = sluice.events(id).await;
    assert_eq!(events.len(), 1, "{events:?}");
    let event = &events[0];
    assert_eq!(event["specversion"], "1.0");
    assert_eq!(event["type"], "payment.succeeded");
    assert_eq!(event["subject"], PAYMENT_ID);
    assert_eq!(event["time"], "2025-03-01T11:00:00Z");
    assert_eq!(event["data"]["external_id"], PAYMENT_ID);
    assert_eq!(
        event["data"]["amount"],
        json!({"amount_minor": 1234, "currency": "EUR"})
    );

    // `sluice webhook send` signs for a driver it has never heard of, from the signature
    // the driver describes in its metadata.
    let dir = sluice_testkit::TempDir::new("acme-send");
    let file = dir.path().join("payload.json");
    std::fs::write(&file, payload("ev_e2e_cli")).expect("writing payload");
    let file = file.to_str().expect("UTF-8 temp path");
    let sent = sluice.cli(
        &[
            "webhook",
            "send",
            "--installation",
            id,
            "--secret",
            SECRET,
            "--file",
            file,
        ],
        None,
    );
    let stdout = String::from_utf8_lossy(&sent.stdout);
    assert!(
        stdout.contains(r#"{"accepted":1,"duplicates":0}"#),
        "{stdout}"
    );
    assert_eq!(sluice.events(id).await.len(), 2);
}
