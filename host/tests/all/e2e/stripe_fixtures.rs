//! Every Stripe signature vector in `stripe/stripe_webhook_cases.json`, run through
//! `sluice driver test` (verify → handle → normalize in the sandbox, clock pinned with
//! `--now`). Payloads are passed byte for byte.
//!
//! Mapping of the fixture to our driver:
//! - `tolerance_s` N → settings `{"tolerance_seconds": N}`.
//! - `tolerance_s` 0 ("tolerance disabled" in the SDKs): our settings schema has no way to
//!   disable the tolerance, so these run with tolerance 300 and `--now` = the header's `t`,
//!   which checks the same thing (the signature over the payload is accepted).
//! - The "future timestamp t=now+3600" cases are marked valid for the SDKs, which only
//!   check the age. Our policy is ± tolerance: a timestamp more than the tolerance in the
//!   future is REJECTED.
//! - Rotation cases ("valid for secret A AND for secret B") run once per secret.
//! - Cases without `now_unix` run with `--now` = the header's `t` when it has one, else
//!   1700000000, and tolerance 300.
//! - Every expected error must be a refusal with code `unauthorized` (a malformed or empty
//!   `Stripe-Signature` header is a refused signature too).
//! - The raw-HMAC vectors (`stripe-node/crypto-provider-hmac`, no timestamp) and the
//!   parse-only docs header have no secret/payload pair a webhook could carry; they are
//!   not webhook cases and are left to the host's unit tests.

use serde_json::Value;
use sluice_testkit::{DriverTest, DriverTestOutput, bundled_driver, fixture_bytes, fixture_json};

const CASES: &str = "stripe/stripe_webhook_cases.json";
const DEFAULT_NOW: i64 = 1_700_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Valid,
    Refused,
}

#[derive(Debug)]
struct Case {
    name: String,
    payload: Vec<u8>,
    header: String,
    secret: String,
    tolerance: i64,
    now: i64,
    expect: Expect,
}

/// `t` of a `Stripe-Signature` header, when it has a well-formed one.
fn header_t(header: &str) -> Option<i64> {
    header
        .split(',')
        .find_map(|item| item.strip_prefix("t="))
        .and_then(|t| t.parse().ok())
}

fn settings(tolerance: i64) -> String {
    format!(r#"{{"tolerance_seconds": {tolerance}}}"#)
}

fn run(case: &Case) -> DriverTestOutput {
    let mut headers = vec![("Content-Type", "application/json")];
    // An empty header value is sent as such (`Stripe-Signature:`), not left out.
    headers.push(("Stripe-Signature", case.header.as_str()));
    DriverTest {
        driver: bundled_driver("stripe"),
        body: &case.payload,
        headers,
        secrets: vec![("webhook_secret", case.secret.as_str())],
        settings: Some(settings(case.tolerance)),
        now: Some(case.now),
    }
    .run()
}

/// Checks one case; returns a description of what went wrong.
fn check(case: &Case) -> Result<(), String> {
    let out = run(case);
    let describe = || format!("{}: got exit {:?} {}", case.name, out.exit_code, out.json);
    match case.expect {
        Expect::Refused => {
            if out.ok() || out.exit_code != Some(1) || out.error_code() != Some("unauthorized") {
                return Err(format!(
                    "expected refusal `unauthorized` (exit 1); {}",
                    describe()
                ));
            }
        }
        Expect::Valid => {
            let payload: Value = serde_json::from_slice(&case.payload).expect("payload is JSON");
            if !out.ok() || out.exit_code != Some(0) {
                return Err(format!("expected ok (exit 0); {}", describe()));
            }
            let events = out.json["events"].as_array().cloned().unwrap_or_default();
            let Some(first) = events.first() else {
                return Err(format!("expected one event; {}", describe()));
            };
            if first["provider_event_id"] != payload["id"] {
                return Err(format!(
                    "provider_event_id is not the payload's id; {}",
                    describe()
                ));
            }
            let records = first["records"].as_array().cloned().unwrap_or_default();
            if records.is_empty() {
                return Err(format!("expected at least one record; {}", describe()));
            }
            // The derived SDK payloads are bare `{"id", "object": "event"}` events: signed,
            // so kept, as `unmapped` events naming the event itself.
            if payload.get("type").is_none() {
                let record = &records[0];
                if record["type"] != "unmapped.unknown"
                    || record["data"]["external_id"] != payload["id"]
                    || record["data"]["object_type"] != "event"
                {
                    return Err(format!("expected one unmapped record; {}", describe()));
                }
            }
        }
    }
    Ok(())
}

fn load_cases() -> Vec<Case> {
    let doc = fixture_json(CASES);
    let mut cases = Vec::new();

    // stripe-dotnet: the raw fixture file, a real signature, three cases.
    let dotnet = &doc["official_verbatim"][0];
    assert_eq!(dotnet["id"], "stripe-dotnet/EventUtilityTest");
    let dotnet_payload = fixture_bytes(&format!(
        "stripe/{}",
        dotnet["payload_file"].as_str().unwrap()
    ));
    let dotnet_header = dotnet["header"].as_str().unwrap().to_string();
    let dotnet_t = header_t(&dotnet_header).unwrap();
    for c in dotnet["cases"].as_array().unwrap() {
        let mut payload = dotnet_payload.clone();
        if c["payload_modification"].is_string() {
            payload.extend_from_slice(b"this_changes_the_json");
        }
        cases.push(Case {
            name: format!("dotnet/{}", c["name"].as_str().unwrap()),
            payload,
            header: dotnet_header.clone(),
            secret: dotnet["secret"].as_str().unwrap().to_string(),
            tolerance: c["tolerance_s"].as_i64().unwrap_or(300),
            now: c["now_unix"].as_i64().unwrap_or(dotnet_t),
            expect: if c["expect"] == "valid" {
                Expect::Valid
            } else {
                Expect::Refused
            },
        });
    }

    // stripe-dotnet: malformed headers over `{}`, all refused.
    let malformed = &doc["official_verbatim"][1];
    assert_eq!(
        malformed["id"],
        "stripe-dotnet/ValidateSignatureHandlesIncorrectHeaderValues"
    );
    for (i, header) in malformed["headers_that_must_be_rejected"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
    {
        cases.push(Case {
            name: format!("dotnet/IncorrectHeaderValues[{i}] {header}"),
            payload: malformed["payload"].as_str().unwrap().as_bytes().to_vec(),
            header: header.as_str().unwrap().to_string(),
            secret: malformed["secret"].as_str().unwrap().to_string(),
            tolerance: 300,
            now: dotnet_t,
            expect: Expect::Refused,
        });
    }

    // Derived from the SDKs' own test inputs.
    let payloads = &doc["derived_payloads"];
    for c in doc["derived_from_official_inputs"].as_array().unwrap() {
        let name = c["name"].as_str().unwrap().to_string();
        let payload_ref = c["payload_ref"].as_str().unwrap();
        let payload = payloads[payload_ref]
            .as_str()
            .unwrap_or_else(|| panic!("{name}: no derived payload {payload_ref}"))
            .as_bytes()
            .to_vec();
        let header = c["header"].as_str().unwrap().to_string();
        let expect_text = c["expect"].as_str().unwrap();
        let is_future = name.contains("future timestamp");
        let (tolerance, now) = match c["tolerance_s"].as_i64() {
            // Tolerance disabled in the SDKs: pin the clock to the header's t instead.
            Some(0) => (300, header_t(&header).expect("tolerance-0 cases have a t")),
            Some(tolerance) => (
                tolerance,
                c["now_unix"]
                    .as_i64()
                    .or_else(|| header_t(&header))
                    .unwrap_or(DEFAULT_NOW),
            ),
            None => (
                300,
                c["now_unix"]
                    .as_i64()
                    .or_else(|| header_t(&header))
                    .unwrap_or(DEFAULT_NOW),
            ),
        };
        let expect = if is_future {
            // Our policy: ± tolerance, so t = now + 3600 is refused (the SDKs accept it).
            Expect::Refused
        } else if expect_text.starts_with("valid") {
            Expect::Valid
        } else {
            assert!(
                expect_text.starts_with("error"),
                "{name}: unknown expectation"
            );
            Expect::Refused
        };
        let mut secrets = vec![c["secret"].as_str().unwrap().to_string()];
        if let Some(rolled) = c["also_valid_with_secret"].as_str() {
            secrets.push(rolled.to_string());
        }
        for secret in secrets {
            cases.push(Case {
                name: format!("{name} [secret {secret:?}]"),
                payload: payload.clone(),
                header: header.clone(),
                secret,
                tolerance,
                now,
                expect,
            });
        }
    }
    cases
}

#[test]
fn stripe_signature_vectors_through_driver_test() {
    let cases = load_cases();
    // 3 dotnet + 7 malformed headers + 32 derived cases, two of them run with a second secret.
    assert_eq!(
        cases.len(),
        44,
        "cases loaded: {:#?}",
        cases.iter().map(|c| &c.name).collect::<Vec<_>>()
    );
    let valid = cases.iter().filter(|c| c.expect == Expect::Valid).count();
    assert!(valid > 0 && valid < cases.len(), "{valid} valid cases");
    // Each run starts the binary and compiles the driver: spread them over a few threads.
    let chunk = cases.len().div_ceil(4);
    let failures: Vec<String> = std::thread::scope(|scope| {
        let workers: Vec<_> = cases
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || {
                    part.iter()
                        .filter_map(|c| check(c).err())
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().expect("worker panicked"))
            .collect()
    });
    assert!(
        failures.is_empty(),
        "{} of {} Stripe vectors failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[test]
fn dotnet_vector_normalizes_the_customer() {
    let cases = load_cases();
    let case = cases
        .iter()
        .find(|c| c.name == "dotnet/ConstructEvent")
        .expect("dotnet ConstructEvent case");
    let out = run(case);
    assert!(out.ok(), "expected ok, got {} / {}", out.json, out.stderr);
    let event = &out.json["events"][0];
    assert_eq!(event["provider_event_id"], "evt_123");
    assert_eq!(event["event_type"], "customer.created");
    // A record is the canonical data object, or (as the host prints it today)
    // `{"type", "subject", "data": <canonical data object>}`.
    let record = &event["records"][0];
    let record = if record["data"].is_object() {
        &record["data"]
    } else {
        record
    };
    assert_eq!(record["kind"], "customer", "record: {record}");
    assert_eq!(record["external_id"], "cus_123", "record: {record}");
    assert_eq!(record["email"], "test@stripe.com", "record: {record}");
}
