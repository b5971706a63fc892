//! Hotmart's documented sales-history response (`hotmart_sales_history_response_docs.json`),
//! served byte for byte by a loopback fake, polled and normalized through the host.

use std::collections::HashMap;

use super::harness;
use axum::routing::{get, post};
use serde_json::Value;
use sluice::canonical::render;
use sluice::capabilities::secrets::SecretValue;
use sluice::wit::types::CallContext;

const FIXTURE: &str = "hotmart/hotmart_sales_history_response_docs.json";

#[tokio::test]
async fn documented_sales_history_becomes_canonical_records() {
    let page = harness::fixture_bytes(FIXTURE);
    let served = page.clone();
    let app = axum::Router::new()
        .route(
            "/security/oauth/token",
            post(|| async { r#"{"access_token":"tok","token_type":"bearer","expires_in":3600}"# }),
        )
        .route(
            "/payments/api/v1/sales/history",
            get(move || async move { served }),
        );
    let base = harness::serve(app).await;
    let (runtime, driver) = harness::load("hotmart", &["http://127.0.0.1:*"]).await;

    let secrets = HashMap::from([
        ("client_id".to_string(), SecretValue::new(b"id".to_vec())),
        (
            "client_secret".to_string(),
            SecretValue::new(b"secret".to_vec()),
        ),
    ]);
    let scope = harness::fixed_scope(&driver, "inst_docs", secrets, HashMap::new());
    let ctx = CallContext {
        installation_id: "inst_docs".into(),
        settings: format!(r#"{{"api_base":"{base}","auth_base":"{base}"}}"#),
    };
    let mut session = runtime.session(&driver, scope).await.unwrap();
    let result = session.poll(&ctx, None).await.expect("poll succeeds");

    // One raw event per item, each payload the item's exact text from the response.
    let items: Value = serde_json::from_slice(&page).unwrap();
    let items = items["items"].as_array().unwrap();
    assert_eq!(result.events.len(), items.len());
    assert!(result.has_more, "the fixture has a next_page_token");
    let text = String::from_utf8(page.clone()).unwrap();
    for event in &result.events {
        let payload = std::str::from_utf8(&event.payload).unwrap();
        assert!(
            text.contains(payload),
            "payload is a verbatim slice of the response"
        );
    }

    // The first item: HP12455690122399, UNDER_ANALISYS, 235.76 USD, fee 36.75 EUR.
    let first = &result.events[0];
    assert!(
        first.provider_event_id.contains("HP12455690122399"),
        "{}",
        first.provider_event_id
    );
    let records = session
        .normalize(&ctx, first)
        .await
        .unwrap()
        .expect("normalizes");
    let rendered: Vec<_> = records
        .iter()
        .map(|r| render(r, &first.event_type).unwrap())
        .collect();
    let payment = rendered
        .iter()
        .find(|r| r.data["kind"] == "payment")
        .expect("a payment record");
    assert_eq!(payment.event_type, "payment.pending");
    assert_eq!(payment.subject.as_deref(), Some("HP12455690122399"));
    assert_eq!(
        payment.data["amount"],
        serde_json::json!({"amount_minor": 23576, "currency": "USD"})
    );
    assert_eq!(
        payment.data["fee"],
        serde_json::json!({"amount_minor": 3675, "currency": "EUR"})
    );
    assert_eq!(payment.data["status_raw"], "UNDER_ANALISYS");
    assert_eq!(payment.data["created_at"], "2021-06-06T03:00:00Z");
}
