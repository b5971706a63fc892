//! Hotmart polling end to end: the real Hotmart component, the real host `Runtime`, and a
//! fake Hotmart (token endpoint + sales history) on loopback reached through an explicit
//! operator grant. The host injects the client credentials (Basic) and the captured access
//! token (Bearer); the token never enters the sandbox.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use super::harness;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use base64::Engine;
use sluice::capabilities::secrets::SecretValue;
use sluice::runtime::{CallError, LoadedDriver, Runtime};
use sluice::wit::ingest::PollResult;
use sluice::wit::types::{CallContext, DriverError};

const CLIENT_ID: &str = "client-id-123";
const CLIENT_SECRET: &str = "secret-456";

/// One request the fake saw.
#[derive(Debug, Clone)]
struct Seen {
    path: &'static str,
    query: String,
    authorization: Option<String>,
    body: String,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Ok,
    RateLimited,
    /// The first sales request answers 401 (a revoked token).
    UnauthorizedOnce,
}

#[derive(Clone)]
struct Fake {
    seen: Arc<Mutex<Vec<Seen>>>,
    tokens: Arc<AtomicUsize>,
    sales: Arc<AtomicUsize>,
    mode: Mode,
}

fn authorization(headers: &HeaderMap) -> Option<String> {
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(String::from)
}

async fn token(
    State(fake): State<Fake>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: String,
) -> impl IntoResponse {
    let n = fake.tokens.fetch_add(1, Ordering::SeqCst) + 1;
    fake.seen.lock().unwrap().push(Seen {
        path: "token",
        query: query.unwrap_or_default(),
        authorization: authorization(&headers),
        body,
    });
    (
        StatusCode::OK,
        [("content-type", "application/json")],
        format!(
            r#"{{"access_token":"issued-token-{n}","token_type":"bearer","expires_in":86400,"scope":"read write","jti":"j{n}"}}"#
        ),
    )
}

fn item(transaction: &str, status: &str, price: &str) -> String {
    format!(
        r#"{{"product":{{"name":"Curso","id":2125812}},"buyer":{{"name":"B","ucode":"U1","email":"b@example.com"}},"purchase":{{"transaction":"{transaction}","order_date":1700000000000,"approved_date":1700000001000,"status":"{status}","price":{{"value":{price},"currency_code":"BRL"}},"payment":{{"installments_number":1,"type":"PIX"}},"offer":{{"code":"abc"}}}}}}"#
    )
}

async fn sales(
    State(fake): State<Fake>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> impl IntoResponse {
    let n = fake.sales.fetch_add(1, Ordering::SeqCst) + 1;
    let query = query.unwrap_or_default();
    fake.seen.lock().unwrap().push(Seen {
        path: "sales",
        query: query.clone(),
        authorization: authorization(&headers),
        body: String::new(),
    });
    let json = [("content-type", "application/json")];
    match fake.mode {
        Mode::RateLimited => {
            return (
                StatusCode::TOO_MANY_REQUESTS,
                [("retry-after", "2")],
                r#"{"error":"too_many_requests"}"#.to_string(),
            )
                .into_response();
        }
        Mode::UnauthorizedOnce if n == 1 => {
            return (
                StatusCode::UNAUTHORIZED,
                json,
                r#"{"error":"invalid_token","error_description":"Invalid access token"}"#
                    .to_string(),
            )
                .into_response();
        }
        _ => {}
    }
    let body = if query.contains("page_token=page-2") {
        format!(
            r#"{{"items":[{}],"page_info":{{"total_results":3,"results_per_page":2}}}}"#,
            item("HP0000000003", "REFUNDED", "10.5")
        )
    } else {
        format!(
            r#"{{"items":[{},{}],"page_info":{{"total_results":3,"next_page_token":"page-2","results_per_page":2}}}}"#,
            item("HP0000000001", "APPROVED", "97.9"),
            item("HP0000000002", "CANCELLED", "1500.0")
        )
    };
    (StatusCode::OK, json, body).into_response()
}

async fn start_fake(mode: Mode) -> (String, Fake) {
    let fake = Fake {
        seen: Arc::default(),
        tokens: Arc::default(),
        sales: Arc::default(),
        mode,
    };
    let app = axum::Router::new()
        .route("/security/oauth/token", post(token))
        .route("/payments/api/v1/sales/history", get(sales))
        .with_state(fake.clone());
    let base = harness::serve(app).await;
    (base, fake)
}

async fn runtime(grants: &[&str]) -> (Runtime, LoadedDriver) {
    harness::load("hotmart", grants).await
}

/// One `poll` call with the client credentials (and optionally a stored token + expiry).
async fn poll(
    runtime: &Runtime,
    driver: &LoadedDriver,
    base: &str,
    cursor: Option<String>,
    stored_token: Option<&str>,
) -> Result<PollResult, CallError> {
    let mut secrets = HashMap::from([
        ("hottok".to_string(), SecretValue::new(b"h".to_vec())),
        (
            "client_id".to_string(),
            SecretValue::new(CLIENT_ID.as_bytes().to_vec()),
        ),
        (
            "client_secret".to_string(),
            SecretValue::new(CLIENT_SECRET.as_bytes().to_vec()),
        ),
    ]);
    let mut state = HashMap::new();
    if let Some(token) = stored_token {
        secrets.insert(
            "access_token".to_string(),
            SecretValue::new(token.as_bytes().to_vec()),
        );
        // Valid for a long time.
        state.insert("token_expires_at".to_string(), b"99999999999999".to_vec());
    }
    let scope = harness::fixed_scope(driver, "inst_hotmart_poll", secrets, state);
    let ctx = CallContext {
        installation_id: "inst_hotmart_poll".into(),
        settings: format!(
            r#"{{"api_base":"{base}","auth_base":"{base}","max_results":2,"poll_window_days":7}}"#
        ),
    };
    let mut session = runtime.session(driver, scope).await?;
    session.poll(&ctx, cursor.as_deref()).await
}

fn ids(result: &PollResult) -> Vec<&str> {
    result
        .events
        .iter()
        .map(|e| e.provider_event_id.as_str())
        .collect()
}

#[tokio::test]
async fn acquires_a_token_and_walks_two_pages() {
    harness::record_trace();
    let (base, fake) = start_fake(Mode::Ok).await;
    let (runtime, driver) = runtime(&["http://127.0.0.1:*"]).await;

    let first = poll(&runtime, &driver, &base, None, None)
        .await
        .expect("first page");
    assert_eq!(
        ids(&first),
        ["sale:HP0000000001:APPROVED", "sale:HP0000000002:CANCELLED"]
    );
    assert!(first.has_more);
    assert!(first.events.iter().all(|e| e.event_type == "SALES_HISTORY"));
    assert!(
        String::from_utf8_lossy(&first.events[0].payload).contains(r#""value":97.9"#),
        "payload is the item's exact text"
    );
    let cursor = first.next_cursor.clone().expect("cursor");
    assert!(cursor.contains("page-2"), "{cursor}");

    {
        let seen = fake.seen.lock().unwrap();
        assert_eq!(seen.len(), 2, "{seen:#?}");
        let token = &seen[0];
        assert_eq!(token.path, "token");
        assert_eq!(token.query, "grant_type=client_credentials");
        let basic = base64::engine::general_purpose::STANDARD
            .encode(format!("{CLIENT_ID}:{CLIENT_SECRET}"));
        assert_eq!(
            basic, "Y2xpZW50LWlkLTEyMzpzZWNyZXQtNDU2",
            "fixture's derived example"
        );
        assert_eq!(
            token.authorization.as_deref(),
            Some(format!("Basic {basic}").as_str())
        );
        assert!(
            token.body.contains("client_id=client-id-123"),
            "{}",
            token.body
        );
        assert!(
            token.body.contains("client_secret=secret-456"),
            "{}",
            token.body
        );
        let sales = &seen[1];
        assert_eq!(sales.path, "sales");
        assert_eq!(
            sales.authorization.as_deref(),
            Some("Bearer issued-token-1"),
            "the token the fake issued, injected by the host"
        );
        assert!(sales.query.contains("max_results=2"), "{}", sales.query);
        assert!(sales.query.contains("start_date="), "{}", sales.query);
        assert!(sales.query.contains("end_date="), "{}", sales.query);
        for status in ["APPROVED", "REFUNDED", "CANCELLED", "CHARGEBACK"] {
            assert!(
                sales
                    .query
                    .contains(&format!("transaction_status={status}")),
                "{status} polled explicitly: {}",
                sales.query
            );
        }
        assert!(!sales.query.contains("page_token"));
    }

    // Second page: same window, the page token; a token is in use (re-acquired here because
    // `SecretSource::Fixed` does not keep captures between calls; the server stores them).
    let second = poll(&runtime, &driver, &base, Some(cursor), None)
        .await
        .expect("second page");
    assert_eq!(ids(&second), ["sale:HP0000000003:REFUNDED"]);
    assert!(!second.has_more);
    assert!(
        second
            .next_cursor
            .as_deref()
            .is_some_and(|c| c.contains("swept_to")),
        "{:?}",
        second.next_cursor
    );
    let seen = fake.seen.lock().unwrap();
    let first_sales = seen.iter().find(|s| s.path == "sales").unwrap();
    let last = seen.last().unwrap();
    assert_eq!(last.path, "sales");
    assert!(last.query.contains("page_token=page-2"), "{}", last.query);
    let window = |q: &str| {
        q.split('&')
            .filter(|p| p.starts_with("start_date=") || p.starts_with("end_date="))
            .map(String::from)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        window(&last.query),
        window(&first_sales.query),
        "same window"
    );
    assert_eq!(last.authorization.as_deref(), Some("Bearer issued-token-2"));
    // The client credentials and the tokens the host captured are in no log line.
    harness::assert_not_logged(&[CLIENT_SECRET, "issued-token-1", "issued-token-2"]);
}

#[tokio::test]
async fn a_stored_unexpired_token_is_reused() {
    let (base, fake) = start_fake(Mode::Ok).await;
    let (runtime, driver) = runtime(&["http://127.0.0.1:*"]).await;
    poll(&runtime, &driver, &base, None, Some("stored-token"))
        .await
        .expect("poll");
    let seen = fake.seen.lock().unwrap();
    assert_eq!(fake.tokens.load(Ordering::SeqCst), 0, "no token request");
    assert_eq!(
        seen[0].authorization.as_deref(),
        Some("Bearer stored-token")
    );
}

#[tokio::test]
async fn a_401_reacquires_the_token_once() {
    let (base, fake) = start_fake(Mode::UnauthorizedOnce).await;
    let (runtime, driver) = runtime(&["http://127.0.0.1:*"]).await;
    let result = poll(&runtime, &driver, &base, None, Some("revoked-token"))
        .await
        .expect("poll succeeds after re-acquiring");
    assert_eq!(result.events.len(), 2);
    let seen = fake.seen.lock().unwrap();
    let paths: Vec<_> = seen.iter().map(|s| s.path).collect();
    assert_eq!(paths, ["sales", "token", "sales"]);
    assert_eq!(
        seen[0].authorization.as_deref(),
        Some("Bearer revoked-token")
    );
    assert_eq!(
        seen[2].authorization.as_deref(),
        Some("Bearer issued-token-1")
    );
}

#[tokio::test]
async fn rate_limits_report_retry_after() {
    let (base, _fake) = start_fake(Mode::RateLimited).await;
    let (runtime, driver) = runtime(&["http://127.0.0.1:*"]).await;
    match poll(&runtime, &driver, &base, None, None).await {
        Err(CallError::Driver(DriverError::RateLimited(r))) => assert_eq!(r.retry_after_ms, 2000),
        other => panic!("expected rate-limited, got {other:?}"),
    }
}

#[tokio::test]
async fn loopback_is_refused_without_an_operator_grant() {
    let (base, fake) = start_fake(Mode::Ok).await;
    let (runtime, driver) = runtime(&[]).await;
    match poll(&runtime, &driver, &base, None, None).await {
        Err(CallError::Driver(DriverError::InvalidSettings(m))) => {
            assert!(m.contains("denied"), "{m}")
        }
        other => panic!("expected a denial, got {other:?}"),
    }
    assert!(
        fake.seen.lock().unwrap().is_empty(),
        "no request may leave the host"
    );
}
