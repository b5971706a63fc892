//! Enrichment through the real binary and the bundled components: a thin Stripe event is
//! fetched in full and a Shopify refund without currency is completed from its order, by
//! loopback fakes that check the credential and count every call; with the provider down,
//! the event fails, is retried by the host, and is stored once when the provider is back.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};
use sluice_testkit::paths::driver_wasm;
use sluice_testkit::{Backend, Sluice, both_backends, fixture_json, shopify_hmac};

both_backends!(missing_fields_are_fetched_once => sqlite_missing_fields_are_fetched_once, postgres_missing_fields_are_fetched_once);
both_backends!(a_page_that_outruns_its_deadline_loses_nothing => sqlite_a_page_that_outruns_its_deadline_loses_nothing, postgres_a_page_that_outruns_its_deadline_loses_nothing);

const API_KEY: &str = "sk_test_enrichment_e2e";
const ACCESS_TOKEN: &str = "shpat_enrichment_e2e";
const WEBHOOK_SECRET: &str = "whsec_enrichment_e2e";
const SHOP: &str = "enrich-shop.myshopify.com";
const CHARGE: &str = "ch_1PgafuB7WZ01zgkWXYmPNZs8";

#[derive(Clone, Default)]
struct Provider {
    /// Every request: `METHOD path`.
    calls: Arc<Mutex<Vec<String>>>,
    /// Statuses to answer before serving again.
    down: Arc<Mutex<VecDeque<u16>>>,
    /// How long each charge takes to answer.
    slow: Arc<Mutex<Duration>>,
    /// The `GET /v1/events` page (newest first).
    events: Arc<Mutex<Vec<Value>>>,
}

impl Provider {
    fn calls_to(&self, path: &str) -> usize {
        let calls = self.calls.lock().unwrap();
        calls.iter().filter(|c| c.ends_with(path)).count()
    }
    fn scripted(&self) -> Option<Response> {
        let status = self.down.lock().unwrap().pop_front()?;
        Some(
            (
                StatusCode::from_u16(status).unwrap(),
                "{\"error\":{\"message\":\"down\"}}",
            )
                .into_response(),
        )
    }
}

async fn charge(State(p): State<Provider>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    p.calls
        .lock()
        .unwrap()
        .push(format!("GET /v1/charges/{id}"));
    if headers.get("authorization").and_then(|v| v.to_str().ok())
        != Some(&format!("Bearer {API_KEY}"))
    {
        return (StatusCode::UNAUTHORIZED, "{}").into_response();
    }
    if let Some(answer) = p.scripted() {
        return answer;
    }
    let slow = *p.slow.lock().unwrap();
    tokio::time::sleep(slow).await;
    let charge = fixture_json("stripe/stripe_openapi_fixture_charge.json");
    if id != CHARGE {
        return (StatusCode::NOT_FOUND, "{}").into_response();
    }
    axum::Json(charge).into_response()
}

async fn order(
    State(p): State<Provider>,
    headers: HeaderMap,
    Path(file): Path<String>,
) -> Response {
    p.calls
        .lock()
        .unwrap()
        .push(format!("GET /admin/api/2026-07/orders/{file}"));
    if headers
        .get("x-shopify-access-token")
        .and_then(|v| v.to_str().ok())
        != Some(ACCESS_TOKEN)
    {
        return (StatusCode::UNAUTHORIZED, "{}").into_response();
    }
    if file != "450789469.json" {
        return (StatusCode::NOT_FOUND, "{}").into_response();
    }
    axum::Json(fixture_json("shopify/shopify_order_rest_2025-10.json")).into_response()
}

async fn events_page(State(p): State<Provider>, headers: HeaderMap) -> Response {
    if headers.get("authorization").and_then(|v| v.to_str().ok())
        != Some(&format!("Bearer {API_KEY}"))
    {
        return (StatusCode::UNAUTHORIZED, "{}").into_response();
    }
    let data = p.events.lock().unwrap().clone();
    axum::Json(json!({"object": "list", "url": "/v1/events", "has_more": false, "data": data}))
        .into_response()
}

async fn provider() -> (Provider, String) {
    let p = Provider::default();
    let app = axum::Router::new()
        .route("/v1/events", get(events_page))
        .route("/v1/charges/{id}", get(charge))
        .route("/admin/api/2026-07/orders/{file}", get(order))
        .with_state(p.clone());
    (p, sluice_testkit::fake::serve(app).await)
}

/// A thin event (event destinations) naming the OpenAPI fixture charge.
fn thin_event(id: &str) -> Vec<u8> {
    json!({
        "id": id,
        "object": "v2.core.event",
        "type": "v1.charge.succeeded",
        "livemode": false,
        "created": "2024-09-17T06:20:52.246Z",
        "related_object": {"id": CHARGE, "type": "charge", "url": format!("/v1/charges/{CHARGE}")},
    })
    .to_string()
    .into_bytes()
}

async fn wait_for_events(sluice: &Sluice, inst: &str, n: usize, within: Duration) -> Vec<Value> {
    let deadline = Instant::now() + within;
    loop {
        let events = sluice.events(inst).await;
        if events.len() >= n || Instant::now() > deadline {
            return events;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn missing_fields_are_fetched_once(backend: Backend) {
    let (fake, base) = provider().await;
    let env = [
        ("SLUICE_ALLOW_HOSTS", "http://127.0.0.1:*"),
        ("SLUICE_RETRIES_MAX_ATTEMPTS", "6"),
        ("SLUICE_RETRIES_BASE_MS", "200"),
    ];
    let (stripe_wasm, shopify_wasm) = (driver_wasm("stripe"), driver_wasm("shopify"));
    let drivers = [
        ("stripe.wasm", stripe_wasm.as_slice()),
        ("shopify.wasm", shopify_wasm.as_slice()),
    ];
    let Some(sluice) = Sluice::start_with(backend, &env, &drivers).await else {
        return;
    };

    // Stripe: the thin event's charge, fetched with the installation's key.
    let inst = sluice
        .create_installation("stripe", json!({"api_base": base}))
        .await;
    let stripe = inst["installation_id"].as_str().unwrap().to_string();
    sluice
        .put_secret(&stripe, "webhook_secret", WEBHOOK_SECRET)
        .await;
    sluice.put_secret(&stripe, "api_key", API_KEY).await;
    sluice
        .post_stripe(&stripe, WEBHOOK_SECRET, &thin_event("evt_thin_1"))
        .await
        .expect_status(200);
    let events = sluice.events(&stripe).await;
    assert_eq!(events.len(), 1, "{events:?}");
    let data = &events[0]["data"];
    // The fixture charge: 100 usd, `succeeded` but not captured → authorized.
    assert_eq!(data["kind"], "payment", "{data}");
    assert_eq!(data["external_id"], CHARGE);
    assert_eq!(
        data["amount"],
        json!({"amount_minor": 100, "currency": "USD"})
    );
    assert_eq!(data["status"], "authorized");
    assert_eq!(
        data["enriched_from"],
        json!([{"source": format!("GET {base}/v1/charges/{CHARGE}"), "fields": ["*"]}])
    );
    assert_eq!(fake.calls_to(&format!("/v1/charges/{CHARGE}")), 1);

    // Shopify: a refund whose transactions carry no currency, completed from its order.
    let inst = sluice
        .create_installation(
            "shopify",
            json!({"shop": SHOP, "api_base": base, "api_version": "2026-07"}),
        )
        .await;
    let shopify = inst["installation_id"].as_str().unwrap().to_string();
    sluice
        .put_secret(&shopify, "webhook_secret", WEBHOOK_SECRET)
        .await;
    sluice
        .put_secret(&shopify, "access_token", ACCESS_TOKEN)
        .await;
    let mut refund = fixture_json("corpus/shopify/refunds_create_docs_rest_2026-07_509562969.json");
    for t in refund["refund"]["transactions"].as_array_mut().unwrap() {
        t.as_object_mut().unwrap().remove("currency");
    }
    let body = serde_json::to_vec(&refund["refund"]).unwrap();
    let hmac = shopify_hmac(WEBHOOK_SECRET, &body);
    let headers = [
        ("X-Shopify-Topic", "refunds/create"),
        ("X-Shopify-Webhook-Id", "refund-enrich-1"),
        ("X-Shopify-Shop-Domain", SHOP),
        ("X-Shopify-API-Version", "2026-07"),
        ("X-Shopify-Hmac-Sha256", hmac.as_str()),
    ];
    sluice
        .post_webhook(&shopify, &headers, body)
        .await
        .expect_status(200);
    let events = sluice.events(&shopify).await;
    assert_eq!(events.len(), 1, "{events:?}");
    let data = &events[0]["data"];
    // EXPECTED.md: 20900 USD, order 450789469; the order fixture's customer 207119551.
    assert_eq!(data["kind"], "refund", "{data}");
    assert_eq!(
        data["amount"],
        json!({"amount_minor": 20900, "currency": "USD"})
    );
    assert_eq!(data["order_external_id"], "450789469");
    assert_eq!(data["customer_external_id"], "207119551");
    assert_eq!(
        data["enriched_from"],
        json!([{
            "source": format!("GET {base}/admin/api/2026-07/orders/450789469.json"),
            "fields": ["amount.currency", "customer_external_id"],
        }])
    );
    assert_eq!(fake.calls_to("/orders/450789469.json"), 1);

    // Stripe down twice: the delivery is accepted, its normalization fails and is
    // retried by the host; the third call succeeds and the event is stored once.
    fake.down.lock().unwrap().extend([503, 503]);
    let before = fake.calls_to(&format!("/v1/charges/{CHARGE}"));
    sluice
        .post_stripe(&stripe, WEBHOOK_SECRET, &thin_event("evt_thin_2"))
        .await
        .expect_status(200);
    assert_eq!(
        sluice.events(&stripe).await.len(),
        1,
        "nothing stored while down"
    );
    let events = wait_for_events(&sluice, &stripe, 2, Duration::from_secs(20)).await;
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(events[1]["sluiceprovidereventid"], "evt_thin_2");
    assert_eq!(events[1]["data"]["status"], "authorized");
    assert_eq!(fake.calls_to(&format!("/v1/charges/{CHARGE}")) - before, 3);
    // And it stays once: no further retry fetches or stores it again.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(sluice.events(&stripe).await.len(), 2);
    assert_eq!(fake.calls_to(&format!("/v1/charges/{CHARGE}")) - before, 3);
}

/// A poll page of three `charge.refunded` events rendered without their refunds (API
/// versions from 2022-11-15), each fetched in 400 ms, under a 1 s session: the third
/// normalization runs out of time. That event alone is stored failed and retried in a
/// session of its own; the page is committed and the cursor moves.
async fn a_page_that_outruns_its_deadline_loses_nothing(backend: Backend) {
    let (fake, base) = provider().await;
    *fake.slow.lock().unwrap() = Duration::from_millis(400);
    {
        let mut events = fake.events.lock().unwrap();
        for i in 0..3 {
            let mut e = fixture_json("corpus/stripe/charge.refunded_2020-08-27_sample.json");
            e["id"] = json!(format!("evt_slow_{i}"));
            e["created"] = json!(1_700_000_000 + i);
            e["api_version"] = json!("2024-06-20");
            e["data"]["object"]["id"] = json!(CHARGE);
            e["data"]["object"]
                .as_object_mut()
                .unwrap()
                .remove("refunds");
            events.insert(0, e);
        }
    }
    let env = [
        ("SLUICE_ALLOW_HOSTS", "http://127.0.0.1:*"),
        ("SLUICE_SANDBOX_WEBHOOK_TIMEOUT_MS", "1000"),
        ("SLUICE_RETRIES_BASE_MS", "200"),
    ];
    let Some(sluice) = Sluice::start_with_env(backend, &env).await else {
        return;
    };
    let inst = sluice
        .create_installation("stripe", json!({"api_base": base}))
        .await;
    let id = inst["installation_id"].as_str().unwrap().to_string();
    sluice
        .put_secret(&id, "webhook_secret", WEBHOOK_SECRET)
        .await;
    sluice.put_secret(&id, "api_key", API_KEY).await;
    let resp = sluice
        .admin(
            reqwest::Method::POST,
            &format!("/v1/installations/{id}/poll"),
            None,
        )
        .await;
    resp.expect_status(200);
    let events = wait_for_events(&sluice, &id, 3, Duration::from_secs(20)).await;
    let mut ids: Vec<&str> = events
        .iter()
        .map(|e| e["sluiceprovidereventid"].as_str().unwrap())
        .collect();
    ids.sort();
    assert_eq!(
        ids,
        ["evt_slow_0", "evt_slow_1", "evt_slow_2"],
        "{events:?}"
    );
    assert!(events.iter().all(|e| e["data"]["kind"] == "payment"));
    // Three fetches in the poll's session (the third cut off), one more for the retry.
    assert_eq!(fake.calls_to(&format!("/v1/charges/{CHARGE}")), 4);
}
