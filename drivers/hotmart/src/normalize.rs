//! Hotmart webhook events and sales-history items → canonical records.
//!
//! Both sources describe a *sale* (Hotmart's `transaction`, e.g. `HP16015479281022`) but
//! name things differently: the webhook's `data.purchase.price.currency_value` is the API's
//! `purchase.price.currency_code`, `recurrence_number` is `recurrency_number`, statuses are
//! spelled `CANCELED` / `COMPLETED` / `BILLET_PRINTED` in webhooks and `CANCELLED` /
//! `COMPLETE` / `PRINTED_BILLET` in the API. Each source is read into one [`Sale`], and the
//! records are built from the sale alone, so the same sale gives the same order and payment
//! whichever way it arrived. `status_raw` carries Hotmart's status with those spelling
//! differences unified to the API's documented `transaction_status` vocabulary (the exact
//! delivery stays in the raw event's payload).
//!
//! Mapping (by the sale's status; the event name adds nothing a status does not say):
//!
//! | status | payment | order financial | order |
//! |---|---|---|---|
//! | APPROVED | succeeded | paid | open |
//! | COMPLETE (warranty over) | succeeded | paid | completed |
//! | PRINTED_BILLET, WAITING_PAYMENT, STARTED, PROCESSING_TRANSACTION, UNDER_ANALISYS, PRE_ORDER | pending | pending | open |
//! | DELAYED, OVERDUE, NO_FUNDS | failed | pending | open |
//! | BLOCKED, CANCELLED | failed / cancelled | voided | cancelled |
//! | EXPIRED | expired | expired | cancelled |
//! | REFUNDED | refunded (+ refund record) | refunded | completed |
//! | PARTIALLY_REFUNDED | partially refunded | partially refunded | open |
//! | CHARGEBACK | disputed (+ chargeback `lost`) | refunded | completed |
//! | DISPUTE, PROTESTED (`PURCHASE_PROTEST`) | succeeded (+ refund `pending`) | paid | open |
//!
//! `PURCHASE_PROTEST` is the buyer asking Hotmart for a refund, not a bank chargeback: the
//! money has not moved, so the payment stays succeeded and a pending refund of the amount
//! paid records the request (Hotmart's docs: "Pedido de reembolso"; a bank dispute arrives
//! as `PURCHASE_CHARGEBACK`).
//!
//! **Amounts.** The order total and payment amount are `full_price`: what the buyer paid,
//! taxes and installment interest included (the Chilean sale: `price` 5625.21 CLP before
//! 19 % IVA, `full_price` 6694). `price` (the offer's price before them) is kept in the
//! order's metadata. Amounts with more places than the currency allows are rounded half to
//! even with the exact text kept (`sluice_sdk::money`). Postbacks are version `2.0.0`; any
//! other version is mapped the same way, with a warning.
//!
//! Every record's external id is the transaction (Hotmart has no separate order, refund or
//! chargeback ids). Hotmart's webhooks carry no buyer id, so `customer_external_id` is the
//! buyer's e-mail, lower-cased, in both sources. The payment's `fee` is the `MARKETPLACE`
//! commission (webhook) or `hotmart_fee.total` (API).
//!
//! `SUBSCRIPTION_CANCELLATION`, `SWITCH_PLAN` and `UPDATE_SUBSCRIPTION_CHARGE_DATE` become
//! subscription records keyed by the subscriber code (the id Hotmart's subscription API
//! uses); when a delivery has no subscriber code it is kept as `unmapped`.
//! `PURCHASE_OUT_OF_SHOPPING_CART` (an abandoned checkout: no transaction, no price),
//! `CLUB_*` and every unknown event are `unmapped`: never dropped.

use serde_json::Value;
use sluice_sdk::canonical::*;
use sluice_sdk::json::{at, i64_field, id_value, str_field, string_at, string_field};
use sluice_sdk::time::{datetime_from_unix_millis, parse_rfc3339, to_rfc3339};
use sluice_sdk::{Datetime, Money, enums};

use crate::decimal::{decimal_text, money_at, money_in, money_in_field, raw_at, raw_list_at};
use crate::webhook::creation_date;

/// The event type of raw events made from sales-history items.
pub const SALES_HISTORY: &str = "SALES_HISTORY";

const WEBHOOK_CURRENCY: [&str; 2] = ["currency_value", "currency_code"];
const API_CURRENCY: [&str; 2] = ["currency_code", "currency_value"];

/// Normalize one raw event by its type: [`SALES_HISTORY`] items or webhook postbacks.
pub fn normalize(event_type: &str, payload: &[u8]) -> Result<Vec<CanonicalRecord>, String> {
    if event_type == SALES_HISTORY {
        normalize_sale_item(payload)
    } else {
        normalize_webhook(payload)
    }
}

/// Hotmart's status with the webhook/API spelling differences unified (API spelling).
pub fn unify_status(raw: &str) -> String {
    let upper = raw.trim().to_ascii_uppercase();
    match upper.as_str() {
        "CANCELED" => "CANCELLED".into(),
        "COMPLETED" => "COMPLETE".into(),
        "BILLET_PRINTED" => "PRINTED_BILLET".into(),
        "UNDER_ANALYSIS" => "UNDER_ANALISYS".into(),
        _ => upper,
    }
}

/// A sale status: what it means for the payment, the order's financial state and the order
/// (the table in the module docs).
type SaleStatus = (PaymentStatus, FinancialStatus, OrderStatus);

const SALE_STATUS: &[(&str, SaleStatus)] = &[
    (
        "APPROVED",
        (
            PaymentStatus::Succeeded,
            FinancialStatus::Paid,
            OrderStatus::Open,
        ),
    ),
    (
        "COMPLETE",
        (
            PaymentStatus::Succeeded,
            FinancialStatus::Paid,
            OrderStatus::Completed,
        ),
    ),
    (
        "PRINTED_BILLET",
        (
            PaymentStatus::Pending,
            FinancialStatus::Pending,
            OrderStatus::Open,
        ),
    ),
    (
        "WAITING_PAYMENT",
        (
            PaymentStatus::Pending,
            FinancialStatus::Pending,
            OrderStatus::Open,
        ),
    ),
    (
        "STARTED",
        (
            PaymentStatus::Pending,
            FinancialStatus::Pending,
            OrderStatus::Open,
        ),
    ),
    (
        "PROCESSING_TRANSACTION",
        (
            PaymentStatus::Pending,
            FinancialStatus::Pending,
            OrderStatus::Open,
        ),
    ),
    (
        "UNDER_ANALISYS",
        (
            PaymentStatus::Pending,
            FinancialStatus::Pending,
            OrderStatus::Open,
        ),
    ),
    (
        "PRE_ORDER",
        (
            PaymentStatus::Pending,
            FinancialStatus::Pending,
            OrderStatus::Open,
        ),
    ),
    (
        "DELAYED",
        (
            PaymentStatus::Failed,
            FinancialStatus::Pending,
            OrderStatus::Open,
        ),
    ),
    (
        "OVERDUE",
        (
            PaymentStatus::Failed,
            FinancialStatus::Pending,
            OrderStatus::Open,
        ),
    ),
    (
        "NO_FUNDS",
        (
            PaymentStatus::Failed,
            FinancialStatus::Pending,
            OrderStatus::Open,
        ),
    ),
    (
        "BLOCKED",
        (
            PaymentStatus::Failed,
            FinancialStatus::Voided,
            OrderStatus::Cancelled,
        ),
    ),
    (
        "CANCELLED",
        (
            PaymentStatus::Cancelled,
            FinancialStatus::Voided,
            OrderStatus::Cancelled,
        ),
    ),
    (
        "EXPIRED",
        (
            PaymentStatus::Expired,
            FinancialStatus::Expired,
            OrderStatus::Cancelled,
        ),
    ),
    (
        "REFUNDED",
        (
            PaymentStatus::Refunded,
            FinancialStatus::Refunded,
            OrderStatus::Completed,
        ),
    ),
    (
        "PARTIALLY_REFUNDED",
        (
            PaymentStatus::PartiallyRefunded,
            FinancialStatus::PartiallyRefunded,
            OrderStatus::Open,
        ),
    ),
    (
        "CHARGEBACK",
        (
            PaymentStatus::Disputed,
            FinancialStatus::Refunded,
            OrderStatus::Completed,
        ),
    ),
    (
        "DISPUTE",
        (
            PaymentStatus::Succeeded,
            FinancialStatus::Paid,
            OrderStatus::Open,
        ),
    ),
    (
        "PROTESTED",
        (
            PaymentStatus::Succeeded,
            FinancialStatus::Paid,
            OrderStatus::Open,
        ),
    ),
];

const UNKNOWN_SALE_STATUS: SaleStatus = (
    PaymentStatus::Unknown,
    FinancialStatus::Unknown,
    OrderStatus::Unknown,
);

const SUBSCRIPTION_STATUS: &[(&str, SubscriptionStatus)] = &[
    ("ACTIVE", SubscriptionStatus::Active),
    ("TRIAL", SubscriptionStatus::Trialing),
    ("STARTED", SubscriptionStatus::Incomplete),
    ("DELAYED", SubscriptionStatus::PastDue),
    ("OVERDUE", SubscriptionStatus::PastDue),
    ("INACTIVE", SubscriptionStatus::Cancelled),
    ("CANCELLED", SubscriptionStatus::Cancelled),
    ("CANCELED", SubscriptionStatus::Cancelled),
    ("CANCELLED_BY_CUSTOMER", SubscriptionStatus::Cancelled),
    ("CANCELLED_BY_SELLER", SubscriptionStatus::Cancelled),
    ("CANCELLED_BY_ADMIN", SubscriptionStatus::Cancelled),
    ("EXPIRED", SubscriptionStatus::Expired),
];

/// Payment method family from Hotmart's `payment.type`.
pub fn method(payment_type: &str) -> String {
    match payment_type.to_ascii_uppercase().as_str() {
        "CREDIT_CARD" => "card".into(),
        "PIX" => "pix".into(),
        "BILLET" => "billet".into(),
        "PAYPAL" => "paypal".into(),
        other => other.to_ascii_lowercase(),
    }
}

fn ms(v: &Value, key: &str) -> Option<Datetime> {
    i64_field(v, key).map(datetime_from_unix_millis)
}

fn ms_text(v: &Value, key: &str) -> Option<String> {
    ms(v, key).map(|d| to_rfc3339(&d))
}

fn obj<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    at(v, path).filter(|o| o.is_object())
}

fn lower_email(v: Option<&Value>) -> Option<String> {
    v.and_then(|b| string_field(b, "email"))
        .map(|e| e.to_ascii_lowercase())
}

fn push(meta: &mut Vec<(String, String)>, key: &str, value: Option<String>) {
    if let Some(v) = value.filter(|v| !v.is_empty()) {
        meta.push((key.to_string(), v));
    }
}

fn text_of(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.clone()),
        Value::Null => None,
        other => Some(other.to_string()),
    }
}

/// Money as metadata text: `"199700 BRL (minor units)"`, with the exact amount when it was
/// rounded (`"5625 CLP (minor units; exact 5625.21)"`).
fn money_text(m: &Money) -> String {
    match &m.exact {
        None => format!("{} {} (minor units)", m.amount_minor, m.currency),
        Some(exact) => format!(
            "{} {} (minor units; exact {exact})",
            m.amount_minor, m.currency
        ),
    }
}

/// One sale, read from a webhook purchase or a sales-history item.
#[derive(Debug, Clone, PartialEq)]
pub struct Sale {
    /// Hotmart's transaction code.
    pub transaction: String,
    /// Status, spelling unified ([`unify_status`]).
    pub status: String,
    /// What the buyer is charged for the offer.
    pub price: Money,
    /// Hotmart's fee.
    pub fee: Option<Money>,
    /// `payment.type` as Hotmart names it.
    pub payment_type: Option<String>,
    /// Refusal reason of a failed payment.
    pub failure_reason: Option<String>,
    /// When the purchase was made.
    pub order_date: Option<Datetime>,
    /// Buyer e-mail as given.
    pub email: Option<String>,
    /// Product id (exact text).
    pub product_id: Option<String>,
    /// Product name.
    pub product_name: Option<String>,
    /// Offer code.
    pub offer_code: Option<String>,
    /// Number of installments.
    pub installments: Option<i64>,
    /// Which charge of a subscription this is.
    pub recurrence: Option<i64>,
    /// Buyer address (webhooks only).
    pub address: Option<Address>,
    /// Shipping cost of a physical product (webhooks' `data.shipping.cost`).
    pub shipping: Option<Money>,
    /// Optional fields that could not be read: (field, reason), the records' warnings.
    pub unread: Vec<(String, String)>,
    /// Source-specific details kept on the order.
    pub order_metadata: Vec<(String, String)>,
}

impl Sale {
    /// Read a webhook body's `data.purchase` (with `data.buyer`, `data.product`, …).
    pub fn from_webhook(text: &str, body: &Value) -> Result<Sale, String> {
        let data = body.get("data").unwrap_or(&Value::Null);
        let purchase = obj(data, &["purchase"]).ok_or("postback has no data.purchase")?;
        let transaction =
            string_field(purchase, "transaction").ok_or("purchase has no transaction")?;
        let price = ["full_price", "price", "original_offer_price"]
            .iter()
            .find_map(|k| money_at(text, &["data", "purchase", k], &WEBHOOK_CURRENCY).transpose())
            .transpose()?
            .ok_or("purchase has no price")?;
        let mut unread = Vec::new();
        let mut fee = None;
        for c in raw_list_at(text, &["data", "commissions"]) {
            let source = raw_at(c.get(), &["source"])
                .and_then(|s| serde_json::from_str::<String>(s.get()).ok());
            if source.as_deref() == Some("MARKETPLACE") {
                fee = optional(&mut unread, "fee", money_in(c.get(), &WEBHOOK_CURRENCY));
            }
        }
        let buyer = obj(data, &["buyer"]);
        let product = obj(data, &["product"]);
        let mut meta = Vec::new();
        for key in ["price", "original_offer_price"] {
            let money = money_at(text, &["data", "purchase", key], &WEBHOOK_CURRENCY);
            if let Some(m) = optional(&mut unread, &format!("metadata.{key}"), money) {
                push(&mut meta, key, Some(money_text(&m)));
            }
        }
        push(
            &mut meta,
            "approved_date",
            ms_text(purchase, "approved_date"),
        );
        push(
            &mut meta,
            "date_next_charge",
            ms_text(purchase, "date_next_charge"),
        );
        push(
            &mut meta,
            "subscriber_code",
            string_at(data, &["subscription", "subscriber", "code"]),
        );
        push(
            &mut meta,
            "subscription_status",
            string_at(data, &["subscription", "status"]),
        );
        push(
            &mut meta,
            "plan_id",
            at(data, &["subscription", "plan", "id"]).and_then(id_value),
        );
        push(
            &mut meta,
            "coupon_code",
            string_at(purchase, &["offer", "coupon_code"]),
        );
        push(
            &mut meta,
            "is_order_bump",
            text_of(at(purchase, &["order_bump", "is_order_bump"])),
        );
        push(
            &mut meta,
            "parent_purchase_transaction",
            string_at(purchase, &["order_bump", "parent_purchase_transaction"]),
        );
        push(
            &mut meta,
            "checkout_country",
            string_at(purchase, &["checkout_country", "iso"]),
        );
        push(&mut meta, "sck", string_at(purchase, &["origin", "sck"]));
        push(
            &mut meta,
            "business_model",
            string_field(purchase, "business_model"),
        );
        push(
            &mut meta,
            "invoice_by",
            string_field(purchase, "invoice_by"),
        );
        push(
            &mut meta,
            "product_ucode",
            product.and_then(|p| string_field(p, "ucode")),
        );
        Ok(Sale {
            transaction,
            status: unify_status(str_field(purchase, "status").unwrap_or_default()),
            price,
            fee,
            payment_type: string_at(purchase, &["payment", "type"]),
            failure_reason: string_at(purchase, &["payment", "refusal_reason"]),
            order_date: ms(purchase, "order_date"),
            email: buyer.and_then(|b| string_field(b, "email")),
            product_id: product.and_then(|p| p.get("id")).and_then(id_value),
            product_name: product.and_then(|p| string_field(p, "name")),
            offer_code: string_at(purchase, &["offer", "code"]),
            installments: at(purchase, &["payment", "installments_number"]).and_then(Value::as_i64),
            recurrence: i64_field(purchase, "recurrence_number")
                .or_else(|| i64_field(purchase, "recurrency_number")),
            address: buyer.and_then(address),
            shipping: optional(
                &mut unread,
                "total_shipping",
                money_at(text, &["data", "shipping", "cost"], &WEBHOOK_CURRENCY),
            ),
            unread,
            order_metadata: meta,
        })
    }

    /// Read one `GET /payments/api/v1/sales/history` item.
    pub fn from_api(text: &str, item: &Value) -> Result<Sale, String> {
        let purchase = obj(item, &["purchase"]).ok_or("sales item has no purchase")?;
        let transaction =
            string_field(purchase, "transaction").ok_or("sales item has no transaction")?;
        let price = money_at(text, &["purchase", "price"], &API_CURRENCY)?
            .ok_or("sales item has no price")?;
        let mut unread = Vec::new();
        let fee = match raw_at(text, &["purchase", "hotmart_fee"]) {
            Some(f) => optional(
                &mut unread,
                "fee",
                money_in_field(f.get(), "total", &API_CURRENCY),
            ),
            None => None,
        };
        let buyer = obj(item, &["buyer"]);
        let product = obj(item, &["product"]);
        let mut meta = Vec::new();
        push(
            &mut meta,
            "approved_date",
            ms_text(purchase, "approved_date"),
        );
        push(
            &mut meta,
            "warranty_expire_date",
            ms_text(purchase, "warranty_expire_date"),
        );
        push(
            &mut meta,
            "is_subscription",
            text_of(purchase.get("is_subscription")),
        );
        push(
            &mut meta,
            "commission_as",
            string_field(purchase, "commission_as"),
        );
        push(
            &mut meta,
            "payment_mode",
            string_at(purchase, &["offer", "payment_mode"]),
        );
        push(
            &mut meta,
            "sck",
            string_at(purchase, &["tracking", "source_sck"]),
        );
        push(
            &mut meta,
            "tracking_source",
            string_at(purchase, &["tracking", "source"]),
        );
        push(
            &mut meta,
            "buyer_ucode",
            buyer.and_then(|b| string_field(b, "ucode")),
        );
        push(
            &mut meta,
            "producer_ucode",
            string_at(item, &["producer", "ucode"]),
        );
        Ok(Sale {
            transaction,
            status: unify_status(str_field(purchase, "status").unwrap_or_default()),
            price,
            fee,
            payment_type: at(purchase, &["payment", "type"])
                .or_else(|| at(purchase, &["payment", "method"]))
                .and_then(Value::as_str)
                .map(str::to_owned),
            failure_reason: string_at(purchase, &["payment", "refusal_reason"]),
            order_date: ms(purchase, "order_date"),
            email: buyer.and_then(|b| string_field(b, "email")),
            product_id: product.and_then(|p| p.get("id")).and_then(id_value),
            product_name: product.and_then(|p| string_field(p, "name")),
            offer_code: string_at(purchase, &["offer", "code"]),
            installments: at(purchase, &["payment", "installments_number"]).and_then(Value::as_i64),
            recurrence: i64_field(purchase, "recurrency_number")
                .or_else(|| i64_field(purchase, "recurrence_number")),
            address: None,
            shipping: None,
            unread,
            order_metadata: meta,
        })
    }

    fn customer_id(&self) -> Option<String> {
        self.email.as_ref().map(|e| e.to_ascii_lowercase())
    }

    /// Details shared by both sources, kept on the payment.
    fn payment_metadata(&self) -> Vec<(String, String)> {
        let mut meta = Vec::new();
        push(&mut meta, "product_id", self.product_id.clone());
        push(&mut meta, "offer_code", self.offer_code.clone());
        push(
            &mut meta,
            "installments_number",
            self.installments.map(|n| n.to_string()),
        );
        push(
            &mut meta,
            "recurrence_number",
            self.recurrence.map(|n| n.to_string()),
        );
        push(&mut meta, "payment_type", self.payment_type.clone());
        meta
    }

    /// The payment record.
    pub fn payment(&self) -> Payment {
        let ((status, _, _), status_raw) =
            enums::map(&self.status, SALE_STATUS, UNKNOWN_SALE_STATUS);
        Payment {
            external_id: self.transaction.clone(),
            order_external_id: Some(self.transaction.clone()),
            customer_external_id: self.customer_id(),
            invoice_external_id: None,
            amount: self.price.clone(),
            amount_captured: None,
            amount_refunded: (self.status == "REFUNDED").then(|| self.price.clone()),
            fee: self.fee.clone(),
            status,
            status_raw,
            method: self.payment_type.as_deref().map(method),
            description: self.product_name.clone(),
            failure_reason: self.failure_reason.clone(),
            created_at: self.order_date,
            metadata: self.payment_metadata(),
        }
    }

    /// The order record.
    pub fn order(&self) -> Order {
        let ((_, financial, status), status_raw) =
            enums::map(&self.status, SALE_STATUS, UNKNOWN_SALE_STATUS);
        let financial_raw = status_raw.clone();
        let mut metadata = self.payment_metadata();
        metadata.extend(self.order_metadata.iter().cloned());
        Order {
            external_id: self.transaction.clone(),
            number: Some(self.transaction.clone()),
            customer_external_id: self.customer_id(),
            email: self.email.clone(),
            status,
            status_raw: Some(status_raw),
            financial_status: financial,
            financial_status_raw: Some(financial_raw),
            fulfillment_status: FulfillmentStatus::Unknown,
            fulfillment_status_raw: None,
            subtotal: None,
            total_tax: None,
            total_discounts: None,
            total_shipping: self.shipping.clone(),
            total: self.price.clone(),
            line_items: vec![LineItem {
                external_id: None,
                product_external_id: self.product_id.clone(),
                variant_external_id: None,
                sku: self.offer_code.clone(),
                title: self.product_name.clone().unwrap_or_default(),
                quantity: 1,
                unit_price: Some(self.price.clone()),
                total: Some(self.price.clone()),
            }],
            billing_address: self.address.clone(),
            shipping_address: None,
            created_at: self.order_date,
            updated_at: None,
            cancelled_at: None,
            cancel_reason: None,
            metadata,
        }
    }

    /// Order, payment and, by status, a refund or a chargeback, each with the warnings of
    /// the fields that could not be read. `at` is when the source says the change happened
    /// (the webhook's `creation_date`), for refunds and chargebacks.
    pub fn records(&self, at: Option<Datetime>) -> Vec<CanonicalRecord> {
        let mut records = self.records_unwarned(at);
        let mut w = sluice_sdk::record::Warnings::new();
        for (field, reason) in &self.unread {
            w.push(field.clone(), reason);
        }
        w.attach(&mut records);
        records
    }

    fn records_unwarned(&self, at: Option<Datetime>) -> Vec<CanonicalRecord> {
        let mut records = vec![
            observed(RecordData::Order(self.order())),
            observed(RecordData::Payment(self.payment())),
        ];
        match self.status.as_str() {
            "REFUNDED" => records.push(observed(RecordData::Refund(Refund {
                external_id: self.transaction.clone(),
                payment_external_id: Some(self.transaction.clone()),
                order_external_id: Some(self.transaction.clone()),
                customer_external_id: self.customer_id(),
                amount: self.price.clone(),
                status: RefundStatus::Succeeded,
                status_raw: self.status.clone(),
                reason: None,
                created_at: at,
                metadata: Vec::new(),
            }))),
            // The buyer's refund request: pending until Hotmart decides.
            "DISPUTE" | "PROTESTED" => records.push(observed(RecordData::Refund(Refund {
                external_id: self.transaction.clone(),
                payment_external_id: Some(self.transaction.clone()),
                order_external_id: Some(self.transaction.clone()),
                customer_external_id: self.customer_id(),
                amount: self.price.clone(),
                status: RefundStatus::Pending,
                status_raw: self.status.clone(),
                reason: None,
                created_at: at,
                metadata: Vec::new(),
            }))),
            "CHARGEBACK" => records.push(observed(RecordData::Chargeback(Chargeback {
                external_id: self.transaction.clone(),
                payment_external_id: Some(self.transaction.clone()),
                amount: self.price.clone(),
                status: ChargebackStatus::Lost,
                status_raw: self.status.clone(),
                reason: None,
                created_at: at,
                metadata: Vec::new(),
            }))),
            _ => {}
        }
        records
    }
}

/// The value of an optional field's reading, or `None` with the reason noted in `unread`.
fn optional<T>(
    unread: &mut Vec<(String, String)>,
    field: &str,
    read: Result<Option<T>, String>,
) -> Option<T> {
    read.unwrap_or_else(|reason| {
        unread.push((field.to_string(), reason));
        None
    })
}

/// A buyer's address object (the anonymised deliveries have a string there: no address).
fn address(buyer: &Value) -> Option<Address> {
    let a = obj(buyer, &["address"])?;
    let line1 = match (string_field(a, "address"), string_field(a, "number")) {
        (Some(street), Some(n)) => Some(format!("{street}, {n}")),
        (street, _) => street,
    };
    let line2 = [
        string_field(a, "complement"),
        string_field(a, "neighborhood"),
    ]
    .into_iter()
    .flatten()
    .collect::<Vec<_>>()
    .join(", ");
    Some(Address {
        name: string_field(buyer, "name"),
        company: None,
        line1,
        line2: Some(line2).filter(|l| !l.is_empty()),
        city: string_field(a, "city"),
        region: string_field(a, "state"),
        postal_code: string_field(a, "zipcode"),
        country_code: string_field(a, "country_iso").map(|c| c.to_ascii_uppercase()),
        phone: string_field(buyer, "checkout_phone"),
    })
}

fn observed(data: RecordData) -> CanonicalRecord {
    sluice_sdk::record::record(Change::Observed, data)
}

fn unmapped(external_id: Option<String>, object_type: &str) -> CanonicalRecord {
    sluice_sdk::record::unmapped(external_id, object_type)
}

/// The unmapped record of an event Sluice has no canonical record for.
fn unmapped_event(event: &str, data: &Value) -> CanonicalRecord {
    if event.starts_with("CLUB_") {
        // Members-area activity: the user's e-mail is the only key.
        return unmapped(lower_email(obj(data, &["user"])), "club");
    }
    if event == "PURCHASE_OUT_OF_SHOPPING_CART" {
        return unmapped(lower_email(obj(data, &["buyer"])), "abandoned_cart");
    }
    unmapped(None, &event.to_ascii_lowercase())
}

fn subscription_status(raw: Option<&str>, event: &str) -> (SubscriptionStatus, String) {
    match raw.filter(|s| !s.is_empty()) {
        Some(s) => enums::map(s, SUBSCRIPTION_STATUS, SubscriptionStatus::Unknown),
        None => (SubscriptionStatus::Unknown, event.to_string()),
    }
}

fn subscription(external_id: String, status: (SubscriptionStatus, String)) -> Subscription {
    Subscription {
        external_id,
        customer_external_id: None,
        plan_external_id: None,
        plan_name: None,
        status: status.0,
        status_raw: status.1,
        amount: None,
        interval: None,
        interval_count: None,
        current_period_start: None,
        current_period_end: None,
        next_charge_at: None,
        cancel_at_period_end: false,
        cancelled_at: None,
        created_at: None,
        metadata: Vec::new(),
    }
}

fn updated(s: Subscription) -> CanonicalRecord {
    sluice_sdk::record::record(Change::Updated, RecordData::Subscription(s))
}

fn code(v: Option<&Value>, key: &str) -> Option<String> {
    v.and_then(|o| string_field(o, key))
}

/// `SUBSCRIPTION_CANCELLATION`: `data.subscriber.code`, `data.subscription.{id, plan}`,
/// `cancellation_date`, `date_next_charge`, `actual_recurrence_value` (no currency is given,
/// so it is kept as decimal text in the metadata, not as money).
fn subscription_cancellation(text: &str, data: &Value, event: &str) -> CanonicalRecord {
    let subscriber = obj(data, &["subscriber"]);
    let Some(id) = code(subscriber, "code") else {
        return unmapped(None, "subscription");
    };
    let mut s = subscription(id, (SubscriptionStatus::Cancelled, event.to_string()));
    s.customer_external_id = lower_email(subscriber);
    s.plan_external_id = at(data, &["subscription", "plan", "id"]).and_then(id_value);
    s.plan_name = string_at(data, &["subscription", "plan", "name"]);
    s.next_charge_at = ms(data, "date_next_charge");
    s.cancelled_at = ms(data, "cancellation_date");
    push(
        &mut s.metadata,
        "subscription_id",
        at(data, &["subscription", "id"]).and_then(id_value),
    );
    push(
        &mut s.metadata,
        "product_id",
        at(data, &["product", "id"]).and_then(id_value),
    );
    push(
        &mut s.metadata,
        "actual_recurrence_value",
        raw_at(text, &["data", "actual_recurrence_value"]).and_then(decimal_text),
    );
    updated(s)
}

/// `SWITCH_PLAN`: `data.subscription.{subscriber_code, status, user}`, `data.plans[]` with the
/// `current` one, `switch_plan_date`.
fn switch_plan(data: &Value, event: &str) -> CanonicalRecord {
    let sub = obj(data, &["subscription"]);
    let Some(id) = code(sub, "subscriber_code") else {
        return unmapped(None, "subscription");
    };
    let mut s = subscription(
        id,
        subscription_status(sub.and_then(|s| str_field(s, "status")), event),
    );
    s.customer_external_id = lower_email(sub.and_then(|s| obj(s, &["user"])));
    let plans = data
        .get("plans")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let current = plans
        .iter()
        .find(|p| p.get("current") == Some(&Value::Bool(true)));
    let previous = plans
        .iter()
        .find(|p| p.get("current") == Some(&Value::Bool(false)));
    s.plan_external_id = current.and_then(|p| p.get("id")).and_then(id_value);
    s.plan_name = current.and_then(|p| string_field(p, "name"));
    s.next_charge_at = sub.and_then(|s| ms(s, "date_next_charge"));
    push(
        &mut s.metadata,
        "switch_plan_date",
        ms_text(data, "switch_plan_date"),
    );
    push(
        &mut s.metadata,
        "previous_plan_id",
        previous.and_then(|p| p.get("id")).and_then(id_value),
    );
    push(
        &mut s.metadata,
        "offer_key",
        current
            .and_then(|p| at(p, &["offer", "key"]))
            .and_then(Value::as_str)
            .map(str::to_owned),
    );
    push(
        &mut s.metadata,
        "product_id",
        sub.and_then(|s| at(s, &["product", "id"]))
            .and_then(id_value),
    );
    updated(s)
}

/// `UPDATE_SUBSCRIPTION_CHARGE_DATE`: `data.subscriber.code`, `data.subscription.{status,
/// dateNextCharge (RFC 3339), newChargeDay, oldChargeDay}`, `data.plan`. Hotmart's own
/// documentation spells them `date_next_charge`, `new_charge_day`, `old_charge_day`, and
/// real deliveries use both: either is read.
fn charge_date(data: &Value, event: &str) -> CanonicalRecord {
    let subscriber = obj(data, &["subscriber"]);
    let Some(id) = code(subscriber, "code") else {
        return unmapped(None, "subscription");
    };
    let sub = obj(data, &["subscription"]);
    let mut s = subscription(
        id,
        subscription_status(sub.and_then(|s| str_field(s, "status")), event),
    );
    s.customer_external_id = lower_email(subscriber);
    s.plan_external_id = at(data, &["plan", "id"]).and_then(id_value);
    s.plan_name = string_at(data, &["plan", "name"]);
    let either = |camel: &str, snake: &str| sub.and_then(|s| s.get(camel).or_else(|| s.get(snake)));
    s.next_charge_at = match either("dateNextCharge", "date_next_charge") {
        Some(Value::String(t)) => parse_rfc3339(t).ok(),
        Some(Value::Number(n)) => n.as_i64().map(datetime_from_unix_millis),
        _ => None,
    };
    push(
        &mut s.metadata,
        "new_charge_day",
        text_of(either("newChargeDay", "new_charge_day")),
    );
    push(
        &mut s.metadata,
        "old_charge_day",
        text_of(either("oldChargeDay", "old_charge_day")),
    );
    push(
        &mut s.metadata,
        "offer_code",
        string_at(data, &["plan", "offer", "code"]),
    );
    push(
        &mut s.metadata,
        "product_id",
        sub.and_then(|s| at(s, &["product", "id"]))
            .and_then(id_value),
    );
    updated(s)
}

/// Normalize a postback body (its exact bytes).
pub fn normalize_webhook(payload: &[u8]) -> Result<Vec<CanonicalRecord>, String> {
    let text = std::str::from_utf8(payload).map_err(|e| format!("body is not UTF-8: {e}"))?;
    let body: Value = serde_json::from_str(text).map_err(|e| format!("body is not JSON: {e}"))?;
    let event = str_field(&body, "event").ok_or("postback has no string event")?;
    let data = body.get("data").unwrap_or(&Value::Null);
    let mut records = match event {
        e if e.starts_with("PURCHASE_") && obj(data, &["purchase"]).is_some() => {
            match Sale::from_webhook(text, &body) {
                Ok(sale) => sale.records(creation_date(&body)),
                // A sale the driver cannot read whole is kept, with the reason.
                Err(reason) => vec![sluice_sdk::record::unmapped_because(
                    string_at(data, &["purchase", "transaction"]),
                    "sale",
                    reason,
                )],
            }
        }
        "SUBSCRIPTION_CANCELLATION" => vec![subscription_cancellation(text, data, event)],
        "SWITCH_PLAN" => vec![switch_plan(data, event)],
        "UPDATE_SUBSCRIPTION_CHARGE_DATE" => vec![charge_date(data, event)],
        other => vec![unmapped_event(other, data)],
    };
    let mut warnings = sluice_sdk::record::Warnings::new();
    match str_field(&body, "version") {
        Some(POSTBACK_VERSION) => {}
        Some(v) => warnings.push(
            "version",
            format!("postback version {v} is not {POSTBACK_VERSION}; mapped as {POSTBACK_VERSION}"),
        ),
        None => warnings.push(
            "version",
            format!("the postback has no version; mapped as {POSTBACK_VERSION}"),
        ),
    }
    warnings.attach(&mut records);
    Ok(records)
}

/// The postback version the driver maps.
pub const POSTBACK_VERSION: &str = "2.0.0";

/// Normalize one sales-history item (its exact bytes).
pub fn normalize_sale_item(payload: &[u8]) -> Result<Vec<CanonicalRecord>, String> {
    let text = std::str::from_utf8(payload).map_err(|e| format!("item is not UTF-8: {e}"))?;
    let item: Value = serde_json::from_str(text).map_err(|e| format!("item is not JSON: {e}"))?;
    Ok(Sale::from_api(text, &item)?.records(None))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unreadable_fee_is_a_warning_not_a_lost_sale() {
        let body = br#"{"id":"e1","event":"PURCHASE_APPROVED","version":"2.0.0","creation_date":1700000000000,"data":{"purchase":{"transaction":"HP1","status":"APPROVED","price":{"value":10,"currency_value":"BRL"},"full_price":{"value":12.5,"currency_value":"BRL"}},"commissions":[{"source":"MARKETPLACE","value":1,"currency_value":"XBT"}]}}"#;
        let records = normalize_webhook(body).unwrap();
        assert_eq!(records.len(), 2);
        let RecordData::Payment(p) = &records[1].data else {
            panic!("{records:?}")
        };
        assert_eq!((p.amount.amount_minor, p.fee.as_ref()), (1250, None));
        for r in &records {
            assert_eq!(r.warnings.len(), 1, "{r:?}");
            assert_eq!(r.warnings[0].field, "fee");
            assert!(
                r.warnings[0].reason.contains("XBT"),
                "{}",
                r.warnings[0].reason
            );
        }
        // Another postback version: mapped the same, with a warning.
        let v1 = std::str::from_utf8(body).unwrap().replace("2.0.0", "1.0.0");
        let records = normalize_webhook(v1.as_bytes()).unwrap();
        assert!(records[0].warnings.iter().any(|w| w.field == "version"));
    }

    #[test]
    fn unifies_spellings() {
        assert_eq!(unify_status("CANCELED"), "CANCELLED");
        assert_eq!(unify_status("CANCELLED"), "CANCELLED");
        assert_eq!(unify_status("COMPLETED"), "COMPLETE");
        assert_eq!(unify_status("BILLET_PRINTED"), "PRINTED_BILLET");
        assert_eq!(unify_status("approved"), "APPROVED");
    }

    #[test]
    fn every_documented_status_is_mapped() {
        for s in crate::settings::ALL_TRANSACTION_STATUSES {
            let (payment, financial, order) = enums::map(s, SALE_STATUS, UNKNOWN_SALE_STATUS).0;
            assert_ne!(payment, PaymentStatus::Unknown, "{s}");
            assert_ne!(financial, FinancialStatus::Unknown, "{s}");
            assert_ne!(order, OrderStatus::Unknown, "{s}");
        }
    }

    #[test]
    fn methods() {
        assert_eq!(method("CREDIT_CARD"), "card");
        assert_eq!(method("PIX"), "pix");
        assert_eq!(method("BILLET"), "billet");
        assert_eq!(method("WALLET"), "wallet");
    }
}
