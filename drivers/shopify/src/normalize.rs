//! Shopify payloads → canonical records.
//!
//! - `orders/create|updated|paid|cancelled|fulfilled|partially_fulfilled` → one `order`.
//!   The payload is the order object (a webhook body) or the REST envelope
//!   `{"order": {…}}` (what `GET orders/{id}.json` returns), which is unwrapped.
//! - `refunds/create` → one `refund`.
//! - `customers/create|update` → one `customer` (`created` / `updated`).
//! - anything else → `unmapped` (object type = the topic's resource), never dropped.
//!
//! Money: Shopify sends decimal strings in the shop currency (`currency`); they become minor
//! units by the currency's ISO 4217 exponent, exactly (`"1000"` and `"1000.00"` JPY → 1000).
//! Order totals are the order's *original* amounts (`subtotal_price`, `total_tax`,
//! `total_discounts`, `total_shipping_price_set.shop_money`, `total_price`); the current
//! total after edits and refunds is kept in metadata as `current_total_price`. Older REST
//! shapes have no `*_set` fields: their shipping is the sum of `shipping_lines[].price`.
//!
//! A payload of a mapped topic that lacks what its record needs (an id, a total) is kept
//! as `unmapped` with the reason, never lost.
//! A line item's `total` is `price × quantity − Σ discount_allocations`.
//! A refund's amount is the sum of its successful `refund` transactions (the money actually
//! returned); a refund without transactions (restock only) falls back to the sum of its
//! `refund_line_items` `subtotal_set` + `total_tax_set` shop amounts. A refund whose
//! amounts carry no currency (older shapes: transactions without `currency`, line items
//! with bare `subtotal` numbers) is completed from its order (`GET orders/{id}.json`): the
//! order's currency and customer, both marked as fetched (`enriched_from`).
//! Ids (integers, possibly beyond 2^53) are read as exact decimal text.

use serde_json::Value;
use sluice_sdk::canonical::{
    Address, CanonicalRecord, Change, Customer, FinancialStatus, FulfillmentStatus, LineItem,
    Order, OrderStatus, RecordData, Refund, RefundStatus,
};
use sluice_sdk::enrich::{Fetch, FetchError, NoFetch};
use sluice_sdk::json::{at, i64_field, id_field, str_field, string_field};
use sluice_sdk::record::{Warnings, enriched, record, unmapped, unmapped_because};
use sluice_sdk::{Datetime, DriverError, Money, enums, money, time};

/// Why a payload could not be normalized.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NormalizeError(pub String);

impl std::fmt::Display for NormalizeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for NormalizeError {}

type Result<T> = std::result::Result<T, NormalizeError>;

fn err(msg: impl Into<String>) -> NormalizeError {
    NormalizeError(msg.into())
}

/// The oldest and newest Admin API versions whose webhook and REST shapes the driver
/// knows. Shopify releases one a quarter (`YYYY-01`, `-04`, `-07`, `-10`); the shapes before
/// versioning (2019-04) are the legacy samples' (no `*_set` fields), read as well.
pub const OLDEST_API_VERSION: &str = "2019-04";
pub const NEWEST_API_VERSION: &str = "2026-07";

/// A warning for a payload rendered by a version the driver does not know, if it is one.
fn api_version_warning(version: Option<&str>) -> Option<String> {
    let v = version?;
    let quarterly = v.len() == 7
        && v.as_bytes()[4] == b'-'
        && v[..4].bytes().all(|b| b.is_ascii_digit())
        && matches!(&v[5..], "01" | "04" | "07" | "10");
    if quarterly && (OLDEST_API_VERSION..=NEWEST_API_VERSION).contains(&v) {
        None
    } else {
        Some(format!(
            "API version {v:?} is not one the driver knows ({OLDEST_API_VERSION} to {NEWEST_API_VERSION}); mapped as {NEWEST_API_VERSION}"
        ))
    }
}

/// Normalize one event of `topic` with payload `payload` (JSON text), rendered by Admin
/// API `api_version` when the delivery said (its `X-Shopify-API-Version`).
/// `fetch` completes what a payload lacks; its failure is the only error.
pub fn normalize_versioned(
    topic: &str,
    payload: &[u8],
    api_version: Option<&str>,
    fetch: &mut dyn Fetch,
) -> std::result::Result<Vec<CanonicalRecord>, DriverError> {
    let mut records = normalize_with(topic, payload, fetch)?;
    if let Some(warning) = api_version_warning(api_version) {
        let mut w = sluice_sdk::record::Warnings::new();
        w.push("api_version", warning);
        w.attach(&mut records);
    }
    Ok(records)
}

/// Normalize one event of `topic` with payload `payload` (JSON text), without enrichment.
pub fn normalize(topic: &str, payload: &[u8]) -> Result<Vec<CanonicalRecord>> {
    normalize_with(topic, payload, &mut NoFetch).map_err(|e| err(format!("{e:?}")))
}

/// Normalize one event of `topic` with payload `payload` (JSON text), fetching through
/// `fetch` (paths relative to `/admin/api/{version}/`) what it lacks. Fails only when a
/// fetch does; a payload that cannot be mapped is kept `unmapped` with the reason.
pub fn normalize_with(
    topic: &str,
    payload: &[u8],
    fetch: &mut dyn Fetch,
) -> std::result::Result<Vec<CanonicalRecord>, DriverError> {
    let topic = topic.to_ascii_lowercase();
    let parsed: Option<Value> = serde_json::from_slice(payload).ok();
    let (resource, action) = topic.split_once('/').unwrap_or((topic.as_str(), ""));
    let change = match action {
        "create" => Change::Created,
        _ => Change::Updated,
    };
    let mut w = Warnings::new();
    let mapped = match (resource, action, &parsed) {
        (
            "orders",
            "create" | "updated" | "paid" | "cancelled" | "fulfilled" | "partially_fulfilled",
            Some(v),
        ) => Some(
            order_with(unwrap_envelope(v, "order"), &mut w)
                .map(|o| record(change, RecordData::Order(o))),
        ),
        ("refunds", "create", Some(v)) => Some(refund_completed(
            unwrap_envelope(v, "refund"),
            &mut w,
            fetch,
        )?),
        ("customers", "create" | "update", Some(v)) => Some(
            customer_with(unwrap_envelope(v, "customer"), &mut w)
                .map(|c| record(change, RecordData::Customer(c))),
        ),
        _ => None,
    };
    let id = || {
        parsed
            .as_ref()
            .and_then(|v| id_field(unwrap_envelope(v, resource.trim_end_matches('s')), "id"))
    };
    let resource_type = if resource.is_empty() {
        "event"
    } else {
        resource
    };
    let mut records = vec![match mapped {
        Some(Ok(record)) => record,
        Some(Err(NormalizeError(reason))) => unmapped_because(id(), resource_type, reason),
        None => unmapped(id(), resource_type),
    }];
    w.attach(&mut records);
    Ok(records)
}

/// `v[key]` when `v` is a REST envelope (`{key: {…}}`, possibly beside other keys such as
/// `notice`, and with no `id` of its own), else `v`.
fn unwrap_envelope<'a>(v: &'a Value, key: &str) -> &'a Value {
    match v.as_object() {
        Some(map) if !map.contains_key("id") && map.get(key).is_some_and(Value::is_object) => {
            &map[key]
        }
        _ => v,
    }
}

/// The order's shipping: `total_shipping_price_set`'s shop amount, or for older shapes
/// without it the sum of `shipping_lines[].price` (`None` when neither is there).
fn shipping(o: &Value, currency: &str) -> Result<Option<Money>> {
    if let Some(total) = set_money(o, "total_shipping_price_set")? {
        return Ok(Some(total));
    }
    let Some(lines) = o.get("shipping_lines").and_then(Value::as_array) else {
        return Ok(None);
    };
    let mut sum = money::money(0, currency).map_err(|e| err(format!("currency: {e}")))?;
    for line in lines {
        if let Some(price) = opt_money(line, "price", currency)? {
            sum.amount_minor = sum
                .amount_minor
                .checked_add(price.amount_minor)
                .ok_or_else(|| err("shipping_lines total out of range"))?;
        }
    }
    Ok(Some(sum))
}

fn opt_time(v: &Value, key: &str) -> Result<Option<Datetime>> {
    match str_field(v, key) {
        None | Some("") => Ok(None),
        Some(t) => time::parse_rfc3339(t)
            .map(Some)
            .map_err(|e| err(format!("{key}: {e}"))),
    }
}

fn amount(text: &str, currency: &str, what: &str) -> Result<Money> {
    money::money_from_decimal_str(text, currency)
        .map_err(|e| err(format!("{what} {text:?} {currency}: {e:?}")))
}

/// A decimal-string money field (`"10.00"`); `None` when absent or null.
fn opt_money(v: &Value, key: &str, currency: &str) -> Result<Option<Money>> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => amount(s, currency, key).map(Some),
        Some(other) => Err(err(format!("{key} is not a decimal string: {other}"))),
    }
}

/// The shop-money amount of a `*_set` field (`{"shop_money": {"amount", "currency_code"}}`).
fn set_money(v: &Value, key: &str) -> Result<Option<Money>> {
    let Some(shop) = at(v, &[key, "shop_money"]) else {
        return Ok(None);
    };
    match (str_field(shop, "amount"), str_field(shop, "currency_code")) {
        (Some(a), Some(c)) => amount(a, c, key).map(Some),
        _ => Ok(None),
    }
}

fn non_empty(v: &Value, key: &str) -> Option<String> {
    string_field(v, key).filter(|s| !s.trim().is_empty())
}

fn address(v: Option<&Value>) -> Option<Address> {
    let a = v.filter(|a| a.is_object())?;
    let name = non_empty(a, "name").or_else(|| {
        let full = [non_empty(a, "first_name"), non_empty(a, "last_name")]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(" ");
        Some(full).filter(|f| !f.is_empty())
    });
    Some(Address {
        name,
        company: non_empty(a, "company"),
        line1: non_empty(a, "address1"),
        line2: non_empty(a, "address2"),
        city: non_empty(a, "city"),
        region: non_empty(a, "province"),
        postal_code: non_empty(a, "zip"),
        country_code: non_empty(a, "country_code").map(|c| c.to_ascii_uppercase()),
        phone: non_empty(a, "phone"),
    })
}

const FINANCIAL: [(&str, FinancialStatus); 8] = [
    ("pending", FinancialStatus::Pending),
    ("authorized", FinancialStatus::Authorized),
    ("partially_paid", FinancialStatus::PartiallyPaid),
    ("paid", FinancialStatus::Paid),
    ("partially_refunded", FinancialStatus::PartiallyRefunded),
    ("refunded", FinancialStatus::Refunded),
    ("voided", FinancialStatus::Voided),
    ("expired", FinancialStatus::Expired),
];

const FULFILLMENT: [(&str, FulfillmentStatus); 5] = [
    ("fulfilled", FulfillmentStatus::Fulfilled),
    ("partial", FulfillmentStatus::Partial),
    ("restocked", FulfillmentStatus::Restocked),
    ("unfulfilled", FulfillmentStatus::Unfulfilled),
    ("null", FulfillmentStatus::Unfulfilled),
];

/// One line; a price or discount it cannot read leaves the line's price (and total) out,
/// with a warning for `field` (`line_items[2]`).
fn line_item(item: &Value, currency: &str, field: &str, w: &mut Warnings) -> LineItem {
    match line_item_strict(item, currency) {
        Ok(line) => line,
        Err(NormalizeError(reason)) => {
            w.push(field, reason);
            line_without_prices(item)
        }
    }
}

/// A line's ids, title and quantity.
fn line_without_prices(item: &Value) -> LineItem {
    LineItem {
        external_id: id_field(item, "id"),
        product_external_id: id_field(item, "product_id"),
        variant_external_id: id_field(item, "variant_id"),
        sku: non_empty(item, "sku"),
        title: non_empty(item, "name")
            .or_else(|| non_empty(item, "title"))
            .unwrap_or_default(),
        quantity: i64_field(item, "quantity").unwrap_or(0),
        unit_price: None,
        total: None,
    }
}

fn line_item_strict(item: &Value, currency: &str) -> Result<LineItem> {
    let quantity = i64_field(item, "quantity").unwrap_or(0);
    let unit_price = opt_money(item, "price", currency)?;
    let mut discount = 0i64;
    for alloc in item
        .get("discount_allocations")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(a) = str_field(alloc, "amount") {
            discount = discount
                .checked_add(amount(a, currency, "discount_allocations.amount")?.amount_minor)
                .ok_or_else(|| err("discount overflow"))?;
        }
    }
    let total = unit_price
        .as_ref()
        .map(|p| {
            p.amount_minor
                .checked_mul(quantity)
                .and_then(|t| t.checked_sub(discount))
                .map(|amount_minor| Money {
                    amount_minor,
                    currency: p.currency.clone(),
                    exact: None,
                })
                .ok_or_else(|| err("line item total overflows"))
        })
        .transpose()?;
    Ok(LineItem {
        unit_price,
        total,
        ..line_without_prices(item)
    })
}

/// Normalize one order object.
/// Normalize one order object; fields it cannot read fail it (see [`normalize`] for the
/// lenient form, which leaves them out with warnings).
pub fn order_record(o: &Value) -> Result<Order> {
    let mut w = Warnings::new();
    let order = order_with(o, &mut w)?;
    match w.as_slice().first() {
        Some(first) => Err(err(format!("{}: {}", first.field, first.reason))),
        None => Ok(order),
    }
}

fn order_with(o: &Value, w: &mut Warnings) -> Result<Order> {
    let external_id = id_field(o, "id").ok_or_else(|| err("order has no id"))?;
    let currency = str_field(o, "currency").ok_or_else(|| err("order has no currency"))?;
    let (status, status_raw) = if !o.get("cancelled_at").is_none_or(Value::is_null) {
        (OrderStatus::Cancelled, "cancelled")
    } else if !o.get("closed_at").is_none_or(Value::is_null) {
        (OrderStatus::Completed, "closed")
    } else {
        (OrderStatus::Open, "open")
    };
    let (financial_status, financial_status_raw) = match str_field(o, "financial_status") {
        Some(raw) => {
            let (s, r) = enums::map(raw, &FINANCIAL, FinancialStatus::Unknown);
            (s, Some(r))
        }
        None => (FinancialStatus::Unknown, None),
    };
    // Shopify's REST API says `null` for an order with nothing fulfilled yet.
    let (fulfillment_status, fulfillment_status_raw) = match str_field(o, "fulfillment_status") {
        Some(raw) => {
            let (s, r) = enums::map(raw, &FULFILLMENT, FulfillmentStatus::Unknown);
            (s, Some(r))
        }
        None => (FulfillmentStatus::Unfulfilled, None),
    };
    let total =
        opt_money(o, "total_price", currency)?.ok_or_else(|| err("order has no total_price"))?;
    let line_items = o
        .get("line_items")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
        .map(|(n, i)| line_item(i, currency, &format!("line_items[{n}]"), w))
        .collect::<Vec<_>>();
    let customer = o.get("customer").filter(|c| c.is_object());
    let mut metadata = Vec::new();
    for key in [
        "admin_graphql_api_id",
        "presentment_currency",
        "current_total_price",
        "source_name",
        "processed_at",
        "tags",
    ] {
        if let Some(v) = non_empty(o, key) {
            metadata.push((key.to_string(), v));
        }
    }
    if let Some(test) = o.get("test").and_then(Value::as_bool) {
        metadata.push(("test".into(), test.to_string()));
    }
    // The amounts are the shop's (`shop_money`); what the buyer saw in another currency
    // (`presentment_money`) is kept beside them.
    for key in ["total_price_set", "subtotal_price_set", "total_tax_set"] {
        let presented = at(o, &[key, "presentment_money"]);
        let (Some(amount), Some(code)) = (
            presented.and_then(|p| str_field(p, "amount")),
            presented.and_then(|p| str_field(p, "currency_code")),
        ) else {
            continue;
        };
        if !code.eq_ignore_ascii_case(currency) {
            let name = key.trim_end_matches("_set").replace("_price", "");
            metadata.push((format!("presentment_{name}"), format!("{amount} {code}")));
        }
    }
    for attr in o
        .get("note_attributes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let (Some(name), Some(value)) = (str_field(attr, "name"), attr.get("value")) {
            let value = value
                .as_str()
                .map_or_else(|| value.to_string(), str::to_owned);
            metadata.push((format!("note_attributes.{name}"), value));
        }
    }
    Ok(Order {
        external_id,
        number: non_empty(o, "name").or_else(|| id_field(o, "order_number")),
        customer_external_id: customer.and_then(|c| id_field(c, "id")),
        email: non_empty(o, "email")
            .or_else(|| non_empty(o, "contact_email"))
            .or_else(|| customer.and_then(|c| non_empty(c, "email"))),
        status,
        status_raw: Some(status_raw.to_string()),
        financial_status,
        financial_status_raw,
        fulfillment_status,
        fulfillment_status_raw,
        subtotal: w
            .keep("subtotal", opt_money(o, "subtotal_price", currency))
            .flatten(),
        total_tax: w
            .keep("total_tax", opt_money(o, "total_tax", currency))
            .flatten(),
        total_discounts: w
            .keep("total_discounts", opt_money(o, "total_discounts", currency))
            .flatten(),
        total_shipping: w.keep("total_shipping", shipping(o, currency)).flatten(),
        total,
        line_items,
        billing_address: address(o.get("billing_address")),
        shipping_address: address(o.get("shipping_address")),
        created_at: w.keep("created_at", opt_time(o, "created_at")).flatten(),
        updated_at: w.keep("updated_at", opt_time(o, "updated_at")).flatten(),
        cancelled_at: w
            .keep("cancelled_at", opt_time(o, "cancelled_at"))
            .flatten(),
        cancel_reason: non_empty(o, "cancel_reason"),
        metadata,
    })
}

/// Normalize one refund object (`refunds/create`).
pub fn refund_record(r: &Value) -> Result<Refund> {
    refund_with(r, &mut Warnings::new())
}

/// A `refunds/create` refund, completed from its order when its amounts have no currency.
/// The outer error is a failed fetch (the host retries); the inner, a refund that cannot
/// be mapped (kept unmapped with the reason).
fn refund_completed(
    r: &Value,
    w: &mut Warnings,
    fetch: &mut dyn Fetch,
) -> std::result::Result<Result<CanonicalRecord>, DriverError> {
    let created = |refund| record(Change::Created, RecordData::Refund(refund));
    let order_id = id_field(r, "order_id").filter(|id| id.bytes().all(|b| b.is_ascii_digit()));
    let (true, Some(order_id)) = (lacks_currency(r), order_id) else {
        return Ok(refund_with(r, w).map(created));
    };
    let path = format!("orders/{order_id}.json?fields=id,currency,customer");
    let fetched = match fetch.get(&path) {
        Ok(fetched) => fetched,
        Err(FetchError::Unavailable(why)) => {
            return Ok(Err(err(format!(
                "the refund's amounts have no currency, and {why}"
            ))));
        }
        Err(FetchError::Failed(e)) => return Err(e),
    };
    let order = unwrap_envelope(&fetched.body, "order");
    let Some(currency) = str_field(order, "currency") else {
        return Ok(Err(err(format!(
            "the refund's amounts have no currency, nor has its order ({})",
            fetched.source
        ))));
    };
    let mut refund = match refund_with(&with_currency(r, currency), w) {
        Ok(refund) => refund,
        Err(e) => return Ok(Err(e)),
    };
    let mut fields = vec!["amount.currency"];
    if let Some(customer) = order.get("customer").and_then(|c| id_field(c, "id")) {
        refund.customer_external_id = Some(customer);
        fields.push("customer_external_id");
    }
    let mut rec = created(refund);
    enriched(&mut rec, &fetched.source, &fields);
    Ok(Ok(rec))
}

fn refund_transactions(r: &Value) -> impl Iterator<Item = &Value> {
    r.get("transactions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|t| str_field(t, "kind").is_none_or(|k| k.eq_ignore_ascii_case("refund")))
}

fn refund_line_items(r: &Value) -> impl Iterator<Item = &Value> {
    r.get("refund_line_items")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
}

/// Whether the amounts a refund is counted from have no currency of their own.
fn lacks_currency(r: &Value) -> bool {
    let mut transactions = refund_transactions(r).peekable();
    if transactions.peek().is_some() {
        return transactions.any(|t| str_field(t, "currency").is_none());
    }
    refund_line_items(r)
        .any(|item| item.get("subtotal_set").is_none() && item.get("subtotal").is_some())
}

/// `r` with `currency` on every transaction without one, and `subtotal_set` /
/// `total_tax_set` shop amounts built from bare `subtotal` / `total_tax` numbers.
fn with_currency(r: &Value, currency: &str) -> Value {
    let mut r = r.clone();
    if let Some(transactions) = r.get_mut("transactions").and_then(Value::as_array_mut) {
        for t in transactions.iter_mut().filter_map(Value::as_object_mut) {
            t.entry("currency")
                .or_insert_with(|| Value::String(currency.into()));
        }
    }
    if let Some(items) = r.get_mut("refund_line_items").and_then(Value::as_array_mut) {
        for item in items.iter_mut().filter_map(Value::as_object_mut) {
            for (bare, set) in [("subtotal", "subtotal_set"), ("total_tax", "total_tax_set")] {
                let amount = match item.get(bare) {
                    Some(Value::Number(n)) => n.to_string(),
                    Some(Value::String(s)) => s.clone(),
                    _ => continue,
                };
                item.entry(set).or_insert_with(|| {
                    serde_json::json!({"shop_money": {"amount": amount, "currency_code": currency}})
                });
            }
        }
    }
    r
}

fn refund_with(r: &Value, w: &mut Warnings) -> Result<Refund> {
    let external_id = id_field(r, "id").ok_or_else(|| err("refund has no id"))?;
    let transactions: Vec<&Value> = refund_transactions(r).collect();
    let statuses: Vec<String> = transactions
        .iter()
        .map(|t| str_field(t, "status").unwrap_or("").to_ascii_lowercase())
        .collect();
    let (status, status_raw) = if transactions.is_empty() {
        (RefundStatus::Succeeded, "no_transactions".to_string())
    } else {
        let s = if statuses.iter().all(|s| s == "success") {
            RefundStatus::Succeeded
        } else if statuses.iter().any(|s| s == "pending") {
            RefundStatus::Pending
        } else if statuses.iter().any(|s| s == "failure" || s == "error") {
            RefundStatus::Failed
        } else {
            RefundStatus::Unknown
        };
        let mut raw = statuses.clone();
        raw.dedup();
        (s, raw.join(","))
    };
    let mut total: Option<Money> = None;
    let mut add = |m: Money| -> Result<()> {
        match &mut total {
            None => total = Some(m),
            Some(t) if t.currency == m.currency => {
                t.amount_minor = t
                    .amount_minor
                    .checked_add(m.amount_minor)
                    .ok_or_else(|| err("refund amount overflows"))?
            }
            Some(t) => {
                return Err(err(format!(
                    "refund mixes currencies {} and {}",
                    t.currency, m.currency
                )));
            }
        }
        Ok(())
    };
    let successful: Vec<&&Value> = transactions
        .iter()
        .filter(|t| str_field(t, "status").is_none_or(|s| s.eq_ignore_ascii_case("success")))
        .collect();
    if !transactions.is_empty() {
        let counted = if successful.is_empty() {
            transactions.iter().collect::<Vec<_>>()
        } else {
            successful
        };
        for t in counted {
            let currency = str_field(t, "currency")
                .ok_or_else(|| err("refund transaction has no currency"))?;
            let a =
                str_field(t, "amount").ok_or_else(|| err("refund transaction has no amount"))?;
            add(amount(a, currency, "transactions.amount")?)?;
        }
    } else {
        for item in refund_line_items(r) {
            for key in ["subtotal_set", "total_tax_set"] {
                if let Some(m) = set_money(item, key)? {
                    add(m)?;
                }
            }
        }
    }
    let amount = total
        .ok_or_else(|| err("refund has neither transactions nor refund line items with amounts"))?;
    let mut metadata = Vec::new();
    if let Some(restock) = r.get("restock").and_then(Value::as_bool) {
        metadata.push(("restock".into(), restock.to_string()));
    }
    let ids: Vec<String> = transactions
        .iter()
        .filter_map(|t| id_field(t, "id"))
        .collect();
    if !ids.is_empty() {
        metadata.push(("transaction_ids".into(), ids.join(",")));
    }
    if let Some(v) = non_empty(r, "admin_graphql_api_id") {
        metadata.push(("admin_graphql_api_id".into(), v));
    }
    Ok(Refund {
        external_id,
        payment_external_id: transactions.first().and_then(|t| id_field(t, "parent_id")),
        order_external_id: id_field(r, "order_id"),
        customer_external_id: None,
        amount,
        status,
        status_raw,
        reason: non_empty(r, "note"),
        created_at: match w.keep("created_at", opt_time(r, "created_at")).flatten() {
            Some(t) => Some(t),
            None => w.keep("created_at", opt_time(r, "processed_at")).flatten(),
        },
        metadata,
    })
}

/// Normalize one customer object.
pub fn customer_record(c: &Value) -> Result<Customer> {
    customer_with(c, &mut Warnings::new())
}

fn customer_with(c: &Value, w: &mut Warnings) -> Result<Customer> {
    let external_id = id_field(c, "id").ok_or_else(|| err("customer has no id"))?;
    let first_name = non_empty(c, "first_name");
    let last_name = non_empty(c, "last_name");
    let name = Some(
        [first_name.clone(), last_name.clone()]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(" "),
    )
    .filter(|n| !n.is_empty());
    let mut metadata = Vec::new();
    for key in ["state", "tags", "currency", "admin_graphql_api_id"] {
        if let Some(v) = non_empty(c, key) {
            metadata.push((key.to_string(), v));
        }
    }
    if let Some(v) = c.get("verified_email").and_then(Value::as_bool) {
        metadata.push(("verified_email".into(), v.to_string()));
    }
    Ok(Customer {
        external_id,
        email: non_empty(c, "email"),
        name,
        first_name,
        last_name,
        phone: non_empty(c, "phone"),
        address: address(c.get("default_address")),
        created_at: w.keep("created_at", opt_time(c, "created_at")).flatten(),
        updated_at: w.keep("updated_at", opt_time(c, "updated_at")).flatten(),
        metadata,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_versions_outside_the_known_range_are_warned_about() {
        for known in ["2019-04", "2024-10", "2026-07"] {
            assert_eq!(api_version_warning(Some(known)), None, "{known}");
        }
        assert_eq!(api_version_warning(None), None);
        for unknown in ["2026-10", "2019-01", "unstable", "2025-02", "2025-1", ""] {
            assert!(api_version_warning(Some(unknown)).is_some(), "{unknown:?}");
        }
        let r = normalize_versioned(
            "customers/create",
            br#"{"id": 1}"#,
            Some("2027-01"),
            &mut NoFetch,
        )
        .unwrap();
        assert_eq!(r[0].warnings.len(), 1);
        assert_eq!(r[0].warnings[0].field, "api_version");
    }

    #[test]
    fn unreadable_optional_fields_are_warnings_not_lost_orders() {
        let body = br#"{"id": 7, "currency": "USD", "total_price": "10.00", "subtotal_price": "ten", "created_at": "yesterday", "line_items": [{"id": 1, "title": "T", "quantity": 1, "price": "1.2.3"}, {"id": 2, "title": "U", "quantity": 2, "price": "2.50"}]}"#;
        let r = normalize("orders/paid", body).unwrap();
        let RecordData::Order(o) = &r[0].data else {
            panic!("{r:?}")
        };
        assert_eq!((o.total.amount_minor, o.subtotal.as_ref()), (1000, None));
        assert_eq!(o.created_at, None);
        assert_eq!(o.line_items.len(), 2);
        assert_eq!(o.line_items[0].unit_price, None);
        assert_eq!(
            o.line_items[1].total.as_ref().map(|m| m.amount_minor),
            Some(500)
        );
        let fields: Vec<&str> = r[0].warnings.iter().map(|w| w.field.as_str()).collect();
        assert_eq!(fields, ["line_items[0]", "subtotal", "created_at"]);
    }

    #[test]
    fn presentment_amounts_in_another_currency_are_kept_beside_the_shop_amounts() {
        let body = br#"{"id": 8, "currency": "USD", "total_price": "10.00", "presentment_currency": "EUR", "total_price_set": {"shop_money": {"amount": "10.00", "currency_code": "USD"}, "presentment_money": {"amount": "9.20", "currency_code": "EUR"}}, "total_tax_set": {"shop_money": {"amount": "1.00", "currency_code": "USD"}, "presentment_money": {"amount": "1.00", "currency_code": "USD"}}}"#;
        let r = normalize("orders/paid", body).unwrap();
        let RecordData::Order(o) = &r[0].data else {
            panic!("{r:?}")
        };
        assert_eq!(o.total.currency, "USD");
        assert!(
            o.metadata
                .contains(&("presentment_total".into(), "9.20 EUR".into()))
        );
        assert!(!o.metadata.iter().any(|(k, _)| k == "presentment_total_tax"));
    }

    #[test]
    fn unknown_topics_are_unmapped() {
        let r = normalize("products/create", br#"{"id": 9007199254740993}"#).unwrap();
        assert_eq!(r[0].change, Change::Observed);
        assert_eq!(
            r[0].data,
            RecordData::Unmapped(sluice_sdk::canonical::Unmapped {
                external_id: Some("9007199254740993".into()),
                object_type: Some("products".into()),
                reason: None,
            })
        );
        let r = normalize("orders/create", b"not json").unwrap();
        assert!(matches!(r[0].data, RecordData::Unmapped(_)));
    }

    #[test]
    fn minimal_jpy_order() {
        let o = normalize("orders/create", br#"{"id": 9007199254740993, "currency": "JPY", "total_price": "1000.00", "subtotal_price": "1000", "financial_status": "PAID", "fulfillment_status": "fulfilled", "created_at": "2024-01-01T09:00:00+09:00", "line_items": [{"id": 1, "price": "500", "quantity": 2, "title": "T", "discount_allocations": [{"amount": "100"}]}]}"#).unwrap();
        let RecordData::Order(o) = &o[0].data else {
            panic!()
        };
        assert_eq!(o.external_id, "9007199254740993");
        assert_eq!(
            o.total,
            Money {
                amount_minor: 1000,
                currency: "JPY".into(),
                exact: None,
            }
        );
        assert_eq!(o.subtotal.as_ref().unwrap().amount_minor, 1000);
        assert_eq!(
            (o.financial_status, o.financial_status_raw.as_deref()),
            (FinancialStatus::Paid, Some("PAID"))
        );
        assert_eq!(o.fulfillment_status, FulfillmentStatus::Fulfilled);
        assert_eq!(o.created_at.unwrap().seconds, 1_704_067_200);
        assert_eq!(o.line_items[0].total.as_ref().unwrap().amount_minor, 900);
        // Rounded half to even, the exact text kept.
        let r = normalize(
            "orders/create",
            br#"{"id": 1, "currency": "JPY", "total_price": "10.5"}"#,
        )
        .unwrap();
        let RecordData::Order(o) = &r[0].data else {
            panic!("{r:?}")
        };
        assert_eq!(
            (o.total.amount_minor, o.total.exact.as_deref()),
            (10, Some("10.5"))
        );
        // What the record cannot do without is kept unmapped, with the reason.
        for (body, reason) in [
            (
                &br#"{"id": 1, "currency": "USD", "total_price": 10.5}"#[..],
                "total_price is not a decimal string: 10.5",
            ),
            (
                br#"{"currency": "USD", "total_price": "1"}"#,
                "order has no id",
            ),
        ] {
            let r = normalize("orders/create", body).unwrap();
            assert!(
                matches!(&r[0].data, RecordData::Unmapped(u) if u.reason.as_deref() == Some(reason)),
                "{r:?}"
            );
        }
    }
}
