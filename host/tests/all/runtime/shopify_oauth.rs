//! OAuth through the host: the Shopify component verifies the callback, exchanges the code
//! with the client secret inserted by the host, and the host captures the tokens from the
//! response so they never reach the sandbox.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::routing::post;
use hmac::{Hmac, Mac};
use sluice::capabilities::secrets::SecretValue;
use sluice::capabilities::{SecretSource, StateSource};
use sluice::runtime::types::{CallContext, DriverError};
use sluice::runtime::{CallError, LoadedDriver, Runtime};

const SHOP: &str = "test-shop.myshopify.com";
const APP_SECRET: &str = "API_SECRET_KEY";

/// The expiring offline token answer of `shopify_oauth_token_cases.json`, with concrete values.
const TOKEN_RESPONSE: &str = r#"{"access_token":"shpat_issued_by_fake","scope":"read_orders,read_customers","expires_in":1000,"refresh_token":"shprt_issued_by_fake","refresh_token_expires_in":2000}"#;

type Forms = Arc<Mutex<Vec<String>>>;

async fn token(State(forms): State<Forms>, body: String) -> &'static str {
    forms.lock().unwrap().push(body);
    TOKEN_RESPONSE
}

fn signed_callback(code: &str, timestamp: u64, secret: &str) -> String {
    let message = format!("code={code}&shop={SHOP}&state=nonce-1&timestamp={timestamp}");
    let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(message.as_bytes());
    format!(
        "{message}&hmac={}",
        hex::encode(mac.finalize().into_bytes())
    )
}

async fn exchange(
    runtime: &Runtime,
    driver: &LoadedDriver,
    base: &str,
    query: &str,
) -> (Result<Vec<String>, CallError>, Vec<(String, String)>) {
    let secrets = HashMap::from([
        (
            "webhook_secret".to_string(),
            SecretValue::new(APP_SECRET.as_bytes().to_vec()),
        ),
        (
            "client_id".to_string(),
            SecretValue::new(b"API_KEY".to_vec()),
        ),
    ]);
    let scope = driver.scope(
        "inst_oauth",
        SecretSource::Fixed(Arc::new(secrets)),
        StateSource::Fixed(Arc::default()),
    );
    let ctx = CallContext {
        installation_id: "inst_oauth".into(),
        settings: format!(r#"{{"shop":"{SHOP}","api_base":"{base}"}}"#),
    };
    let mut session = runtime
        .session(driver, scope, Duration::from_secs(10))
        .await
        .unwrap();
    let grant = session
        .exchange_code(&ctx, query, "https://app.example/callback")
        .await;
    let captured = session
        .finish()
        .secrets
        .into_iter()
        .map(|(name, value)| (name, String::from_utf8(value.expose().to_vec()).unwrap()))
        .collect();
    (grant.map(|g| g.scopes), captured)
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[tokio::test]
async fn code_exchange_captures_tokens_host_side() {
    let forms = Forms::default();
    let base = common::serve(
        axum::Router::new()
            .route("/admin/oauth/access_token", post(token))
            .with_state(forms.clone()),
    )
    .await;
    let (runtime, driver) = common::load("shopify", &["http://127.0.0.1:*"]).await;

    let query = signed_callback("auth-query-code", now(), APP_SECRET);
    let (scopes, captured) = exchange(&runtime, &driver, &base, &query).await;
    assert_eq!(scopes.unwrap(), ["read_orders", "read_customers"]);
    assert_eq!(
        captured,
        [
            (
                "access_token".to_string(),
                "shpat_issued_by_fake".to_string()
            ),
            (
                "refresh_token".to_string(),
                "shprt_issued_by_fake".to_string()
            ),
        ],
        "both tokens captured by the host"
    );
    let forms = forms.lock().unwrap();
    assert_eq!(forms.len(), 1);
    assert_eq!(
        forms[0], "client_id=API_KEY&client_secret=API_SECRET_KEY&code=auth-query-code",
        "secrets inserted host-side"
    );
}

#[tokio::test]
async fn forged_or_stale_callbacks_never_reach_the_provider() {
    let forms = Forms::default();
    let base = common::serve(
        axum::Router::new()
            .route("/admin/oauth/access_token", post(token))
            .with_state(forms.clone()),
    )
    .await;
    let (runtime, driver) = common::load("shopify", &["http://127.0.0.1:*"]).await;

    for query in [
        signed_callback("auth-query-code", now(), "not-the-app-secret"),
        signed_callback("auth-query-code", now() - 3600, APP_SECRET),
        signed_callback("auth-query-code", now(), APP_SECRET)
            .replace("code=auth-query-code", "code=swapped"),
    ] {
        let (result, captured) = exchange(&runtime, &driver, &base, &query).await;
        assert!(
            matches!(result, Err(CallError::Driver(DriverError::Unauthorized(_)))),
            "{query}: {result:?}"
        );
        assert!(captured.is_empty());
    }
    assert!(
        forms.lock().unwrap().is_empty(),
        "no token request for a refused callback"
    );
}
