//! Secret rotation: the new value is primary at once, the previous one still verifies
//! webhooks during the grace period (a Stripe delivery signed with either, or with both as
//! Stripe signs while a rolled endpoint secret is in its grace period), then is retired by
//! the host; every change is in the audit log, never a value.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};
use sluice_testkit::{
    Backend, Sluice, both_backends, sluice_cli, stripe_charge_variant, stripe_header, unix_now,
};

both_backends!(rotated_secrets_verify_during_their_grace => sqlite_rotated_secrets_verify_during_their_grace, postgres_rotated_secrets_verify_during_their_grace);

fn payload(n: u32) -> Vec<u8> {
    stripe_charge_variant(
        &format!("evt_rot_{n}"),
        &format!("ch_rot_{n}"),
        "usd",
        100 + i64::from(n),
    )
}

async fn deliver(sluice: &Sluice, id: &str, n: u32, signature: &str) -> u16 {
    let payload = payload(n);
    sluice
        .post_webhook(id, &[("stripe-signature", signature)], payload)
        .await
        .status
        .as_u16()
}

fn sign(n: u32, secret: &str) -> String {
    let payload = payload(n);
    stripe_header(&payload, secret, unix_now())
}

/// A header with a `v1` from each secret, as Stripe sends during an endpoint's rollover.
fn sign_both(n: u32, old: &str, new: &str) -> String {
    let (a, b) = (sign(n, old), sign(n, new));
    let v1 = b.split_once(",v1=").unwrap().1;
    format!("{a},v1={v1}")
}

fn audit(resp: &Value) -> Vec<(String, String)> {
    resp["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["secret"].as_str().unwrap().into(),
                c["action"].as_str().unwrap().into(),
            )
        })
        .collect()
}

async fn rotated_secrets_verify_during_their_grace(backend: Backend) {
    let env = [("SLUICE_AUTH_MAINTENANCE_INTERVAL_MS", "200")];
    let Some(sluice) = Sluice::start_with_env(backend, &env).await else {
        return;
    };
    let (id, old) = sluice.stripe_installation().await;
    let new = format!("{old}_rolled");
    sluice.remember_secret(&new);
    assert_eq!(deliver(&sluice, &id, 1, &sign(1, &old)).await, 200);

    let rotate = |body: Value| {
        let path = format!("/v1/installations/{id}/secrets/webhook_secret/rotate");
        let sluice = &sluice;
        async move { sluice.admin(Method::POST, &path, Some(body)).await }
    };
    // Refusals first: nothing changes.
    let resp = rotate(json!({"value": new, "grace_seconds": 8 * 24 * 3600})).await;
    resp.expect_status(422);
    assert_eq!(resp.error_code(), Some("invalid_grace"));
    let resp = rotate(json!({"value": ""})).await;
    resp.expect_status(422);
    let resp = sluice
        .admin(
            Method::POST,
            &format!("/v1/installations/{id}/secrets/api_key/rotate"),
            Some(json!({"value": "sk_test_new"})),
        )
        .await;
    resp.expect_status(422);
    assert_eq!(resp.error_code(), Some("nothing_to_rotate"));
    let resp = sluice
        .admin(
            Method::POST,
            &format!("/v1/installations/{id}/secrets/not_declared/rotate"),
            Some(json!({"value": "x"})),
        )
        .await;
    resp.expect_status(422);
    assert_eq!(resp.error_code(), Some("unknown_secret"));
    let resp = sluice
        .admin(
            Method::POST,
            "/v1/installations/inst_nobody/secrets/webhook_secret/rotate",
            Some(json!({"value": "x"})),
        )
        .await;
    resp.expect_status(404);

    let before = unix_now();
    let resp = rotate(json!({"value": new, "grace_seconds": 3})).await;
    resp.expect_status(200);
    assert_eq!(resp.json["secret"], "webhook_secret");
    let until = chrono_seconds(resp.json["previous_valid_until"].as_str().unwrap());
    assert!(
        (before + 3..=unix_now() + 3).contains(&until),
        "{}",
        resp.text
    );

    // During the grace period: either secret, or both at once.
    assert_eq!(deliver(&sluice, &id, 2, &sign(2, &old)).await, 200);
    assert_eq!(deliver(&sluice, &id, 3, &sign(3, &new)).await, 200);
    assert_eq!(
        deliver(&sluice, &id, 4, &sign_both(4, &old, &new)).await,
        200
    );
    assert_eq!(
        deliver(&sluice, &id, 5, &sign(5, "whsec_neither")).await,
        401
    );

    // After it, the host retires the old value by itself.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let resp = sluice
            .admin(Method::GET, &format!("/v1/installations/{id}/audit"), None)
            .await;
        if audit(&resp.json).iter().any(|(_, a)| a == "retired") {
            break;
        }
        assert!(Instant::now() < deadline, "never retired: {}", resp.text);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(deliver(&sluice, &id, 6, &sign(6, &old)).await, 401);
    assert_eq!(deliver(&sluice, &id, 7, &sign(7, &new)).await, 200);
    assert_eq!(
        deliver(&sluice, &id, 8, &sign_both(8, &old, &new)).await,
        200
    );

    // The CLI, with no grace: the old value stops at once.
    let newest = format!("{new}_again");
    sluice.remember_secret(&newest);
    let mut child = sluice_cli(sluice.dir())
        .args([
            "secrets",
            "rotate",
            &id,
            "webhook_secret",
            "--grace-seconds",
            "0",
        ])
        .args(["--server", &sluice.base_url, "--token", &sluice.admin_token])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        writeln!(stdin, "{newest}").unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(deliver(&sluice, &id, 9, &sign(9, &new)).await, 401);
    assert_eq!(deliver(&sluice, &id, 10, &sign(10, &newest)).await, 200);

    let resp = sluice
        .admin(Method::GET, &format!("/v1/installations/{id}/audit"), None)
        .await;
    let secret = |a: &str| ("webhook_secret".to_string(), a.to_string());
    assert_eq!(
        audit(&resp.json),
        [
            secret("set"),
            secret("rotated"),
            secret("retired"),
            secret("rotated")
        ]
    );
    // Stored events: every accepted delivery once.
    assert_eq!(sluice.provider_event_ids(&id).await.len(), 7);
}

fn chrono_seconds(rfc3339: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .unwrap_or_else(|e| panic!("not RFC 3339: {rfc3339}: {e}"))
        .timestamp()
}
