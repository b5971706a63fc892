//! Canonical records to JSON, and the CloudEvents 1.0 envelope around them.
//!
//! Field names are the WIT names in `snake_case`; enumerations are `snake_case` with the
//! provider's value beside them in `<field>_raw`; money is `{amount_minor, currency}`, with
//! `exact` (the provider's decimal text) when the amount had more places than the
//! currency's exponent; times are RFC 3339 UTC. A record the driver could map only in part
//! carries `warnings: [{field, reason}]`; one with fields fetched by an extra call while
//! normalizing carries `enriched_from: [{source, fields}]`. Records a driver gets wrong (a
//! currency that is not ISO 4217 shaped, a time out of range) are refused here rather than
//! published.

use serde_json::{Map, Value, json};

use crate::wit::canonical::{
    Address, CanonicalRecord, Change, ChargebackStatus, Enrichment, FinancialStatus,
    FulfillmentStatus, InvoiceStatus, LineItem, OrderStatus, PaymentStatus, RecordData,
    RefundStatus, SubscriptionStatus, Warning,
};
use crate::wit::types::{Datetime, Money};

/// A record that cannot be published as it is.
#[derive(Debug, thiserror::Error)]
#[error("invalid canonical record: {0}")]
pub struct InvalidRecord(pub String);

/// RFC 3339 UTC with the precision the value has (`2024-01-02T03:04:05Z`, or with
/// fractional seconds when there are any).
pub fn rfc3339(t: &Datetime) -> Result<String, InvalidRecord> {
    let dt = chrono::DateTime::from_timestamp(t.seconds, t.nanoseconds)
        .ok_or_else(|| InvalidRecord(format!("time {}s is out of range", t.seconds)))?;
    Ok(dt.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
}

/// The event-type suffix and JSON `data` of one record.
pub struct Rendered {
    /// `payment.succeeded`, `customer.created`, `unmapped.<provider type>`.
    pub event_type: String,
    /// The record's `external_id`, the CloudEvent `subject`.
    pub subject: Option<String>,
    pub data: Value,
}

/// Roughly the size of `value` as JSON text, for output caps: a walk that counts strings
/// and keys (plus a few bytes per node) without serialising anything.
pub fn approx_json_size(value: &Value) -> usize {
    const NODE: usize = 8;
    match value {
        Value::String(s) => s.len() + NODE,
        Value::Array(items) => items.iter().map(approx_json_size).sum::<usize>() + NODE,
        Value::Object(map) => {
            map.iter()
                .map(|(k, v)| k.len() + approx_json_size(v))
                .sum::<usize>()
                + NODE
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => NODE,
    }
}

/// Render a record. `provider_type` names unmapped events.
pub fn render(record: &CanonicalRecord, provider_type: &str) -> Result<Rendered, InvalidRecord> {
    let change = match record.change {
        Change::Created => "created",
        Change::Updated => "updated",
        Change::Deleted => "deleted",
        Change::Observed => "observed",
    };
    let mut w = Writer::default();
    let (kind, status, subject) = match &record.data {
        RecordData::Order(o) => {
            w.s("external_id", &o.external_id)
                .os("number", &o.number)
                .os("customer_external_id", &o.customer_external_id);
            w.os("email", &o.email);
            let status = order_status(o.status);
            w.e("status", status, &o.status_raw);
            w.e(
                "financial_status",
                financial_status(o.financial_status),
                &o.financial_status_raw,
            );
            w.e(
                "fulfillment_status",
                fulfillment_status(o.fulfillment_status),
                &o.fulfillment_status_raw,
            );
            w.om("subtotal", &o.subtotal)?
                .om("total_tax", &o.total_tax)?
                .om("total_discounts", &o.total_discounts)?;
            w.om("total_shipping", &o.total_shipping)?
                .m("total", &o.total)?;
            w.items("line_items", &o.line_items)?;
            w.oa("billing_address", &o.billing_address)?
                .oa("shipping_address", &o.shipping_address)?;
            w.ot("created_at", &o.created_at)?
                .ot("updated_at", &o.updated_at)?
                .ot("cancelled_at", &o.cancelled_at)?;
            w.os("cancel_reason", &o.cancel_reason).meta(&o.metadata);
            // An order's event names its payment state: `order.paid`, `order.refunded`.
            let named = if o.status == OrderStatus::Cancelled {
                "cancelled"
            } else {
                financial_status(o.financial_status)
            };
            ("order", Some(named), Some(&o.external_id))
        }
        RecordData::Payment(p) => {
            w.s("external_id", &p.external_id)
                .os("order_external_id", &p.order_external_id);
            w.os("customer_external_id", &p.customer_external_id)
                .os("invoice_external_id", &p.invoice_external_id);
            w.m("amount", &p.amount)?
                .om("amount_captured", &p.amount_captured)?;
            w.om("amount_refunded", &p.amount_refunded)?
                .om("fee", &p.fee)?;
            let status = payment_status(p.status);
            w.e("status", status, &Some(p.status_raw.clone()));
            w.os("method", &p.method)
                .os("description", &p.description)
                .os("failure_reason", &p.failure_reason);
            w.ot("created_at", &p.created_at)?.meta(&p.metadata);
            ("payment", Some(status), Some(&p.external_id))
        }
        RecordData::Refund(r) => {
            w.s("external_id", &r.external_id)
                .os("payment_external_id", &r.payment_external_id);
            w.os("order_external_id", &r.order_external_id)
                .os("customer_external_id", &r.customer_external_id)
                .m("amount", &r.amount)?;
            let status = refund_status(r.status);
            w.e("status", status, &Some(r.status_raw.clone()));
            w.os("reason", &r.reason)
                .ot("created_at", &r.created_at)?
                .meta(&r.metadata);
            ("refund", Some(status), Some(&r.external_id))
        }
        RecordData::Chargeback(c) => {
            w.s("external_id", &c.external_id)
                .os("payment_external_id", &c.payment_external_id);
            w.m("amount", &c.amount)?;
            let status = chargeback_status(c.status);
            w.e("status", status, &Some(c.status_raw.clone()));
            w.os("reason", &c.reason)
                .ot("created_at", &c.created_at)?
                .meta(&c.metadata);
            ("chargeback", Some(status), Some(&c.external_id))
        }
        RecordData::Customer(c) => {
            w.s("external_id", &c.external_id)
                .os("email", &c.email)
                .os("name", &c.name);
            w.os("first_name", &c.first_name)
                .os("last_name", &c.last_name)
                .os("phone", &c.phone);
            w.oa("address", &c.address)?
                .ot("created_at", &c.created_at)?
                .ot("updated_at", &c.updated_at)?;
            w.meta(&c.metadata);
            ("customer", None, Some(&c.external_id))
        }
        RecordData::Subscription(s) => {
            w.s("external_id", &s.external_id)
                .os("customer_external_id", &s.customer_external_id);
            w.os("plan_external_id", &s.plan_external_id)
                .os("plan_name", &s.plan_name);
            let status = subscription_status(s.status);
            w.e("status", status, &Some(s.status_raw.clone()));
            w.om("amount", &s.amount)?.os("interval", &s.interval);
            w.v(
                "interval_count",
                s.interval_count.map_or(Value::Null, Value::from),
            );
            w.ot("current_period_start", &s.current_period_start)?
                .ot("current_period_end", &s.current_period_end)?;
            w.ot("next_charge_at", &s.next_charge_at)?
                .v("cancel_at_period_end", Value::Bool(s.cancel_at_period_end));
            w.ot("cancelled_at", &s.cancelled_at)?
                .ot("created_at", &s.created_at)?
                .meta(&s.metadata);
            ("subscription", Some(status), Some(&s.external_id))
        }
        RecordData::Invoice(i) => {
            w.s("external_id", &i.external_id)
                .os("number", &i.number)
                .os("customer_external_id", &i.customer_external_id);
            w.os("subscription_external_id", &i.subscription_external_id)
                .os("payment_external_id", &i.payment_external_id);
            let status = invoice_status(i.status);
            w.e("status", status, &Some(i.status_raw.clone()));
            w.m("total", &i.total)?
                .om("amount_due", &i.amount_due)?
                .om("amount_paid", &i.amount_paid)?;
            w.om("amount_remaining", &i.amount_remaining)?
                .items("line_items", &i.line_items)?;
            w.ot("created_at", &i.created_at)?
                .ot("due_at", &i.due_at)?
                .ot("paid_at", &i.paid_at)?
                .meta(&i.metadata);
            ("invoice", Some(status), Some(&i.external_id))
        }
        RecordData::Unmapped(u) => {
            w.os("external_id", &u.external_id)
                .os("object_type", &u.object_type);
            w.s("provider_event_type", provider_type);
            if let Some(reason) = &u.reason {
                w.s("reason", &bounded(reason, MAX_WARNING_TEXT));
            }
            w.warnings(&record.warnings)
                .enrichments(&record.enriched_from);
            return Ok(Rendered {
                event_type: format!("unmapped.{provider_type}"),
                subject: u.external_id.clone(),
                data: w.finish("unmapped", change),
            });
        }
    };
    w.warnings(&record.warnings)
        .enrichments(&record.enriched_from);
    Ok(Rendered {
        event_type: format!("{kind}.{}", status.unwrap_or(change)),
        subject: subject.cloned(),
        data: w.finish(kind, change),
    })
}

/// Most warnings one record keeps, and the longest text of each part; a driver that says
/// more is cut short (the output cap bounds the rest).
const MAX_WARNINGS: usize = 32;
const MAX_WARNING_TEXT: usize = 512;

/// `text` cut to at most `max` bytes at a character boundary (record data: no marker).
fn bounded(text: &str, max: usize) -> String {
    let mut out = text.to_string();
    crate::text::truncate(&mut out, max);
    out
}

/// Builds a record's JSON object field by field.
#[derive(Default)]
struct Writer(Map<String, Value>);

impl Writer {
    fn v(&mut self, k: &str, v: Value) -> &mut Self {
        self.0.insert(k.into(), v);
        self
    }
    fn s(&mut self, k: &str, v: &str) -> &mut Self {
        self.v(k, Value::String(v.into()))
    }
    fn os(&mut self, k: &str, v: &Option<String>) -> &mut Self {
        self.v(
            k,
            v.as_ref().map_or(Value::Null, |s| Value::String(s.clone())),
        )
    }
    fn e(&mut self, k: &str, ours: &str, raw: &Option<String>) -> &mut Self {
        self.s(k, ours).os(&format!("{k}_raw"), raw)
    }
    fn m(&mut self, k: &str, m: &Money) -> Result<&mut Self, InvalidRecord> {
        Ok(self.v(k, money(m)?))
    }
    fn om(&mut self, k: &str, m: &Option<Money>) -> Result<&mut Self, InvalidRecord> {
        Ok(self.v(k, m.as_ref().map(money).transpose()?.unwrap_or(Value::Null)))
    }
    fn ot(&mut self, k: &str, t: &Option<Datetime>) -> Result<&mut Self, InvalidRecord> {
        Ok(self.v(
            k,
            t.as_ref()
                .map(rfc3339)
                .transpose()?
                .map_or(Value::Null, Value::String),
        ))
    }
    fn oa(&mut self, k: &str, a: &Option<Address>) -> Result<&mut Self, InvalidRecord> {
        Ok(self.v(k, a.as_ref().map(address).unwrap_or(Value::Null)))
    }
    fn items(&mut self, k: &str, items: &[LineItem]) -> Result<&mut Self, InvalidRecord> {
        let items = items
            .iter()
            .map(|i| {
                let mut w = Writer::default();
                w.os("external_id", &i.external_id)
                    .os("product_external_id", &i.product_external_id);
                w.os("variant_external_id", &i.variant_external_id)
                    .os("sku", &i.sku)
                    .s("title", &i.title);
                w.v("quantity", i.quantity.into())
                    .om("unit_price", &i.unit_price)?
                    .om("total", &i.total)?;
                Ok(Value::Object(w.0))
            })
            .collect::<Result<Vec<_>, InvalidRecord>>()?;
        Ok(self.v(k, Value::Array(items)))
    }
    fn meta(&mut self, m: &[(String, String)]) -> &mut Self {
        let map: Map<String, Value> = m
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        self.v("metadata", Value::Object(map))
    }
    fn warnings(&mut self, warnings: &[Warning]) -> &mut Self {
        if warnings.is_empty() {
            return self;
        }
        let list = warnings
            .iter()
            .take(MAX_WARNINGS)
            .map(|w| {
                json!({
                    "field": bounded(&w.field, MAX_WARNING_TEXT),
                    "reason": bounded(&w.reason, MAX_WARNING_TEXT),
                })
            })
            .collect();
        self.v("warnings", Value::Array(list))
    }
    /// `enriched_from: [{source, fields}]`, only when a field came from an extra call.
    fn enrichments(&mut self, enrichments: &[Enrichment]) -> &mut Self {
        if enrichments.is_empty() {
            return self;
        }
        let list = enrichments
            .iter()
            .take(MAX_WARNINGS)
            .map(|e| {
                let fields: Vec<String> = e
                    .fields
                    .iter()
                    .take(MAX_WARNINGS)
                    .map(|f| bounded(f, MAX_WARNING_TEXT))
                    .collect();
                json!({ "source": bounded(&e.source, MAX_WARNING_TEXT), "fields": fields })
            })
            .collect();
        self.v("enriched_from", Value::Array(list))
    }
    fn finish(self, kind: &str, change: &str) -> Value {
        let mut out = Map::new();
        out.insert("kind".into(), kind.into());
        out.insert("change".into(), change.into());
        out.extend(self.0);
        Value::Object(out)
    }
}

fn money(m: &Money) -> Result<Value, InvalidRecord> {
    if m.currency.len() != 3 || !m.currency.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(InvalidRecord(format!(
            "currency {:?} is not an upper-case ISO 4217 code",
            m.currency
        )));
    }
    match &m.exact {
        None => Ok(json!({"amount_minor": m.amount_minor, "currency": m.currency})),
        Some(exact) if is_decimal_text(exact) => Ok(json!({
            "amount_minor": m.amount_minor, "currency": m.currency, "exact": exact,
        })),
        Some(exact) => Err(InvalidRecord(format!(
            "exact amount {:?} is not a decimal number",
            bounded(exact, 64)
        ))),
    }
}

/// A plain decimal number of at most 64 characters (`-5625.21`).
fn is_decimal_text(text: &str) -> bool {
    let digits = text.strip_prefix('-').unwrap_or(text);
    let (int, frac) = match digits.split_once('.') {
        Some((_, "")) => return false,
        Some(parts) => parts,
        None => (digits, ""),
    };
    text.len() <= 64
        && !int.is_empty()
        && int.bytes().all(|b| b.is_ascii_digit())
        && frac.bytes().all(|b| b.is_ascii_digit())
}

fn address(a: &Address) -> Value {
    let mut w = Writer::default();
    w.os("name", &a.name)
        .os("company", &a.company)
        .os("line1", &a.line1)
        .os("line2", &a.line2);
    w.os("city", &a.city)
        .os("region", &a.region)
        .os("postal_code", &a.postal_code);
    w.os("country_code", &a.country_code).os("phone", &a.phone);
    Value::Object(w.0)
}

fn order_status(s: OrderStatus) -> &'static str {
    match s {
        OrderStatus::Open => "open",
        OrderStatus::Completed => "completed",
        OrderStatus::Cancelled => "cancelled",
        OrderStatus::Unknown => "unknown",
    }
}

fn financial_status(s: FinancialStatus) -> &'static str {
    use FinancialStatus as F;
    match s {
        F::Pending => "pending",
        F::Authorized => "authorized",
        F::Paid => "paid",
        F::PartiallyPaid => "partially_paid",
        F::PartiallyRefunded => "partially_refunded",
        F::Refunded => "refunded",
        F::Voided => "voided",
        F::Expired => "expired",
        F::Unknown => "unknown",
    }
}

fn fulfillment_status(s: FulfillmentStatus) -> &'static str {
    use FulfillmentStatus as F;
    match s {
        F::Unfulfilled => "unfulfilled",
        F::Partial => "partial",
        F::Fulfilled => "fulfilled",
        F::Restocked => "restocked",
        F::Unknown => "unknown",
    }
}

fn payment_status(s: PaymentStatus) -> &'static str {
    use PaymentStatus as P;
    match s {
        P::Pending => "pending",
        P::RequiresAction => "requires_action",
        P::Authorized => "authorized",
        P::Succeeded => "succeeded",
        P::Failed => "failed",
        P::Cancelled => "cancelled",
        P::Refunded => "refunded",
        P::PartiallyRefunded => "partially_refunded",
        P::Disputed => "disputed",
        P::Expired => "expired",
        P::Unknown => "unknown",
    }
}

fn refund_status(s: RefundStatus) -> &'static str {
    use RefundStatus as R;
    match s {
        R::Pending => "pending",
        R::Succeeded => "succeeded",
        R::Failed => "failed",
        R::Cancelled => "cancelled",
        R::Unknown => "unknown",
    }
}

fn chargeback_status(s: ChargebackStatus) -> &'static str {
    use ChargebackStatus as C;
    match s {
        C::NeedsResponse => "needs_response",
        C::UnderReview => "under_review",
        C::Won => "won",
        C::Lost => "lost",
        C::Warning => "warning",
        C::Unknown => "unknown",
    }
}

fn subscription_status(s: SubscriptionStatus) -> &'static str {
    use SubscriptionStatus as S;
    match s {
        S::Trialing => "trialing",
        S::Active => "active",
        S::PastDue => "past_due",
        S::Unpaid => "unpaid",
        S::Cancelled => "cancelled",
        S::Incomplete => "incomplete",
        S::Expired => "expired",
        S::Paused => "paused",
        S::Unknown => "unknown",
    }
}

fn invoice_status(s: InvoiceStatus) -> &'static str {
    use InvoiceStatus as I;
    match s {
        I::Draft => "draft",
        I::Open => "open",
        I::Paid => "paid",
        I::Uncollectible => "uncollectible",
        I::Void => "void",
        I::Unknown => "unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wit::canonical::{Payment, Unmapped};

    fn payment(currency: &str) -> CanonicalRecord {
        CanonicalRecord {
            change: Change::Updated,
            data: RecordData::Payment(Payment {
                external_id: "ch_1".into(),
                order_external_id: None,
                customer_external_id: Some("cus_1".into()),
                invoice_external_id: None,
                amount: Money {
                    amount_minor: 5000,
                    currency: currency.into(),
                    exact: None,
                },
                amount_captured: None,
                amount_refunded: None,
                fee: None,
                status: PaymentStatus::Succeeded,
                status_raw: "succeeded".into(),
                method: Some("card".into()),
                description: None,
                failure_reason: None,
                created_at: Some(Datetime {
                    seconds: 1_700_000_000,
                    nanoseconds: 0,
                }),
                metadata: vec![("k".into(), "v".into())],
            }),
            warnings: vec![],
            enriched_from: vec![],
        }
    }

    #[test]
    fn exact_amounts_and_warnings_are_rendered() {
        let mut record = payment("CLP");
        if let RecordData::Payment(p) = &mut record.data {
            p.amount = Money {
                amount_minor: 5625,
                currency: "CLP".into(),
                exact: Some("5625.21".into()),
            };
        }
        record.warnings = vec![Warning {
            field: "fee".into(),
            reason: "unknown currency \"XBT\"".into(),
        }];
        let r = render(&record, "PURCHASE_APPROVED").unwrap();
        assert_eq!(
            r.data["amount"],
            json!({"amount_minor": 5625, "currency": "CLP", "exact": "5625.21"})
        );
        assert_eq!(
            r.data["warnings"],
            json!([{"field": "fee", "reason": "unknown currency \"XBT\""}])
        );
        // No `warnings` key when there are none, and `exact` must be a decimal number.
        let plain = render(&payment("USD"), "charge.succeeded").unwrap();
        assert!(plain.data.get("warnings").is_none());
        for bad in ["5,625.21", "1e3", "", "-", "12.", "x"] {
            if let RecordData::Payment(p) = &mut record.data {
                p.amount.exact = Some(bad.into());
            }
            assert!(render(&record, "PURCHASE_APPROVED").is_err(), "{bad:?}");
        }
    }

    #[test]
    fn payment_renders_with_type_money_time_and_raw_status() {
        let r = render(&payment("JPY"), "charge.succeeded").unwrap();
        assert_eq!(r.event_type, "payment.succeeded");
        assert_eq!(r.subject.as_deref(), Some("ch_1"));
        assert_eq!(r.data["kind"], "payment");
        assert_eq!(
            r.data["amount"],
            json!({"amount_minor": 5000, "currency": "JPY"})
        );
        assert_eq!(r.data["status_raw"], "succeeded");
        assert_eq!(r.data["created_at"], "2023-11-14T22:13:20Z");
        assert_eq!(r.data["metadata"], json!({"k": "v"}));
    }

    #[test]
    fn lower_case_currency_is_refused() {
        assert!(render(&payment("jpy"), "charge.succeeded").is_err());
        assert!(render(&payment("USDT"), "charge.succeeded").is_err());
    }

    #[test]
    fn unmapped_keeps_provider_type() {
        let record = CanonicalRecord {
            change: Change::Observed,
            data: RecordData::Unmapped(Unmapped {
                external_id: Some("tmr_1".into()),
                object_type: Some("terminal.reader".into()),
                reason: None,
            }),
            warnings: vec![],
            enriched_from: vec![],
        };
        let r = render(&record, "terminal.reader.action_succeeded").unwrap();
        assert_eq!(r.event_type, "unmapped.terminal.reader.action_succeeded");
        assert_eq!(
            r.data["provider_event_type"],
            "terminal.reader.action_succeeded"
        );
    }

    #[test]
    fn approx_size_tracks_serialized_size() {
        let data = render(&payment("USD"), "charge.succeeded").unwrap().data;
        let exact = data.to_string().len();
        let approx = approx_json_size(&data);
        assert!(
            approx >= exact / 2 && approx <= exact * 2,
            "approx {approx} vs exact {exact}"
        );
    }

    #[test]
    fn fractional_seconds_are_kept() {
        assert_eq!(
            rfc3339(&Datetime {
                seconds: 0,
                nanoseconds: 500_000_000
            })
            .unwrap(),
            "1970-01-01T00:00:00.500Z"
        );
    }
}
