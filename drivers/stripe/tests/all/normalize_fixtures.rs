//! Normalization of every Stripe object fixture (wrapped as events), the real
//! `charge.succeeded` event, and zero-, three-decimal and ISK amounts, field by field.

use crate::common::{stripe_fixture, stripe_json};
use serde_json::{Value, json};
use sluice_driver_stripe::{events, normalize};
use sluice_sdk::canonical::*;
use sluice_sdk::{Datetime, Money};

fn wrap(event_type: &str, object: Value) -> Value {
    json!({"id": "evt_test", "object": "event", "api_version": "2024-06-20", "type": event_type, "created": 1700000000, "data": {"object": object}})
}

fn one(event_type: &str, object: Value) -> CanonicalRecord {
    let mut records = normalize::normalize_event(&wrap(event_type, object)).unwrap();
    assert_eq!(records.len(), 1, "{event_type}");
    records.remove(0)
}

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

fn payment(r: CanonicalRecord) -> Payment {
    match r.data {
        RecordData::Payment(p) => p,
        other => panic!("expected payment, got {other:?}"),
    }
}

#[test]
fn charge_fixture() {
    let r = one(
        "charge.succeeded",
        stripe_json("stripe_openapi_fixture_charge.json"),
    );
    assert_eq!(r.change, Change::Observed);
    let p = payment(r);
    assert_eq!(p.external_id, "ch_1PgafuB7WZ01zgkWXYmPNZs8");
    assert_eq!(p.order_external_id, None);
    assert_eq!(p.customer_external_id, None);
    assert_eq!(p.invoice_external_id, None);
    assert_eq!(p.amount, usd(100));
    assert_eq!(p.amount_captured, Some(usd(0)));
    assert_eq!(p.amount_refunded, Some(usd(0)));
    assert_eq!(p.fee, None);
    assert_eq!(
        p.status,
        PaymentStatus::Authorized,
        "succeeded but not captured"
    );
    assert_eq!(p.status_raw, "succeeded");
    assert_eq!(p.method.as_deref(), Some("card"));
    assert_eq!(
        p.description.as_deref(),
        Some("My First Test Charge (created for API docs)")
    );
    assert_eq!(p.failure_reason, None);
    assert_eq!(p.created_at, at(1234567890));
    assert!(p.metadata.is_empty());
}

#[test]
fn charge_refunded_emits_payment_and_refunds() {
    let mut charge = stripe_json("stripe_openapi_fixture_charge.json");
    let mut refund = stripe_json("stripe_openapi_fixture_refund.json");
    refund.as_object_mut().unwrap().remove("charge");
    charge["refunded"] = json!(true);
    charge["captured"] = json!(true);
    charge["amount_refunded"] = json!(100);
    charge["refunds"]["data"] = json!([refund]);
    charge["metadata"] = json!({"order": "1001", "n": 7});
    let records = normalize::normalize_event(&wrap("charge.refunded", charge)).unwrap();
    assert_eq!(records.len(), 2);
    let p = payment(records[0].clone());
    assert_eq!(p.status, PaymentStatus::Refunded);
    assert_eq!(p.amount_refunded, Some(usd(100)));
    assert_eq!(
        p.metadata,
        vec![("n".into(), "7".into()), ("order".into(), "1001".into())]
    );
    let RecordData::Refund(r) = &records[1].data else {
        panic!("{:?}", records[1])
    };
    assert_eq!(r.external_id, "re_1Pgc72B7WZ01zgkWqPvrRrPE");
    assert_eq!(
        r.payment_external_id.as_deref(),
        Some("ch_1PgafuB7WZ01zgkWXYmPNZs8"),
        "falls back to the charge"
    );

    // Partial refund, and disputed wins over everything.
    let mut charge = stripe_json("stripe_openapi_fixture_charge.json");
    charge["amount_refunded"] = json!(40);
    assert_eq!(
        payment(one("charge.updated", charge.clone())).status,
        PaymentStatus::PartiallyRefunded
    );
    charge["disputed"] = json!(true);
    assert_eq!(
        payment(one("charge.updated", charge.clone())).status,
        PaymentStatus::Disputed
    );
    charge["refunds"] = Value::Null;
    assert_eq!(
        normalize::normalize_event(&wrap("charge.refunded", charge))
            .unwrap()
            .len(),
        1
    );
}

#[test]
fn failed_and_pending_charges() {
    let mut charge = stripe_json("stripe_openapi_fixture_charge.json");
    charge["status"] = json!("failed");
    charge["failure_message"] = json!("Your card was declined.");
    let p = payment(one("charge.failed", charge.clone()));
    assert_eq!(
        (p.status, p.failure_reason.as_deref()),
        (PaymentStatus::Failed, Some("Your card was declined."))
    );
    charge["status"] = json!("pending");
    assert_eq!(
        payment(one("charge.pending", charge)).status,
        PaymentStatus::Pending
    );
}

#[test]
fn real_charge_succeeded_event() {
    let bytes = stripe_fixture("stripe_event_charge_succeeded.json");
    let raw = events::raw_event(&bytes).unwrap();
    assert_eq!(raw.provider_event_id, "evt_3RTqw0RMEOaIvYpU1k2TFajH");
    assert_eq!(raw.event_type, "charge.succeeded");
    assert_eq!(raw.account_key, None);
    assert_eq!(raw.occurred_at, at(1748465448));
    assert_eq!(raw.payload, bytes);
    let records = normalize::normalize_payload(&raw.payload).unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].change, Change::Observed);
    let p = payment(records[0].clone());
    assert_eq!(p.external_id, "ch_3RTqw0RMEOaIvYpU1M9ZYtjP");
    assert_eq!(
        p.customer_external_id.as_deref(),
        Some("cus_SOeDf39aosGb97")
    );
    assert_eq!(p.amount, usd(100));
    assert_eq!(p.amount_captured, Some(usd(100)));
    assert_eq!(p.amount_refunded, Some(usd(0)));
    assert_eq!(p.status, PaymentStatus::Succeeded);
    assert_eq!(p.status_raw, "succeeded");
    assert_eq!(p.method.as_deref(), Some("card"));
    assert_eq!(p.description.as_deref(), Some("(created by Stripe CLI)"));
    assert_eq!(p.failure_reason, None);
    assert_eq!(p.created_at, at(1748465448));
}

#[test]
fn payment_intent_fixture() {
    let pi = stripe_json("stripe_openapi_fixture_payment_intent.json");
    let r = one("payment_intent.created", pi.clone());
    assert_eq!(r.change, Change::Created);
    let p = payment(r);
    assert_eq!(p.external_id, "pi_1PgafyB7WZ01zgkWSjxsAJo3");
    assert_eq!(p.amount, usd(1099));
    assert_eq!(p.amount_captured, Some(usd(0)));
    assert_eq!(p.amount_refunded, None);
    assert_eq!(p.customer_external_id, None);
    assert_eq!(p.status, PaymentStatus::Pending);
    assert_eq!(p.status_raw, "requires_payment_method");
    assert_eq!(p.method.as_deref(), Some("card"));
    assert_eq!(p.failure_reason, None);
    assert_eq!(p.created_at, at(1234567890));
    assert_eq!(
        payment(one("payment_intent.payment_failed", pi.clone())).status,
        PaymentStatus::Failed
    );
    for (raw, status) in [
        ("requires_confirmation", PaymentStatus::Pending),
        ("requires_action", PaymentStatus::RequiresAction),
        ("processing", PaymentStatus::Pending),
        ("requires_capture", PaymentStatus::Authorized),
        ("succeeded", PaymentStatus::Succeeded),
        ("canceled", PaymentStatus::Cancelled),
        ("something_new", PaymentStatus::Unknown),
    ] {
        let mut pi = pi.clone();
        pi["status"] = json!(raw);
        let p = payment(one("payment_intent.updated", pi));
        assert_eq!((p.status, p.status_raw.as_str()), (status, raw));
    }
}

#[test]
fn refund_fixture() {
    for event_type in ["refund.created", "refund.updated", "charge.refund.updated"] {
        let r = one(
            event_type,
            stripe_json("stripe_openapi_fixture_refund.json"),
        );
        let RecordData::Refund(r) = r.data else {
            panic!()
        };
        assert_eq!(r.external_id, "re_1Pgc72B7WZ01zgkWqPvrRrPE");
        assert_eq!(
            r.payment_external_id.as_deref(),
            Some("ch_1PgafuB7WZ01zgkWXYmPNZs8")
        );
        assert_eq!(r.order_external_id, None);
        assert_eq!(r.amount, usd(100));
        assert_eq!(r.status, RefundStatus::Succeeded);
        assert_eq!(r.status_raw, "succeeded");
        assert_eq!(r.reason, None);
        assert_eq!(r.created_at, at(1234567890));
        assert!(r.metadata.is_empty());
    }
}

#[test]
fn customer_fixture() {
    for (event_type, change) in [
        ("customer.created", Change::Created),
        ("customer.updated", Change::Updated),
        ("customer.deleted", Change::Deleted),
    ] {
        let r = one(
            event_type,
            stripe_json("stripe_openapi_fixture_customer.json"),
        );
        assert_eq!(r.change, change);
        let RecordData::Customer(c) = r.data else {
            panic!()
        };
        assert_eq!(c.external_id, "cus_QXg1o8vcGmoR32");
        assert_eq!((c.email, c.name, c.phone), (None, None, None));
        assert_eq!(c.address, None, "all-null address");
        assert_eq!(c.created_at, at(1234567890));
        assert!(c.metadata.is_empty());
    }
    let mut cus = stripe_json("stripe_openapi_fixture_customer.json");
    cus["address"] =
        json!({"line1": "1 Main St", "city": "Lisbon", "country": "pt", "state": null});
    cus["email"] = json!("a@example.com");
    let RecordData::Customer(c) = one("customer.updated", cus).data else {
        panic!()
    };
    let a = c.address.unwrap();
    assert_eq!(
        (
            a.line1.as_deref(),
            a.city.as_deref(),
            a.country_code.as_deref()
        ),
        (Some("1 Main St"), Some("Lisbon"), Some("PT"))
    );
    assert_eq!(c.email.as_deref(), Some("a@example.com"));
    // Other customer.* events are not customers.
    let r = one(
        "customer.discount.created",
        stripe_json("stripe_openapi_fixture_customer.json"),
    );
    assert!(matches!(r.data, RecordData::Unmapped(_)));
}

#[test]
fn subscription_fixture() {
    let r = one(
        "customer.subscription.updated",
        stripe_json("stripe_openapi_fixture_subscription.json"),
    );
    assert_eq!(r.change, Change::Updated);
    let RecordData::Subscription(s) = r.data else {
        panic!("{:?}", r.data)
    };
    assert_eq!(s.external_id, "sub_1Pgc6rB7WZ01zgkWNy0Cn5nw");
    assert_eq!(
        s.customer_external_id.as_deref(),
        Some("cus_QXg1o8vcGmoR32")
    );
    assert_eq!(
        s.plan_external_id.as_deref(),
        Some("price_1PgafmB7WZ01zgkW6dKueIc5")
    );
    assert_eq!(s.plan_name, None);
    assert_eq!(s.status, SubscriptionStatus::Active);
    assert_eq!(s.status_raw, "active");
    assert_eq!(s.amount, Some(usd(2000)));
    assert_eq!(s.interval.as_deref(), Some("month"));
    assert_eq!(s.interval_count, Some(1));
    assert_eq!(
        s.current_period_start,
        at(1896570518),
        "from the item (newer API versions)"
    );
    assert_eq!(s.current_period_end, at(976287773));
    assert_eq!(s.next_charge_at, None, "cancels at period end");
    assert!(s.cancel_at_period_end);
    assert_eq!(s.cancelled_at, at(1234567890));
    assert_eq!(s.created_at, at(1234567890));
    assert!(s.metadata.is_empty());
    // customer.subscription.* is never a customer.
    let r = one(
        "customer.subscription.created",
        stripe_json("stripe_openapi_fixture_subscription.json"),
    );
    assert_eq!(r.change, Change::Created);
    assert!(matches!(r.data, RecordData::Subscription(_)));
}

#[test]
fn invoice_fixture() {
    let r = one(
        "invoice.finalized",
        stripe_json("stripe_openapi_fixture_invoice.json"),
    );
    let RecordData::Invoice(i) = r.data else {
        panic!()
    };
    assert_eq!(i.external_id, "in_1Pgc6tB7WZ01zgkWu9fdqL6I");
    assert_eq!(i.number, None);
    assert_eq!(
        i.customer_external_id.as_deref(),
        Some("cus_QXg1o8vcGmoR32")
    );
    assert_eq!(
        i.subscription_external_id.as_deref(),
        Some("subscription"),
        "from parent.subscription_details"
    );
    assert_eq!(i.payment_external_id, None);
    assert_eq!(i.status, InvoiceStatus::Draft);
    assert_eq!(i.status_raw, "draft");
    assert_eq!(i.total, usd(1000));
    assert_eq!(i.amount_due, Some(usd(1000)));
    assert_eq!(i.amount_paid, Some(usd(0)));
    assert_eq!(i.amount_remaining, Some(usd(1000)));
    assert_eq!(i.created_at, at(1234567890));
    assert_eq!(i.due_at, at(1234567890));
    assert_eq!(i.paid_at, None);
    assert_eq!(
        i.line_items,
        vec![LineItem {
            external_id: Some("il_1Pgc6sB7WZ01zgkWFnxLrLCq".into()),
            product_external_id: None,
            variant_external_id: None,
            sku: None,
            title: "My First Invoice Item (created for API docs)".into(),
            quantity: 1,
            unit_price: None,
            total: Some(usd(1000)),
        }]
    );
}

#[test]
fn dispute_fixture() {
    let r = one(
        "charge.dispute.created",
        stripe_json("stripe_openapi_fixture_dispute.json"),
    );
    assert_eq!(r.change, Change::Created);
    let RecordData::Chargeback(c) = r.data else {
        panic!()
    };
    assert_eq!(c.external_id, "dp_1Pgc71B7WZ01zgkWMevJiAUx");
    assert_eq!(
        c.payment_external_id.as_deref(),
        Some("ch_1PgafuB7WZ01zgkWXYmPNZs8")
    );
    assert_eq!(c.amount, usd(1000));
    assert_eq!(c.status, ChargebackStatus::Warning);
    assert_eq!(c.status_raw, "warning_needs_response");
    assert_eq!(c.reason.as_deref(), Some("general"));
    assert_eq!(c.created_at, at(1234567890));
}

#[test]
fn event_fixture_is_unmapped() {
    let records =
        normalize::normalize_event(&stripe_json("stripe_openapi_fixture_event.json")).unwrap();
    assert_eq!(
        records,
        vec![CanonicalRecord {
            change: Change::Observed,
            data: RecordData::Unmapped(Unmapped {
                external_id: Some("price_1PgafmB7WZ01zgkW6dKueIc5".into()),
                object_type: Some("plan".into()),
                reason: None,
            }),
            // The OpenAPI fixture event carries no `api_version`.
            warnings: vec![Warning {
                field: "api_version".into(),
                reason: "the event has no api_version (rendered before 2017); mapped as 2025-08-27.basil".into(),
            }],
            enriched_from: vec![],
        }]
    );
}

fn charge_in(
    currency: &str,
    amount: i64,
) -> Result<Vec<CanonicalRecord>, normalize::NormalizeError> {
    let mut charge = stripe_json("stripe_openapi_fixture_charge.json");
    charge["currency"] = json!(currency);
    charge["amount"] = json!(amount);
    charge["amount_captured"] = json!(amount);
    charge["amount_refunded"] = json!(0);
    normalize::normalize_event(&wrap("charge.captured", charge))
}

#[test]
fn zero_three_decimal_and_isk_amounts() {
    let p = payment(charge_in("jpy", 5000).unwrap().remove(0));
    assert_eq!(
        p.amount,
        Money {
            amount_minor: 5000,
            currency: "JPY".into(),
            exact: None,
        }
    );
    let p = payment(charge_in("bhd", 1500).unwrap().remove(0));
    assert_eq!(
        p.amount,
        Money {
            amount_minor: 1500,
            currency: "BHD".into(),
            exact: None,
        }
    );
    // Stripe sends ISK with two decimals (ISK 1,000 = 100000); ISO has none.
    let p = payment(charge_in("isk", 100000).unwrap().remove(0));
    assert_eq!(
        p.amount,
        Money {
            amount_minor: 1000,
            currency: "ISK".into(),
            exact: None,
        }
    );
    assert_eq!(
        p.amount_captured,
        Some(Money {
            amount_minor: 1000,
            currency: "ISK".into(),
            exact: None,
        })
    );
    // 150 is ISK 1.50 at Stripe: rounded half to even, and kept exactly.
    let p = payment(charge_in("isk", 150).unwrap().remove(0));
    assert_eq!(
        (p.amount.amount_minor, p.amount.exact.as_deref()),
        (2, Some("1.50"))
    );
    // MGA: zero-decimal at Stripe, two decimals in ISO.
    let p = payment(charge_in("mga", 700).unwrap().remove(0));
    assert_eq!(
        p.amount,
        Money {
            amount_minor: 70000,
            currency: "MGA".into(),
            exact: None,
        }
    );
    // An unknown currency on the amount the record needs: kept unmapped, with the reason.
    let kept = charge_in("zzz", 1).unwrap();
    assert!(
        matches!(&kept[0].data, RecordData::Unmapped(u) if u.reason.as_deref().is_some_and(|r| r.contains("ZZZ"))),
        "{kept:?}"
    );
}

#[test]
fn unknown_and_malformed_events() {
    let r = one(
        "terminal.reader.action_succeeded",
        json!({"id": "tmr_1", "object": "terminal.reader"}),
    );
    assert_eq!(r.change, Change::Observed);
    assert_eq!(
        r.data,
        RecordData::Unmapped(Unmapped {
            external_id: Some("tmr_1".into()),
            object_type: Some("terminal.reader".into()),
            reason: None,
        })
    );
    // A mapped type with an unexpected object is kept as unmapped, not misread.
    assert!(matches!(
        one("charge.succeeded", json!({"id": "x", "object": "payout"})).data,
        RecordData::Unmapped(_)
    ));
    assert!(normalize::normalize_payload(b"{").is_err());
    assert!(normalize::normalize_payload(b"[]").is_err());
    // Signed events without a type or an object are kept as `unmapped`, not refused.
    let kept = normalize::normalize_payload(br#"{"id":"evt_1","object":"event"}"#).unwrap();
    assert_eq!(
        kept[0].data,
        RecordData::Unmapped(Unmapped {
            external_id: Some("evt_1".into()),
            object_type: Some("event".into()),
            reason: None,
        })
    );
    let no_object = normalize::normalize_payload(br#"{"type":"charge.succeeded"}"#).unwrap();
    assert!(matches!(no_object[0].data, RecordData::Unmapped(_)));
    // A charge without an amount is kept unmapped, with the reason.
    let no_amount = normalize::normalize_event(&wrap(
        "charge.succeeded",
        json!({"id": "ch_1", "object": "charge", "currency": "usd"}),
    ))
    .unwrap();
    assert_eq!(
        no_amount[0].data,
        RecordData::Unmapped(Unmapped {
            external_id: Some("ch_1".into()),
            object_type: Some("charge".into()),
            reason: Some("charge amount: missing".into()),
        })
    );
}
