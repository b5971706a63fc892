//! Token refresh through the real binary: one token request however many calls need it,
//! also across two nodes on one PostgreSQL database; a rotated refresh token survives a
//! SIGKILL right after it was received; refused client credentials make the installation
//! `needs_reauth`.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use reqwest::Method;
use serde_json::{Value, json};
use sluice_testkit::paths::driver_wasm;
use sluice_testkit::{Backend, Sluice, both_backends, fixture_json, unix_now};

use super::oauth_providers::{
    TokenEndpoint, concrete, installation, shopify_installation, shopify_return, shopify_sluice,
    start, token,
};

both_backends!(concurrent_calls_share_one_refresh => sqlite_concurrent_calls_share_one_refresh, postgres_concurrent_calls_share_one_refresh);

/// Hotmart's token and sales endpoints: counts token requests (answered slowly, so callers
/// pile up behind the first), checks the Basic credentials and the bearer token.
#[derive(Clone)]
struct Hotmart {
    tokens: Arc<AtomicUsize>,
    /// The expected `Authorization` of a token request.
    basic: String,
    refused: Value,
}

async fn hotmart_token(State(h): State<Hotmart>, headers: HeaderMap) -> (StatusCode, String) {
    tokio::time::sleep(Duration::from_millis(300)).await;
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(h.basic.as_str()) {
        return (StatusCode::UNAUTHORIZED, h.refused.to_string());
    }
    let n = h.tokens.fetch_add(1, Ordering::SeqCst) + 1;
    let token = json!({"access_token": format!("hotmart-access-token-{n}"), "token_type": "bearer",
                       "expires_in": 86400, "scope": "read write", "jti": format!("jti-{n}")});
    (StatusCode::OK, token.to_string())
}

async fn hotmart_sales(State(h): State<Hotmart>, headers: HeaderMap) -> (StatusCode, String) {
    let issued = h.tokens.load(Ordering::SeqCst);
    let bearer = headers.get("authorization").and_then(|v| v.to_str().ok());
    if issued == 0 || bearer != Some(format!("Bearer hotmart-access-token-{issued}").as_str()) {
        return (StatusCode::UNAUTHORIZED, h.refused.to_string());
    }
    (
        StatusCode::OK,
        json!({"items": [], "page_info": {"results_per_page": 0}}).to_string(),
    )
}

async fn hotmart_fake() -> (Hotmart, String) {
    let cases = fixture_json("hotmart/hotmart_auth_and_hottok_cases.json");
    let h = Hotmart {
        tokens: Arc::default(),
        // base64("client-id-123:secret-456"), from the fixture.
        basic: cases["basic_header_derived_example"]["authorization"]
            .as_str()
            .unwrap()
            .into(),
        refused: cases["errors"]["example_body"].clone(),
    };
    let base = sluice_testkit::fake::serve(
        axum::Router::new()
            .route("/security/oauth/token", post(hotmart_token))
            .route("/payments/api/v1/sales/history", get(hotmart_sales))
            .with_state(h.clone()),
    )
    .await;
    (h, base)
}

async fn hotmart_installation(sluice: &Sluice, base: &str, client_secret: &str) -> String {
    let cases = fixture_json("hotmart/hotmart_auth_and_hottok_cases.json");
    let example = &cases["basic_header_derived_example"];
    let inst = sluice
        .create_installation("hotmart", json!({"api_base": base, "auth_base": base}))
        .await;
    let id = inst["installation_id"].as_str().unwrap().to_string();
    sluice
        .put_secret(&id, "hottok", "ysewXlAZI1iHdUFqC4ZcV1J5RLhiVe518471")
        .await;
    sluice
        .put_secret(&id, "client_id", example["client_id"].as_str().unwrap())
        .await;
    sluice.put_secret(&id, "client_secret", client_secret).await;
    id
}

async fn hotmart_sluice(backend: Backend, env: &[(&str, &str)]) -> Option<Sluice> {
    let wasm = driver_wasm("hotmart");
    let mut env = env.to_vec();
    env.push(("SLUICE_ALLOW_HOSTS", "http://127.0.0.1:*"));
    Sluice::start_with(backend, &env, &[("hotmart.wasm", wasm.as_slice())]).await
}

/// `n` polls at once on `sluice`; every one must succeed.
async fn polls(sluice: &Sluice, id: &str, n: usize) {
    let client = reqwest::Client::new();
    let mut calls = tokio::task::JoinSet::new();
    for _ in 0..n {
        let request = client
            .post(sluice.url(&format!("/v1/installations/{id}/poll")))
            .bearer_auth(&sluice.admin_token);
        calls.spawn(async move {
            let resp = request.send().await.expect("poll request");
            (
                resp.status().as_u16(),
                resp.text().await.unwrap_or_default(),
            )
        });
    }
    while let Some(done) = calls.join_next().await {
        let (status, text) = done.unwrap();
        assert_eq!(status, 200, "{text}\n{}", sluice.log());
        let body: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(body["polled"]["pages"], 1, "{text}");
    }
}

async fn concurrent_calls_share_one_refresh(backend: Backend) {
    let (hotmart, base) = hotmart_fake().await;
    let Some(sluice) = hotmart_sluice(backend, &[]).await else {
        return;
    };
    let id = hotmart_installation(&sluice, &base, "secret-456").await;
    assert_eq!(
        installation(&sluice, &id).await["auth"]["status"],
        "pending"
    );

    // 50 polls at once, all needing a token: one token request.
    polls(&sluice, &id, 50).await;
    assert_eq!(hotmart.tokens.load(Ordering::SeqCst), 1);
    let auth = &installation(&sluice, &id).await["auth"];
    assert_eq!(auth["status"], "active", "{auth}");
    let expires = chrono::DateTime::parse_from_rfc3339(auth["token_expires_at"].as_str().unwrap())
        .unwrap()
        .timestamp();
    assert!(
        (unix_now() + 86_400 - 30..=unix_now() + 86_400).contains(&expires),
        "{auth}"
    );
    // Cached until shortly before it expires: later polls ask for none.
    polls(&sluice, &id, 5).await;
    assert_eq!(hotmart.tokens.load(Ordering::SeqCst), 1);

    // Refused client credentials (the fixture's 401): `needs_reauth`, polling refused.
    let bad = hotmart_installation(&sluice, &base, "not-the-secret").await;
    let resp = sluice
        .admin(Method::POST, &format!("/v1/installations/{bad}/poll"), None)
        .await;
    resp.expect_status(409);
    let auth = &installation(&sluice, &bad).await["auth"];
    assert_eq!(auth["status"], "needs_reauth", "{auth}");
    assert!(
        auth["reason"]
            .as_str()
            .unwrap()
            .contains("Full authentication is required"),
        "{auth}"
    );
    let resp = sluice
        .admin(Method::POST, &format!("/v1/installations/{bad}/poll"), None)
        .await;
    resp.expect_status(409);
    assert!(resp.text.contains("needs_reauth"), "{}", resp.text);
}

/// Two nodes on one database: 25 polls on each at once, one token request in all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_share_one_refresh() {
    let (hotmart, base) = hotmart_fake().await;
    let Some(a) = hotmart_sluice(Backend::Postgres, &[]).await else {
        return;
    };
    let shared = a.database_url().to_string();
    let Some(b) = hotmart_sluice(Backend::Postgres, &[("SLUICE_DATABASE_URL", &shared)]).await
    else {
        return;
    };
    let id = hotmart_installation(&a, &base, "secret-456").await;
    tokio::join!(polls(&a, &id, 25), polls(&b, &id, 25));
    assert_eq!(
        hotmart.tokens.load(Ordering::SeqCst),
        1,
        "{}\n{}",
        a.log(),
        b.log()
    );
    assert_eq!(installation(&b, &id).await["auth"]["status"], "active");
}

both_backends!(a_rotated_refresh_token_survives_a_kill => sqlite_a_rotated_refresh_token_survives_a_kill, postgres_a_rotated_refresh_token_survives_a_kill);

/// Shopify's expiring offline token: the refresh answer rotates the refresh token. The
/// process is killed as the new access token is first used; after the restart the next
/// refresh presents the rotated refresh token (the only valid one) and succeeds.
async fn a_rotated_refresh_token_survives_a_kill(backend: Backend) {
    let cases = fixture_json("shopify/shopify_oauth_token_cases.json");
    let fake = TokenEndpoint::default();
    // The shop: its token endpoint, and its API, where the first request with the
    // refreshed token is where the host dies.
    let (used, mut first_use) = tokio::sync::mpsc::channel::<String>(4);
    let token_base = sluice_testkit::fake::serve(
        axum::Router::new()
            .route("/admin/oauth/access_token", post(token))
            .with_state(fake.clone())
            .route(
                "/admin/api/{version}/orders.json",
                get(move |headers: HeaderMap| {
                    let used = used.clone();
                    async move {
                        let token = headers
                            .get("x-shopify-access-token")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("")
                            .to_string();
                        let _ = used.send(token).await;
                        tokio::time::sleep(Duration::from_secs(30)).await;
                        "{\"orders\":[]}".to_string()
                    }
                }),
            ),
    )
    .await;
    // Every token is within the margin of expiry, so the poll refreshes first.
    let Some(mut sluice) =
        shopify_sluice(backend, &[("SLUICE_AUTH_REFRESH_MARGIN_SECS", "2000")]).await
    else {
        return;
    };
    let id = shopify_installation(&sluice, "shop-k.myshopify.com", &token_base, json!({})).await;
    let answer = concrete(
        &cases["authorization_code_exchange"]["response_offline_expiring"],
        &sluice,
    );
    let first_refresh = answer["refresh_token"].as_str().unwrap().to_string();
    fake.answers
        .lock()
        .unwrap()
        .insert("code-k".into(), (200, answer));
    let url = start(&sluice, &id).await;
    let (status, body) = shopify_return(&sluice, &url, "code-k", "shop-k.myshopify.com").await;
    assert_eq!(status, 200, "{body}");
    *fake.refresh_answer.lock().unwrap() =
        cases["refresh_token_grant"]["response_offline_expiring_js_test"].clone();

    let resp = sluice
        .admin(Method::GET, &format!("/v1/installations/{id}"), None)
        .await;
    assert_eq!(resp.json["auth"]["status"], "active");
    let poll = {
        let url = sluice.url(&format!("/v1/installations/{id}/poll"));
        let token = sluice.admin_token.clone();
        tokio::spawn(async move {
            let _ = reqwest::Client::new()
                .post(url)
                .bearer_auth(token)
                .send()
                .await;
        })
    };
    let token = tokio::time::timeout(Duration::from_secs(20), first_use.recv())
        .await
        .expect("the poll never used a token")
        .unwrap();
    assert!(
        token.starts_with("new_access_token_"),
        "the refreshed token: {token}"
    );
    sluice.kill();
    poll.abort();
    let rotated = fake.refresh_token.lock().unwrap().clone().unwrap();
    assert_ne!(rotated, first_refresh);

    sluice.start_again().await;
    let resp = sluice
        .admin(
            Method::POST,
            &format!("/v1/installations/{id}/refresh"),
            None,
        )
        .await;
    assert_eq!(resp.status, 200, "{}\n{}", resp.text, sluice.log());
    let forms = fake.forms.lock().unwrap().clone();
    let presented: Vec<&str> = forms
        .iter()
        .filter_map(|f| f.get("refresh_token").map(String::as_str))
        .collect();
    assert_eq!(presented, [first_refresh.as_str(), rotated.as_str()]);
}

both_backends!(a_refused_token_is_refreshed_once_and_failures_back_off => sqlite_a_refused_token_is_refreshed_once_and_failures_back_off, postgres_a_refused_token_is_refreshed_once_and_failures_back_off);

/// A poll answered `401` refreshes the token once and retries; a provider that keeps
/// failing refreshes backs the installation off, then (after `reauth_after_secs`) makes it
/// `needs_reauth`, and polling stops until it is authorized again.
async fn a_refused_token_is_refreshed_once_and_failures_back_off(backend: Backend) {
    let cases = fixture_json("shopify/shopify_oauth_token_cases.json");
    let fake = TokenEndpoint::default();
    let refused = Arc::new(std::sync::Mutex::new(String::new()));
    let orders_seen = Arc::new(AtomicUsize::new(0));
    let (refused_token, seen) = (refused.clone(), orders_seen.clone());
    let base = sluice_testkit::fake::serve(
        axum::Router::new()
            .route("/admin/oauth/access_token", post(token))
            .with_state(fake.clone())
            .route(
                "/admin/api/{version}/orders.json",
                get(move |headers: HeaderMap| {
                    let (refused_token, seen) = (refused_token.clone(), seen.clone());
                    async move {
                        seen.fetch_add(1, Ordering::SeqCst);
                        let token = headers.get("x-shopify-access-token").and_then(|v| v.to_str().ok()).unwrap_or("");
                        if token == refused_token.lock().unwrap().as_str() {
                            // Shopify's answer to a revoked or expired token.
                            let body = json!({"errors": "[API] Invalid API key or access token (unrecognized login or wrong password)"});
                            return (StatusCode::UNAUTHORIZED, body.to_string());
                        }
                        (StatusCode::OK, json!({"orders": []}).to_string())
                    }
                }),
            ),
    )
    .await;
    let env = [
        ("SLUICE_AUTH_REAUTH_AFTER_SECS", "2"),
        ("SLUICE_AUTH_REFRESH_BACKOFF_MIN_SECS", "60"),
    ];
    let Some(sluice) = shopify_sluice(backend, &env).await else {
        return;
    };
    let id = shopify_installation(&sluice, "shop-r.myshopify.com", &base, json!({})).await;
    let answer = concrete(
        &cases["authorization_code_exchange"]["response_offline_expiring"],
        &sluice,
    );
    *refused.lock().unwrap() = answer["access_token"].as_str().unwrap().to_string();
    fake.answers
        .lock()
        .unwrap()
        .insert("code-r".into(), (200, answer));
    *fake.refresh_answer.lock().unwrap() =
        cases["refresh_token_grant"]["response_offline_expiring_js_test"].clone();
    let url = start(&sluice, &id).await;
    let (status, body) = shopify_return(&sluice, &url, "code-r", "shop-r.myshopify.com").await;
    assert_eq!(status, 200, "{body}");

    // The token is refused: one refresh, one retry, the page is fetched.
    let resp = sluice
        .admin(Method::POST, &format!("/v1/installations/{id}/poll"), None)
        .await;
    assert_eq!(resp.status, 200, "{}", resp.text);
    assert_eq!(resp.json["polled"]["pages"], 1);
    assert_eq!(
        orders_seen.load(Ordering::SeqCst),
        2,
        "refused, then retried"
    );
    let grants: Vec<String> = fake
        .forms
        .lock()
        .unwrap()
        .iter()
        .map(|f| {
            f.get("grant_type")
                .cloned()
                .unwrap_or_else(|| "authorization_code".into())
        })
        .collect();
    assert_eq!(grants, ["authorization_code", "refresh_token"]);

    // The provider goes down: the failure is recorded and backed off, still `active`.
    *fake.refresh_failure.lock().unwrap() = Some(503);
    let resp = sluice
        .admin(
            Method::POST,
            &format!("/v1/installations/{id}/refresh"),
            None,
        )
        .await;
    resp.expect_status(502);
    let auth = &installation(&sluice, &id).await["auth"];
    assert_eq!(
        (auth["status"].as_str(), auth["refresh_failures"].as_u64()),
        (Some("active"), Some(1)),
        "{auth}"
    );
    assert!(
        auth["last_refresh_error"].as_str().unwrap().contains("503"),
        "{auth}"
    );
    let next =
        chrono::DateTime::parse_from_rfc3339(auth["next_refresh_attempt_at"].as_str().unwrap())
            .unwrap()
            .timestamp();
    assert!(
        (unix_now() + 25..=unix_now() + 61).contains(&next),
        "30 to 60 s of backoff with jitter: {auth}"
    );
    // Still failing past `reauth_after_secs`: `needs_reauth`, and polling stops.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let resp = sluice
        .admin(
            Method::POST,
            &format!("/v1/installations/{id}/refresh"),
            None,
        )
        .await;
    resp.expect_status(502);
    let auth = &installation(&sluice, &id).await["auth"];
    assert_eq!(auth["status"], "needs_reauth", "{auth}");
    assert!(
        auth["reason"]
            .as_str()
            .unwrap()
            .starts_with("refreshing has failed since"),
        "{auth}"
    );
    let polls_before = orders_seen.load(Ordering::SeqCst);
    let resp = sluice
        .admin(Method::POST, &format!("/v1/installations/{id}/poll"), None)
        .await;
    resp.expect_status(409);
    assert_eq!(
        orders_seen.load(Ordering::SeqCst),
        polls_before,
        "no request while it needs reauthorization"
    );
}
