//! The real Shopify component polls a fake Shopify Admin API on loopback through the host:
//! `Link` `page_info` pagination, `429` with a fractional `Retry-After`, and the access token
//! injected host-side as `X-Shopify-Access-Token`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::harness;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use sluice::capabilities::secrets::SecretValue;
use sluice::runtime::{CallError, LoadedDriver, Runtime};
use sluice::wit::types::{CallContext, DriverError};

/// What the fake saw: (query, X-Shopify-Access-Token, Authorization) per request.
type Seen = Arc<Mutex<Vec<(String, Option<String>, Option<String>)>>>;

#[derive(Clone)]
struct Fake {
    seen: Seen,
    base: Arc<Mutex<String>>,
    rate_limited: bool,
}

const PAGE_1: &str = r##"{"orders":[{"id":9007199254740993,"name":"#1","currency":"JPY","total_price":"1000","updated_at":"2025-10-01T09:00:00+09:00"},{"id":450789469,"name":"#2","currency":"USD","total_price":"598.94","updated_at":"2025-10-02T00:00:00Z"}]}"##;
const PAGE_2: &str = r##"{"orders":[{"id":3,"name":"#3","currency":"USD","total_price":"1.00","updated_at":"2025-10-01T12:00:00-04:00"}]}"##;

async fn orders(
    State(fake): State<Fake>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> impl IntoResponse {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(String::from)
    };
    let query = query.unwrap_or_default();
    fake.seen.lock().unwrap().push((
        query.clone(),
        header("x-shopify-access-token"),
        header("authorization"),
    ));
    if fake.rate_limited {
        let mut r = (StatusCode::TOO_MANY_REQUESTS, r#"{"errors":"Exceeded 2 calls per second for api client. Reduce request rates to resume uninterrupted service."}"#).into_response();
        r.headers_mut()
            .insert("retry-after", "2.0".parse().unwrap());
        return r;
    }
    if query.contains("page_info=p2") {
        return (StatusCode::OK, PAGE_2).into_response();
    }
    let base = fake.base.lock().unwrap().clone();
    let mut r = (StatusCode::OK, PAGE_1).into_response();
    let link =
        format!(r#"<{base}/admin/api/2025-10/orders.json?limit=250&page_info=p2>; rel="next""#);
    r.headers_mut().insert("link", link.parse().unwrap());
    r
}

async fn start_fake(rate_limited: bool) -> (String, Seen) {
    let seen = Seen::default();
    let base_slot = Arc::new(Mutex::new(String::new()));
    let app = axum::Router::new()
        .route("/admin/api/2025-10/orders.json", get(orders))
        .with_state(Fake {
            seen: seen.clone(),
            base: base_slot.clone(),
            rate_limited,
        });
    let base = harness::serve(app).await;
    *base_slot.lock().unwrap() = base.clone();
    (base, seen)
}

async fn runtime(grants: &[&str]) -> (Runtime, LoadedDriver) {
    harness::load("shopify", grants).await
}

async fn poll(
    runtime: &Runtime,
    driver: &LoadedDriver,
    base: &str,
    cursor: Option<String>,
) -> Result<sluice::wit::ingest::PollResult, CallError> {
    let secrets = HashMap::from([
        (
            "access_token".to_string(),
            SecretValue::new(b"shpat_fake_token".to_vec()),
        ),
        (
            "webhook_secret".to_string(),
            SecretValue::new(b"app-secret".to_vec()),
        ),
    ]);
    let scope = harness::fixed_scope(driver, "inst_shopify_poll", secrets, HashMap::new());
    let ctx = CallContext {
        installation_id: "inst_shopify_poll".into(),
        settings: format!(
            r#"{{"shop":"poll-shop.myshopify.com","api_version":"2025-10","api_base":"{base}"}}"#
        ),
    };
    let mut session = runtime.session(driver, scope).await?;
    session.poll(&ctx, cursor.as_deref()).await
}

#[tokio::test]
async fn two_pages_via_link_page_info_with_the_token_injected_by_the_host() {
    let (base, seen) = start_fake(false).await;
    let (runtime, driver) = runtime(&["http://127.0.0.1:*"]).await;

    let first = poll(&runtime, &driver, &base, None)
        .await
        .expect("first page");
    let ids: Vec<_> = first
        .events
        .iter()
        .map(|e| e.provider_event_id.as_str())
        .collect();
    assert_eq!(
        ids,
        [
            "order:9007199254740993:2025-10-01T09:00:00+09:00",
            "order:450789469:2025-10-02T00:00:00Z"
        ]
    );
    assert!(first.events.iter().all(|e| e.event_type == "orders/updated"
        && e.account_key.as_deref() == Some("poll-shop.myshopify.com")));
    // The payload is the order's exact text from the response (big id untouched).
    assert_eq!(first.events[0].payload, br##"{"id":9007199254740993,"name":"#1","currency":"JPY","total_price":"1000","updated_at":"2025-10-01T09:00:00+09:00"}"##);
    assert!(first.has_more);
    let cursor = first.next_cursor.clone().expect("a cursor");
    assert!(cursor.contains(r#""page_info":"p2""#), "{cursor}");

    let second = poll(&runtime, &driver, &base, Some(cursor))
        .await
        .expect("second page");
    let ids: Vec<_> = second
        .events
        .iter()
        .map(|e| e.provider_event_id.as_str())
        .collect();
    assert_eq!(ids, ["order:3:2025-10-01T12:00:00-04:00"]);
    assert!(!second.has_more);
    let cursor = second.next_cursor.clone().expect("a cursor");
    // The next pass starts at the newest updated_at of the pass, in UTC.
    assert_eq!(cursor, r#"{"since":"2025-10-02T00:00:00Z"}"#);

    let third = poll(&runtime, &driver, &base, Some(cursor))
        .await
        .expect("next pass");
    assert!(third.has_more, "the fake always links page 2 from page 1");

    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 3);
    assert_eq!(seen[0].0, "status=any&limit=250");
    assert_eq!(
        seen[1].0, "limit=250&page_info=p2",
        "page_info requests carry only page_info and limit"
    );
    assert_eq!(
        seen[2].0,
        "status=any&updated_at_min=2025-10-02T00%3A00%3A00Z&limit=250"
    );
    for (query, token, authorization) in seen.iter() {
        assert_eq!(
            token.as_deref(),
            Some("shpat_fake_token"),
            "{query}: token injected host-side"
        );
        assert_eq!(authorization.as_deref(), None, "{query}");
    }
}

#[tokio::test]
async fn rate_limits_report_fractional_retry_after() {
    let (base, seen) = start_fake(true).await;
    let (runtime, driver) = runtime(&["http://127.0.0.1:*"]).await;
    match poll(&runtime, &driver, &base, None).await {
        Err(CallError::Driver(DriverError::RateLimited(r))) => {
            assert_eq!(r.retry_after_ms, 2000);
            assert!(r.message.contains("429"), "{}", r.message);
        }
        other => panic!("expected rate-limited, got {other:?}"),
    }
    assert_eq!(seen.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn loopback_is_refused_without_an_operator_grant() {
    let (base, seen) = start_fake(false).await;
    let (runtime, driver) = runtime(&[]).await;
    match poll(&runtime, &driver, &base, None).await {
        Err(CallError::Driver(DriverError::InvalidSettings(m))) => {
            assert!(m.contains("denied"), "{m}")
        }
        other => panic!("expected a denial, got {other:?}"),
    }
    assert!(
        seen.lock().unwrap().is_empty(),
        "no request may leave the host"
    );
}
