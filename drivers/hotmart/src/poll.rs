//! Polling `GET /payments/api/v1/sales/history` (pure logic; the component sends the
//! requests through the host's `http` import).
//!
//! **Token.** Client credentials: `POST {auth_base}/security/oauth/token?grant_type=client_credentials`
//! with `Authorization: Basic base64(client_id:client_secret)` and `client_id` /
//! `client_secret` form-encoded in the body, all three values injected by the host from the
//! named secrets (Hotmart's sample puts them in the query string, but a query is guest text
//! and secrets never enter the sandbox; Hotmart accepts them in the body too). The host
//! captures `/access_token` into the `access_token` secret and hands the guest `[redacted]`;
//! the guest keeps only the expiry (`expires_in`) in the `state` key [`TOKEN_EXPIRES_AT`]
//! and reuses the token until [`TOKEN_MARGIN_MS`] before it expires. A `401` from the API
//! re-acquires the token once.
//!
//! **Passes.** Hotmart filters sales on the purchase date only; a refund of an older sale does
//! not move it into a recent window. Each *pass* therefore sweeps the trailing
//! `poll_window_days` up to now, page by page (`page_info.next_page_token`), asking for every
//! status in `transaction_status` explicitly (without that filter Hotmart returns only
//! APPROVED and COMPLETE). Each item becomes a raw event with provider event id
//! `sale:{transaction}:{status}`: the host deduplicates unchanged sales across passes, and a
//! status change is a new event.
//!
//! The cursor is JSON text: `{"start":ms,"end":ms,"page_token":"…"}` inside a pass,
//! `{"swept_to":ms}` after one (the next call starts a new pass).

use std::collections::BTreeMap;

use serde_json::value::RawValue;
use serde_json::{Map, Value, json};
use sluice_sdk::bindings::exports::sluice::driver::ingest::RawEvent;
use sluice_sdk::json::{at, i64_field, str_field};
use sluice_sdk::paging::encode_query_value;
use sluice_sdk::time::datetime_from_unix_millis;

use crate::normalize::{SALES_HISTORY, unify_status};
use crate::settings::Settings;

/// The `state` key holding the access token's expiry (epoch ms, decimal text).
pub const TOKEN_EXPIRES_AT: &str = "token_expires_at";

/// A token is renewed this long before it expires.
pub const TOKEN_MARGIN_MS: i64 = 60_000;

/// Assumed lifetime when the token response has no usable `expires_in`.
pub const DEFAULT_TOKEN_LIFETIME_MS: i64 = 3_600_000;

const DAY_MS: i64 = 86_400_000;

/// Where a poll resumes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cursor {
    /// Window start of the current pass (ms).
    pub start: Option<i64>,
    /// Window end of the current pass (ms).
    pub end: Option<i64>,
    /// The next page of the current pass.
    pub page_token: Option<String>,
    /// End of the last completed pass.
    pub swept_to: Option<i64>,
}

impl Cursor {
    /// Parse a cursor returned by an earlier poll (`None` or garbage → a new pass).
    pub fn parse(text: Option<&str>) -> Cursor {
        let Some(Ok(v)) = text.map(serde_json::from_str::<Value>) else {
            return Cursor::default();
        };
        Cursor {
            start: i64_field(&v, "start"),
            end: i64_field(&v, "end"),
            page_token: str_field(&v, "page_token").map(str::to_owned),
            swept_to: i64_field(&v, "swept_to"),
        }
    }

    /// The cursor's text form.
    pub fn to_text(&self) -> String {
        let mut map = Map::new();
        for (k, v) in [
            ("start", self.start),
            ("end", self.end),
            ("swept_to", self.swept_to),
        ] {
            if let Some(v) = v {
                map.insert(k.into(), json!(v));
            }
        }
        if let Some(t) = &self.page_token {
            map.insert("page_token".into(), json!(t));
        }
        Value::Object(map).to_string()
    }
}

/// The page one call fetches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRequest {
    /// Window start (ms).
    pub start: i64,
    /// Window end (ms).
    pub end: i64,
    /// Page token, absent on a pass's first page.
    pub page_token: Option<String>,
}

/// What to fetch for `cursor` at `now_ms`: the current pass's next page, or a new pass over
/// the trailing window.
pub fn page_request(cursor: &Cursor, now_ms: i64, settings: &Settings) -> PageRequest {
    // Inside a pass (or at the start of a backfill, whose window the cursor names).
    if let (Some(start), Some(end)) = (cursor.start, cursor.end) {
        return PageRequest {
            start,
            end,
            page_token: cursor.page_token.clone(),
        };
    }
    PageRequest {
        start: now_ms - i64::from(settings.poll_window_days) * DAY_MS,
        end: now_ms,
        page_token: None,
    }
}

/// Hotmart rejects sales-history windows much over a year.
pub const MAX_WINDOW_MS: i64 = 365 * DAY_MS;

/// The cursor of a backfill of the sales from `since_ms` to `now_ms`: one pass over that
/// window (at most [`MAX_WINDOW_MS`], the most Hotmart serves in one window).
pub fn backfill_cursor(since_ms: i64, now_ms: i64) -> String {
    Cursor {
        start: Some(since_ms.max(now_ms - MAX_WINDOW_MS)),
        end: Some(now_ms),
        page_token: None,
        swept_to: None,
    }
    .to_text()
}

/// The sales-history URL of one page. Multi-valued `transaction_status` repeats the key.
pub fn sales_url(settings: &Settings, page: &PageRequest) -> String {
    let mut url = format!(
        "{}/payments/api/v1/sales/history?start_date={}&end_date={}&max_results={}",
        settings.api_base.trim_end_matches('/'),
        page.start,
        page.end,
        settings.max_results
    );
    for s in &settings.transaction_status {
        url.push_str("&transaction_status=");
        url.push_str(&encode_query_value(s));
    }
    if let Some(token) = &page.page_token {
        url.push_str("&page_token=");
        url.push_str(&encode_query_value(token));
    }
    url
}

/// The token endpoint URL.
pub fn token_url(settings: &Settings) -> String {
    format!(
        "{}/security/oauth/token?grant_type=client_credentials",
        settings.auth_base.trim_end_matches('/')
    )
}

/// The token's expiry (epoch ms) from a token response body received at `now_ms`.
pub fn token_expires_at(body: &[u8], now_ms: i64) -> i64 {
    let lifetime = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v.get("expires_in").and_then(Value::as_i64))
        .filter(|s| *s > 0)
        .map_or(DEFAULT_TOKEN_LIFETIME_MS, |s| s.saturating_mul(1000));
    now_ms.saturating_add(lifetime)
}

/// Whether a stored expiry (state text) still allows using the token at `now_ms`.
pub fn token_usable(stored: Option<&[u8]>, now_ms: i64) -> bool {
    stored
        .and_then(|b| std::str::from_utf8(b).ok())
        .and_then(|t| t.trim().parse::<i64>().ok())
        .is_some_and(|exp| exp - TOKEN_MARGIN_MS > now_ms)
}

/// The raw event of one sales-history item; its exact text is the payload.
pub fn sale_raw_event(item: &str) -> Result<RawEvent, String> {
    let v: Value = serde_json::from_str(item).map_err(|e| format!("sales item: {e}"))?;
    let transaction = at(&v, &["purchase", "transaction"])
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
        .ok_or("sales item has no purchase.transaction")?;
    let status = at(&v, &["purchase", "status"])
        .and_then(Value::as_str)
        .map(unify_status)
        .unwrap_or_default();
    let purchase = v.get("purchase").unwrap_or(&Value::Null);
    Ok(RawEvent {
        provider_event_id: format!("sale:{transaction}:{status}"),
        event_type: SALES_HISTORY.into(),
        account_key: None,
        occurred_at: i64_field(purchase, "approved_date")
            .or_else(|| i64_field(purchase, "order_date"))
            .map(datetime_from_unix_millis),
        payload: item.as_bytes().to_vec(),
        api_version: None,
    })
}

/// One parsed page.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    /// The page's items as raw events, in the order Hotmart listed them.
    pub events: Vec<RawEvent>,
    /// The cursor for the next call.
    pub next: Cursor,
    /// Whether the current pass has more pages.
    pub has_more: bool,
}

/// Parse a sales-history response (`{"items": [...], "page_info": {"next_page_token"}}`)
/// fetched for `request`.
pub fn parse_page(body: &[u8], request: &PageRequest) -> Result<Page, String> {
    let text = std::str::from_utf8(body).map_err(|e| format!("sales page is not UTF-8: {e}"))?;
    let fields: BTreeMap<String, &RawValue> =
        serde_json::from_str(text).map_err(|e| format!("sales page is not a JSON object: {e}"))?;
    let items: Vec<&RawValue> = match fields.get("items") {
        Some(raw) if raw.get() != "null" => serde_json::from_str(raw.get())
            .map_err(|e| format!("sales page items is not a list: {e}"))?,
        _ => Vec::new(),
    };
    let events = items
        .iter()
        .map(|i| sale_raw_event(i.get()))
        .collect::<Result<Vec<_>, _>>()?;
    let token = fields
        .get("page_info")
        .and_then(|p| serde_json::from_str::<Value>(p.get()).ok())
        .and_then(|p| {
            p.get("next_page_token")
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
        .filter(|t| !t.is_empty());
    let (next, has_more) = match token {
        Some(token) if !events.is_empty() => (
            Cursor {
                start: Some(request.start),
                end: Some(request.end),
                page_token: Some(token),
                swept_to: None,
            },
            true,
        ),
        _ => (
            Cursor {
                swept_to: Some(request.end),
                ..Cursor::default()
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

/// A Hotmart error body's `error` / `error_description`, or a prefix of the body text.
pub fn error_message(status: u16, body: &[u8]) -> String {
    let detail = serde_json::from_slice::<Value>(body).ok().and_then(|v| {
        let code = str_field(&v, "error").map(str::to_owned);
        let desc = str_field(&v, "error_description").map(str::to_owned);
        match (code, desc) {
            (Some(c), Some(d)) => Some(format!("{c}: {d}")),
            (c, d) => c.or(d),
        }
    });
    let detail =
        detail.unwrap_or_else(|| String::from_utf8_lossy(body).chars().take(200).collect());
    format!("Hotmart answered {status}: {detail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> Settings {
        crate::settings::parse(r#"{"api_base":"http://127.0.0.1:1/","transaction_status":["APPROVED","REFUNDED"],"max_results":2,"poll_window_days":1}"#).unwrap()
    }

    #[test]
    fn cursor_round_trip() {
        let c = Cursor {
            start: Some(1),
            end: Some(2),
            page_token: Some("tok".into()),
            swept_to: None,
        };
        assert_eq!(Cursor::parse(Some(&c.to_text())), c);
        assert_eq!(Cursor::parse(None), Cursor::default());
        assert_eq!(Cursor::parse(Some("garbage")), Cursor::default());
    }

    #[test]
    fn new_pass_then_next_page() {
        let s = settings();
        let first = page_request(&Cursor::default(), 1_700_000_000_000, &s);
        assert_eq!(
            first,
            PageRequest {
                start: 1_699_913_600_000,
                end: 1_700_000_000_000,
                page_token: None
            }
        );
        assert_eq!(
            sales_url(&s, &first),
            "http://127.0.0.1:1/payments/api/v1/sales/history?start_date=1699913600000&end_date=1700000000000&max_results=2&transaction_status=APPROVED&transaction_status=REFUNDED"
        );
        let cursor = Cursor {
            start: Some(5),
            end: Some(9),
            page_token: Some("a b".into()),
            swept_to: None,
        };
        let next = page_request(&cursor, 1_700_000_000_000, &s);
        assert_eq!(next.start, 5);
        assert!(sales_url(&s, &next).ends_with("&page_token=a%20b"));
        // After a pass, a new one over the trailing window.
        let after = Cursor {
            swept_to: Some(9),
            ..Cursor::default()
        };
        assert_eq!(page_request(&after, 1_700_000_000_000, &s), first);
    }

    #[test]
    fn default_url_asks_for_every_status() {
        let s = Settings::default();
        let url = sales_url(
            &s,
            &PageRequest {
                start: 0,
                end: 1,
                page_token: None,
            },
        );
        assert!(url.starts_with("https://developers.hotmart.com/payments/api/v1/sales/history?"));
        for status in crate::settings::ALL_TRANSACTION_STATUSES {
            assert!(
                url.contains(&format!("&transaction_status={status}")),
                "{status}"
            );
        }
        assert_eq!(
            token_url(&s),
            "https://api-sec-vlc.hotmart.com/security/oauth/token?grant_type=client_credentials"
        );
    }

    #[test]
    fn pages() {
        let req = PageRequest {
            start: 1,
            end: 2,
            page_token: None,
        };
        let item = r#"{"purchase":{"transaction":"HP1","status":"CANCELED","order_date":1000,"price":{"value":97.9,"currency_code":"BRL"}}}"#;
        let body = format!(
            r#"{{"items":[{item}],"page_info":{{"next_page_token":"n1","results_per_page":1}}}}"#
        );
        let page = parse_page(body.as_bytes(), &req).unwrap();
        assert!(page.has_more);
        assert_eq!(page.next.page_token.as_deref(), Some("n1"));
        assert_eq!(page.events[0].provider_event_id, "sale:HP1:CANCELLED");
        assert_eq!(page.events[0].event_type, SALES_HISTORY);
        assert_eq!(page.events[0].payload, item.as_bytes(), "exact text kept");
        assert_eq!(page.events[0].occurred_at.map(|d| d.seconds), Some(1));
        let last =
            parse_page(br#"{"items":[],"page_info":{"next_page_token":"x"}}"#, &req).unwrap();
        assert!(!last.has_more);
        assert_eq!(
            last.next,
            Cursor {
                swept_to: Some(2),
                ..Cursor::default()
            }
        );
        let no_info = parse_page(format!(r#"{{"items":[{item}]}}"#).as_bytes(), &req).unwrap();
        assert!(!no_info.has_more);
        assert!(parse_page(b"nope", &req).is_err());
        assert!(parse_page(br#"{"items":{}}"#, &req).is_err());
        assert!(parse_page(br#"{"items":[{"purchase":{}}]}"#, &req).is_err());
    }

    #[test]
    fn token_expiry() {
        assert_eq!(
            token_expires_at(br#"{"access_token":"[redacted]","expires_in":86400}"#, 1000),
            86_401_000
        );
        assert_eq!(token_expires_at(b"{}", 0), DEFAULT_TOKEN_LIFETIME_MS);
        assert!(token_usable(Some(b"100000"), 0));
        assert!(!token_usable(Some(b"100000"), 50_000));
        assert!(!token_usable(Some(b"junk"), 0));
        assert!(!token_usable(None, 0));
    }

    #[test]
    fn error_messages() {
        assert_eq!(
            error_message(
                401,
                br#"{"error":"invalid_token","error_description":"expired"}"#
            ),
            "Hotmart answered 401: invalid_token: expired"
        );
        assert_eq!(
            error_message(502, b"bad gateway"),
            "Hotmart answered 502: bad gateway"
        );
    }
}
