//! The host's own intake, for any request: axum's routing and extractors, the webhook
//! handler, the body limit, the installation cache and `Pipeline::receive` with the
//! bundled drivers' components (from `SLUICE_DRIVERS`, as `cargo xtask build-drivers`
//! leaves them) in the sandbox, over an SQLite store.
//!
//! The input is a target (one of three installations' webhook URLs, the app-level URLs,
//! or a path of its own), a method, header lines and a body. Whatever it is, the answer
//! must be a refusal (`4xx`): nobody without the webhook secrets can sign a delivery, so a
//! `2xx` would be a forgery getting through, and a `5xx` a failure on unauthenticated
//! input. Nothing may panic.
#![no_main]

use std::sync::OnceLock;

use axum::body::Body;
use http_body_util::BodyExt;
use libfuzzer_sys::fuzz_target;
use sluice::config::{CatalogConfig, Config, ServerConfig};
use sluice::node::{Extensions, Node};
use tower::ServiceExt;

/// The admin token: random per run, so no input can hold it (the fuzzer found a fixed one
/// from a seed's near miss within seconds).
fn admin_token() -> &'static str {
    static TOKEN: OnceLock<String> = OnceLock::new();
    TOKEN.get_or_init(|| {
        let mut bytes = [0u8; 24];
        getrandom::fill(&mut bytes).expect("random token");
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    })
}
const MAX_BODY: usize = 64 * 1024;

/// The master key for the run's secrets, hex.
fn hex_key() -> String {
    [7u8; 32].iter().map(|b| format!("{b:02x}")).collect()
}

struct Host {
    runtime: tokio::runtime::Runtime,
    app: axum::Router,
    /// The webhook paths of a Stripe, a Shopify and a Hotmart installation, then the
    /// app-level ones.
    paths: Vec<String>,
    _dir: tempfile::TempDir,
}

fn host() -> &'static Host {
    static HOST: OnceLock<Host> = OnceLock::new();
    HOST.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        let dir = tempfile::tempdir().expect("temp dir");
        let (app, paths) = runtime.block_on(start(dir.path()));
        Host {
            runtime,
            app,
            paths,
            _dir: dir,
        }
    })
}

async fn start(dir: &std::path::Path) -> (axum::Router, Vec<String>) {
    let drivers_dir = std::env::var("SLUICE_DRIVERS")
        .expect("SLUICE_DRIVERS must name the built drivers (cargo xtask build-drivers)");
    // A node as `sluice serve` builds it, over SQLite in a temporary directory.
    let config = Config {
        data_dir: dir.join("data"),
        database_url: Some(format!("sqlite://{}/fuzz.db?mode=rwc", dir.display())),
        drivers_dir: drivers_dir.clone().into(),
        admin_token: Some(admin_token().into()),
        master_key: Some(hex_key()),
        max_body_bytes: MAX_BODY,
        server: ServerConfig {
            installation_cache_ttl_ms: 60_000,
            ..ServerConfig::default()
        },
        catalog: CatalogConfig {
            watch_interval_ms: 0,
            sync_interval_ms: 60_000,
            ..CatalogConfig::default()
        },
        ..Config::default()
    };
    let node = Node::start(config, Extensions::default())
        .await
        .expect("node");
    let state = node.state().clone();
    assert_eq!(
        state.services.drivers.list().len(),
        3,
        "the three bundled drivers in {drivers_dir}"
    );
    let app = node.router();
    let mut paths = Vec::new();
    for (driver, settings, secret) in [
        ("stripe", r#"{"account":"acct_1Fuzz"}"#, "webhook_secret"),
        (
            "shopify",
            r#"{"shop":"fuzz.myshopify.com"}"#,
            "webhook_secret",
        ),
        ("hotmart", "{}", "hottok"),
    ] {
        let body = format!(r#"{{"driver_id":"{driver}","settings":{settings}}}"#);
        let created = admin(&app, "POST", "/v1/installations", body).await;
        let value: serde_json::Value = serde_json::from_slice(&created).expect("installation");
        let id = value["installation_id"].as_str().expect("installation id");
        let put = format!("/v1/installations/{id}/secrets/{secret}");
        admin(
            &app,
            "PUT",
            &put,
            r#"{"value":"whsec_fuzz_not_guessable"}"#.into(),
        )
        .await;
        paths.push(format!("/webhooks/{id}"));
    }
    paths.push("/webhooks/drivers/stripe".into());
    paths.push("/webhooks/drivers/shopify".into());
    (app, paths)
}

async fn admin(app: &axum::Router, method: &str, path: &str, body: String) -> Vec<u8> {
    let request = http::Request::builder()
        .method(method)
        .uri(path)
        .header("authorization", format!("Bearer {}", admin_token()))
        .header("content-type", "application/json")
        .body(Body::from(body))
        .expect("admin request");
    let response = app.clone().oneshot(request).await.expect("infallible");
    let status = response.status();
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    assert!(status.is_success(), "{method} {path}: {status} {bytes:?}");
    bytes.to_vec()
}

/// `target byte, method byte, header lines ("name: value\n"), "\n", body`.
fn request(host: &Host, data: &[u8]) -> Option<http::Request<Body>> {
    let (&target, rest) = data.split_first()?;
    let (&method, rest) = rest.split_first()?;
    let split = rest.windows(2).position(|w| w == b"\n\n");
    let (head, body) = match split {
        Some(at) => (&rest[..at], &rest[at + 2..]),
        None => (&[][..], rest),
    };
    let head = String::from_utf8_lossy(head);
    let mut lines = head.lines();
    let path = match host.paths.get(usize::from(target) % (host.paths.len() + 1)) {
        Some(path) => path.clone(),
        // The first header line is a path of the input's own.
        None => lines.next().unwrap_or("/").to_string(),
    };
    let method = ["POST", "GET", "PUT", "DELETE", "PATCH"][usize::from(method) % 5];
    let mut builder = http::Request::builder().method(method).uri(path);
    for line in lines {
        if let Some((name, value)) = line.split_once(':') {
            builder = builder.header(name.trim(), value.trim());
        }
    }
    builder.body(Body::from(body.to_vec())).ok()
}

fuzz_target!(|data: &[u8]| {
    let host = host();
    let Some(request) = request(host, data) else {
        return;
    };
    let (method, uri) = (request.method().clone(), request.uri().clone());
    let (status, body) = host.runtime.block_on(async {
        let response = host.app.clone().oneshot(request).await.expect("infallible");
        let status = response.status();
        let body = response.into_body().collect().await.map(|b| b.to_bytes());
        (status, body.unwrap_or_default())
    });
    let probe = matches!(uri.path(), "/healthz" | "/readyz");
    assert!(
        status.is_client_error() || (probe && status.is_success()),
        "{method} {uri} answered {status} {body:?}: only refusals are possible without the secrets"
    );
});
