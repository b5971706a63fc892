//! Secrets are write-only: the admin API lists their names, never their values, and the
//! value never shows up in the server's own output, even at debug level.

use std::path::{Path, PathBuf};

use reqwest::Method;
use serde_json::{Value, json};
use sluice_testkit::{
    Backend, Sluice, both_backends, stripe_charge_payload, stripe_header, unix_now,
};

both_backends!(secrets_are_write_only => sqlite_secrets_are_write_only, postgres_secrets_are_write_only);

/// Secret names from an installation's `secrets` (a list of names or of `{name, …}`).
fn secret_names(installation: &Value) -> Vec<String> {
    installation["secrets"]
        .as_array()
        .unwrap_or_else(|| panic!("no secrets list in {installation}"))
        .iter()
        .map(|s| {
            s.as_str()
                .or_else(|| s["name"].as_str())
                .unwrap_or_else(|| panic!("unexpected secret entry {s}"))
                .to_string()
        })
        .collect()
}

async fn secrets_are_write_only(backend: Backend) {
    let Some(mut sluice) = Sluice::start_with_env(backend, &[("SLUICE_LOG", "debug")]).await else {
        return;
    };
    let (inst, secret) = sluice.stripe_installation().await;

    let resp = sluice
        .admin(Method::GET, &format!("/v1/installations/{inst}"), None)
        .await;
    resp.expect_status(200);
    assert_eq!(secret_names(&resp.json), ["webhook_secret"]);
    assert!(
        !resp.text.contains(&secret),
        "GET installation leaked the secret: {}",
        resp.text
    );

    let resp = sluice.admin(Method::GET, "/v1/installations", None).await;
    resp.expect_status(200);
    assert!(
        !resp.text.contains(&secret),
        "installation list leaked the secret: {}",
        resp.text
    );

    // Only declared secrets can be set.
    let resp = sluice
        .admin(
            Method::PUT,
            &format!("/v1/installations/{inst}/secrets/not_declared"),
            Some(json!({"value": "whatever"})),
        )
        .await;
    resp.expect_status(422);
    assert_eq!(resp.error_code(), Some("unknown_secret"), "{}", resp.text);

    // The audit log names the change, never the value; a refused change is not in it.
    let resp = sluice
        .admin(
            Method::GET,
            &format!("/v1/installations/{inst}/audit"),
            None,
        )
        .await;
    resp.expect_status(200);
    let changes = resp.json["changes"].as_array().cloned().unwrap_or_default();
    let seen: Vec<(&str, &str)> = changes
        .iter()
        .map(|c| {
            (
                c["secret"].as_str().unwrap_or(""),
                c["action"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(seen, [("webhook_secret", "set")], "{}", resp.text);
    assert!(
        !resp.text.contains(&secret),
        "the audit log leaked the secret"
    );
    let resp = sluice
        .admin(Method::GET, "/v1/installations/inst_nobody/audit", None)
        .await;
    resp.expect_status(404);

    // Use the secret: one good delivery, one with a wrong signature.
    let payload = stripe_charge_payload();
    let resp = sluice.post_stripe(&inst, &secret, &payload).await;
    resp.expect_status(200);
    let wrong = stripe_header(&payload, "whsec_wrong", unix_now());
    let resp = sluice
        .post_webhook(&inst, &[("stripe-signature", wrong.as_str())], payload)
        .await;
    resp.expect_status(401);
    assert!(
        !resp.text.contains(&secret),
        "a refusal leaked the secret: {}",
        resp.text
    );

    let resp = sluice
        .admin(
            Method::GET,
            &format!("/v1/events?installation_id={inst}"),
            None,
        )
        .await;
    assert!(!resp.text.contains(&secret), "events leaked the secret");

    sluice.stop();
    let log = sluice.log();
    assert!(
        !log.contains(&secret),
        "the server printed the secret's value"
    );
    // The part after `whsec_` alone must not leak either (e.g. a decoded key).
    assert!(
        !log.contains(&secret["whsec_".len()..]),
        "the server printed the secret's key"
    );

    // At rest it is encrypted: no file the server wrote (data dir, SQLite database and
    // its journal) holds the value in clear.
    for file in files_under(sluice.dir()) {
        let bytes = std::fs::read(&file).unwrap_or_default();
        assert!(
            !contains(&bytes, secret.as_bytes()),
            "{} holds the secret in clear",
            file.display()
        );
    }
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}
