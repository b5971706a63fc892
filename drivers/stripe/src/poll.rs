//! Polling `GET /v1/events`: request URLs, cursors and page parsing (pure logic; the
//! component sends the request through the host's `http` import).
//!
//! Stripe lists events newest first and pages towards older ones with `starting_after`. A
//! *pass* therefore walks from the newest event down to the watermark of the previous pass:
//!
//! - request: `{api_base}/v1/events?limit=100[&created[gte]=<since>][&starting_after=<id>]`;
//! - each page's events are returned oldest-first;
//! - while `has_more`, the next cursor continues the pass after the page's oldest event;
//! - when the pass is done, the next cursor starts a new pass at `created >= newest created
//!   seen` (inclusive: events sharing that second are fetched again and deduplicated by the
//!   host on their event id, so none is missed).
//!
//! The cursor is opaque JSON text, e.g. `{"since":1700000000}` or
//! `{"since":1700000000,"top":1700000500,"after":"evt_123"}`. A cursor that is not JSON is
//! taken as an event id to continue after (`{"after": cursor}`).

use serde_json::value::RawValue;
use serde_json::{Map, Value, json};
use sluice_sdk::bindings::exports::sluice::driver::ingest::RawEvent;
use sluice_sdk::paging::encode_query_value;

use crate::events::raw_event_from;

/// The cursor of a backfill from `since` (Unix seconds): one pass over the events created
/// since then, newest first, as any pass.
pub fn backfill_cursor(since: i64) -> String {
    Cursor {
        since: Some(since),
        ..Cursor::default()
    }
    .to_text()
}

/// Page size (Stripe's maximum).
pub const PAGE_LIMIT: u32 = 100;

/// Where a poll resumes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cursor {
    /// Lower bound (`created[gte]`) of the current pass; `None` on the very first pass.
    pub since: Option<i64>,
    /// Newest `created` seen so far in the current pass.
    pub top: Option<i64>,
    /// Continue the current pass after this event id.
    pub after: Option<String>,
}

impl Cursor {
    /// Parse a cursor returned by an earlier poll (`None` → first pass).
    pub fn parse(text: Option<&str>) -> Cursor {
        let Some(text) = text.map(str::trim).filter(|t| !t.is_empty()) else {
            return Cursor::default();
        };
        match serde_json::from_str::<Value>(text) {
            Ok(v @ Value::Object(_)) => Cursor {
                since: v.get("since").and_then(Value::as_i64),
                top: v.get("top").and_then(Value::as_i64),
                after: v.get("after").and_then(Value::as_str).map(str::to_owned),
            },
            _ => Cursor {
                after: Some(text.to_string()),
                ..Cursor::default()
            },
        }
    }

    /// The cursor's text form.
    pub fn to_text(&self) -> String {
        let mut map = Map::new();
        if let Some(s) = self.since {
            map.insert("since".into(), json!(s));
        }
        if let Some(t) = self.top {
            map.insert("top".into(), json!(t));
        }
        if let Some(a) = &self.after {
            map.insert("after".into(), json!(a));
        }
        Value::Object(map).to_string()
    }
}

/// The URL of the page a cursor asks for.
pub fn events_url(api_base: &str, cursor: &Cursor) -> String {
    let mut url = format!(
        "{}/v1/events?limit={PAGE_LIMIT}",
        api_base.trim_end_matches('/')
    );
    if let Some(since) = cursor.since {
        url.push_str(&format!("&created%5Bgte%5D={since}"));
    }
    if let Some(after) = &cursor.after {
        url.push_str("&starting_after=");
        url.push_str(&encode_query_value(after));
    }
    url
}

/// One parsed page.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    /// The page's events, oldest first, each with its exact JSON text as payload.
    pub events: Vec<RawEvent>,
    /// The cursor for the next call.
    pub next: Cursor,
    /// Whether the current pass has more pages.
    pub has_more: bool,
}

/// Parse a `GET /v1/events` response body (`{"data": [...], "has_more": bool}`) fetched with
/// `cursor`.
pub fn parse_page(body: &[u8], cursor: &Cursor) -> Result<Page, String> {
    let envelope: Map<String, Value> = serde_json::from_slice(body)
        .map_err(|e| format!("events page is not a JSON object: {e}"))?;
    let has_more = envelope
        .get("has_more")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    // Second, borrowed parse to keep each event's exact text as its payload.
    let fields: std::collections::BTreeMap<String, &RawValue> =
        serde_json::from_slice(body).map_err(|e| format!("events page: {e}"))?;
    let data = fields.get("data").ok_or("events page has no data")?;
    let data: Vec<&RawValue> = serde_json::from_str(data.get())
        .map_err(|e| format!("events page data is not a list: {e}"))?;
    let mut events = Vec::with_capacity(data.len());
    let mut top = cursor.top;
    for text in &data {
        let value: Value = serde_json::from_str(text.get()).map_err(|e| e.to_string())?;
        let event = raw_event_from(&value, text.get().as_bytes().to_vec())?;
        if let Some(created) = event.occurred_at.as_ref().map(|d| d.seconds) {
            top = Some(top.map_or(created, |t| t.max(created)));
        }
        events.push(event);
    }
    let oldest = events.last().map(|e| e.provider_event_id.clone());
    events.reverse();
    let (next, has_more) = match oldest {
        Some(after) if has_more => (
            Cursor {
                since: cursor.since,
                top,
                after: Some(after),
            },
            true,
        ),
        _ => (
            Cursor {
                since: top.or(cursor.since),
                top: None,
                after: None,
            },
            false,
        ),
    };
    Ok(Page {
        events,
        next,
        has_more,
    })
}

/// The `error.message` of a Stripe error body, or a prefix of the body text.
pub fn error_message(status: u16, body: &[u8]) -> String {
    let message = serde_json::from_slice::<Value>(body).ok().and_then(|v| {
        v.pointer("/error/message")
            .and_then(Value::as_str)
            .map(str::to_owned)
    });
    match message {
        Some(m) => format!("Stripe answered {status}: {m}"),
        None => {
            let text = String::from_utf8_lossy(body);
            let short: String = text.chars().take(200).collect();
            format!("Stripe answered {status}: {short}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(id: &str, created: i64) -> String {
        format!(
            r#"{{"id":"{id}","object":"event","type":"charge.succeeded","created":{created},"data":{{"object":{{"id":"ch_1","object":"charge","amount":1.50e2}}}}}}"#
        )
    }

    #[test]
    fn cursor_round_trip() {
        let c = Cursor {
            since: Some(5),
            top: Some(9),
            after: Some("evt_1".into()),
        };
        assert_eq!(Cursor::parse(Some(&c.to_text())), c);
        assert_eq!(Cursor::parse(None), Cursor::default());
        assert_eq!(Cursor::parse(Some("evt_x")).after.as_deref(), Some("evt_x"));
    }

    #[test]
    fn urls() {
        assert_eq!(
            events_url("https://api.stripe.com", &Cursor::default()),
            "https://api.stripe.com/v1/events?limit=100"
        );
        let c = Cursor {
            since: Some(7),
            top: None,
            after: Some("evt_1 2".into()),
        };
        assert_eq!(
            events_url("http://127.0.0.1:1/", &c),
            "http://127.0.0.1:1/v1/events?limit=100&created%5Bgte%5D=7&starting_after=evt_1%202"
        );
    }

    #[test]
    fn pages_walk_back_then_start_a_new_pass() {
        let body = format!(
            r#"{{"object":"list","data":[{},{}],"has_more":true}}"#,
            ev("evt_3", 30),
            ev("evt_2", 20)
        );
        let page = parse_page(body.as_bytes(), &Cursor::default()).unwrap();
        let ids: Vec<_> = page
            .events
            .iter()
            .map(|e| e.provider_event_id.as_str())
            .collect();
        assert_eq!(ids, ["evt_2", "evt_3"]);
        assert_eq!(
            page.events[1].payload,
            ev("evt_3", 30).as_bytes(),
            "exact text kept"
        );
        assert!(page.has_more);
        assert_eq!(
            page.next,
            Cursor {
                since: None,
                top: Some(30),
                after: Some("evt_2".into())
            }
        );

        let body = format!(r#"{{"data":[{}],"has_more":false}}"#, ev("evt_1", 10));
        let page = parse_page(body.as_bytes(), &page.next).unwrap();
        assert!(!page.has_more);
        assert_eq!(
            page.next,
            Cursor {
                since: Some(30),
                top: None,
                after: None
            }
        );

        let page = parse_page(br#"{"data":[],"has_more":false}"#, &page.next).unwrap();
        assert!(page.events.is_empty());
        assert_eq!(
            page.next,
            Cursor {
                since: Some(30),
                top: None,
                after: None
            }
        );
    }

    #[test]
    fn bad_pages() {
        assert!(parse_page(b"nope", &Cursor::default()).is_err());
        assert!(parse_page(br#"{"has_more":false}"#, &Cursor::default()).is_err());
        assert!(parse_page(br#"{"data":{}}"#, &Cursor::default()).is_err());
        assert!(parse_page(br#"{"data":[{"type":"x"}]}"#, &Cursor::default()).is_err());
        // An event without a type is kept (it normalizes to `unmapped`).
        let page = parse_page(br#"{"data":[{"id":"evt"}]}"#, &Cursor::default()).unwrap();
        assert_eq!(page.events[0].event_type, crate::events::UNTYPED);
    }

    #[test]
    fn error_messages() {
        assert_eq!(
            error_message(401, br#"{"error":{"message":"Invalid API Key"}}"#),
            "Stripe answered 401: Invalid API Key"
        );
        assert_eq!(
            error_message(502, b"bad gateway"),
            "Stripe answered 502: bad gateway"
        );
    }
}
