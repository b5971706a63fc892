//! The `http` capability end to end: the real Stripe component polls a fake Stripe on
//! loopback through the host, which checks grants and injects the API key by reference.

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

/// What the fake saw: (query, authorization header) per request.
type Seen = Arc<Mutex<Vec<(String, Option<String>)>>>;

#[derive(Clone)]
struct Fake {
    seen: Seen,
    /// Status and extra headers of every answer.
    status: StatusCode,
    retry_after: Option<&'static str>,
}

async fn events(
    State(fake): State<Fake>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> impl IntoResponse {
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(String::from);
    fake.seen
        .lock()
        .unwrap()
        .push((query.unwrap_or_default(), auth));
    let body = if fake.status == StatusCode::OK {
        // Stripe lists newest first.
        r#"{"object":"list","has_more":false,"data":[
            {"id":"evt_2","object":"event","type":"customer.updated","created":1700000200,"data":{"object":{"id":"cus_1","object":"customer","email":"b@example.com","created":1700000000}}},
            {"id":"evt_1","object":"event","type":"customer.created","created":1700000100,"data":{"object":{"id":"cus_1","object":"customer","email":"a@example.com","created":1700000000}}}
        ]}"#
    } else {
        r#"{"error":{"message":"Too many requests"}}"#
    };
    let mut response = (fake.status, body).into_response();
    if let Some(r) = fake.retry_after {
        response
            .headers_mut()
            .insert("retry-after", r.parse().unwrap());
    }
    response
}

/// Serve the fake on a free loopback port; it stops when the test's runtime ends.
async fn start_fake(status: StatusCode, retry_after: Option<&'static str>) -> (String, Seen) {
    let seen = Seen::default();
    let app = axum::Router::new()
        .route("/v1/events", get(events))
        .with_state(Fake {
            seen: seen.clone(),
            status,
            retry_after,
        });
    let base = harness::serve(app).await;
    (base, seen)
}

async fn runtime(grants: &[&str]) -> (Runtime, LoadedDriver) {
    harness::load("stripe", grants).await
}

async fn poll(
    runtime: &Runtime,
    driver: &LoadedDriver,
    base: &str,
) -> Result<sluice::wit::ingest::PollResult, CallError> {
    let secrets = HashMap::from([(
        "api_key".to_string(),
        SecretValue::new(b"sk_test_fake".to_vec()),
    )]);
    let scope = harness::fixed_scope(driver, "inst_poll", secrets, HashMap::new());
    let ctx = CallContext {
        installation_id: "inst_poll".into(),
        settings: format!(r#"{{"api_base":"{base}"}}"#),
    };
    let mut session = runtime.session(driver, scope).await?;
    session.poll(&ctx, None).await
}

#[tokio::test]
async fn poll_reaches_a_granted_fake_with_the_key_injected_by_the_host() {
    let (base, seen) = start_fake(StatusCode::OK, None).await;
    let (runtime, driver) = runtime(&["http://127.0.0.1:*"]).await;
    let result = poll(&runtime, &driver, &base).await.expect("poll succeeds");

    let ids: Vec<_> = result
        .events
        .iter()
        .map(|e| e.provider_event_id.as_str())
        .collect();
    assert_eq!(ids, ["evt_1", "evt_2"], "oldest first");
    assert!(!result.has_more);
    assert!(
        result
            .next_cursor
            .as_deref()
            .is_some_and(|c| c.contains("1700000200")),
        "{:?}",
        result.next_cursor
    );
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].0, "limit=100");
    assert_eq!(
        seen[0].1.as_deref(),
        Some("Bearer sk_test_fake"),
        "credential injected host-side"
    );
}

#[tokio::test]
async fn rate_limits_report_fractional_retry_after() {
    let (base, _seen) = start_fake(StatusCode::TOO_MANY_REQUESTS, Some("1.5")).await;
    let (runtime, driver) = runtime(&["http://127.0.0.1:*"]).await;
    match poll(&runtime, &driver, &base).await {
        Err(CallError::Driver(DriverError::RateLimited(r))) => assert_eq!(r.retry_after_ms, 1500),
        other => panic!("expected rate-limited, got {other:?}"),
    }
}

#[tokio::test]
async fn loopback_is_refused_without_an_operator_grant() {
    let (base, seen) = start_fake(StatusCode::OK, None).await;
    let (runtime, driver) = runtime(&[]).await;
    match poll(&runtime, &driver, &base).await {
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

#[tokio::test]
async fn a_grant_for_one_port_does_not_open_another() {
    let (base, seen) = start_fake(StatusCode::OK, None).await;
    let (runtime, driver) = runtime(&["http://127.0.0.1:1"]).await;
    assert!(poll(&runtime, &driver, &base).await.is_err());
    assert!(seen.lock().unwrap().is_empty());
}

#[tokio::test]
async fn the_outbound_request_budget_is_enforced() {
    let (base, seen) = start_fake(StatusCode::OK, None).await;
    let limits = sluice::limits::SandboxConfig {
        max_outbound_requests: 0,
        ..Default::default()
    };
    let (runtime, driver) = harness::load_with("stripe", &["http://127.0.0.1:*"], limits).await;
    match poll(&runtime, &driver, &base).await {
        Err(CallError::Driver(DriverError::Internal(m))) => assert!(m.contains("budget"), "{m}"),
        other => panic!("expected the budget to stop the request, got {other:?}"),
    }
    assert!(seen.lock().unwrap().is_empty());
}
