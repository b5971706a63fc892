//! Webhook envelopes and the hottok policy: every postback fixture becomes one raw event
//! with its exact bytes, and every case of `hotmart_auth_and_hottok_cases.json` gets the
//! expected decision from the header policy plus a constant-time comparison (the host does
//! that comparison through `secrets.equals`; here a native stand-in does).

use crate::common::{hotmart_files, hotmart_fixture, hotmart_json};
use serde_json::Value;
use sluice_driver_hotmart::webhook::{self, HOTTOK_HEADER};

/// Native stand-in for `verify::token("hottok", header, …)`: missing refused, then equality.
fn decide(configured: &str, header: Option<&str>) -> bool {
    let headers: Vec<(String, String)> = header
        .map(|h| vec![(HOTTOK_HEADER.to_string(), h.to_string())])
        .unwrap_or_default();
    match webhook::presented_hottok(&headers) {
        None => false,
        Some(p) => {
            p.len() == configured.len()
                && p.bytes()
                    .zip(configured.bytes())
                    .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                    == 0
        }
    }
}

#[test]
fn hottok_cases() {
    let doc = hotmart_json("hotmart_auth_and_hottok_cases.json");
    let cases = doc["hottok_cases"]["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 5);
    for case in cases {
        let configured = case["configured"].as_str().unwrap();
        let expect = case["expect"].as_str().unwrap();
        let header = case.get("header").and_then(Value::as_str);
        let accepted = decide(configured, header);
        if case.get("header_absent_but_body_field").is_some() {
            // Policy: the header only; a body field cannot authenticate the body itself.
            assert!(!accepted, "{case}");
        } else if expect == "accept" {
            assert!(accepted, "{case}");
        } else {
            assert!(expect.starts_with("reject"), "{case}");
            assert!(!accepted, "{case}");
        }
    }
    // The header name is case-insensitive.
    let headers = vec![("x-hotmart-hottok".to_string(), "t".to_string())];
    assert_eq!(webhook::presented_hottok(&headers), Some("t"));
}

#[test]
fn every_postback_fixture_becomes_one_raw_event_byte_for_byte() {
    let names: Vec<String> = hotmart_files("hotmart_")
        .into_iter()
        .filter(|n| !n.contains("sales_history") && !n.contains("auth_and_hottok"))
        .collect();
    assert_eq!(names.len(), 28, "{names:?}");
    for name in names {
        let bytes = hotmart_fixture(&name);
        let json = hotmart_json(&name);
        let event = webhook::raw_event(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(event.payload, bytes, "{name}");
        assert_eq!(
            event.provider_event_id,
            json["id"].as_str().unwrap(),
            "{name}"
        );
        assert_eq!(event.event_type, json["event"].as_str().unwrap(), "{name}");
        assert_eq!(event.account_key, None, "{name}");
        let ms = json["creation_date"]
            .as_i64()
            .or(json["creationDate"].as_i64());
        assert_eq!(
            event
                .occurred_at
                .map(|d| d.seconds * 1000 + i64::from(d.nanoseconds / 1_000_000)),
            ms,
            "{name}"
        );
        assert_eq!(json["version"], "2.0.0", "{name}");
    }
}

#[test]
fn malformed_bodies_are_bad_requests() {
    for bad in [
        &b""[..],
        b"not json",
        b"[]",
        br#"{"event":"PURCHASE_APPROVED"}"#,
        br#"{"id":"x"}"#,
    ] {
        assert!(webhook::raw_event(bad).is_err());
    }
}
