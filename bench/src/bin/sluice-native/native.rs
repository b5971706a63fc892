//! The Stripe driver's own code compiled into the host, run in place of its component by
//! the `sluice-native` server, so `cargo xtask bench` can show what the sandbox costs end
//! to end. Same server, same pipeline, same
//! commit; only the driver call differs: verification with the host's HMAC over the
//! installation's secret, one JSON parse, the driver's normalization, and a field-by-field
//! conversion of its records to the host's types.

use sluice_driver_stripe::{WEBHOOK_SECRET, events, normalize, settings, signature};
use sluice_sdk::bindings::sluice::driver as sdk;

use sluice::crypto::{HmacAlgorithm, any_equal, hmac as compute_hmac};
use sluice::installations::CachedInstallation;
use sluice::pipeline::InProcessDriver;
use sluice::runtime::CallError;
use sluice::wit::ingest::{ReceivedEvent, WebhookOutcome};
use sluice::wit::types::{DriverError, IncomingRequest};
use sluice::wit::{canonical as host, types as host_types};

/// The Stripe driver, natively.
pub struct NativeStripe;

impl InProcessDriver for NativeStripe {
    fn receive(
        &self,
        installation: &CachedInstallation,
        request: &IncomingRequest,
        now: i64,
    ) -> Result<WebhookOutcome, CallError> {
        receive(installation, request, now)
    }
}

/// The Stripe driver's `receive`, natively.
fn receive(
    installation: &CachedInstallation,
    request: &IncomingRequest,
    now: i64,
) -> Result<WebhookOutcome, CallError> {
    let refuse = |e: DriverError| CallError::Driver(e);
    let settings = settings::parse(&installation.settings)
        .map_err(|e| refuse(DriverError::InvalidSettings(e)))?;
    let secret = installation
        .secret(WEBHOOK_SECRET)
        .map_err(|e| CallError::Trap(e.to_string()))?
        .ok_or_else(|| {
            refuse(DriverError::InvalidSettings(
                "the installation has no webhook_secret".into(),
            ))
        })?;
    let header = request
        .headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(signature::HEADER))
        .map(|(_, v)| v.as_str());
    signature::verify(
        header,
        &request.body,
        now,
        Some(settings.tolerance_seconds),
        |message, candidates| {
            let expected = compute_hmac(HmacAlgorithm::Sha256, secret.expose(), message);
            Ok::<_, std::convert::Infallible>(any_equal(&expected, candidates))
        },
    )
    .map_err(|e| refuse(DriverError::Unauthorized(e.to_string())))?;
    let event: serde_json::Value = serde_json::from_slice(&request.body)
        .map_err(|e| refuse(DriverError::BadRequest(format!("body is not JSON: {e}"))))?;
    let raw = events::raw_event_from(&event, request.body.clone())
        .map_err(|e| refuse(DriverError::BadRequest(e)))?;
    let records = normalize::normalize_event(&event)
        .map(|list| list.into_iter().map(Conv::conv).collect())
        .map_err(|e| DriverError::BadRequest(e.to_string()));
    Ok(WebhookOutcome {
        events: vec![ReceivedEvent {
            raw: raw.conv(),
            records,
        }],
        reply: None,
        revoked: None,
    })
}

/// A value of a guest-side WIT type as the same value of the host-side type.
trait Conv<T> {
    fn conv(self) -> T;
}

macro_rules! same {
    ($($t:ty),*) => {$(
        impl Conv<$t> for $t {
            fn conv(self) -> $t {
                self
            }
        }
    )*};
}

same!(String, i64, u32, bool);

impl<A: Conv<B>, B> Conv<Option<B>> for Option<A> {
    fn conv(self) -> Option<B> {
        self.map(Conv::conv)
    }
}

impl<A: Conv<B>, B> Conv<Vec<B>> for Vec<A> {
    fn conv(self) -> Vec<B> {
        self.into_iter().map(Conv::conv).collect()
    }
}

impl Conv<(String, String)> for (String, String) {
    fn conv(self) -> (String, String) {
        self
    }
}

impl Conv<Vec<u8>> for Vec<u8> {
    fn conv(self) -> Vec<u8> {
        self
    }
}

/// `impl Conv` for records with the listed fields (the compiler checks they are all there).
macro_rules! records {
    ($($from:path => $to:path { $($f:ident),* $(,)? })*) => {$(
        impl Conv<$to> for $from {
            fn conv(self) -> $to {
                $to { $($f: self.$f.conv()),* }
            }
        }
    )*};
}

/// `impl Conv` for enums with the listed cases.
macro_rules! enums {
    ($($from:ident => $to:ident { $($v:ident),* $(,)? })*) => {$(
        impl Conv<host::$to> for sdk::canonical::$from {
            fn conv(self) -> host::$to {
                match self { $(sdk::canonical::$from::$v => host::$to::$v),* }
            }
        }
    )*};
}

records! {
    sdk::types::Datetime => host_types::Datetime { seconds, nanoseconds }
    sdk::types::Money => host_types::Money { amount_minor, currency, exact }
    sdk::types::RawEvent => host_types::RawEvent {
        provider_event_id, event_type, account_key, occurred_at, payload, api_version,
    }
    sdk::canonical::Address => host::Address {
        name, company, line1, line2, city, region, postal_code, country_code, phone,
    }
    sdk::canonical::LineItem => host::LineItem {
        external_id, product_external_id, variant_external_id, sku, title, quantity,
        unit_price, total,
    }
    sdk::canonical::Order => host::Order {
        external_id, number, customer_external_id, email, status, status_raw,
        financial_status, financial_status_raw, fulfillment_status, fulfillment_status_raw,
        subtotal, total_tax, total_discounts, total_shipping, total, line_items,
        billing_address, shipping_address, created_at, updated_at, cancelled_at,
        cancel_reason, metadata,
    }
    sdk::canonical::Payment => host::Payment {
        external_id, order_external_id, customer_external_id, invoice_external_id, amount,
        amount_captured, amount_refunded, fee, status, status_raw, method, description,
        failure_reason, created_at, metadata,
    }
    sdk::canonical::Refund => host::Refund {
        external_id, payment_external_id, order_external_id, customer_external_id, amount,
        status, status_raw, reason, created_at, metadata,
    }
    sdk::canonical::Chargeback => host::Chargeback {
        external_id, payment_external_id, amount, status, status_raw, reason, created_at,
        metadata,
    }
    sdk::canonical::Customer => host::Customer {
        external_id, email, name, first_name, last_name, phone, address, created_at,
        updated_at, metadata,
    }
    sdk::canonical::Subscription => host::Subscription {
        external_id, customer_external_id, plan_external_id, plan_name, status, status_raw,
        amount, interval, interval_count, current_period_start, current_period_end,
        next_charge_at, cancel_at_period_end, cancelled_at, created_at, metadata,
    }
    sdk::canonical::Invoice => host::Invoice {
        external_id, number, customer_external_id, subscription_external_id,
        payment_external_id, status, status_raw, total, amount_due, amount_paid,
        amount_remaining, line_items, created_at, due_at, paid_at, metadata,
    }
    sdk::canonical::Unmapped => host::Unmapped { external_id, object_type, reason }
    sdk::canonical::CanonicalRecord => host::CanonicalRecord { change, data, warnings, enriched_from }
    sdk::canonical::Warning => host::Warning { field, reason }
    sdk::canonical::Enrichment => host::Enrichment { source, fields }
}

enums! {
    OrderStatus => OrderStatus { Open, Completed, Cancelled, Unknown }
    FinancialStatus => FinancialStatus {
        Pending, Authorized, Paid, PartiallyPaid, PartiallyRefunded, Refunded, Voided, Expired,
        Unknown,
    }
    FulfillmentStatus => FulfillmentStatus { Unfulfilled, Partial, Fulfilled, Restocked, Unknown }
    PaymentStatus => PaymentStatus {
        Pending, RequiresAction, Authorized, Succeeded, Failed, Cancelled, Refunded,
        PartiallyRefunded, Disputed, Expired, Unknown,
    }
    RefundStatus => RefundStatus { Pending, Succeeded, Failed, Cancelled, Unknown }
    ChargebackStatus => ChargebackStatus { NeedsResponse, UnderReview, Won, Lost, Warning, Unknown }
    SubscriptionStatus => SubscriptionStatus {
        Trialing, Active, PastDue, Unpaid, Cancelled, Incomplete, Expired, Paused, Unknown,
    }
    InvoiceStatus => InvoiceStatus { Draft, Open, Paid, Uncollectible, Void, Unknown }
    Change => Change { Created, Updated, Deleted, Observed }
}

impl Conv<host::RecordData> for sdk::canonical::RecordData {
    fn conv(self) -> host::RecordData {
        use sdk::canonical::RecordData as R;
        match self {
            R::Order(v) => host::RecordData::Order(v.conv()),
            R::Payment(v) => host::RecordData::Payment(v.conv()),
            R::Refund(v) => host::RecordData::Refund(v.conv()),
            R::Chargeback(v) => host::RecordData::Chargeback(v.conv()),
            R::Customer(v) => host::RecordData::Customer(v.conv()),
            R::Subscription(v) => host::RecordData::Subscription(v.conv()),
            R::Invoice(v) => host::RecordData::Invoice(v.conv()),
            R::Unmapped(v) => host::RecordData::Unmapped(v.conv()),
        }
    }
}
