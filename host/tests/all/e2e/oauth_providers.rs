//! The bundled drivers' authorization flows through the real binary, against loopback
//! token endpoints that answer what the fixture files record, case by case:
//! `shopify_oauth_token_cases.json` (offline, expiring offline with a rotating refresh
//! token, online; scope checks; the callback's `hmac`, shop and timestamp) and
//! `stripe_connect_oauth_cases.json` (authorize URL, token request and answers, error
//! answer, deauthorization).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use reqwest::Method;
use serde_json::{Value, json};
use sluice_testkit::paths::driver_wasm;
use sluice_testkit::{
    Backend, Sluice, both_backends, fixture_json, random_hex, stripe_header, unix_now,
};

both_backends!(shopify_flows => sqlite_shopify_flows, postgres_shopify_flows);
both_backends!(stripe_connect_flows => sqlite_stripe_connect_flows, postgres_stripe_connect_flows);
both_backends!(app_credentials_are_shared_by_installations => sqlite_app_credentials_are_shared_by_installations, postgres_app_credentials_are_shared_by_installations);

pub const APP_SECRET: &str = "API_SECRET_KEY_e2e";

/// A token endpoint fake: every form it received, and what it answers.
#[derive(Clone, Default)]
pub struct TokenEndpoint {
    pub forms: Arc<Mutex<Vec<HashMap<String, String>>>>,
    pub headers: Arc<Mutex<Vec<HeaderMap>>>,
    /// `(status, body)` for an authorization-code request, by code.
    pub answers: Arc<Mutex<HashMap<String, (u16, Value)>>>,
    /// The one refresh token the fake accepts now (it rotates on every use).
    pub refresh_token: Arc<Mutex<Option<String>>>,
    /// Answer of a refresh (tokens made concrete per use).
    pub refresh_answer: Arc<Mutex<Value>>,
    /// When set, refreshes fail with this status (the provider is down).
    pub refresh_failure: Arc<Mutex<Option<u16>>>,
}

impl TokenEndpoint {
    pub fn count(&self) -> usize {
        self.forms.lock().unwrap().len()
    }
}

pub fn form(body: &str) -> HashMap<String, String> {
    url::form_urlencoded::parse(body.as_bytes())
        .into_owned()
        .collect()
}

pub async fn token(
    State(fake): State<TokenEndpoint>,
    headers: HeaderMap,
    body: String,
) -> (StatusCode, String) {
    let form = form(&body);
    fake.forms.lock().unwrap().push(form.clone());
    fake.headers.lock().unwrap().push(headers);
    let reply =
        |status: u16, body: &Value| (StatusCode::from_u16(status).unwrap(), body.to_string());
    if form.get("grant_type").map(String::as_str) == Some("refresh_token") {
        if let Some(status) = *fake.refresh_failure.lock().unwrap() {
            return reply(status, &json!({"errors": "Service Unavailable"}));
        }
        let mut current = fake.refresh_token.lock().unwrap();
        if current.as_deref() != form.get("refresh_token").map(String::as_str) {
            return reply(
                400,
                &json!({"error": "invalid_grant", "error_description": "unknown or used refresh token"}),
            );
        }
        let n = fake.count();
        let mut answer = fake.refresh_answer.lock().unwrap().clone();
        answer["access_token"] = json!(format!("{}_{n}", answer["access_token"].as_str().unwrap()));
        let next = format!("{}_{n}", answer["refresh_token"].as_str().unwrap());
        answer["refresh_token"] = json!(next);
        *current = Some(next);
        return reply(200, &answer);
    }
    let code = form.get("code").cloned().unwrap_or_default();
    let answers = fake.answers.lock().unwrap();
    let (status, answer) = answers
        .get(&code)
        .cloned()
        .unwrap_or((400, json!({"error": "invalid_grant"})));
    if let Some(rt) = answer["refresh_token"].as_str() {
        *fake.refresh_token.lock().unwrap() = Some(rt.to_string());
    }
    reply(status, &answer)
}

/// A browser that shows redirects instead of following them.
pub fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// `GET /oauth/{id}/start`: the `Location` it redirects to.
pub async fn start(sluice: &Sluice, id: &str) -> reqwest::Url {
    let resp = browser()
        .get(sluice.url(&format!("/oauth/{id}/start")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 302, "{:?}", resp.text().await);
    assert_eq!(resp.headers()["cache-control"], "no-store");
    reqwest::Url::parse(resp.headers()["location"].to_str().unwrap()).unwrap()
}

pub fn param(url: &reqwest::Url, key: &str) -> String {
    url.query_pairs()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| panic!("no {key} in {url}"))
}

/// `GET /oauth/callback?…`: status and JSON.
pub async fn callback(sluice: &Sluice, query: &str) -> (u16, Value) {
    let resp = browser()
        .get(sluice.url(&format!("/oauth/callback?{query}")))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// A callback query signed the way Shopify signs it: the sorted `key=value` pairs
/// without `hmac`, hex HMAC-SHA256 under the app secret.
pub fn shopify_callback(
    code: &str,
    shop: &str,
    state: &str,
    timestamp: i64,
    secret: &str,
) -> String {
    let message = format!("code={code}&shop={shop}&state={state}&timestamp={timestamp}");
    let hmac = hex::encode(sluice_testkit::sign::hmac_sha256(
        secret.as_bytes(),
        message.as_bytes(),
    ));
    format!("{message}&hmac={hmac}")
}

/// The provider's redirect back after an authorization started at `url`, as Shopify signs
/// it now, for `code` and `shop`: status and JSON.
pub async fn shopify_return(
    sluice: &Sluice,
    url: &reqwest::Url,
    code: &str,
    shop: &str,
) -> (u16, Value) {
    let query = shopify_callback(code, shop, &param(url, "state"), unix_now(), APP_SECRET);
    callback(sluice, &query).await
}

pub async fn installation(sluice: &Sluice, id: &str) -> Value {
    let resp = sluice
        .admin(Method::GET, &format!("/v1/installations/{id}"), None)
        .await;
    resp.expect_status(200);
    resp.json
}

pub async fn shopify_fake() -> (TokenEndpoint, String) {
    let fake = TokenEndpoint::default();
    let base = sluice_testkit::fake::serve(
        axum::Router::new()
            .route("/admin/oauth/access_token", post(token))
            .with_state(fake.clone()),
    )
    .await;
    (fake, base)
}

/// The fixture's answer with its `<10 random chars>` placeholders made concrete.
pub fn concrete(answer: &Value, sluice: &Sluice) -> Value {
    let mut answer = answer.clone();
    for field in ["access_token", "refresh_token"] {
        if answer[field] == "<10 random chars>" {
            let token = format!("shp{field}_{}", random_hex());
            sluice.remember_secret(&token);
            answer[field] = json!(token);
        }
    }
    answer
}

pub async fn shopify_sluice(backend: Backend, env: &[(&str, &str)]) -> Option<Sluice> {
    let wasm = driver_wasm("shopify");
    let mut env = env.to_vec();
    env.push(("SLUICE_ALLOW_HOSTS", "http://127.0.0.1:*"));
    Sluice::start_with(backend, &env, &[("shopify.wasm", wasm.as_slice())]).await
}

pub async fn shopify_installation(sluice: &Sluice, shop: &str, base: &str, extra: Value) -> String {
    let mut settings =
        json!({"shop": shop, "api_base": base, "client_id": "API_KEY", "scopes": []});
    for (k, v) in extra.as_object().unwrap() {
        settings[k] = v.clone();
    }
    let inst = sluice.create_installation("shopify", settings).await;
    let id = inst["installation_id"].as_str().unwrap().to_string();
    sluice.put_secret(&id, "webhook_secret", APP_SECRET).await;
    assert_eq!(installation(sluice, &id).await["auth"]["status"], "pending");
    id
}

async fn shopify_flows(backend: Backend) {
    let cases = fixture_json("shopify/shopify_oauth_token_cases.json");
    let exchange = &cases["authorization_code_exchange"];
    let (fake, base) = shopify_fake().await;
    let Some(sluice) = shopify_sluice(backend, &[]).await else {
        return;
    };
    let now = unix_now();

    // Offline, non-expiring (`expiring=0`).
    let a = shopify_installation(
        &sluice,
        "shop-a.myshopify.com",
        &base,
        json!({"expiring_offline_tokens": false}),
    )
    .await;
    let url = start(&sluice, &a).await;
    assert_eq!(
        url.as_str().split('?').next().unwrap(),
        format!("{base}/admin/oauth/authorize")
    );
    assert_eq!(param(&url, "client_id"), "API_KEY");
    assert_eq!(param(&url, "redirect_uri"), sluice.url("/oauth/callback"));
    let answer = concrete(&exchange["response_offline_non_expiring"], &sluice);
    fake.answers
        .lock()
        .unwrap()
        .insert("code-a".into(), (200, answer.clone()));

    // Refusals before any token request: another secret, a stale timestamp, A's state
    // with B's shop (a state from installation A does not complete B), a state never
    // issued. Each attempt uses its state up.
    let b = shopify_installation(&sluice, "shop-b.myshopify.com", &base, json!({})).await;
    let refusals: [(&str, i64, &str, u16); 3] = [
        ("shop-a.myshopify.com", now, "not-the-app-secret", 401),
        ("shop-a.myshopify.com", now - 3600, APP_SECRET, 401),
        ("shop-b.myshopify.com", now, APP_SECRET, 401),
    ];
    for (shop, timestamp, secret, status) in refusals {
        let state = param(&start(&sluice, &a).await, "state");
        let query = shopify_callback("code-a", shop, &state, timestamp, secret);
        let (got, body) = callback(&sluice, &query).await;
        assert_eq!(got, status, "{query}: {body}");
        let (again, _) = callback(&sluice, &query).await;
        assert_eq!(again, 400, "a used state: {query}");
    }
    let query = shopify_callback(
        "code-a",
        "shop-a.myshopify.com",
        "forged-state",
        now,
        APP_SECRET,
    );
    assert_eq!(callback(&sluice, &query).await.0, 400);
    assert_eq!(fake.count(), 0, "a refused callback makes no token request");
    assert_eq!(installation(&sluice, &b).await["auth"]["status"], "pending");

    let state_a = param(&start(&sluice, &a).await, "state");
    let (status, body) = callback(
        &sluice,
        &shopify_callback("code-a", "shop-a.myshopify.com", &state_a, now, APP_SECRET),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let forms = fake.forms.lock().unwrap().clone();
    // `request_body_non_expiring` of the fixture, the secret inserted by the host.
    let expected = &exchange["request_body_non_expiring"];
    assert_eq!(forms[0]["client_id"], "API_KEY");
    assert_eq!(forms[0]["client_secret"], APP_SECRET);
    assert_eq!(forms[0]["code"], "code-a");
    assert_eq!(forms[0]["expiring"], expected["expiring"].to_string());
    let auth = &installation(&sluice, &a).await["auth"];
    assert_eq!(auth["status"], "active", "{auth}");
    assert_eq!(auth["scopes"], json!(["scope1", "scope2"]));
    assert_eq!(auth["token_expires_at"], Value::Null);

    // Online: `grant_options[]=per-user`; the token expires with the user's session.
    let online = shopify_installation(
        &sluice,
        "shop-c.myshopify.com",
        &base,
        json!({"access_mode": "online"}),
    )
    .await;
    let url = start(&sluice, &online).await;
    assert_eq!(param(&url, "grant_options[]"), "per-user");
    let answer = concrete(&exchange["response_online"], &sluice);
    fake.answers
        .lock()
        .unwrap()
        .insert("code-c".into(), (200, answer));
    let (status, body) = shopify_return(&sluice, &url, "code-c", "shop-c.myshopify.com").await;
    assert_eq!(status, 200, "{body}");
    let auth = &installation(&sluice, &online).await["auth"];
    let at = chrono::DateTime::parse_from_rfc3339(auth["token_expires_at"].as_str().unwrap())
        .unwrap()
        .timestamp();
    assert!(
        (now + 1000..=unix_now() + 1000).contains(&at),
        "expires_in 1000: {auth}"
    );
    assert_eq!(fake.forms.lock().unwrap()[1]["expiring"], "0");

    // Expiring offline with a rotating refresh token (`expiring=1`, then the refresh grant).
    let d = shopify_installation(&sluice, "shop-d.myshopify.com", &base, json!({})).await;
    let url = start(&sluice, &d).await;
    let answer = concrete(&exchange["response_offline_expiring"], &sluice);
    let first_refresh = answer["refresh_token"].as_str().unwrap().to_string();
    fake.answers
        .lock()
        .unwrap()
        .insert("code-d".into(), (200, answer));
    let (status, body) = shopify_return(&sluice, &url, "code-d", "shop-d.myshopify.com").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        fake.forms.lock().unwrap()[2]["expiring"],
        exchange["request_body_expiring"]["expiring"].to_string()
    );
    let refresh_cases = &cases["refresh_token_grant"];
    *fake.refresh_answer.lock().unwrap() =
        refresh_cases["response_offline_expiring_js_test"].clone();
    let resp = sluice
        .admin(
            Method::POST,
            &format!("/v1/installations/{d}/refresh"),
            None,
        )
        .await;
    resp.expect_status(200);
    let sent = fake.forms.lock().unwrap()[3].clone();
    for key in refresh_cases["request_body"].as_object().unwrap().keys() {
        assert!(sent.contains_key(key), "refresh form lacks {key}: {sent:?}");
    }
    assert_eq!(sent["grant_type"], "refresh_token");
    assert_eq!(sent["refresh_token"], first_refresh);
    let auth = &resp.json["installation"]["auth"];
    assert_eq!(auth["scopes"], json!(["test_scope"]));
    let at = chrono::DateTime::parse_from_rfc3339(auth["token_expires_at"].as_str().unwrap())
        .unwrap()
        .timestamp();
    assert!(at >= now + 525_600, "{auth}");
    // The rotated refresh token was kept: a second refresh presents it.
    let resp = sluice
        .admin(
            Method::POST,
            &format!("/v1/installations/{d}/refresh"),
            None,
        )
        .await;
    resp.expect_status(200);
    assert_eq!(
        fake.forms.lock().unwrap()[4]["refresh_token"],
        format!(
            "{}_4",
            refresh_cases["response_offline_expiring_js_test"]["refresh_token"]
                .as_str()
                .unwrap()
        )
    );

    // A grant short of the scopes the installation needs: `needs_reauth` with the reason.
    // (The Python SDK case grants `read_products,write_orders`; `write_orders` covers
    // `read_orders`.)
    let python = &exchange["python_sdk_case"];
    let answer: Value = serde_json::from_str(python["response_body"].as_str().unwrap()).unwrap();
    fake.answers
        .lock()
        .unwrap()
        .insert("code-e".into(), (200, answer.clone()));
    fake.answers
        .lock()
        .unwrap()
        .insert("code-f".into(), (200, answer));
    let e = shopify_installation(
        &sluice,
        "shop-e.myshopify.com",
        &base,
        json!({"scopes": ["read_orders", "read_products"]}),
    )
    .await;
    let url = start(&sluice, &e).await;
    let (status, body) = shopify_return(&sluice, &url, "code-e", "shop-e.myshopify.com").await;
    assert_eq!(
        (status, body["authorized"]["status"].as_str()),
        (200, Some("active")),
        "{body}"
    );
    let f = shopify_installation(
        &sluice,
        "shop-f.myshopify.com",
        &base,
        json!({"scopes": ["read_customers"]}),
    )
    .await;
    let url = start(&sluice, &f).await;
    let (status, body) = shopify_return(&sluice, &url, "code-f", "shop-f.myshopify.com").await;
    assert_eq!(status, 200, "{body}");
    let auth = &installation(&sluice, &f).await["auth"];
    assert_eq!(auth["status"], "needs_reauth", "{auth}");
    assert!(
        auth["reason"].as_str().unwrap().contains("read_customers"),
        "{auth}"
    );
    assert_eq!(auth["scopes"], json!(["read_products", "write_orders"]));

    // The merchant uninstalls the app: the installation is revoked, its tokens forgotten.
    let body = br#"{"id":1,"name":"Shop A"}"#;
    let hmac = sluice_testkit::shopify_hmac(APP_SECRET, body);
    let resp = sluice
        .post_webhook(
            &a,
            &[
                ("X-Shopify-Topic", "app/uninstalled"),
                ("X-Shopify-Webhook-Id", "uninstall-1"),
                ("X-Shopify-Shop-Domain", "shop-a.myshopify.com"),
                ("X-Shopify-Hmac-Sha256", hmac.as_str()),
            ],
            body.to_vec(),
        )
        .await;
    resp.expect_status(200);
    let inst = installation(&sluice, &a).await;
    assert_eq!(inst["auth"]["status"], "revoked", "{inst}");
    assert_eq!(
        inst["secrets"],
        json!(["webhook_secret"]),
        "tokens forgotten: {inst}"
    );
}

/// Stripe's redirect back after an authorization started at `url`, with `code`.
async fn stripe_return(sluice: &Sluice, url: &reqwest::Url, code: &str) -> (u16, Value) {
    let query = format!("code={code}&scope=read_write&state={}", param(url, "state"));
    callback(sluice, &query).await
}

/// A Stripe installation set up for Connect OAuth against the fake.
async fn connect(sluice: &Sluice, base: &str) -> String {
    let inst = sluice
        .create_installation(
            "stripe",
            json!({"connect_client_id": "ca_123", "connect_base": base, "api_base": base}),
        )
        .await;
    let id = inst["installation_id"].as_str().unwrap().to_string();
    sluice
        .put_secret(&id, "webhook_secret", "whsec_connect_e2e_secret")
        .await;
    // `sk_123` is the fixture's platform key (stripe-go's `TestNewOAuthToken`).
    sluice
        .put_secret(&id, "platform_secret_key", "sk_123")
        .await;
    id
}

async fn stripe_connect_flows(backend: Backend) {
    let cases = fixture_json("stripe/stripe_connect_oauth_cases.json");
    let fake = TokenEndpoint::default();
    let deauthorized = Arc::new(Mutex::new(Vec::<(HeaderMap, String)>::new()));
    let deauthorize_answer = cases["deauthorize"]["response_body"].clone();
    let seen = deauthorized.clone();
    let base = sluice_testkit::fake::serve(
        axum::Router::new()
            .route("/oauth/token", post(token))
            .route(
                "/oauth/deauthorize",
                post(move |headers: HeaderMap, body: String| {
                    let (seen, answer) = (seen.clone(), deauthorize_answer.clone());
                    async move {
                        seen.lock().unwrap().push((headers, body));
                        answer.to_string()
                    }
                }),
            )
            .with_state(fake.clone()),
    )
    .await;
    let success = &cases["token_response_success"];
    fake.answers
        .lock()
        .unwrap()
        .insert("code".into(), (200, success["body"].clone()));
    let error = &cases["token_response_error"];
    fake.answers.lock().unwrap().insert(
        "stale-code".into(),
        (
            error["http_status"].as_u64().unwrap() as u16,
            error["body"].clone(),
        ),
    );
    let Some(sluice) =
        Sluice::start_with_env(backend, &[("SLUICE_ALLOW_HOSTS", "http://127.0.0.1:*")]).await
    else {
        return;
    };

    // The error answer: a clear 502 naming Stripe's error, nothing stored.
    let first = connect(&sluice, &base).await;
    let url = start(&sluice, &first).await;
    let (status, body) = stripe_return(&sluice, &url, "stale-code").await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(
        body["error"]["message"],
        "the provider refused: status 400: invalid_grant: Authorization code does not exist"
    );
    assert_eq!(
        installation(&sluice, &first).await["auth"]["status"],
        "active",
        "API-key installation unchanged"
    );

    // The user declined at Stripe: refused without a token request.
    let before = fake.count();
    let url = start(&sluice, &first).await;
    let (status, body) = callback(
        &sluice,
        &format!(
            "error=access_denied&error_description=The+user+denied+your+request&state={}",
            param(&url, "state")
        ),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(fake.count(), before);

    // `read_only` when the settings ask for it.
    let read_only = sluice
        .create_installation("stripe", json!({"connect_client_id": "ca_123", "connect_base": base, "connect_scope": "read_only"}))
        .await;
    let url = start(&sluice, read_only["installation_id"].as_str().unwrap()).await;
    assert_eq!(param(&url, "scope"), "read_only");

    // Success.
    let url = start(&sluice, &first).await;
    assert!(
        url.as_str()
            .starts_with(&format!("{base}/oauth/authorize?")),
        "{url}"
    );
    let expect = &cases["authorize_url_cases"][1]["expect_contains"];
    assert!(
        url.as_str().contains(expect[1].as_str().unwrap()),
        "client_id=ca_123 in {url}"
    );
    assert_eq!(param(&url, "scope"), "read_write");
    assert_eq!(param(&url, "response_type"), "code");
    let (status, body) = stripe_return(&sluice, &url, "code").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["authorized"]["account_key"],
        success["body"]["stripe_user_id"]
    );
    let sent = fake.forms.lock().unwrap().last().unwrap().clone();
    for needle in cases["token_request"]["body_must_contain"]
        .as_array()
        .unwrap()
    {
        let (k, v) = needle.as_str().unwrap().split_once('=').unwrap();
        if k.starts_with("assert_capabilities") {
            continue; // optional: Sluice asks for no capabilities
        }
        assert_eq!(
            sent.get(k).map(String::as_str),
            Some(v),
            "{needle} in {sent:?}"
        );
    }
    let inst = installation(&sluice, &first).await;
    assert_eq!(inst["account_key"], "acct_123");
    assert_eq!(inst["auth"]["status"], "active");
    assert_eq!(inst["auth"]["scopes"], json!(["read_write"]));
    assert_eq!(
        inst["secrets"],
        json!([
            "api_key",
            "platform_secret_key",
            "refresh_token",
            "webhook_secret"
        ])
    );

    // One account, one live installation.
    let second = connect(&sluice, &base).await;
    let url = start(&sluice, &second).await;
    let (status, body) = stripe_return(&sluice, &url, "code").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("conflict")),
        "{body}"
    );

    // The account deauthorizes the platform: Stripe's event revokes the installation.
    let event = json!({"id": "evt_deauth_1", "object": "event", "type": "account.application.deauthorized",
        "account": "acct_123", "created": unix_now(), "livemode": false, "api_version": "2025-08-27.basil",
        "data": {"object": {"id": "ca_123", "object": "application", "name": "Platform"}}});
    let payload = event.to_string().into_bytes();
    let signature = stripe_header(&payload, "whsec_connect_e2e_secret", unix_now());
    sluice
        .post_webhook(&first, &[("stripe-signature", signature.as_str())], payload)
        .await
        .expect_status(200);
    let inst = installation(&sluice, &first).await;
    assert_eq!(inst["auth"]["status"], "revoked", "{inst}");
    assert!(
        inst["auth"]["reason"]
            .as_str()
            .unwrap()
            .contains("account.application.deauthorized")
    );
    assert_eq!(
        inst["secrets"],
        json!(["platform_secret_key", "webhook_secret"])
    );

    // The operator deauthorizes: `POST /oauth/deauthorize` with the platform key.
    sluice
        .admin(Method::DELETE, &format!("/v1/installations/{first}"), None)
        .await
        .expect_status(204);
    let url = start(&sluice, &second).await;
    let (status, body) = stripe_return(&sluice, &url, "code").await;
    assert_eq!(status, 200, "{body}");
    sluice
        .admin(
            Method::POST,
            &format!("/v1/installations/{second}/revoke"),
            None,
        )
        .await
        .expect_status(204);
    let calls = deauthorized.lock().unwrap().clone();
    assert_eq!(calls.len(), 1);
    let sent = form(&calls[0].1);
    for needle in cases["deauthorize"]["body_must_contain"]
        .as_array()
        .unwrap()
    {
        let key = needle.as_str().unwrap().split_once('=').unwrap().0;
        assert!(sent.contains_key(key), "{key} in {sent:?}");
    }
    assert_eq!(sent["client_id"], "ca_123");
    assert_eq!(sent["stripe_user_id"], "acct_123");
    assert_eq!(calls[0].0["authorization"], "Bearer sk_123");
    let inst = installation(&sluice, &second).await;
    assert_eq!(inst["auth"]["status"], "revoked");
    assert_eq!(inst["auth"]["reason"], "revoked by the operator");
    let resp = sluice
        .admin(
            Method::GET,
            &format!("/v1/installations/{second}/audit"),
            None,
        )
        .await;
    let actions: Vec<String> = resp.json["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            format!(
                "{} {}",
                c["secret"].as_str().unwrap(),
                c["action"].as_str().unwrap()
            )
        })
        .collect();
    assert!(
        actions.contains(&"api_key deleted".to_string()),
        "{actions:?}"
    );
    assert!(
        actions.contains(&"refresh_token captured".to_string()),
        "{actions:?}"
    );
}

/// One Shopify app for many installations: the client secret (which also signs webhooks)
/// from `[drivers.shopify] app_secrets`, read from the environment, and the client id from
/// `app_settings`; the installations set neither.
async fn app_credentials_are_shared_by_installations(backend: Backend) {
    let cases = fixture_json("shopify/shopify_oauth_token_cases.json");
    let (fake, base) = shopify_fake().await;
    let Some(mut sluice) = shopify_sluice(backend, &[("E2E_SHOPIFY_APP_SECRET", APP_SECRET)]).await
    else {
        return;
    };
    std::fs::write(
        sluice.dir().join("sluice.toml"),
        "[drivers.shopify]\napp_secrets = { webhook_secret = \"env:E2E_SHOPIFY_APP_SECRET\" }\napp_settings = { client_id = \"API_KEY\" }\n",
    )
    .unwrap();
    sluice.restart().await;
    let inst = sluice
        .create_installation(
            "shopify",
            json!({"shop": "shop-s.myshopify.com", "api_base": base, "scopes": []}),
        )
        .await;
    assert_eq!(
        inst["secrets_missing"],
        json!([]),
        "the app secret is shared: {inst}"
    );
    let id = inst["installation_id"].as_str().unwrap().to_string();
    let url = start(&sluice, &id).await;
    assert_eq!(param(&url, "client_id"), "API_KEY");
    let answer = concrete(
        &cases["authorization_code_exchange"]["response_offline_non_expiring"],
        &sluice,
    );
    fake.answers
        .lock()
        .unwrap()
        .insert("code-s".into(), (200, answer));
    let (status, body) = shopify_return(&sluice, &url, "code-s", "shop-s.myshopify.com").await;
    assert_eq!(status, 200, "{body}");
    let sent = fake.forms.lock().unwrap()[0].clone();
    assert_eq!(
        (sent["client_id"].as_str(), sent["client_secret"].as_str()),
        ("API_KEY", APP_SECRET)
    );
    // Webhooks signed with the app secret are taken too.
    let order = br##"{"id":820982911946154508,"name":"#1001","currency":"USD","total_price":"10.00","created_at":"2025-10-01T09:00:00-05:00","updated_at":"2025-10-01T09:00:00-05:00","line_items":[]}"##;
    let hmac = sluice_testkit::shopify_hmac(APP_SECRET, order);
    let resp = sluice
        .post_webhook(
            &id,
            &[
                ("X-Shopify-Topic", "orders/create"),
                ("X-Shopify-Webhook-Id", "shared-1"),
                ("X-Shopify-Shop-Domain", "shop-s.myshopify.com"),
                ("X-Shopify-Hmac-Sha256", hmac.as_str()),
            ],
            order.to_vec(),
        )
        .await;
    assert_eq!(resp.status, 200, "{}", resp.text);
    // The app secret is never listed as the installation's.
    assert_eq!(
        installation(&sluice, &id).await["secrets"],
        json!(["access_token"])
    );
}
