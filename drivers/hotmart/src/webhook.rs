//! Postback 2.0.0 envelopes → raw events, and the hottok header policy.
//!
//! A Hotmart webhook body is `{"id", "creation_date" (epoch ms), "event", "version": "2.0.0",
//! "data"}`. Some test deliveries spell the date `creationDate`, and some carry a `null` date;
//! both are accepted (a missing date gives no `occurred-at`).
//!
//! Authentication is the static `X-HOTMART-HOTTOK` header, compared host-side in constant
//! time with the installation secret `hottok`. Policy: the header only (a `hottok` field some
//! bodies also carry is ignored, so a body cannot authenticate itself), the value exactly as
//! received (no trimming), and a missing or empty header is refused.
//!
//! Route key: Hotmart configures one webhook URL per account and its bodies carry no
//! account identifier (no producer id), so `route-key` is always `None`; Hotmart
//! installations use their own `/webhooks/{installation_id}` URL.

use serde_json::Value;
use sluice_sdk::bindings::exports::sluice::driver::ingest::RawEvent;
use sluice_sdk::json::{i64_field, string_field};
use sluice_sdk::time::datetime_from_unix_millis;
use sluice_sdk::{Datetime, headers};

/// The header carrying the hottok.
pub const HOTTOK_HEADER: &str = "X-HOTMART-HOTTOK";

/// What the refusal messages call the header.
pub const HOTTOK_WHAT: &str = "X-HOTMART-HOTTOK header";

/// The hottok presented by a request: the header's value exactly as received, `None` when
/// the header is absent or empty (which must be refused).
pub fn presented_hottok(request_headers: &[(String, String)]) -> Option<&str> {
    headers::get(request_headers, HOTTOK_HEADER).filter(|v| !v.is_empty())
}

/// `creation_date` (or `creationDate`) in epoch milliseconds, as a datetime.
pub fn creation_date(body: &Value) -> Option<Datetime> {
    i64_field(body, "creation_date")
        .or_else(|| i64_field(body, "creationDate"))
        .map(datetime_from_unix_millis)
}

/// Build the raw event of one postback from its exact bytes (kept as the payload).
/// Errors (human-readable) when it is not a JSON object with string `id` and `event`.
pub fn raw_event(payload: &[u8]) -> Result<RawEvent, String> {
    let body: Value =
        serde_json::from_slice(payload).map_err(|e| format!("body is not JSON: {e}"))?;
    if !body.is_object() {
        return Err("body is not a JSON object".into());
    }
    let id = string_field(&body, "id").ok_or("postback has no string id")?;
    let event = string_field(&body, "event").ok_or("postback has no string event")?;
    Ok(RawEvent {
        provider_event_id: id,
        event_type: event,
        account_key: None,
        occurred_at: creation_date(&body),
        payload: payload.to_vec(),
        api_version: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_raw_events() {
        let body = br#"{"id":"abc","creation_date":1763247745737,"event":"PURCHASE_APPROVED","version":"2.0.0","data":{}}"#;
        let e = raw_event(body).unwrap();
        assert_eq!(e.provider_event_id, "abc");
        assert_eq!(e.event_type, "PURCHASE_APPROVED");
        assert_eq!(e.account_key, None);
        assert_eq!(
            e.occurred_at,
            Some(Datetime {
                seconds: 1_763_247_745,
                nanoseconds: 737_000_000
            })
        );
        assert_eq!(e.payload, body);
        let camel = raw_event(br#"{"id":"a","creationDate":1000,"event":"X"}"#).unwrap();
        assert_eq!(camel.occurred_at.map(|d| d.seconds), Some(1));
        let null = raw_event(br#"{"id":"a","creation_date":null,"event":"X"}"#).unwrap();
        assert_eq!(null.occurred_at, None);
        for bad in [
            &b"{"[..],
            b"[]",
            br#"{"id":1,"event":"X"}"#,
            br#"{"id":"a"}"#,
            br#"{"id":"","event":"X"}"#,
            b"hottok=x&status=approved",
        ] {
            assert!(raw_event(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn hottok_header_policy() {
        let h = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        assert_eq!(
            presented_hottok(&h(&[("x-hotmart-hottok", "abc")])),
            Some("abc")
        );
        assert_eq!(
            presented_hottok(&h(&[("X-HOTMART-HOTTOK", " abc")])),
            Some(" abc")
        );
        assert_eq!(presented_hottok(&h(&[("X-Hotmart-Hottok", "")])), None);
        assert_eq!(
            presented_hottok(&h(&[("content-type", "application/json")])),
            None
        );
    }
}
