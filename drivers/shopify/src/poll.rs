//! Polling `GET {api_base}/admin/api/{api_version}/orders.json` (pure logic; the component
//! sends the request through the host's `http` import with the access token injected as
//! `X-Shopify-Access-Token`).
//!
//! A *pass* lists every order updated at or after the watermark:
//!
//! - first page: `orders.json?status=any[&updated_at_min=<since>]&limit=250` (no
//!   `updated_at_min` on the very first pass: every order);
//! - further pages follow the `Link: <…page_info=…>; rel="next"` header; Shopify forbids
//!   any other filter with `page_info`, so those requests are `orders.json?limit=250&page_info=…`;
//! - when a page has no `next` link the pass is over and the next pass starts at the newest
//!   `updated_at` seen (inclusive: orders sharing that instant are listed again and
//!   deduplicated by the host on their provider event id, so none is missed).
//!
//! Each order becomes a raw event `orders/updated` with provider event id
//! `order:{id}:{updated_at}` (a new version of an order is a new event) and the order's exact
//! JSON text as payload.
//!
//! The cursor is JSON text with optional fields: `since` (RFC 3339 UTC, the pass's
//! `updated_at_min`), `top` (newest `updated_at` seen in the current pass, RFC 3339 UTC) and
//! `page_info` (continue the current pass), e.g.
//! `{"since":"2024-01-01T00:00:00Z","top":"2024-01-02T00:00:00Z","page_info":"abc"}`.

use serde_json::value::RawValue;
use serde_json::{Map, Value, json};
use sluice_sdk::bindings::exports::sluice::driver::ingest::RawEvent;
use sluice_sdk::json::{id_field, str_field};
use sluice_sdk::paging::{encode_query_value, link_next, query_param};
use sluice_sdk::{Datetime, time};

use crate::settings::Settings;

/// Page size (Shopify's maximum).
pub const PAGE_LIMIT: u32 = 250;

/// The event type of polled orders.
pub const POLLED_EVENT_TYPE: &str = "orders/updated";

/// The cursor of a backfill from `since` (RFC 3339): one pass over the orders updated
/// since then.
pub fn backfill_cursor(since: String) -> String {
    Cursor {
        since: Some(since),
        ..Cursor::default()
    }
    .to_text()
}

/// Where a poll resumes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cursor {
    /// `updated_at_min` of the current pass (RFC 3339 UTC); `None` on the first pass.
    pub since: Option<String>,
    /// Newest `updated_at` seen in the current pass (RFC 3339 UTC).
    pub top: Option<String>,
    /// Continue the current pass with this `page_info`.
    pub page_info: Option<String>,
}

impl Cursor {
    /// Parse a cursor from an earlier poll (`None` or garbage → first pass).
    pub fn parse(text: Option<&str>) -> Cursor {
        let Some(Value::Object(map)) = text.and_then(|t| serde_json::from_str::<Value>(t).ok())
        else {
            return Cursor::default();
        };
        let get = |k: &str| {
            map.get(k)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
        };
        Cursor {
            since: get("since"),
            top: get("top"),
            page_info: get("page_info"),
        }
    }

    /// The cursor's text form.
    pub fn to_text(&self) -> String {
        let mut map = Map::new();
        for (k, v) in [
            ("since", &self.since),
            ("top", &self.top),
            ("page_info", &self.page_info),
        ] {
            if let Some(v) = v {
                map.insert(k.into(), json!(v));
            }
        }
        Value::Object(map).to_string()
    }
}

/// The URL of the page a cursor asks for.
pub fn orders_url(settings: &Settings, cursor: &Cursor) -> String {
    let base = format!(
        "{}/admin/api/{}/orders.json",
        settings.api_base, settings.api_version
    );
    match &cursor.page_info {
        Some(page_info) => format!("{base}?limit={PAGE_LIMIT}&page_info={page_info}"),
        None => {
            let mut url = format!("{base}?status=any");
            if let Some(since) = &cursor.since {
                url.push_str("&updated_at_min=");
                url.push_str(&encode_query_value(since));
            }
            url.push_str(&format!("&limit={PAGE_LIMIT}"));
            url
        }
    }
}

/// One parsed page.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    /// One raw event per order, in the order listed.
    pub events: Vec<RawEvent>,
    /// The cursor for the next call.
    pub next: Cursor,
    /// Whether the current pass has more pages.
    pub has_more: bool,
}

fn later(a: &Datetime, b: &Datetime) -> bool {
    (a.seconds, a.nanoseconds) > (b.seconds, b.nanoseconds)
}

/// Parse an `orders.json` response (`{"orders": [...]}`) fetched with `cursor`; `link` is its
/// `Link` header.
pub fn parse_page(
    settings: &Settings,
    body: &[u8],
    link: Option<&str>,
    cursor: &Cursor,
) -> Result<Page, String> {
    let fields: std::collections::BTreeMap<String, &RawValue> = serde_json::from_slice(body)
        .map_err(|e| format!("orders page is not a JSON object: {e}"))?;
    let orders = fields.get("orders").ok_or("orders page has no orders")?;
    let orders: Vec<&RawValue> =
        serde_json::from_str(orders.get()).map_err(|e| format!("orders is not a list: {e}"))?;
    let mut top: Option<Datetime> = cursor
        .top
        .as_deref()
        .and_then(|t| time::parse_rfc3339(t).ok());
    let mut events = Vec::with_capacity(orders.len());
    for text in orders {
        let order: Value = serde_json::from_str(text.get()).map_err(|e| e.to_string())?;
        let id = id_field(&order, "id").ok_or("an order has no id")?;
        let updated_raw = str_field(&order, "updated_at")
            .ok_or_else(|| format!("order {id} has no updated_at"))?;
        let updated = time::parse_rfc3339(updated_raw).map_err(|e| format!("order {id}: {e}"))?;
        if top.as_ref().is_none_or(|t| later(&updated, t)) {
            top = Some(updated);
        }
        events.push(RawEvent {
            provider_event_id: format!("order:{id}:{updated_raw}"),
            event_type: POLLED_EVENT_TYPE.into(),
            account_key: Some(settings.shop.clone()),
            occurred_at: Some(updated),
            payload: text.get().as_bytes().to_vec(),
            api_version: Some(settings.api_version.clone()),
        });
    }
    let top = top.map(|t| time::to_rfc3339(&t));
    let page_info = link
        .and_then(link_next)
        .and_then(|url| query_param(&url, "page_info"))
        .filter(|p| !p.is_empty());
    Ok(match page_info {
        Some(page_info) => Page {
            events,
            next: Cursor {
                since: cursor.since.clone(),
                top,
                page_info: Some(page_info),
            },
            has_more: true,
        },
        None => Page {
            events,
            next: Cursor {
                since: top.or_else(|| cursor.since.clone()),
                top: None,
                page_info: None,
            },
            has_more: false,
        },
    })
}

/// The `errors` of a Shopify error body, or a prefix of the body text.
pub fn error_message(status: u16, body: &[u8]) -> String {
    let detail = serde_json::from_slice::<Value>(body).ok().and_then(|v| {
        v.get("errors")
            .map(|e| e.as_str().map_or_else(|| e.to_string(), str::to_owned))
    });
    let detail =
        detail.unwrap_or_else(|| String::from_utf8_lossy(body).chars().take(200).collect());
    format!("Shopify answered {status}: {detail}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings;

    fn s() -> Settings {
        settings::parse(
            r#"{"shop":"s.myshopify.com","api_version":"2024-01","api_base":"http://127.0.0.1:1"}"#,
        )
        .unwrap()
    }

    #[test]
    fn cursor_round_trip() {
        let c = Cursor {
            since: Some("2024-01-01T00:00:00Z".into()),
            top: None,
            page_info: Some("x".into()),
        };
        assert_eq!(Cursor::parse(Some(&c.to_text())), c);
        assert_eq!(Cursor::parse(None), Cursor::default());
        assert_eq!(Cursor::parse(Some("garbage")), Cursor::default());
    }

    #[test]
    fn urls() {
        assert_eq!(
            orders_url(&s(), &Cursor::default()),
            "http://127.0.0.1:1/admin/api/2024-01/orders.json?status=any&limit=250"
        );
        let c = Cursor {
            since: Some("2024-01-01T00:00:00Z".into()),
            ..Cursor::default()
        };
        assert_eq!(
            orders_url(&s(), &c),
            "http://127.0.0.1:1/admin/api/2024-01/orders.json?status=any&updated_at_min=2024-01-01T00%3A00%3A00Z&limit=250"
        );
        let c = Cursor {
            page_info: Some("abc".into()),
            ..c
        };
        assert_eq!(
            orders_url(&s(), &c),
            "http://127.0.0.1:1/admin/api/2024-01/orders.json?limit=250&page_info=abc"
        );
    }

    #[test]
    fn pages() {
        let body = br#"{"orders":[{"id":9007199254740993,"updated_at":"2024-01-02T00:00:00-05:00","total_price":"1.50"},{"id":2,"updated_at":"2024-01-01T00:00:00Z"}]}"#;
        let link = r#"<http://x/admin/api/2024-01/orders.json?limit=250&page_info=p2>; rel="next""#;
        let page = parse_page(&s(), body, Some(link), &Cursor::default()).unwrap();
        assert_eq!(
            page.events[0].provider_event_id,
            "order:9007199254740993:2024-01-02T00:00:00-05:00"
        );
        assert_eq!(page.events[0].payload, br#"{"id":9007199254740993,"updated_at":"2024-01-02T00:00:00-05:00","total_price":"1.50"}"#);
        assert_eq!(page.events[1].event_type, "orders/updated");
        assert!(page.has_more);
        assert_eq!(
            page.next,
            Cursor {
                since: None,
                top: Some("2024-01-02T05:00:00Z".into()),
                page_info: Some("p2".into())
            }
        );
        let page = parse_page(&s(), br#"{"orders":[]}"#, None, &page.next).unwrap();
        assert!(!page.has_more);
        assert_eq!(
            page.next,
            Cursor {
                since: Some("2024-01-02T05:00:00Z".into()),
                top: None,
                page_info: None
            }
        );
        let page = parse_page(&s(), br#"{"orders":[]}"#, None, &page.next).unwrap();
        assert_eq!(page.next.since.as_deref(), Some("2024-01-02T05:00:00Z"));
        assert!(parse_page(&s(), b"{}", None, &Cursor::default()).is_err());
        assert!(parse_page(&s(), br#"{"orders":[{"id":1}]}"#, None, &Cursor::default()).is_err());
    }

    #[test]
    fn errors() {
        assert_eq!(
            error_message(
                401,
                br#"{"errors":"[API] Invalid API key or access token"}"#
            ),
            "Shopify answered 401: [API] Invalid API key or access token"
        );
        assert_eq!(error_message(500, b"oops"), "Shopify answered 500: oops");
    }
}
