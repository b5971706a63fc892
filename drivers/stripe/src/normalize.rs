//! Stripe event JSON → canonical records.
//!
//! Dispatch is on the event `type` and checked against `data.object.object`; anything
//! without a mapping becomes an `unmapped` record (nothing is dropped). Amounts are in
//! Stripe's smallest unit per Stripe's own currency rules and are rescaled exactly to the ISO
//! 4217 exponent ([`stripe_exponent`]). Ids are read as strings, times from Unix seconds.
//!
//! `change` comes from the event type's last segment: `created` / `updated` / `deleted`, and
//! `observed` for every other transition (`charge.succeeded`, `invoice.paid`, …) and for
//! unmapped events.
//!
//! **Nothing is lost for a field.** An object missing what its record cannot do without (an
//! id, an amount) is kept as `unmapped` with the reason; an optional field that cannot be
//! read (an unknown currency on a fee) is left out with a warning on the record.
//!
//! **API versions.** Every event says which version rendered it (`api_version`). The driver
//! reads the shapes of every version from 2017 (`charges` expanded on payment intents) up to
//! [`NEWEST_API_VERSION`]: `latest_charge` (2022-11-15), subscription periods on items and
//! invoice `parent` / line `pricing` (basil, 2025-03-31). A newer version is mapped as the
//! newest known one, with a warning; so is an event without `api_version` (before 2017).

use std::fmt;

use serde_json::Value;
use sluice_sdk::canonical::{
    Address, CanonicalRecord, Change, Chargeback, ChargebackStatus, Customer, FinancialStatus,
    FulfillmentStatus, Invoice, InvoiceStatus, LineItem, Order, OrderStatus, Payment,
    PaymentStatus, RecordData, Refund, RefundStatus, Subscription, SubscriptionStatus,
};
use sluice_sdk::json::{
    at, bool_field, expandable_id, i64_field, id_field, str_field, string_at, string_field,
    string_pairs,
};
use sluice_sdk::money::{self, MoneyError};
use sluice_sdk::record::{Warnings, enriched, record, unmapped, unmapped_because};
use sluice_sdk::time::datetime_from_unix;
use sluice_sdk::{Datetime, DriverError, Money};

use crate::enrich::{Fetch, FetchError, NoFetch, safe_id, safe_path};

/// Why an event could not be normalized.
#[derive(Debug, Clone, PartialEq)]
pub enum NormalizeError {
    /// The payload is not JSON, or not a Stripe event.
    InvalidEvent(String),
    /// A mapped object lacks a required field or has an unusable one.
    InvalidField {
        /// The field, e.g. `amount`.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// What the event lacks could not be fetched (the provider down, an unknown object):
    /// the host retries the normalization later.
    Fetch(DriverError),
}

impl fmt::Display for NormalizeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidEvent(why) => write!(f, "invalid Stripe event: {why}"),
            Self::InvalidField { field, reason } => write!(f, "invalid field {field}: {reason}"),
            Self::Fetch(e) => write!(f, "enrichment failed: {e:?}"),
        }
    }
}

impl std::error::Error for NormalizeError {}

type Result<T> = std::result::Result<T, NormalizeError>;

fn missing(field: &'static str) -> NormalizeError {
    NormalizeError::InvalidField {
        field,
        reason: "missing".into(),
    }
}

/// Stripe's exponent for a currency: its zero-decimal and three-decimal lists, two decimals
/// for everything else (including `ISK`, which Stripe treats as two-decimal while ISO 4217
/// gives it none, and `HUF`/`TWD`). `code` is upper case.
pub fn stripe_exponent(code: &str) -> u32 {
    const ZERO: &[&str] = &[
        "BIF", "CLP", "DJF", "GNF", "JPY", "KMF", "KRW", "MGA", "PYG", "RWF", "UGX", "VND", "VUV",
        "XAF", "XOF", "XPF",
    ];
    const THREE: &[&str] = &["BHD", "JOD", "KWD", "OMR", "TND"];
    if ZERO.contains(&code) {
        0
    } else if THREE.contains(&code) {
        3
    } else {
        2
    }
}

/// The newest Stripe API version whose shapes the driver knows.
pub const NEWEST_API_VERSION: &str = "2025-08-27.basil";

/// A warning for an event rendered by a version the driver does not know, if it is one.
fn api_version_warning(event: &Value) -> Option<String> {
    match str_field(event, "api_version") {
        None => Some(format!(
            "the event has no api_version (rendered before 2017); mapped as {NEWEST_API_VERSION}"
        )),
        // Versions are dated: `2025-08-27.basil` sorts by its date.
        Some(v)
            if v.get(..10)
                .is_none_or(|date| date > &NEWEST_API_VERSION[..10]) =>
        {
            Some(format!(
                "API version {v} is newer than the driver knows; mapped as {NEWEST_API_VERSION}"
            ))
        }
        Some(_) => None,
    }
}

/// Canonical money from a Stripe amount and currency in ISO minor units (rounded half to
/// even, with the exact amount kept, where Stripe's exponent has more places than ISO's).
pub fn stripe_money(amount: i64, currency: &str) -> std::result::Result<Money, MoneyError> {
    let code = money::currency_code(currency)?;
    money::money_from_provider_minor(amount, stripe_exponent(&code), &code)
}

/// Normalize one Stripe event given as raw JSON bytes, fetching what it lacks.
pub fn normalize_payload_with(
    payload: &[u8],
    fetch: &mut dyn Fetch,
) -> Result<Vec<CanonicalRecord>> {
    let event: Value = serde_json::from_slice(payload)
        .map_err(|e| NormalizeError::InvalidEvent(format!("not JSON: {e}")))?;
    normalize_event_with(&event, fetch)
}

/// [`normalize_payload_with`] without enrichment.
pub fn normalize_payload(payload: &[u8]) -> Result<Vec<CanonicalRecord>> {
    normalize_payload_with(payload, &mut NoFetch)
}

/// [`normalize_event_with`] without enrichment.
pub fn normalize_event(event: &Value) -> Result<Vec<CanonicalRecord>> {
    normalize_event_with(event, &mut NoFetch)
}

/// Normalize one Stripe event (`{"type": …, "data": {"object": …}}`), fetching through
/// `fetch` what it lacks. An event without a type or an object to map is kept as
/// `unmapped` (it was signed by Stripe; dropping it would lose it).
pub fn normalize_event_with(event: &Value, fetch: &mut dyn Fetch) -> Result<Vec<CanonicalRecord>> {
    if !event.is_object() {
        return Err(NormalizeError::InvalidEvent("not a JSON object".into()));
    }
    let object = at(event, &["data", "object"]).filter(|o| o.is_object());
    let (Some(event_type), Some(object)) = (str_field(event, "type"), object) else {
        return thin_event(event, fetch);
    };
    let object_type = str_field(object, "object").unwrap_or_default();
    let change = change_of(event_type);
    let mut w = Warnings::new();
    if let Some(warning) = api_version_warning(event) {
        w.push("api_version", warning);
    }
    let mapped = map_object(event_type, object_type, object, change, &mut w, fetch);
    finish(mapped, object, object_type, w)
}

/// The records of a mapped object, or `unmapped` with the reason when the object lacks
/// what its record needs; the warnings on each.
fn finish(
    mapped: Result<Vec<CanonicalRecord>>,
    object: &Value,
    object_type: &str,
    w: Warnings,
) -> Result<Vec<CanonicalRecord>> {
    let mut records = match mapped {
        Ok(records) => records,
        // A mapped kind whose object lacks what the record needs: kept, with the reason.
        Err(NormalizeError::InvalidField { field, reason }) => vec![unmapped_because(
            id_field(object, "id"),
            object_type,
            format!("{object_type} {field}: {reason}"),
        )],
        Err(e) => return Err(e),
    };
    w.attach(&mut records);
    Ok(records)
}

/// A thin event (event destinations: `v2.core.event`) names its object without carrying
/// it. When it is a kind the driver maps (`v1.charge.succeeded`, or a v1 type without the
/// prefix), the object is fetched from `related_object.url` and mapped as the event's
/// snapshot would be, every field marked as fetched; other kinds stay `unmapped` without a
/// call. An installation that cannot fetch fails the event (`invalid-settings`), so it is
/// kept and can be replayed once the operator adds an `api_key`.
fn thin_event(event: &Value, fetch: &mut dyn Fetch) -> Result<Vec<CanonicalRecord>> {
    let Some(related) = event.get("related_object").filter(|o| o.is_object()) else {
        return Ok(vec![unmapped(
            id_field(event, "id"),
            string_field(event, "object").unwrap_or_else(|| "event".into()),
        )]);
    };
    let related_type = str_field(related, "type").unwrap_or("thin_event");
    let keep = || Ok(vec![unmapped(id_field(related, "id"), related_type)]);
    let event_type = str_field(event, "type").unwrap_or_default();
    let v1_type = event_type.strip_prefix("v1.").unwrap_or(event_type);
    if kind_of(v1_type) == Kind::Unmapped {
        return keep();
    }
    let Some(path) = str_field(related, "url").filter(|p| safe_path(p)) else {
        return Ok(vec![unmapped_because(
            id_field(related, "id"),
            related_type,
            "thin event without a Stripe API path to its object (related_object.url)",
        )]);
    };
    let fetched = match fetch.get(path) {
        Ok(fetched) => fetched,
        Err(FetchError::Unavailable(why)) => {
            return Err(NormalizeError::Fetch(DriverError::InvalidSettings(
                format!("thin event {event_type}: its object must be fetched, and {why}"),
            )));
        }
        Err(FetchError::Failed(e)) => return Err(NormalizeError::Fetch(e)),
    };
    let object = &fetched.body;
    let object_type = str_field(object, "object").unwrap_or_default();
    let mut w = Warnings::new();
    let mapped = map_object(
        v1_type,
        object_type,
        object,
        change_of(v1_type),
        &mut w,
        fetch,
    );
    let mut records = finish(mapped, object, object_type, w)?;
    for r in &mut records {
        enriched(r, &fetched.source, &["*"]);
    }
    Ok(records)
}

/// The records of one event's object.
fn map_object(
    event_type: &str,
    object_type: &str,
    object: &Value,
    change: Change,
    w: &mut Warnings,
    fetch: &mut dyn Fetch,
) -> Result<Vec<CanonicalRecord>> {
    let one = |data| Ok(vec![record(change, data)]);
    match (kind_of(event_type), object_type) {
        (Kind::Charge, "charge") => one(RecordData::Payment(charge(object, w)?)),
        (Kind::ChargeRefunded, "charge") => charge_refunded(object, change, w, fetch),
        (Kind::Refund, "refund") => refund_completed(object, change, w, fetch),
        (Kind::PaymentIntent, "payment_intent") => {
            one(RecordData::Payment(payment_intent(object, event_type, w)?))
        }
        (Kind::Customer, "customer") => one(RecordData::Customer(customer(object)?)),
        (Kind::Subscription, "subscription") => {
            one(RecordData::Subscription(subscription(object, w)?))
        }
        (Kind::Invoice, "invoice") => one(RecordData::Invoice(invoice(object, w)?)),
        (Kind::Dispute, "dispute") => one(RecordData::Chargeback(dispute(object, w)?)),
        (Kind::CheckoutSession, "checkout.session") => {
            let order = checkout_session(object, w)?;
            let mut records = Vec::new();
            if let Some(payment) = checkout_payment(object, &order) {
                records.push(record(Change::Observed, RecordData::Payment(payment)));
            }
            records.insert(0, record(change, RecordData::Order(order)));
            Ok(records)
        }
        _ => Ok(vec![unmapped(
            id_field(object, "id"),
            if object_type.is_empty() {
                "object"
            } else {
                object_type
            },
        )]),
    }
}

/// The mapping an event type selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Charge,
    ChargeRefunded,
    Refund,
    PaymentIntent,
    Customer,
    Subscription,
    Invoice,
    Dispute,
    CheckoutSession,
    Unmapped,
}

fn kind_of(event_type: &str) -> Kind {
    if event_type.starts_with("charge.dispute.") {
        Kind::Dispute
    } else if event_type == "charge.refunded" {
        Kind::ChargeRefunded
    } else if event_type.starts_with("charge.refund.") {
        Kind::Refund
    } else if event_type.starts_with("charge.") {
        Kind::Charge
    } else if event_type.starts_with("refund.") {
        Kind::Refund
    } else if event_type.starts_with("payment_intent.") {
        Kind::PaymentIntent
    } else if event_type.starts_with("customer.subscription.") {
        Kind::Subscription
    } else if matches!(
        event_type,
        "customer.created" | "customer.updated" | "customer.deleted"
    ) {
        Kind::Customer
    } else if event_type.starts_with("invoice.") {
        Kind::Invoice
    } else if event_type.starts_with("checkout.session.") {
        Kind::CheckoutSession
    } else {
        Kind::Unmapped
    }
}

fn change_of(event_type: &str) -> Change {
    match event_type.rsplit('.').next() {
        Some("created") => Change::Created,
        Some("updated") => Change::Updated,
        Some("deleted") => Change::Deleted,
        _ => Change::Observed,
    }
}

// ---- field helpers -------------------------------------------------------------------------

fn required_id(obj: &Value) -> Result<String> {
    id_field(obj, "id").ok_or_else(|| missing("id"))
}

fn time(obj: &Value, key: &str) -> Option<Datetime> {
    i64_field(obj, key).map(datetime_from_unix)
}

fn metadata(obj: &Value) -> Vec<(String, String)> {
    string_pairs(obj.get("metadata"))
}

/// `amount_key` with the object's `currency` (or `currency`); `None` when absent, and
/// `None` with a warning when present but unusable.
fn opt_money(
    obj: &Value,
    amount_key: &'static str,
    currency: Option<&str>,
    w: &mut Warnings,
) -> Option<Money> {
    w.keep(amount_key, money_at(obj, amount_key, currency))
        .flatten()
}

/// `amount_key` with the object's `currency` (or `currency`): `Ok(None)` when absent.
fn money_at(
    obj: &Value,
    amount_key: &'static str,
    currency: Option<&str>,
) -> Result<Option<Money>> {
    let Some(amount) = obj.get(amount_key).filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    let amount = amount.as_i64().ok_or(NormalizeError::InvalidField {
        field: amount_key,
        reason: "not an integer".into(),
    })?;
    let currency = str_field(obj, "currency")
        .or(currency)
        .ok_or_else(|| missing("currency"))?;
    stripe_money(amount, currency)
        .map(Some)
        .map_err(|e| NormalizeError::InvalidField {
            field: amount_key,
            reason: e.to_string(),
        })
}

fn req_money(obj: &Value, amount_key: &'static str) -> Result<Money> {
    money_at(obj, amount_key, None)?.ok_or_else(|| missing(amount_key))
}

fn address(v: Option<&Value>) -> Option<Address> {
    let a = v.filter(|a| a.is_object())?;
    let address = Address {
        name: None,
        company: None,
        line1: string_field(a, "line1"),
        line2: string_field(a, "line2"),
        city: string_field(a, "city"),
        region: string_field(a, "state"),
        postal_code: string_field(a, "postal_code"),
        country_code: string_field(a, "country").map(|c| c.to_ascii_uppercase()),
        phone: None,
    };
    let empty = Address {
        name: None,
        company: None,
        line1: None,
        line2: None,
        city: None,
        region: None,
        postal_code: None,
        country_code: None,
        phone: None,
    };
    (address != empty).then_some(address)
}

// ---- objects -------------------------------------------------------------------------------

/// A `charge` object → payment.
pub fn charge(obj: &Value, w: &mut Warnings) -> Result<Payment> {
    let status_raw = str_field(obj, "status").unwrap_or_default();
    let amount_refunded = i64_field(obj, "amount_refunded").unwrap_or(0);
    let status = if bool_field(obj, "disputed") == Some(true) {
        PaymentStatus::Disputed
    } else if bool_field(obj, "refunded") == Some(true) {
        PaymentStatus::Refunded
    } else if amount_refunded > 0 {
        PaymentStatus::PartiallyRefunded
    } else {
        match status_raw {
            // A succeeded charge that is not captured yet is an authorization.
            "succeeded" if bool_field(obj, "captured") == Some(false) => PaymentStatus::Authorized,
            "succeeded" => PaymentStatus::Succeeded,
            "pending" => PaymentStatus::Pending,
            "failed" => PaymentStatus::Failed,
            _ => PaymentStatus::Unknown,
        }
    };
    let fee = match obj.get("balance_transaction") {
        Some(bt @ Value::Object(_)) => opt_money(bt, "fee", None, w),
        _ => None,
    };
    Ok(Payment {
        external_id: required_id(obj)?,
        order_external_id: None,
        customer_external_id: expandable_id(obj, "customer"),
        invoice_external_id: expandable_id(obj, "invoice"),
        amount: req_money(obj, "amount")?,
        amount_captured: opt_money(obj, "amount_captured", None, w),
        amount_refunded: opt_money(obj, "amount_refunded", None, w),
        fee,
        status,
        status_raw: status_raw.to_string(),
        method: string_at(obj, &["payment_method_details", "type"]),
        description: string_field(obj, "description"),
        failure_reason: string_field(obj, "failure_message")
            .or_else(|| string_field(obj, "failure_code")),
        created_at: time(obj, "created"),
        metadata: metadata(obj),
    })
}

/// `charge.refunded`: the charge's payment and a refund record per refund. From API version
/// 2022-11-15 a charge no longer embeds its `refunds`; then they are fetched with the
/// charge (`GET /v1/charges/{id}?expand[]=refunds`), or, when the installation cannot
/// fetch, the payment carries a warning that its refunds are not in the payload.
fn charge_refunded(
    object: &Value,
    change: Change,
    w: &mut Warnings,
    fetch: &mut dyn Fetch,
) -> Result<Vec<CanonicalRecord>> {
    let payment = charge(object, w)?;
    let mut records = vec![record(change, RecordData::Payment(payment.clone()))];
    let embedded = at(object, &["refunds", "data"]).and_then(Value::as_array);
    let fetched = match embedded {
        Some(_) => None,
        None if !safe_id(&payment.external_id) => {
            w.push(
                "refunds",
                "not in the payload, and the charge id cannot be fetched",
            );
            None
        }
        None => {
            let path = format!("/v1/charges/{}?expand[]=refunds", payment.external_id);
            match fetch.get(&path) {
                Ok(fetched) => Some(fetched),
                Err(FetchError::Unavailable(why)) => {
                    w.push("refunds", format!("not in the payload, and {why}"));
                    None
                }
                Err(FetchError::Failed(e)) => return Err(NormalizeError::Fetch(e)),
            }
        }
    };
    let refunds = match &fetched {
        Some(f) => f.body.get("refunds"),
        None => object.get("refunds"),
    };
    if refunds.and_then(|r| bool_field(r, "has_more")) == Some(true) {
        w.push(
            "refunds",
            "only the first page of the charge's refunds is mapped",
        );
    }
    let list = refunds
        .and_then(|r| r.get("data"))
        .and_then(Value::as_array);
    for r in list.into_iter().flatten() {
        let mut refund = refund(r, w)?;
        refund
            .payment_external_id
            .get_or_insert_with(|| payment.external_id.clone());
        refund.customer_external_id = payment.customer_external_id.clone();
        let mut rec = record(change, RecordData::Refund(refund));
        if let Some(f) = &fetched {
            enriched(&mut rec, &f.source, &["*"]);
        }
        records.push(rec);
    }
    Ok(records)
}

/// A `refund.*` / `charge.refund.updated` refund. One without its `currency` (which
/// Stripe's refund object normally carries) is completed from its charge
/// (`GET /v1/charges/{id}`): the currency, and the charge's customer, rather than kept
/// unmapped.
fn refund_completed(
    object: &Value,
    change: Change,
    w: &mut Warnings,
    fetch: &mut dyn Fetch,
) -> Result<Vec<CanonicalRecord>> {
    let charge_id = expandable_id(object, "charge").filter(|id| safe_id(id));
    let (Some(charge_id), None) = (charge_id, str_field(object, "currency")) else {
        return Ok(vec![record(change, RecordData::Refund(refund(object, w)?))]);
    };
    let fetched = match fetch.get(&format!("/v1/charges/{charge_id}")) {
        Ok(fetched) => fetched,
        // Without the currency there is no amount: kept unmapped with the reason.
        Err(FetchError::Unavailable(why)) => {
            return Err(NormalizeError::InvalidField {
                field: "currency",
                reason: format!("missing, and {why}"),
            });
        }
        Err(FetchError::Failed(e)) => return Err(NormalizeError::Fetch(e)),
    };
    let charge = &fetched.body;
    let currency = str_field(charge, "currency").ok_or_else(|| NormalizeError::InvalidField {
        field: "currency",
        reason: format!("missing from the refund and from {}", fetched.source),
    })?;
    let mut completed = object.clone();
    completed["currency"] = Value::String(currency.to_string());
    let mut fields = vec!["amount.currency"];
    let mut refund = refund(&completed, w)?;
    if let Some(customer) = expandable_id(charge, "customer") {
        refund.customer_external_id = Some(customer);
        fields.push("customer_external_id");
    }
    let mut rec = record(change, RecordData::Refund(refund));
    enriched(&mut rec, &fetched.source, &fields);
    Ok(vec![rec])
}

/// A `refund` object → refund.
pub fn refund(obj: &Value, _w: &mut Warnings) -> Result<Refund> {
    let status_raw = str_field(obj, "status").unwrap_or_default();
    let status = match status_raw {
        "pending" | "requires_action" => RefundStatus::Pending,
        "succeeded" => RefundStatus::Succeeded,
        "failed" => RefundStatus::Failed,
        "canceled" => RefundStatus::Cancelled,
        _ => RefundStatus::Unknown,
    };
    Ok(Refund {
        external_id: required_id(obj)?,
        payment_external_id: expandable_id(obj, "charge")
            .or_else(|| expandable_id(obj, "payment_intent")),
        order_external_id: None,
        customer_external_id: None,
        amount: req_money(obj, "amount")?,
        status,
        status_raw: status_raw.to_string(),
        reason: string_field(obj, "reason"),
        created_at: time(obj, "created"),
        metadata: metadata(obj),
    })
}

/// A `payment_intent` object → payment. `payment_intent.payment_failed` maps to `failed`
/// (the intent itself goes back to `requires_payment_method`).
pub fn payment_intent(obj: &Value, event_type: &str, w: &mut Warnings) -> Result<Payment> {
    let status_raw = str_field(obj, "status").unwrap_or_default();
    let status = if event_type == "payment_intent.payment_failed" {
        PaymentStatus::Failed
    } else {
        match status_raw {
            "requires_payment_method" | "requires_confirmation" | "processing" => {
                PaymentStatus::Pending
            }
            "requires_action" => PaymentStatus::RequiresAction,
            "requires_capture" => PaymentStatus::Authorized,
            "succeeded" => PaymentStatus::Succeeded,
            "canceled" => PaymentStatus::Cancelled,
            _ => PaymentStatus::Unknown,
        }
    };
    let method = match obj.get("payment_method") {
        Some(pm @ Value::Object(_)) => string_field(pm, "type"),
        _ => match obj.get("payment_method_types").and_then(Value::as_array) {
            Some(types) if types.len() == 1 => types[0].as_str().map(str::to_owned),
            _ => None,
        },
    };
    let error = obj.get("last_payment_error").filter(|e| e.is_object());
    // Its charges: expanded in `charges.data` before 2022-11-15, `latest_charge` when
    // expanded after. They add what the intent itself does not say: the method actually
    // used, the refunded amount and the fee.
    let charges: Vec<&Value> = match at(obj, &["charges", "data"]).and_then(Value::as_array) {
        Some(list) => list.iter().filter(|c| c.is_object()).collect(),
        None => obj
            .get("latest_charge")
            .filter(|c| c.is_object())
            .into_iter()
            .collect(),
    };
    let method = method.or_else(|| {
        charges
            .last()
            .and_then(|c| string_at(c, &["payment_method_details", "type"]))
    });
    let refunded: Option<i64> = (!charges.is_empty()).then(|| {
        charges
            .iter()
            .filter_map(|c| i64_field(c, "amount_refunded"))
            .sum()
    });
    let amount = req_money(obj, "amount")?;
    let amount_refunded = refunded.and_then(|r| {
        let currency = str_field(obj, "currency").unwrap_or(&amount.currency);
        w.keep("amount_refunded", stripe_money(r, currency))
    });
    let fee = charges
        .last()
        .and_then(|c| match c.get("balance_transaction") {
            Some(bt @ Value::Object(_)) => opt_money(bt, "fee", None, w),
            _ => None,
        });
    Ok(Payment {
        external_id: required_id(obj)?,
        order_external_id: None,
        customer_external_id: expandable_id(obj, "customer"),
        invoice_external_id: expandable_id(obj, "invoice"),
        amount,
        amount_captured: opt_money(obj, "amount_received", None, w),
        amount_refunded,
        fee,
        status,
        status_raw: status_raw.to_string(),
        method,
        description: string_field(obj, "description"),
        failure_reason: error
            .and_then(|e| string_field(e, "message").or_else(|| string_field(e, "code"))),
        created_at: time(obj, "created"),
        metadata: metadata(obj),
    })
}

/// A `customer` object → customer.
pub fn customer(obj: &Value) -> Result<Customer> {
    Ok(Customer {
        external_id: required_id(obj)?,
        email: string_field(obj, "email"),
        name: string_field(obj, "name"),
        first_name: None,
        last_name: None,
        phone: string_field(obj, "phone"),
        address: address(obj.get("address")),
        created_at: time(obj, "created"),
        updated_at: None,
        metadata: metadata(obj),
    })
}

/// A `subscription` object → subscription. Price, interval and current period come from the
/// first item (`items.data[0]`: its `price`, else its `plan`); the period falls back to the
/// item for API versions that moved it there.
pub fn subscription(obj: &Value, w: &mut Warnings) -> Result<Subscription> {
    let status_raw = str_field(obj, "status").unwrap_or_default();
    let status = match status_raw {
        "trialing" => SubscriptionStatus::Trialing,
        "active" => SubscriptionStatus::Active,
        "past_due" => SubscriptionStatus::PastDue,
        "unpaid" => SubscriptionStatus::Unpaid,
        "canceled" => SubscriptionStatus::Cancelled,
        "incomplete" => SubscriptionStatus::Incomplete,
        "incomplete_expired" => SubscriptionStatus::Expired,
        "paused" => SubscriptionStatus::Paused,
        _ => SubscriptionStatus::Unknown,
    };
    let item = at(obj, &["items", "data"])
        .and_then(Value::as_array)
        .and_then(|items| items.first());
    let price = item.and_then(|i| i.get("price")).filter(|p| p.is_object());
    let plan = item.and_then(|i| i.get("plan")).filter(|p| p.is_object());

    let (plan_id, plan_name, amount, interval, interval_count) = if let Some(price) = price {
        let recurring = price.get("recurring");
        (
            id_field(price, "id"),
            string_field(price, "nickname"),
            opt_money(price, "unit_amount", None, w),
            recurring.and_then(|r| string_field(r, "interval")),
            recurring
                .and_then(|r| r.get("interval_count"))
                .and_then(Value::as_u64),
        )
    } else if let Some(plan) = plan {
        (
            id_field(plan, "id"),
            string_field(plan, "nickname"),
            opt_money(plan, "amount", None, w),
            string_field(plan, "interval"),
            plan.get("interval_count").and_then(Value::as_u64),
        )
    } else {
        (None, None, None, None, None)
    };
    let period = |key: &str| time(obj, key).or_else(|| item.and_then(|i| time(i, key)));
    let current_period_end = period("current_period_end");
    let cancel_at_period_end = bool_field(obj, "cancel_at_period_end").unwrap_or(false);
    let next_charge_at = match status {
        SubscriptionStatus::Trialing => time(obj, "trial_end").or(current_period_end),
        SubscriptionStatus::Active | SubscriptionStatus::PastDue if !cancel_at_period_end => {
            current_period_end
        }
        _ => None,
    };
    Ok(Subscription {
        external_id: required_id(obj)?,
        customer_external_id: expandable_id(obj, "customer"),
        plan_external_id: plan_id,
        plan_name,
        status,
        status_raw: status_raw.to_string(),
        amount,
        interval,
        interval_count: interval_count.and_then(|c| u32::try_from(c).ok()),
        current_period_start: period("current_period_start"),
        current_period_end,
        next_charge_at,
        cancel_at_period_end,
        cancelled_at: time(obj, "canceled_at"),
        created_at: time(obj, "created"),
        metadata: metadata(obj),
    })
}

/// An invoice line (`line_item`) → line item, in the invoice's currency when it has none.
/// The unit price is the line's `price.unit_amount` (`unit_amount_decimal` when that is
/// null); from basil on, the price moved to `pricing` (`unit_amount_decimal` and
/// `price_details`).
fn invoice_line(line: &Value, currency: Option<&str>, w: &mut Warnings) -> Result<LineItem> {
    let price = line.get("price").filter(|p| p.is_object());
    let pricing = line.get("pricing").filter(|p| p.is_object());
    let price_details = pricing
        .and_then(|p| p.get("price_details"))
        .filter(|p| p.is_object());
    let currency = str_field(line, "currency").or(currency);
    let unit_price = match (price, pricing) {
        (Some(p), _) if p.get("unit_amount").is_some_and(|v| !v.is_null()) => {
            opt_money(p, "unit_amount", currency, w)
        }
        (Some(p), _) if p.get("unit_amount_decimal").is_some_and(|v| !v.is_null()) => {
            decimal_unit_price(p, currency, w)
        }
        (_, Some(p)) => decimal_unit_price(p, currency, w),
        _ => None,
    };
    Ok(LineItem {
        external_id: id_field(line, "id"),
        product_external_id: price
            .and_then(|p| expandable_id(p, "product"))
            .or_else(|| price_details.and_then(|p| expandable_id(p, "product"))),
        variant_external_id: price
            .and_then(|p| id_field(p, "id"))
            .or_else(|| price_details.and_then(|p| expandable_id(p, "price"))),
        sku: None,
        title: string_field(line, "description").unwrap_or_default(),
        quantity: i64_field(line, "quantity").unwrap_or(1),
        unit_price,
        total: opt_money(line, "amount", currency, w),
    })
}

/// `unit_amount_decimal` of `obj`: Stripe's smallest currency unit as decimal text, up to
/// twelve places (`"2990"`, `"0.5"`), in ISO minor units — rounded half to even with the
/// exact amount kept when it has fractions of the smallest unit.
fn decimal_unit_price(obj: &Value, currency: Option<&str>, w: &mut Warnings) -> Option<Money> {
    let text = str_field(obj, "unit_amount_decimal")?;
    let Some(currency) = str_field(obj, "currency").or(currency) else {
        w.push("unit_price", "no currency");
        return None;
    };
    let result = money::currency_code(currency).and_then(|code| {
        // Smallest units → major units: move the point left by Stripe's exponent.
        let major = shift_point_left(text, stripe_exponent(&code))
            .ok_or_else(|| money::MoneyError::InvalidAmount(text.to_string()))?;
        money::money_from_decimal_str(&major, &code)
    });
    w.keep("unit_price", result)
}

/// `text` (plain decimal digits with an optional point) divided by `10^places`, as text.
fn shift_point_left(text: &str, places: u32) -> Option<String> {
    let (int, frac) = text.split_once('.').unwrap_or((text, ""));
    if int.is_empty() || !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit()) {
        return None;
    }
    let places = places as usize;
    let int = format!("{int:0>width$}", width = places + 1);
    let (whole, moved) = int.split_at(int.len() - places);
    Some(format!("{whole}.{moved}{frac}"))
}

/// An `invoice` object → invoice.
pub fn invoice(obj: &Value, w: &mut Warnings) -> Result<Invoice> {
    let status_raw = str_field(obj, "status").unwrap_or_default();
    let status = match status_raw {
        "draft" => InvoiceStatus::Draft,
        "open" => InvoiceStatus::Open,
        "paid" => InvoiceStatus::Paid,
        "uncollectible" => InvoiceStatus::Uncollectible,
        "void" => InvoiceStatus::Void,
        _ => InvoiceStatus::Unknown,
    };
    let currency = str_field(obj, "currency");
    let line_items = at(obj, &["lines", "data"])
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|line| invoice_line(line, currency, w))
        .collect::<Result<Vec<_>>>()?;
    Ok(Invoice {
        external_id: required_id(obj)?,
        number: string_field(obj, "number"),
        customer_external_id: expandable_id(obj, "customer"),
        subscription_external_id: expandable_id(obj, "subscription").or_else(|| {
            at(obj, &["parent", "subscription_details"])
                .and_then(|d| expandable_id(d, "subscription"))
        }),
        payment_external_id: expandable_id(obj, "charge")
            .or_else(|| expandable_id(obj, "payment_intent")),
        status,
        status_raw: status_raw.to_string(),
        total: req_money(obj, "total")?,
        amount_due: opt_money(obj, "amount_due", None, w),
        amount_paid: opt_money(obj, "amount_paid", None, w),
        amount_remaining: opt_money(obj, "amount_remaining", None, w),
        line_items,
        created_at: time(obj, "created"),
        due_at: time(obj, "due_date"),
        paid_at: obj
            .get("status_transitions")
            .and_then(|t| time(t, "paid_at")),
        metadata: metadata(obj),
    })
}

/// A `dispute` object → chargeback.
pub fn dispute(obj: &Value, _w: &mut Warnings) -> Result<Chargeback> {
    let status_raw = str_field(obj, "status").unwrap_or_default();
    let status = match status_raw {
        "needs_response" => ChargebackStatus::NeedsResponse,
        "under_review" => ChargebackStatus::UnderReview,
        "won" => ChargebackStatus::Won,
        "lost" => ChargebackStatus::Lost,
        s if s.starts_with("warning_") => ChargebackStatus::Warning,
        _ => ChargebackStatus::Unknown,
    };
    Ok(Chargeback {
        external_id: required_id(obj)?,
        payment_external_id: expandable_id(obj, "charge")
            .or_else(|| expandable_id(obj, "payment_intent")),
        amount: req_money(obj, "amount")?,
        status,
        status_raw: status_raw.to_string(),
        reason: string_field(obj, "reason"),
        created_at: time(obj, "created"),
        metadata: metadata(obj),
    })
}

/// A `checkout.session` → order: the session is the customer's purchase (`amount_total`,
/// `payment_status`, the customer and their e-mail); its line items are not in the event
/// (they need `expand[]=line_items`), so the order has none. The payment itself arrives as
/// the session's payment intent events. A session without an amount (setup mode) has no
/// order and is kept unmapped.
pub fn checkout_session(obj: &Value, w: &mut Warnings) -> Result<Order> {
    let status_raw = string_field(obj, "status");
    let status = match status_raw.as_deref() {
        Some("open") => OrderStatus::Open,
        Some("complete") => OrderStatus::Completed,
        Some("expired") => OrderStatus::Cancelled,
        _ => OrderStatus::Unknown,
    };
    let payment_raw = string_field(obj, "payment_status");
    let financial_status = match payment_raw.as_deref() {
        Some("paid") | Some("no_payment_required") => FinancialStatus::Paid,
        Some("unpaid") if status == OrderStatus::Cancelled => FinancialStatus::Expired,
        Some("unpaid") => FinancialStatus::Pending,
        _ => FinancialStatus::Unknown,
    };
    let total =
        money_at(obj, "amount_total", None)?.ok_or_else(|| NormalizeError::InvalidField {
            field: "amount_total",
            reason: format!(
                "missing (mode {})",
                str_field(obj, "mode").unwrap_or("unknown")
            ),
        })?;
    let currency = str_field(obj, "currency");
    let details = obj.get("total_details").filter(|d| d.is_object());
    let detail =
        |key: &'static str, w: &mut Warnings| details.and_then(|d| opt_money(d, key, currency, w));
    let mut metadata = metadata(obj);
    for key in ["payment_intent", "subscription", "invoice", "mode"] {
        if let Some(value) = expandable_id(obj, key).or_else(|| string_field(obj, key)) {
            metadata.push((key.to_string(), value));
        }
    }
    let customer_details = obj.get("customer_details").filter(|d| d.is_object());
    Ok(Order {
        external_id: required_id(obj)?,
        number: None,
        customer_external_id: expandable_id(obj, "customer"),
        email: customer_details
            .and_then(|d| string_field(d, "email"))
            .or_else(|| string_field(obj, "customer_email")),
        status,
        status_raw,
        financial_status,
        financial_status_raw: payment_raw,
        fulfillment_status: FulfillmentStatus::Unknown,
        fulfillment_status_raw: None,
        subtotal: opt_money(obj, "amount_subtotal", None, w),
        total_tax: detail("amount_tax", w),
        total_discounts: detail("amount_discount", w),
        total_shipping: detail("amount_shipping", w),
        total,
        line_items: Vec::new(),
        billing_address: customer_details.and_then(|d| address(d.get("address"))),
        shipping_address: obj
            .get("shipping_details")
            .or_else(|| at(obj, &["collected_information", "shipping_details"]))
            .and_then(|s| address(s.get("address"))),
        created_at: time(obj, "created"),
        updated_at: None,
        cancelled_at: None,
        cancel_reason: None,
        metadata,
    })
}

/// The payment of a paid checkout session in `payment` mode: its payment intent, for the
/// session's total (the intent's own events carry its later life). Sessions paid through
/// an invoice (subscriptions) or not paid yet have none.
fn checkout_payment(obj: &Value, order: &Order) -> Option<Payment> {
    let intent = expandable_id(obj, "payment_intent")?;
    if str_field(obj, "payment_status") != Some("paid") {
        return None;
    }
    let method = match obj.get("payment_method_types").and_then(Value::as_array) {
        Some(types) if types.len() == 1 => types[0].as_str().map(str::to_owned),
        _ => None,
    };
    Some(Payment {
        external_id: intent,
        order_external_id: Some(order.external_id.clone()),
        customer_external_id: order.customer_external_id.clone(),
        invoice_external_id: expandable_id(obj, "invoice"),
        amount: order.total.clone(),
        amount_captured: None,
        amount_refunded: None,
        fee: None,
        status: PaymentStatus::Succeeded,
        status_raw: "paid".into(),
        method,
        description: None,
        failure_reason: None,
        created_at: order.created_at,
        metadata: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exponents() {
        assert_eq!(stripe_exponent("JPY"), 0);
        assert_eq!(stripe_exponent("MGA"), 0);
        assert_eq!(stripe_exponent("BHD"), 3);
        assert_eq!(stripe_exponent("ISK"), 2);
        assert_eq!(stripe_exponent("USD"), 2);
        assert_eq!(stripe_money(100000, "isk").unwrap().amount_minor, 1000);
        // 150 is 1.50 ISK in Stripe's convention; ISO has no decimals for ISK.
        let isk = stripe_money(150, "isk").unwrap();
        assert_eq!((isk.amount_minor, isk.exact.as_deref()), (2, Some("1.50")));
        assert_eq!(shift_point_left("2990", 2).as_deref(), Some("29.90"));
        assert_eq!(shift_point_left("5", 2).as_deref(), Some("0.05"));
        assert_eq!(shift_point_left("2990.5", 2).as_deref(), Some("29.905"));
        assert_eq!(shift_point_left("12", 0).as_deref(), Some("12."));
        assert_eq!(shift_point_left("-1", 2), None);
        assert_eq!(stripe_money(500, "mga").unwrap().amount_minor, 50000);
        assert_eq!(stripe_money(10, "iqd").unwrap().amount_minor, 100);
    }

    #[test]
    fn payment_intents_take_method_refunds_and_fee_from_expanded_charges() {
        let mut w = Warnings::new();
        let pi = serde_json::json!({
            "id": "pi_1", "object": "payment_intent", "amount": 3897, "currency": "usd",
            "amount_received": 3897, "status": "succeeded",
            "payment_method_types": ["card", "crypto"],
            "charges": {"object": "list", "data": [{
                "id": "ch_1", "object": "charge", "amount_refunded": 1000,
                "payment_method_details": {"type": "card"},
                "balance_transaction": {"id": "txn_1", "fee": 143, "currency": "usd"}
            }]}
        });
        let p = payment_intent(&pi, "payment_intent.succeeded", &mut w).unwrap();
        assert_eq!(p.method.as_deref(), Some("card"));
        assert_eq!(p.amount_refunded.map(|m| m.amount_minor), Some(1000));
        assert_eq!(p.fee.map(|m| m.amount_minor), Some(143));
        // Not expanded (an id): nothing more is known.
        let thin = serde_json::json!({"id": "pi_2", "object": "payment_intent", "amount": 5,
            "currency": "usd", "status": "processing", "latest_charge": "ch_2"});
        let p = payment_intent(&thin, "payment_intent.processing", &mut w).unwrap();
        assert_eq!((p.method, p.amount_refunded, p.fee), (None, None, None));
        assert!(w.is_empty());
    }

    #[test]
    fn kinds() {
        assert_eq!(kind_of("customer.subscription.created"), Kind::Subscription);
        assert_eq!(kind_of("customer.created"), Kind::Customer);
        assert_eq!(kind_of("customer.discount.created"), Kind::Unmapped);
        assert_eq!(kind_of("customer.source.updated"), Kind::Unmapped);
        assert_eq!(kind_of("charge.refund.updated"), Kind::Refund);
        assert_eq!(kind_of("charge.dispute.closed"), Kind::Dispute);
        assert_eq!(kind_of("charge.refunded"), Kind::ChargeRefunded);
        assert_eq!(kind_of("invoiceitem.created"), Kind::Unmapped);
        assert_eq!(change_of("invoice.paid"), Change::Observed);
        assert_eq!(change_of("customer.deleted"), Change::Deleted);
    }
}
