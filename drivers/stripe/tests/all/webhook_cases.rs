//! Every case of `stripe/stripe_webhook_cases.json`, byte for byte, with a native verifier.

use crate::common::{hmac_sha256, native_verifier, stripe_fixture, stripe_json};
use serde_json::Value;
use sluice_driver_stripe::signature::{self, SignatureError};
use sluice_driver_stripe::{events, normalize};

type Outcome = Result<(), SignatureError<String>>;

fn verify(secret: &str, header: &str, body: &[u8], now: i64, tolerance: Option<u64>) -> Outcome {
    signature::verify(Some(header), body, now, tolerance, native_verifier(secret))
}

fn cases() -> Value {
    stripe_json("stripe_webhook_cases.json")
}

fn verbatim(id: &str) -> Value {
    cases()["official_verbatim"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == id)
        .unwrap_or_else(|| panic!("no case {id}"))
        .clone()
}

#[test]
fn dotnet_event_utility_cases() {
    let group = verbatim("stripe-dotnet/EventUtilityTest");
    let secret = group["secret"].as_str().unwrap();
    let header = group["header"].as_str().unwrap();
    let payload = stripe_fixture(group["payload_file"].as_str().unwrap());
    assert_eq!(
        payload.last(),
        Some(&b'\n'),
        "payload keeps its trailing LF"
    );
    let mut ran = 0;
    for case in group["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let tolerance = case["tolerance_s"].as_u64().or(Some(300));
        let now = case["now_unix"].as_i64().unwrap_or(1_533_204_620);
        match name {
            "ConstructEvent" => {
                assert_eq!(verify(secret, header, &payload, now, tolerance), Ok(()));
                let raw = events::raw_event(&payload).unwrap();
                let fields = &case["expect_fields"];
                assert_eq!(raw.account_key.as_deref(), fields["account"].as_str());
                assert_eq!(events::route_key(&payload).as_deref(), Some("acct_123"));
                let json: Value = serde_json::from_slice(&raw.payload).unwrap();
                assert_eq!(json["request"]["id"], fields["request.id"]);
                assert_eq!(
                    json["request"]["idempotency_key"],
                    fields["request.idempotency_key"]
                );
                assert_eq!(json["api_version"], fields["api_version"]);
                // Normalization never fails on it (it is an unmapped or mapped record).
                assert!(!normalize::normalize_payload(&payload).unwrap().is_empty());
            }
            "RejectOutdatedTimestamp" => assert!(matches!(
                verify(secret, header, &payload, now, tolerance),
                Err(SignatureError::OutsideTolerance { .. })
            )),
            "RejectIncorrectSignature" => {
                let mut changed = payload.clone();
                changed.extend_from_slice(b"this_changes_the_json");
                assert_eq!(
                    verify(secret, header, &changed, now, tolerance),
                    Err(SignatureError::NoMatch)
                );
            }
            other => panic!("unhandled case {other}"),
        }
        ran += 1;
    }
    assert_eq!(ran, 3);
    // Without the trailing LF the signature no longer matches.
    assert_eq!(
        verify(
            secret,
            header,
            &payload[..payload.len() - 1],
            1_533_204_620,
            Some(300)
        ),
        Err(SignatureError::NoMatch)
    );
}

#[test]
fn dotnet_incorrect_header_values_are_rejected() {
    let group = verbatim("stripe-dotnet/ValidateSignatureHandlesIncorrectHeaderValues");
    let secret = group["secret"].as_str().unwrap();
    let payload = group["payload"].as_str().unwrap().as_bytes();
    let headers = group["headers_that_must_be_rejected"].as_array().unwrap();
    assert_eq!(headers.len(), 7);
    for h in headers {
        let h = h.as_str().unwrap();
        let r = verify(secret, h, payload, 1_533_204_620, Some(300));
        assert!(r.is_err(), "{h:?} accepted");
        assert!(signature::parse_header::<()>(h).is_err(), "{h:?} parsed");
    }
}

#[test]
fn node_crypto_provider_hmacs() {
    let group = verbatim("stripe-node/crypto-provider-hmac");
    let secret = group["secret"].as_str().unwrap();
    for case in group["cases"].as_array().unwrap() {
        let message = case["message"].as_str().unwrap().as_bytes();
        let expected = hex::decode(case["hmac_sha256_hex"].as_str().unwrap()).unwrap();
        assert_eq!(
            hmac_sha256(secret.as_bytes(), message),
            expected,
            "{}",
            case["name"]
        );
        assert_eq!(
            native_verifier(secret)(message, &[vec![0; 32], expected]),
            Ok(true)
        );
    }
}

#[test]
fn docs_example_header_parses() {
    let group = verbatim("stripe-docs/example-header-parse-only");
    let parsed = signature::parse_header::<()>(group["header"].as_str().unwrap()).unwrap();
    let expect = &group["expect_parsed"];
    assert_eq!(parsed.timestamp, expect["t"].as_i64().unwrap());
    let v1: Vec<String> = parsed.v1.iter().map(hex::encode).collect();
    let expected: Vec<&str> = expect["v1"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(v1, expected);
    assert_eq!(parsed.v1_entries, 1, "v0 ignored");
}

#[test]
fn derived_cases() {
    let all = cases();
    let payloads = &all["derived_payloads"];
    let derived = all["derived_from_official_inputs"].as_array().unwrap();
    assert_eq!(derived.len(), 32);
    for case in derived {
        let name = case["name"].as_str().unwrap();
        let secret = case["secret"].as_str().unwrap();
        let header = case["header"].as_str().unwrap();
        let body = payloads[case["payload_ref"].as_str().unwrap()]
            .as_str()
            .unwrap()
            .as_bytes();
        let tolerance = match case["tolerance_s"].as_u64() {
            Some(0) => None, // "tolerance disabled"
            Some(t) => Some(t),
            None => Some(300),
        };
        let now = case["now_unix"].as_i64().unwrap_or(1_700_000_000);
        let outcome = verify(secret, header, body, now, tolerance);
        let expect = case["expect"].as_str().unwrap();
        match expect {
            "valid" => assert_eq!(outcome, Ok(()), "{name}"),
            e if e.starts_with("valid for secret") => {
                assert_eq!(outcome, Ok(()), "{name}");
                let rolled = case["also_valid_with_secret"].as_str().unwrap();
                assert_eq!(
                    verify(rolled, header, body, now, tolerance),
                    Ok(()),
                    "{name} (rolled)"
                );
            }
            // Our explicit policy: future timestamps beyond the tolerance are refused too.
            "valid(SDK behaviour)" => {
                assert!(
                    now < signature::parse_header::<()>(header).unwrap().timestamp,
                    "{name}"
                );
                assert!(
                    matches!(outcome, Err(SignatureError::OutsideTolerance { .. })),
                    "{name}: {outcome:?}"
                );
                assert_eq!(
                    verify(secret, header, body, now, None),
                    Ok(()),
                    "{name}: signature itself valid"
                );
            }
            "error:timestamp_outside_tolerance" => {
                assert!(
                    matches!(outcome, Err(SignatureError::OutsideTolerance { .. })),
                    "{name}: {outcome:?}"
                )
            }
            "error:no_signatures_with_expected_scheme" => {
                assert_eq!(outcome, Err(SignatureError::NoV1Signature), "{name}")
            }
            "error:no_matching_signature" => {
                assert_eq!(outcome, Err(SignatureError::NoMatch), "{name}")
            }
            "error:unable_to_extract_timestamp_and_signatures" | "error:invalid_header" => {
                assert!(
                    matches!(outcome, Err(SignatureError::MalformedHeader(_))),
                    "{name}: {outcome:?}"
                )
            }
            "error:invalid_header|no_matching_signature" => assert!(
                matches!(
                    outcome,
                    Err(SignatureError::MalformedHeader(_) | SignatureError::NoMatch)
                ),
                "{name}: {outcome:?}"
            ),
            "error:no_signature_header" => {
                assert_eq!(outcome, Err(SignatureError::MissingHeader), "{name}")
            }
            other => panic!("{name}: unhandled expectation {other}"),
        }
    }
}

#[test]
fn missing_header_is_refused() {
    let outcome = signature::verify(None, b"{}", 0, Some(300), native_verifier("whsec_x"));
    assert_eq!(outcome, Err(SignatureError::MissingHeader));
    assert_eq!(
        SignatureError::<String>::MissingHeader.to_string(),
        "missing Stripe-Signature header"
    );
}
