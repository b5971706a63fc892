//! Acme webhooks: the signature header and the event envelope.

use sluice_sdk::json::{Value, serde_json, string_field};
use sluice_sdk::time::parse_rfc3339;
use sluice_sdk::types::{Datetime, RawEvent};

/// The header carrying `sha256=<hex HMAC-SHA256 of the raw body>`.
pub const SIGNATURE_HEADER: &str = "X-Acme-Signature";

/// The hex signature of an `X-Acme-Signature` value; `None` when the header is missing or
/// uses another scheme. The HMAC itself is checked by the host, never here.
pub fn signature_hex(header: Option<&str>) -> Option<&str> {
    header?
        .trim()
        .strip_prefix("sha256=")
        .filter(|hex| !hex.is_empty())
}

/// One delivery's body → one raw event, keeping the exact bytes as the payload.
pub fn raw_event(body: &[u8]) -> Result<RawEvent, String> {
    let event: Value =
        serde_json::from_slice(body).map_err(|e| format!("body is not JSON: {e}"))?;
    Ok(RawEvent {
        provider_event_id: string_field(&event, "id").ok_or("event has no string id")?,
        event_type: string_field(&event, "type").ok_or("event has no string type")?,
        account_key: None, // one webhook URL per installation: nothing to route on
        occurred_at: created_at(&event)?,
        payload: body.to_vec(),
        api_version: None,
    })
}

/// The event's `created_at` (RFC 3339 with an offset) in UTC, when present.
pub fn created_at(event: &Value) -> Result<Option<Datetime>, String> {
    let text = string_field(event, "created_at");
    text.map(|t| parse_rfc3339(&t).map_err(|e| e.to_string()))
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_sdk::verify::decode_hex;

    #[test]
    fn signature_header() {
        let hex = "ab".repeat(32);
        let header = format!(" sha256={hex} ");
        assert_eq!(signature_hex(Some(&header)), Some(hex.as_str()));
        assert_eq!(decode_hex(&hex), Some(vec![0xab; 32]));
        for bad in [
            None,
            Some(""),
            Some("sha256="),
            Some(hex.as_str()),
            Some("sha1=abcd"),
        ] {
            assert_eq!(signature_hex(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn envelope() {
        let body =
            br#"{"id":"ev_1","type":"payment.completed","created_at":"2025-03-01T12:00:00+01:00"}"#;
        let event = raw_event(body).unwrap();
        assert_eq!(event.provider_event_id, "ev_1");
        assert_eq!(event.event_type, "payment.completed");
        assert_eq!(event.account_key, None);
        assert_eq!(event.occurred_at.map(|t| t.seconds), Some(1_740_826_800)); // 11:00Z
        assert_eq!(event.payload, body);
        for bad in [
            &b"{"[..],
            br#"{"type":"x"}"#,
            br#"{"id":"ev_1","type":"x","created_at":"yesterday"}"#,
        ] {
            assert!(raw_event(bad).is_err());
        }
    }
}
