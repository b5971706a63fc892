//! `shopify/shopify_order_rest_2025-10.json` normalized field by field (as an order, and its
//! embedded refund and customer as `refunds/create` / `customers/update` payloads), plus a
//! JPY variant whose id is beyond 2^53.

use crate::common::{shopify_fixture, shopify_json};
use sluice_driver_shopify::normalize::normalize;
use sluice_sdk::canonical::{
    Address, CanonicalRecord, Change, FinancialStatus, FulfillmentStatus, LineItem, Order,
    OrderStatus, RecordData,
};
use sluice_sdk::{Datetime, Money};

const ORDER: &str = "shopify_order_rest_2025-10.json";

fn usd(amount_minor: i64) -> Money {
    Money {
        amount_minor,
        currency: "USD".into(),
        exact: None,
    }
}

fn at(seconds: i64) -> Option<Datetime> {
    Some(Datetime {
        seconds,
        nanoseconds: 0,
    })
}

fn one(records: Vec<CanonicalRecord>) -> CanonicalRecord {
    assert_eq!(records.len(), 1, "{records:?}");
    records.into_iter().next().unwrap()
}

fn order_of(topic: &str, payload: &[u8]) -> (Change, Order) {
    match one(normalize(topic, payload).unwrap()) {
        CanonicalRecord {
            change,
            data: RecordData::Order(o),
            ..
        } => (change, o),
        other => panic!("expected an order, got {other:?}"),
    }
}

fn bob_address() -> Address {
    Address {
        name: Some("Bob Norman".into()),
        company: None,
        line1: Some("Chestnut Street 92".into()),
        line2: None,
        city: Some("Louisville".into()),
        region: Some("Kentucky".into()),
        postal_code: Some("40202".into()),
        country_code: Some("US".into()),
        phone: Some("+1(502)-459-2181".into()),
    }
}

fn item(id: &str, variant: &str, sku: &str, colour: &str, discount: i64) -> LineItem {
    LineItem {
        external_id: Some(id.into()),
        product_external_id: Some("632910392".into()),
        variant_external_id: Some(variant.into()),
        sku: Some(sku.into()),
        title: format!("IPod Nano - 8gb - {colour}"),
        quantity: 1,
        unit_price: Some(usd(19900)),
        total: Some(usd(19900 - discount)),
    }
}

#[test]
fn rest_order_fixture_field_by_field() {
    // The fixture is the REST envelope `{"order": {...}}`, byte for byte.
    let bytes = shopify_fixture(ORDER);
    let (change, o) = order_of("orders/create", &bytes);
    assert_eq!(change, Change::Created);
    // 2008-01-10T11:00:00-05:00 = 2008-01-10T16:00:00Z
    let t_2008 = 1_199_980_800;
    let expected = Order {
        external_id: "450789469".into(),
        number: Some("#1001".into()),
        customer_external_id: Some("207119551".into()),
        email: Some("bob.norman@mail.example.com".into()),
        status: OrderStatus::Open,
        status_raw: Some("open".into()),
        financial_status: FinancialStatus::PartiallyRefunded,
        financial_status_raw: Some("partially_refunded".into()),
        fulfillment_status: FulfillmentStatus::Unfulfilled,
        fulfillment_status_raw: None,
        subtotal: Some(usd(59700)),
        total_tax: Some(usd(1194)),
        total_discounts: Some(usd(1000)),
        total_shipping: Some(usd(0)),
        total: usd(59894),
        line_items: vec![
            item("466157049", "39072856", "IPOD2008GREEN", "green", 334),
            item("518995019", "49148385", "IPOD2008RED", "red", 333),
            item("703073504", "457924702", "IPOD2008BLACK", "black", 333),
        ],
        billing_address: Some(bob_address()),
        shipping_address: Some(bob_address()),
        created_at: at(t_2008),
        updated_at: at(t_2008),
        cancelled_at: None,
        cancel_reason: None,
        metadata: vec![
            (
                "admin_graphql_api_id".into(),
                "gid://shopify/Order/450789469".into(),
            ),
            ("presentment_currency".into(), "USD".into()),
            ("current_total_price".into(), "199.65".into()),
            ("source_name".into(), "web".into()),
            ("processed_at".into(), "2008-01-10T11:00:00-05:00".into()),
            ("test".into(), "false".into()),
            (
                "note_attributes.custom engraving".into(),
                "Happy Birthday".into(),
            ),
            ("note_attributes.colour".into(), "green".into()),
        ],
    };
    assert_eq!(o, expected);
    // Other order topics are updates of the same record.
    for topic in ["orders/updated", "orders/paid", "orders/cancelled"] {
        let (change, o) = order_of(topic, &bytes);
        assert_eq!(change, Change::Updated, "{topic}");
        assert_eq!(o, expected, "{topic}");
    }
    // The bare order (a webhook body) normalizes identically.
    let fixture = shopify_json(ORDER);
    let bare = serde_json::to_vec(&fixture["order"]).unwrap();
    assert_eq!(order_of("orders/create", &bare).1, expected);
}

#[test]
fn cancelled_and_closed_orders() {
    let mut v = shopify_json(ORDER);
    v["order"]["cancelled_at"] = "2008-01-10T12:00:00-05:00".into();
    v["order"]["cancel_reason"] = "customer".into();
    v["order"]["fulfillment_status"] = "partial".into();
    let (_, o) = order_of("orders/cancelled", &serde_json::to_vec(&v).unwrap());
    assert_eq!(
        (o.status, o.status_raw.as_deref()),
        (OrderStatus::Cancelled, Some("cancelled"))
    );
    assert_eq!(o.cancelled_at, at(1_199_984_400));
    assert_eq!(o.cancel_reason.as_deref(), Some("customer"));
    assert_eq!(
        (o.fulfillment_status, o.fulfillment_status_raw.as_deref()),
        (FulfillmentStatus::Partial, Some("partial"))
    );
    let mut v = shopify_json(ORDER);
    v["order"]["closed_at"] = "2008-01-11T00:00:00Z".into();
    v["order"]["financial_status"] = "something_new".into();
    let (_, o) = order_of("orders/updated", &serde_json::to_vec(&v).unwrap());
    assert_eq!(o.status, OrderStatus::Completed);
    assert_eq!(
        (o.financial_status, o.financial_status_raw.as_deref()),
        (FinancialStatus::Unknown, Some("something_new"))
    );
}

#[test]
fn embedded_refund_as_refunds_create() {
    let fixture = shopify_json(ORDER);
    let refund = serde_json::to_vec(&fixture["order"]["refunds"][0]).unwrap();
    let record = one(normalize("refunds/create", &refund).unwrap());
    assert_eq!(record.change, Change::Created);
    let RecordData::Refund(r) = record.data else {
        panic!("{record:?}")
    };
    assert_eq!(r.external_id, "509562969");
    assert_eq!(r.order_external_id.as_deref(), Some("450789469"));
    assert_eq!(r.payment_external_id.as_deref(), Some("801038806"));
    // The successful refund transaction: 209.00 USD (not the line items' 195.66 + 195.67 + tax).
    assert_eq!(r.amount, usd(20900));
    assert_eq!(r.status, sluice_sdk::canonical::RefundStatus::Succeeded);
    assert_eq!(r.status_raw, "success");
    assert_eq!(r.reason.as_deref(), Some("it broke during shipping"));
    // 2025-04-02T11:29:59-05:00 = 16:29:59Z
    assert_eq!(r.created_at, at(1_743_611_399));
    assert_eq!(
        r.metadata,
        vec![
            ("restock".into(), "true".into()),
            ("transaction_ids".into(), "179259969".into()),
            (
                "admin_graphql_api_id".into(),
                "gid://shopify/Refund/509562969".into()
            )
        ]
    );
    // Without transactions the refund line items' shop amounts are summed (from the
    // `*_set` decimal strings, never the float `subtotal`).
    let mut bare = fixture["order"]["refunds"][0].clone();
    bare["transactions"] = serde_json::json!([]);
    let RecordData::Refund(r) =
        one(normalize("refunds/create", &serde_json::to_vec(&bare).unwrap()).unwrap()).data
    else {
        panic!()
    };
    assert_eq!(r.amount, usd(19566 + 398 + 19567 + 398));
    assert_eq!(r.status_raw, "no_transactions");
}

#[test]
fn embedded_customer_as_customers_update() {
    let fixture = shopify_json(ORDER);
    let customer = serde_json::to_vec(&fixture["order"]["customer"]).unwrap();
    for (topic, change) in [
        ("customers/create", Change::Created),
        ("customers/update", Change::Updated),
    ] {
        let record = one(normalize(topic, &customer).unwrap());
        assert_eq!(record.change, change);
        let RecordData::Customer(c) = record.data else {
            panic!("{record:?}")
        };
        assert_eq!(c.external_id, "207119551");
        assert_eq!(c.email.as_deref(), Some("bob.norman@mail.example.com"));
        assert_eq!(c.name.as_deref(), Some("Bob Norman"));
        assert_eq!(
            (c.first_name.as_deref(), c.last_name.as_deref()),
            (Some("Bob"), Some("Norman"))
        );
        assert_eq!(c.phone.as_deref(), Some("+16136120707"));
        assert_eq!(c.created_at, at(1_743_611_399));
        assert_eq!(c.updated_at, at(1_743_611_399));
        let a = c.address.unwrap();
        assert_eq!(a.name, None);
        assert_eq!(a.line1.as_deref(), Some("Chestnut Street 92"));
        assert_eq!(a.line2, None);
        assert_eq!(
            (
                a.city.as_deref(),
                a.region.as_deref(),
                a.postal_code.as_deref(),
                a.country_code.as_deref()
            ),
            (
                Some("Louisville"),
                Some("Kentucky"),
                Some("40202"),
                Some("US")
            )
        );
        assert_eq!(a.phone.as_deref(), Some("555-625-1199"));
        assert_eq!(
            c.metadata,
            vec![
                ("state".into(), "disabled".into()),
                ("tags".into(), "Léon, Noël".into()),
                ("currency".into(), "USD".into()),
                (
                    "admin_graphql_api_id".into(),
                    "gid://shopify/Customer/207119551".into()
                ),
                ("verified_email".into(), "true".into()),
            ]
        );
    }
}

/// A JPY order webhook body whose ids are beyond 2^53 (as text: never through a float).
pub const JPY_ORDER: &str = r##"{"id": 9007199254740993, "name": "#2001", "email": "taro@example.jp", "currency": "JPY", "financial_status": "paid", "fulfillment_status": null, "created_at": "2025-10-01T09:00:00+09:00", "updated_at": "2025-10-01T09:30:00+09:00", "cancelled_at": null, "subtotal_price": "1000.00", "total_tax": "0", "total_discounts": "0", "total_price": "1000", "total_shipping_price_set": {"shop_money": {"amount": "0", "currency_code": "JPY"}}, "customer": {"id": 9007199254740995, "email": "taro@example.jp"}, "line_items": [{"id": 9007199254740997, "product_id": 1, "variant_id": 2, "sku": "TEA", "name": "Matcha", "price": "500.00", "quantity": 2, "discount_allocations": []}]}"##;

#[test]
fn jpy_order_with_an_id_beyond_2_pow_53() {
    let (_, o) = order_of("orders/create", JPY_ORDER.as_bytes());
    assert_eq!(
        o.external_id, "9007199254740993",
        "exact, not 9007199254740992"
    );
    assert_eq!(o.customer_external_id.as_deref(), Some("9007199254740995"));
    assert_eq!(
        o.line_items[0].external_id.as_deref(),
        Some("9007199254740997")
    );
    let jpy = |amount_minor| Money {
        amount_minor,
        currency: "JPY".into(),
        exact: None,
    };
    assert_eq!(o.total, jpy(1000), "\"1000\" JPY");
    assert_eq!(o.subtotal, Some(jpy(1000)), "\"1000.00\" JPY");
    assert_eq!(o.total_shipping, Some(jpy(0)));
    assert_eq!(o.line_items[0].unit_price, Some(jpy(500)));
    assert_eq!(o.line_items[0].total, Some(jpy(1000)));
    assert_eq!(o.created_at, at(1_759_276_800), "2025-10-01T00:00:00Z");
    assert_eq!(o.financial_status, FinancialStatus::Paid);
    // A JPY amount with a fraction is rounded half to even, its exact text kept.
    let odd = JPY_ORDER.replace(r#""total_price": "1000""#, r#""total_price": "1000.50""#);
    let (_, o) = order_of("orders/create", odd.as_bytes());
    assert_eq!(
        (o.total.amount_minor, o.total.exact.as_deref()),
        (1000, Some("1000.50"))
    );
}
