//! OAuth 2.0 through the real binary against a real authorization server not written here
//! (`oauth2-mock-server`, see `sluice_testkit::oauth`), with the example driver (Acme):
//! authorization code with PKCE, the state's rules, refresh ahead of expiry, and a revoked
//! refresh token.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};
use sluice_testkit::oauth::OAuthServer;
use sluice_testkit::{Backend, Sluice, both_backends, test_driver};

both_backends!(authorization_code_with_pkce => sqlite_authorization_code_with_pkce, postgres_authorization_code_with_pkce);
both_backends!(tokens_are_refreshed_ahead_of_expiry => sqlite_tokens_are_refreshed_ahead_of_expiry, postgres_tokens_are_refreshed_ahead_of_expiry);

/// End the lifetime of every started authorization, as the passing of time would.
async fn expire_pending_states(sluice: &Sluice) {
    use sqlx::Connection;
    sqlx::any::install_default_drivers();
    let mut db = sqlx::AnyConnection::connect(sluice.database_url())
        .await
        .expect("opening the database from the test");
    let ended = sqlx::query("UPDATE oauth_states SET expires_at = 0")
        .execute(&mut db)
        .await
        .expect("ending the states' lifetime");
    assert_eq!(ended.rows_affected(), 1, "one authorization was started");
}

/// A client that shows redirects instead of following them.
fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

async fn location_of(client: &reqwest::Client, url: &str) -> String {
    let resp = client.get(url).send().await.unwrap();
    assert_eq!(resp.status(), 302, "GET {url}: {:?}", resp.text().await);
    resp.headers()["location"].to_str().unwrap().to_string()
}

/// What `GET` of a callback URL answers: status and JSON.
async fn open(client: &reqwest::Client, url: &str) -> (u16, Value) {
    let resp = client.get(url).send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn acme(backend: Backend, env: &[(&str, &str)]) -> Option<Sluice> {
    let acme = std::fs::read(test_driver("acme")).expect("reading acme.wasm");
    let mut env = env.to_vec();
    env.push(("SLUICE_ALLOW_HOSTS", "http://127.0.0.1:*"));
    Sluice::start_with(backend, &env, &[("acme.wasm", &acme)]).await
}

async fn installation(sluice: &Sluice, oauth: &OAuthServer) -> String {
    let inst = sluice
        .create_installation(
            "acme",
            json!({"oauth_base": oauth.issuer, "client_id": "sluice-e2e", "scopes": ["events:read"]}),
        )
        .await;
    // Its webhook secret is not set yet: nothing can reach it.
    assert_eq!(inst["auth"]["status"], "pending", "{inst}");
    let id = inst["installation_id"].as_str().unwrap().to_string();
    sluice
        .put_secret(&id, "client_secret", "acme-client-secret-e2e")
        .await;
    id
}

async fn installation_json(sluice: &Sluice, id: &str) -> Value {
    let resp = sluice
        .admin(Method::GET, &format!("/v1/installations/{id}"), None)
        .await;
    resp.expect_status(200);
    resp.json
}

/// The whole authorization: start (302 to the server, with the PKCE challenge), the
/// server's redirect back, the callback (token request with the verifier).
async fn authorize_fully(sluice: &Sluice, id: &str) -> (u16, Value, String) {
    let client = browser();
    let authorize = location_of(&client, &sluice.url(&format!("/oauth/{id}/start"))).await;
    let callback = location_of(&client, &authorize).await;
    let (status, body) = open(&client, &callback).await;
    (status, body, callback)
}

async fn authorization_code_with_pkce(backend: Backend) {
    let Some(oauth) = OAuthServer::start(&[]) else {
        return;
    };
    let Some(sluice) = acme(backend, &[]).await else {
        return;
    };
    let id = installation(&sluice, &oauth).await;
    let client = browser();

    // The redirect carries the host's state and an S256 challenge to the server.
    let authorize = location_of(&client, &sluice.url(&format!("/oauth/{id}/start"))).await;
    let url = reqwest::Url::parse(&authorize).unwrap();
    let query: std::collections::HashMap<_, _> = url.query_pairs().into_owned().collect();
    assert_eq!(
        format!("{}/authorize", oauth.issuer),
        authorize.split('?').next().unwrap()
    );
    assert_eq!(query["response_type"], "code");
    assert_eq!(query["client_id"], "sluice-e2e");
    assert_eq!(query["redirect_uri"], sluice.url("/oauth/callback"));
    assert_eq!(query["scope"], "events:read");
    assert_eq!(query["code_challenge_method"], "S256");
    assert_eq!(query["code_challenge"].len(), 43, "{authorize}");
    assert_eq!(query["state"].len(), 43, "{authorize}");

    let callback = location_of(&client, &authorize).await;
    assert!(
        callback.starts_with(&sluice.url("/oauth/callback?")),
        "{callback}"
    );
    let (status, body) = open(&client, &callback).await;
    assert_eq!(status, 200, "{body}");
    let authorized = &body["authorized"];
    assert_eq!(authorized["status"], "active", "{body}");
    assert_eq!(authorized["scopes"], json!(["events:read"]));
    // The mock checks the verifier against the challenge; the wrapper refuses a missing one.
    let stats = oauth.stats().await;
    assert_eq!(
        (
            stats["authorization_code"].as_u64(),
            stats["refused"].as_u64()
        ),
        (Some(1), Some(0)),
        "{stats}"
    );

    let inst = installation_json(&sluice, &id).await;
    assert_eq!(inst["auth"]["status"], "active");
    assert_eq!(inst["auth"]["scopes"], json!(["events:read"]));
    assert!(inst["auth"]["token_expires_at"].is_string(), "{inst}");
    let secrets: Vec<&str> = inst["secrets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    assert_eq!(secrets, ["access_token", "client_secret", "refresh_token"]);

    // The CLI shows the same, and prints the start URL.
    let cli = |args: &[&str]| {
        let out = sluice_testkit::sluice_cli(sluice.dir())
            .args(args)
            .args(["--server", &sluice.base_url, "--token", &sluice.admin_token])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let shown: Value = serde_json::from_str(&cli(&["installations", "show", &id])).unwrap();
    assert_eq!(shown["auth"], inst["auth"]);
    assert_eq!(
        cli(&["installations", "authorize", &id]).trim(),
        sluice.url(&format!("/oauth/{id}/start"))
    );

    // A used state completes nothing, and asks the server for nothing.
    let (status, body) = open(&client, &callback).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("invalid_state")),
        "{body}"
    );
    let (status, body) = open(
        &client,
        &sluice.url("/oauth/callback?code=x&state=never-issued"),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("invalid_state")),
        "{body}"
    );
    let (status, _) = open(&client, &sluice.url("/oauth/callback?code=x")).await;
    assert_eq!(status, 400);
    assert_eq!(oauth.stats().await["authorization_code"], 1);

    // Refresh (the server rotates the refresh token: the old one is used up).
    let resp = sluice
        .admin(
            Method::POST,
            &format!("/v1/installations/{id}/refresh"),
            None,
        )
        .await;
    resp.expect_status(200);
    assert_eq!(resp.json["outcome"], "refreshed", "{}", resp.text);
    assert_eq!(resp.json["installation"]["auth"]["status"], "active");
    let resp = sluice
        .admin(
            Method::POST,
            &format!("/v1/installations/{id}/refresh"),
            None,
        )
        .await;
    resp.expect_status(200);
    let stats = oauth.stats().await;
    assert_eq!(
        (stats["refresh_token"].as_u64(), stats["refused"].as_u64()),
        (Some(2), Some(0)),
        "the rotated refresh token was stored and used: {stats}"
    );

    // A revoked refresh token: the installation must be authorized again.
    oauth.revoke_refresh_tokens().await;
    let resp = sluice
        .admin(
            Method::POST,
            &format!("/v1/installations/{id}/refresh"),
            None,
        )
        .await;
    resp.expect_status(502);
    assert_eq!(resp.error_code(), Some("provider_error"));
    let auth = &installation_json(&sluice, &id).await["auth"];
    assert_eq!(auth["status"], "needs_reauth", "{auth}");
    assert!(
        auth["reason"].as_str().unwrap().contains("invalid_grant"),
        "{auth}"
    );
    assert_eq!(auth["refresh_failures"], 1);

    // Authorizing again makes it active.
    let (status, body, _) = authorize_fully(&sluice, &id).await;
    assert_eq!(
        (status, body["authorized"]["status"].as_str()),
        (200, Some("active")),
        "{body}"
    );

    // Tokens (JWTs from this server) never show in the log; changes are audited.
    assert!(
        !sluice.log().contains("eyJ"),
        "a token is in the server log"
    );
    let resp = sluice
        .admin(Method::GET, &format!("/v1/installations/{id}/audit"), None)
        .await;
    let changes: Vec<(String, String)> = resp.json["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["secret"].as_str().unwrap().into(),
                c["action"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(changes[0], ("client_secret".into(), "set".into()));
    let captured = changes.iter().filter(|(_, a)| a == "captured").count();
    // Two tokens per grant: the authorization, two refreshes, the second authorization.
    assert_eq!(captured, 8, "{changes:?}");
    assert!(!resp.text.contains("eyJ"));
}

/// With a lifetime shorter than the margin, the maintenance loop refreshes the token by
/// itself; an expired state completes nothing.
async fn tokens_are_refreshed_ahead_of_expiry(backend: Backend) {
    let Some(oauth) = OAuthServer::start(&["--expires-in", "3"]) else {
        return;
    };
    let env = [
        ("SLUICE_AUTH_REFRESH_MARGIN_SECS", "2"),
        ("SLUICE_AUTH_MAINTENANCE_INTERVAL_MS", "200"),
    ];
    let Some(sluice) = acme(backend, &env).await else {
        return;
    };
    let id = installation(&sluice, &oauth).await;

    // A state past its time: refused before any token request. The test ends its lifetime
    // in the store rather than waiting it out, so the authorization after it has the
    // default ten minutes however slow the machine is.
    let client = browser();
    let authorize = location_of(&client, &sluice.url(&format!("/oauth/{id}/start"))).await;
    let callback = location_of(&client, &authorize).await;
    expire_pending_states(&sluice).await;
    let (status, body) = open(&client, &callback).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("expired_state")),
        "{body}"
    );
    assert_eq!(oauth.stats().await["authorization_code"], 0);

    let (status, body, _) = authorize_fully(&sluice, &id).await;
    assert_eq!(status, 200, "{body}");
    let first_expiry = installation_json(&sluice, &id).await["auth"]["token_expires_at"].clone();
    // Expires in 3 s, refreshed 2 s before: within a few seconds, with no call asking.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let auth = installation_json(&sluice, &id).await["auth"].clone();
        if auth["refreshed_at"].is_string() {
            assert_eq!(auth["status"], "active");
            assert_ne!(auth["token_expires_at"], first_expiry, "{auth}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "never refreshed: {auth}\n{}",
            sluice.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let stats = oauth.stats().await;
    assert!(stats["refresh_token"].as_u64().unwrap() >= 1, "{stats}");
    assert_eq!(stats["refused"], 0, "{stats}");
}
