//! Enrichment, natively: what an event lacks is fetched through a fake `Fetch` that serves
//! the vendored objects and counts the calls. Expected values are the fixtures' own (and
//! `tests/fixtures/corpus/EXPECTED.md`), not the driver's output.

use std::collections::HashMap;

use serde_json::{Value, json};
use sluice_driver_stripe::enrich::{Fetch, FetchError, Fetched};
use sluice_driver_stripe::normalize::{self, NormalizeError};
use sluice_sdk::DriverError;
use sluice_sdk::canonical::{CanonicalRecord, Enrichment, PaymentStatus, RecordData, RefundStatus};

use crate::common::{fixtures_dir, stripe_json};

const API: &str = "https://api.stripe.com";

/// Serves objects by path; counts every call.
#[derive(Default)]
struct FakeStripe {
    objects: HashMap<String, Value>,
    calls: Vec<String>,
    failure: Option<FetchError>,
}

impl FakeStripe {
    fn serving(path: &str, object: Value) -> Self {
        let mut fake = Self::default();
        fake.objects.insert(path.into(), object);
        fake
    }
    fn failing(failure: FetchError) -> Self {
        Self {
            failure: Some(failure),
            ..Self::default()
        }
    }
}

impl Fetch for FakeStripe {
    fn get(&mut self, path: &str) -> Result<Fetched, FetchError> {
        self.calls.push(path.into());
        if let Some(f) = &self.failure {
            return Err(f.clone());
        }
        let body = self.objects.get(path).cloned().ok_or_else(|| {
            FetchError::Failed(DriverError::Upstream(sluice_sdk::types::UpstreamError {
                status: 404,
                message: format!("no such object: {path}"),
                retryable: false,
            }))
        })?;
        Ok(Fetched {
            source: sluice_sdk::enrich::source_of("GET", &format!("{API}{path}")),
            body,
        })
    }
}

fn corpus(name: &str) -> Value {
    let path = fixtures_dir().join("corpus/stripe").join(name);
    serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap()
}

fn fetched_whole(source: &str) -> Vec<Enrichment> {
    vec![Enrichment {
        source: source.into(),
        fields: vec!["*".into()],
    }]
}

/// A `charge.refunded` of API version 2022-11-15 or later: the charge without `refunds`.
fn refunded_without_refunds() -> (Value, Value) {
    let event = corpus("charge.refunded_2020-08-27_sample.json");
    let full_charge = event["data"]["object"].clone();
    let mut thin = event;
    thin["api_version"] = json!("2024-06-20");
    thin["data"]["object"]
        .as_object_mut()
        .unwrap()
        .remove("refunds");
    (thin, full_charge)
}

#[test]
fn charge_refunded_without_refunds_fetches_them_with_the_charge() {
    let (event, full_charge) = refunded_without_refunds();
    let path = "/v1/charges/ch_000000000000000000000000?expand[]=refunds";
    let mut fake = FakeStripe::serving(path, full_charge);
    let records = normalize::normalize_event_with(&event, &mut fake).unwrap();
    assert_eq!(fake.calls, [path]);
    assert_eq!(records.len(), 2, "{records:?}");
    let RecordData::Payment(p) = &records[0].data else {
        panic!("{records:?}")
    };
    assert_eq!(p.external_id, "ch_000000000000000000000000");
    assert_eq!(p.status, PaymentStatus::Refunded);
    assert!(
        records[0].enriched_from.is_empty(),
        "the payment is the payload's"
    );
    let RecordData::Refund(r) = &records[1].data else {
        panic!("{records:?}")
    };
    // EXPECTED.md: refund re_000000000000000000000000, 100 USD, succeeded, 2022-03-26T18:39:09Z.
    assert_eq!(r.external_id, "re_000000000000000000000000");
    assert_eq!(
        (r.amount.amount_minor, r.amount.currency.as_str()),
        (100, "USD")
    );
    assert_eq!(r.status, RefundStatus::Succeeded);
    assert_eq!(
        r.payment_external_id.as_deref(),
        Some("ch_000000000000000000000000")
    );
    assert_eq!(r.created_at.map(|t| t.seconds), Some(1_648_319_949));
    assert_eq!(
        records[1].enriched_from,
        fetched_whole("GET https://api.stripe.com/v1/charges/ch_000000000000000000000000")
    );
}

#[test]
fn embedded_refunds_make_no_call() {
    let event = corpus("charge.refunded_2020-08-27_sample.json");
    let mut fake = FakeStripe::default();
    let records = normalize::normalize_event_with(&event, &mut fake).unwrap();
    assert!(fake.calls.is_empty());
    assert_eq!(records.len(), 2);
    assert!(records.iter().all(|r| r.enriched_from.is_empty()));
}

#[test]
fn charge_refunded_without_an_api_key_keeps_the_payment_with_a_warning() {
    let (event, _) = refunded_without_refunds();
    let mut fake = FakeStripe::failing(FetchError::Unavailable("no api_key".into()));
    let records = normalize::normalize_event_with(&event, &mut fake).unwrap();
    assert_eq!(records.len(), 1);
    assert!(matches!(records[0].data, RecordData::Payment(_)));
    let warning = &records[0].warnings[0];
    assert_eq!(warning.field, "refunds");
    assert_eq!(warning.reason, "not in the payload, and no api_key");
}

#[test]
fn a_provider_down_fails_the_normalization_with_its_retryable_error() {
    let (event, _) = refunded_without_refunds();
    let down = DriverError::Upstream(sluice_sdk::types::UpstreamError {
        status: 503,
        message: "Stripe answered with status 503".into(),
        retryable: true,
    });
    let mut fake = FakeStripe::failing(FetchError::Failed(down.clone()));
    let e = normalize::normalize_event_with(&event, &mut fake).unwrap_err();
    assert_eq!(e, NormalizeError::Fetch(down));
    assert_eq!(fake.calls.len(), 1);
}

/// A thin event for the OpenAPI fixture charge, as event destinations send it.
fn thin_charge_event(url: &str) -> Value {
    json!({
        "id": "evt_test_65R9Ijk8dKEYZcXeRWn16R9A7j1FSQ3w3TGDPLLGSM4CW0",
        "object": "v2.core.event",
        "type": "v1.charge.succeeded",
        "livemode": false,
        "created": "2024-09-17T06:20:52.246Z",
        "related_object": {
            "id": "ch_1PgafuB7WZ01zgkWXYmPNZs8",
            "type": "charge",
            "url": url,
        }
    })
}

#[test]
fn a_thin_event_is_fetched_in_full_and_mapped_like_its_snapshot() {
    let path = "/v1/charges/ch_1PgafuB7WZ01zgkWXYmPNZs8";
    let mut fake = FakeStripe::serving(path, stripe_json("stripe_openapi_fixture_charge.json"));
    let records = normalize::normalize_event_with(&thin_charge_event(path), &mut fake).unwrap();
    assert_eq!(fake.calls, [path]);
    let [
        CanonicalRecord {
            data: RecordData::Payment(p),
            enriched_from,
            ..
        },
    ] = &records[..]
    else {
        panic!("{records:?}")
    };
    // The fixture charge: 100 usd, succeeded but captured false → authorized.
    assert_eq!(p.external_id, "ch_1PgafuB7WZ01zgkWXYmPNZs8");
    assert_eq!(
        (p.amount.amount_minor, p.amount.currency.as_str()),
        (100, "USD")
    );
    assert_eq!(p.status, PaymentStatus::Authorized);
    assert_eq!(
        p.description.as_deref(),
        Some("My First Test Charge (created for API docs)")
    );
    assert_eq!(
        enriched_from,
        &fetched_whole("GET https://api.stripe.com/v1/charges/ch_1PgafuB7WZ01zgkWXYmPNZs8")
    );
}

#[test]
fn thin_events_of_kinds_not_mapped_or_with_foreign_urls_make_no_call() {
    let mut fake = FakeStripe::default();
    let meter = corpus("v2.thin_event_v1.billing.meter.error_report_triggered_docs.json");
    let records = normalize::normalize_event_with(&meter, &mut fake).unwrap();
    let RecordData::Unmapped(u) = &records[0].data else {
        panic!("{records:?}")
    };
    assert_eq!(u.object_type.as_deref(), Some("billing.meter"));
    for url in [
        "https://evil.example/v1/charges/ch_1",
        "/v1/charges/../../v1/accounts",
        "/v1/charges/ch_1?expand[]=customer",
    ] {
        let records = normalize::normalize_event_with(&thin_charge_event(url), &mut fake).unwrap();
        let RecordData::Unmapped(u) = &records[0].data else {
            panic!("{records:?}")
        };
        assert!(
            u.reason.as_deref().unwrap().contains("related_object.url"),
            "{u:?}"
        );
    }
    assert!(fake.calls.is_empty(), "{:?}", fake.calls);
}

#[test]
fn a_thin_event_that_cannot_be_fetched_fails_so_it_can_be_replayed() {
    let path = "/v1/charges/ch_1PgafuB7WZ01zgkWXYmPNZs8";
    let mut fake = FakeStripe::failing(FetchError::Unavailable("no api_key".into()));
    let e = normalize::normalize_event_with(&thin_charge_event(path), &mut fake).unwrap_err();
    let NormalizeError::Fetch(DriverError::InvalidSettings(why)) = e else {
        panic!("{e:?}")
    };
    assert_eq!(
        why,
        "thin event v1.charge.succeeded: its object must be fetched, and no api_key"
    );
}

#[test]
fn a_refund_without_its_currency_is_completed_from_its_charge() {
    let mut refund = stripe_json("stripe_openapi_fixture_refund.json");
    refund.as_object_mut().unwrap().remove("currency");
    let event = json!({
        "id": "evt_1", "object": "event", "api_version": "2024-06-20",
        "type": "refund.updated", "created": 1234567890,
        "data": { "object": refund },
    });
    let path = "/v1/charges/ch_1PgafuB7WZ01zgkWXYmPNZs8";
    let mut fake = FakeStripe::serving(path, stripe_json("stripe_openapi_fixture_charge.json"));
    let records = normalize::normalize_event_with(&event, &mut fake).unwrap();
    assert_eq!(fake.calls, [path]);
    let [
        CanonicalRecord {
            data: RecordData::Refund(r),
            enriched_from,
            ..
        },
    ] = &records[..]
    else {
        panic!("{records:?}")
    };
    assert_eq!(r.external_id, "re_1Pgc72B7WZ01zgkWqPvrRrPE");
    assert_eq!(
        (r.amount.amount_minor, r.amount.currency.as_str()),
        (100, "USD")
    );
    // The fixture charge has no customer: only the currency came from the call.
    assert_eq!(r.customer_external_id, None);
    assert_eq!(
        enriched_from,
        &vec![Enrichment {
            source: "GET https://api.stripe.com/v1/charges/ch_1PgafuB7WZ01zgkWXYmPNZs8".into(),
            fields: vec!["amount.currency".into()],
        }]
    );
    // With its currency, the same refund makes no call.
    let mut fake = FakeStripe::default();
    let event = json!({
        "id": "evt_2", "object": "event", "type": "refund.updated",
        "data": { "object": stripe_json("stripe_openapi_fixture_refund.json") },
    });
    normalize::normalize_event_with(&event, &mut fake).unwrap();
    assert!(fake.calls.is_empty());
}
