//! Stripe event envelopes → raw events (webhooks and polling), and the Connect route key.

use serde_json::Value;
use sluice_sdk::bindings::exports::sluice::driver::ingest::RawEvent;
use sluice_sdk::json::{i64_field, str_field, string_field};
use sluice_sdk::time::datetime_from_unix;

/// The event type given to an event that carries none (a signed event is kept, not refused;
/// it normalizes to `unmapped`).
pub const UNTYPED: &str = "unknown";

/// The event Stripe sends when a connected account disconnects the platform.
pub const DEAUTHORIZED: &str = "account.application.deauthorized";

/// Build a raw event from one Stripe event's exact JSON bytes (kept as the payload).
/// Errors (human-readable) when it is not a JSON object with a string `id`.
pub fn raw_event(payload: &[u8]) -> Result<RawEvent, String> {
    let event: Value =
        serde_json::from_slice(payload).map_err(|e| format!("body is not JSON: {e}"))?;
    raw_event_from(&event, payload.to_vec())
}

/// Build a raw event from a parsed Stripe event and the bytes to keep as its payload.
pub fn raw_event_from(event: &Value, payload: Vec<u8>) -> Result<RawEvent, String> {
    if !event.is_object() {
        return Err("event is not a JSON object".into());
    }
    let id = string_field(event, "id").ok_or("event has no string id")?;
    let event_type = string_field(event, "type").unwrap_or_else(|| UNTYPED.to_string());
    // Thin events (`v2.core.event`) name the account in `context` and give `created` in
    // RFC 3339.
    let occurred_at = i64_field(event, "created")
        .map(datetime_from_unix)
        .or_else(|| {
            str_field(event, "created").and_then(|t| sluice_sdk::time::parse_rfc3339(t).ok())
        });
    Ok(RawEvent {
        provider_event_id: id,
        event_type,
        account_key: string_field(event, "account").or_else(|| string_field(event, "context")),
        occurred_at,
        payload,
        api_version: None,
    })
}

/// The Connect account of a webhook body (`"account": "acct_…"`, or a thin event's
/// `"context"`); `None` when the body is not JSON or names no account. Never fails.
pub fn route_key(body: &[u8]) -> Option<String> {
    let event: Value = serde_json::from_slice(body).ok()?;
    str_field(&event, "account")
        .or_else(|| str_field(&event, "context"))
        .filter(|a| !a.is_empty())
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_raw_events() {
        let body = br#"{"id":"evt_1","type":"charge.succeeded","created":1700000000,"account":"acct_9","data":{}}"#;
        let e = raw_event(body).unwrap();
        assert_eq!(e.provider_event_id, "evt_1");
        assert_eq!(e.event_type, "charge.succeeded");
        assert_eq!(e.account_key.as_deref(), Some("acct_9"));
        assert_eq!(e.occurred_at.map(|d| d.seconds), Some(1_700_000_000));
        assert_eq!(e.payload, body);
        assert!(raw_event(b"{").is_err());
        assert!(raw_event(b"[]").is_err());
        assert!(raw_event(br#"{"id":1,"type":"x"}"#).is_err());
        let untyped = raw_event(br#"{"id":"evt_1","object":"event"}"#).unwrap();
        assert_eq!(untyped.event_type, UNTYPED);
        // The thin event of Stripe's 2024-09-30.acacia changelog, with a context.
        let thin = raw_event(br#"{"id":"evt_test_65R9Ijk8dKEYZcXeRWn16R9A7j1FSQ3w3TGDPLLGSM4CW0","object":"v2.core.event","type":"v1.billing.meter.error_report_triggered","livemode":false,"created":"2024-09-17T06:20:52.246Z","context":"acct_1","related_object":{"id":"mtr_test_61R9IeP0SgKbYROOx41PEAQhH0qO23oW","type":"billing.meter","url":"/v1/billing/meters/mtr_test_61R9IeP0SgKbYROOx41PEAQhH0qO23oW"}}"#).unwrap();
        assert_eq!(thin.account_key.as_deref(), Some("acct_1"));
        let at = thin.occurred_at.unwrap();
        assert_eq!((at.seconds, at.nanoseconds), (1_726_554_052, 246_000_000));
    }

    #[test]
    fn route_keys() {
        assert_eq!(
            route_key(br#"{"account":"acct_1"}"#).as_deref(),
            Some("acct_1")
        );
        assert_eq!(route_key(br#"{"id":"evt"}"#), None);
        assert_eq!(
            route_key(br#"{"object":"v2.core.event","context":"acct_2"}"#).as_deref(),
            Some("acct_2")
        );
        assert_eq!(route_key(b"garbage"), None);
        assert_eq!(route_key(br#"{"account":5}"#), None);
    }
}
