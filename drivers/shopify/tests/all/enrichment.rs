//! A `refunds/create` whose amounts carry no currency is completed from its order: a fake
//! serves `shopify_order_rest_2025-10.json` (the refund's own order, 450789469) and counts
//! the calls. Expected amounts are `tests/fixtures/corpus/EXPECTED.md`'s.

use serde_json::Value;
use sluice_driver_shopify::normalize::normalize_with;
use sluice_sdk::DriverError;
use sluice_sdk::canonical::{CanonicalRecord, Enrichment, RecordData, RefundStatus};
use sluice_sdk::enrich::{Fetch, FetchError, Fetched, NoFetch, source_of};

use crate::common::shopify_json;

const BASE: &str = "https://shop.myshopify.com/admin/api/2026-07/";
const ORDER_PATH: &str = "orders/450789469.json?fields=id,currency,customer";

/// Answers the order's path with the order fixture, anything else 404; counts calls.
#[derive(Default)]
struct FakeShop {
    calls: Vec<String>,
    failure: Option<FetchError>,
}

impl Fetch for FakeShop {
    fn get(&mut self, path: &str) -> Result<Fetched, FetchError> {
        self.calls.push(path.into());
        if let Some(f) = &self.failure {
            return Err(f.clone());
        }
        if path != ORDER_PATH {
            return Err(FetchError::Failed(sluice_sdk::error::upstream_status(
                404,
                "Not Found",
            )));
        }
        Ok(Fetched {
            source: source_of("GET", &format!("{BASE}{path}")),
            body: shopify_json("shopify_order_rest_2025-10.json"),
        })
    }
}

/// `refunds_create_docs_rest_2026-07_509562969` from the corpus.
fn refund_payload() -> Value {
    let path = sluice_testkit::fixtures::fixtures_dir()
        .join("corpus/shopify/refunds_create_docs_rest_2026-07_509562969.json");
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn without(mut refund: Value, pointer: &str, keys: &[&str]) -> Value {
    for item in refund.pointer_mut(pointer).unwrap().as_array_mut().unwrap() {
        for key in keys {
            item.as_object_mut().unwrap().remove(*key);
        }
    }
    refund
}

fn normalize(payload: &Value, fetch: &mut dyn Fetch) -> Result<Vec<CanonicalRecord>, DriverError> {
    normalize_with(
        "refunds/create",
        &serde_json::to_vec(payload).unwrap(),
        fetch,
    )
}

fn from_the_order(fields: &[&str]) -> Vec<Enrichment> {
    vec![Enrichment {
        source: "GET https://shop.myshopify.com/admin/api/2026-07/orders/450789469.json".into(),
        fields: fields.iter().map(|f| f.to_string()).collect(),
    }]
}

#[test]
fn transactions_without_currency_take_the_orders_currency_and_customer() {
    let payload = without(refund_payload(), "/refund/transactions", &["currency"]);
    let mut fake = FakeShop::default();
    let records = normalize(&payload, &mut fake).unwrap();
    assert_eq!(fake.calls, [ORDER_PATH]);
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
    // EXPECTED.md: 509562969, 20900 USD, succeeded, order 450789469; the order fixture's
    // customer is 207119551.
    assert_eq!(r.external_id, "509562969");
    assert_eq!(
        (r.amount.amount_minor, r.amount.currency.as_str()),
        (20900, "USD")
    );
    assert_eq!(r.status, RefundStatus::Succeeded);
    assert_eq!(r.order_external_id.as_deref(), Some("450789469"));
    assert_eq!(r.customer_external_id.as_deref(), Some("207119551"));
    assert_eq!(
        enriched_from,
        &from_the_order(&["amount.currency", "customer_external_id"])
    );
}

#[test]
fn bare_line_item_amounts_are_counted_in_the_orders_currency() {
    // No transactions, line items with only the bare `subtotal` / `total_tax` numbers.
    let mut payload = refund_payload();
    payload["refund"]["transactions"] = Value::Array(vec![]);
    let payload = without(
        payload,
        "/refund/refund_line_items",
        &["subtotal_set", "total_tax_set"],
    );
    let mut fake = FakeShop::default();
    let records = normalize(&payload, &mut fake).unwrap();
    assert_eq!(fake.calls.len(), 1);
    let RecordData::Refund(r) = &records[0].data else {
        panic!("{records:?}")
    };
    // EXPECTED.md: line subtotals 195.66 + 195.67, tax 3.98 + 3.98.
    assert_eq!(
        (r.amount.amount_minor, r.amount.currency.as_str()),
        (39929, "USD")
    );
}

#[test]
fn a_refund_with_its_currency_makes_no_call() {
    let mut fake = FakeShop::default();
    let records = normalize(&refund_payload(), &mut fake).unwrap();
    assert!(fake.calls.is_empty());
    assert!(records[0].enriched_from.is_empty());
    let RecordData::Refund(r) = &records[0].data else {
        panic!("{records:?}")
    };
    assert_eq!(r.customer_external_id, None);
}

#[test]
fn without_a_token_the_refund_is_kept_unmapped_and_a_failed_call_is_an_error() {
    let payload = without(refund_payload(), "/refund/transactions", &["currency"]);
    let records = normalize(&payload, &mut NoFetch).unwrap();
    let RecordData::Unmapped(u) = &records[0].data else {
        panic!("{records:?}")
    };
    assert_eq!(u.external_id.as_deref(), Some("509562969"));
    assert_eq!(
        u.reason.as_deref(),
        Some("the refund's amounts have no currency, and enrichment is off")
    );
    let down = sluice_sdk::error::upstream_status(503, "Shopify is down");
    let mut fake = FakeShop {
        failure: Some(FetchError::Failed(down.clone())),
        ..FakeShop::default()
    };
    assert_eq!(normalize(&payload, &mut fake).unwrap_err(), down);
}
