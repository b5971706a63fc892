//! The corpus of real payloads (`tests/fixtures/corpus`, provenance in its `PROVENANCE.md`):
//! every one, signed as its provider would, through `sluice driver test` (verify, handle and
//! normalize in the sandbox), compared with its hand-checked expectation in
//! `corpus/expected/` (written from the payload and the provider's documentation, see
//! `corpus/EXPECTED.md`, never from our output).
//!
//! An expectation lists the records the payload must yield, in any order, each a `kind` and
//! a *subset* of its `data`: every field given must equal the output's (objects compared
//! field by field the same way, arrays element by element and of equal length; `null`
//! means null or absent; `"*"` means any non-empty text). Every payload must yield exactly
//! the records listed, and none may be a dead letter.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use sluice_testkit::fixtures::fixtures_dir;
use sluice_testkit::{DriverTest, bundled_driver, shopify_hmac, stripe_header};

const STRIPE_SECRET: &str = "whsec_corpus_test_secret";
const SHOPIFY_SECRET: &str = "shpss_corpus_test_secret";
const HOTTOK: &str = "corpus-hottok";
const SHOP: &str = "corpus-test.myshopify.com";
/// The clock every Stripe delivery is signed at, and the host is pinned to.
const SIGNED_AT: i64 = 1_750_000_000;

fn corpus_dir() -> PathBuf {
    fixtures_dir().join("corpus")
}

/// The payloads of one provider, sorted (sidecar `.headers.json` files left out).
fn payloads(provider: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(corpus_dir().join(provider))
        .unwrap_or_else(|e| panic!("reading the {provider} corpus: {e}"))
        .map(|entry| entry.unwrap().path())
        .filter(|p| {
            p.extension().is_some_and(|e| e == "json")
                && !p.to_string_lossy().ends_with(".headers.json")
        })
        .collect();
    files.sort();
    files
}

/// Run one payload of `provider` through the host and return its records.
fn records(provider: &str, path: &Path) -> Result<Vec<Value>, String> {
    let body = std::fs::read(path).map_err(|e| e.to_string())?;
    let signature;
    let hmac;
    let sidecar: Value;
    let mut headers = vec![("Content-Type", "application/json")];
    let (secrets, settings, now) = match provider {
        "stripe" => {
            signature = stripe_header(&body, STRIPE_SECRET, SIGNED_AT);
            headers.push(("Stripe-Signature", signature.as_str()));
            (
                vec![("webhook_secret", STRIPE_SECRET)],
                None,
                Some(SIGNED_AT),
            )
        }
        "shopify" => {
            let side = path.with_extension("headers.json");
            sidecar = serde_json::from_slice(
                &std::fs::read(&side).map_err(|e| format!("{}: {e}", side.display()))?,
            )
            .map_err(|e| e.to_string())?;
            hmac = shopify_hmac(SHOPIFY_SECRET, &body);
            headers.push(("X-Shopify-Hmac-Sha256", hmac.as_str()));
            headers.push(("X-Shopify-Shop-Domain", SHOP));
            headers.push(("X-Shopify-Webhook-Id", "corpus-webhook-id"));
            for (name, value) in sidecar.as_object().into_iter().flatten() {
                if let Some(value) = value.as_str() {
                    headers.push((name.as_str(), value));
                }
            }
            (
                vec![("webhook_secret", SHOPIFY_SECRET)],
                Some(json!({"shop": SHOP}).to_string()),
                None,
            )
        }
        "hotmart" => {
            headers.push(("X-HOTMART-HOTTOK", HOTTOK));
            (vec![("hottok", HOTTOK)], None, None)
        }
        other => return Err(format!("no provider {other}")),
    };
    let out = DriverTest {
        driver: bundled_driver(provider),
        body: &body,
        headers,
        secrets,
        settings,
        now,
    }
    .run();
    if !out.ok() {
        return Err(format!("refused: {} / {}", out.json, out.stderr));
    }
    let events = out.json["events"].as_array().cloned().unwrap_or_default();
    let mut records = Vec::new();
    for event in events {
        if let Some(reason) = event["error"].as_str() {
            return Err(format!("dead letter: {reason}"));
        }
        let list = event["records"]
            .as_array()
            .ok_or_else(|| format!("no records (a dead letter?): {event}"))?;
        records.extend(list.iter().map(|r| r["data"].clone()));
    }
    Ok(records)
}

/// Whether `got` matches the expected subset `want`; `Err` says where it does not.
fn matches(want: &Value, got: Option<&Value>, at: &str) -> Result<(), String> {
    match (want, got) {
        (Value::Null, None | Some(Value::Null)) => Ok(()),
        (Value::String(s), Some(Value::String(g))) if s == "*" && !g.is_empty() => Ok(()),
        (Value::Object(fields), Some(Value::Object(_))) => {
            for (key, value) in fields {
                matches(value, got.and_then(|g| g.get(key)), &format!("{at}.{key}"))?;
            }
            Ok(())
        }
        (Value::Array(items), Some(Value::Array(got_items))) => {
            if items.len() != got_items.len() {
                return Err(format!(
                    "{at}: {} elements, expected {}",
                    got_items.len(),
                    items.len()
                ));
            }
            for (i, (w, g)) in items.iter().zip(got_items).enumerate() {
                matches(w, Some(g), &format!("{at}[{i}]"))?;
            }
            Ok(())
        }
        (w, Some(g)) if w == g => Ok(()),
        (w, g) => Err(format!(
            "{at}: got {}, expected {w}",
            g.unwrap_or(&Value::Null)
        )),
    }
}

/// Compare a payload's records with its expectation (also used by `author_loop`, on the
/// shipped snapshots).
pub(super) fn check(records: &[Value], expected: &Value) -> Result<(), String> {
    let wanted = expected["records"]
        .as_array()
        .ok_or("the expectation has no records list")?;
    if wanted.len() != records.len() {
        let kinds: Vec<&Value> = records.iter().map(|r| &r["kind"]).collect();
        return Err(format!(
            "{} records {kinds:?}, expected {}",
            records.len(),
            wanted.len()
        ));
    }
    let mut unused: Vec<&Value> = records.iter().collect();
    for want in wanted {
        let kind = &want["kind"];
        let data = want.get("data").cloned().unwrap_or(json!({}));
        let candidates: Vec<usize> = unused
            .iter()
            .enumerate()
            .filter(|(_, r)| r["kind"] == *kind)
            .map(|(i, _)| i)
            .collect();
        if candidates.is_empty() {
            return Err(format!("no {kind} record"));
        }
        // The candidate that matches; else report the first one's difference.
        let mut first_error = None;
        let mut found = None;
        for &i in &candidates {
            match matches(&data, Some(unused[i]), &format!("{kind}")) {
                Ok(()) => {
                    found = Some(i);
                    break;
                }
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        match found {
            Some(i) => {
                unused.remove(i);
            }
            None => return Err(first_error.unwrap_or_default()),
        }
    }
    Ok(())
}

fn run_provider(provider: &str) {
    let mut failures = Vec::new();
    let mut checked = 0;
    for path in payloads(provider) {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let expected_path = corpus_dir().join("expected").join(provider).join(&name);
        let expected: Value = match std::fs::read(&expected_path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .unwrap_or_else(|e| panic!("{}: {e}", expected_path.display())),
            Err(_) => {
                failures.push(format!(
                    "{name}: no expectation in corpus/expected/{provider}/"
                ));
                continue;
            }
        };
        checked += 1;
        if let Err(e) = records(provider, &path).and_then(|records| check(&records, &expected)) {
            failures.push(format!("{name}: {e}"));
        }
    }
    assert!(checked > 0, "no {provider} payloads in the corpus");
    assert!(
        failures.is_empty(),
        "{} of {checked} {provider} payloads differ from their expectation:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn every_stripe_payload_yields_its_expected_records() {
    run_provider("stripe");
}

#[test]
fn every_shopify_payload_yields_its_expected_records() {
    run_provider("shopify");
}

#[test]
fn every_hotmart_payload_yields_its_expected_records() {
    run_provider("hotmart");
}

#[test]
fn subset_matching_is_strict_where_it_must_be() {
    let got = json!({"kind": "payment", "amount": {"amount_minor": 100, "currency": "USD"}, "fee": null, "email": "a@b"});
    assert!(matches(&json!({"amount": {"amount_minor": 100}}), Some(&got), "p").is_ok());
    assert!(matches(&json!({"amount": {"amount_minor": 101}}), Some(&got), "p").is_err());
    assert!(matches(&json!({"fee": null, "absent": null}), Some(&got), "p").is_ok());
    assert!(matches(&json!({"email": "*"}), Some(&got), "p").is_ok());
    assert!(matches(&json!({"fee": "*"}), Some(&got), "p").is_err());
    assert!(matches(&json!({"list": [1]}), Some(&json!({"list": [1, 2]})), "p").is_err());
    assert!(
        check(
            std::slice::from_ref(&got),
            &json!({"records": [{"kind": "order"}]})
        )
        .is_err()
    );
    assert!(check(&[got], &json!({"records": []})).is_err());
}
