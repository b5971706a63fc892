//! Shopify webhooks through the running `sluice` binary on both backends: a JPY order whose
//! id is beyond 2^53 becomes an exact CloudEvent; forged, unsigned and wrong-secret deliveries
//! get `401` and store nothing; an unsubscribed topic is acknowledged and not stored.

use serde_json::json;
use sluice_testkit::paths::driver_wasm;
use sluice_testkit::shopify_hmac;
use sluice_testkit::{Backend, Response, Sluice, both_backends, random_hex};

both_backends!(jpy_order_with_a_big_id => sqlite_jpy_order_with_a_big_id, postgres_jpy_order_with_a_big_id);
both_backends!(refusals_store_nothing => sqlite_refusals_store_nothing, postgres_refusals_store_nothing);

const SHOP: &str = "jp-shop.myshopify.com";

/// A JPY order webhook body with ids beyond 2^53 (text, never a float).
const JPY_ORDER: &str = r##"{"id": 9007199254740993, "name": "#2001", "email": "taro@example.jp", "currency": "JPY", "financial_status": "paid", "fulfillment_status": null, "created_at": "2025-10-01T09:00:00+09:00", "updated_at": "2025-10-01T09:30:00+09:00", "cancelled_at": null, "subtotal_price": "1000.00", "total_tax": "0", "total_discounts": "0", "total_price": "1000", "total_shipping_price_set": {"shop_money": {"amount": "0", "currency_code": "JPY"}}, "customer": {"id": 9007199254740995, "email": "taro@example.jp"}, "line_items": [{"id": 9007199254740997, "product_id": 1, "variant_id": 2, "sku": "TEA", "name": "Matcha", "price": "500.00", "quantity": 2, "discount_allocations": []}]}"##;

async fn start(backend: Backend) -> Option<Sluice> {
    let wasm = driver_wasm("shopify");
    Sluice::start_with(backend, &[], &[("shopify.wasm", wasm.as_slice())]).await
}

/// A Shopify installation for [`SHOP`] with a fresh app secret.
async fn installation(sluice: &Sluice, settings: serde_json::Value) -> (String, String) {
    let inst = sluice.create_installation("shopify", settings).await;
    let id = inst["installation_id"].as_str().unwrap().to_string();
    let secret = format!("shpss_{}", random_hex());
    sluice.put_secret(&id, "webhook_secret", &secret).await;
    (id, secret)
}

async fn post(
    sluice: &Sluice,
    inst: &str,
    hmac: Option<&str>,
    topic: &str,
    webhook_id: &str,
    body: &[u8],
) -> Response {
    let mut headers = vec![
        ("X-Shopify-Topic", topic),
        ("X-Shopify-Webhook-Id", webhook_id),
        ("X-Shopify-Shop-Domain", SHOP),
        ("X-Shopify-API-Version", "2025-10"),
    ];
    if let Some(h) = hmac {
        headers.push(("X-Shopify-Hmac-Sha256", h));
    }
    sluice.post_webhook(inst, &headers, body.to_vec()).await
}

async fn jpy_order_with_a_big_id(backend: Backend) {
    let Some(sluice) = start(backend).await else {
        return;
    };
    let (inst, secret) = installation(&sluice, json!({"shop": SHOP})).await;
    let body = JPY_ORDER.as_bytes();
    let hmac = shopify_hmac(&secret, body);
    let resp = post(
        &sluice,
        &inst,
        Some(&hmac),
        "orders/create",
        "wh-jpy-1",
        body,
    )
    .await;
    resp.expect_status(200);
    assert_eq!(resp.json, json!({"accepted": 1, "duplicates": 0}));

    let events = sluice.events(&inst).await;
    assert_eq!(events.len(), 1, "{events:#?}");
    let e = &events[0];
    assert_eq!(e["type"], "order.paid");
    assert_eq!(e["subject"], "9007199254740993");
    assert_eq!(e["sluicedriver"], "shopify");
    assert_eq!(e["sluiceprovidereventid"], "wh-jpy-1");
    assert_eq!(e["sluiceprovidereventtype"], "orders/create");
    let d = &e["data"];
    assert_eq!(d["kind"], "order");
    assert_eq!(d["external_id"], "9007199254740993");
    assert_eq!(d["customer_external_id"], "9007199254740995");
    assert_eq!(d["line_items"][0]["external_id"], "9007199254740997");
    assert_eq!(d["total"], json!({"amount_minor": 1000, "currency": "JPY"}));
    assert_eq!(
        d["subtotal"],
        json!({"amount_minor": 1000, "currency": "JPY"})
    );
    assert_eq!(
        d["line_items"][0]["unit_price"],
        json!({"amount_minor": 500, "currency": "JPY"})
    );
    assert_eq!(d["created_at"], "2025-10-01T00:00:00Z");
    // The exact id text, as the raw JSON carries it.
    let raw = serde_json::to_string(e).unwrap();
    assert!(raw.contains(r#""external_id":"9007199254740993""#), "{raw}");

    // A redelivery (same X-Shopify-Webhook-Id) is a duplicate.
    let resp = post(
        &sluice,
        &inst,
        Some(&hmac),
        "orders/create",
        "wh-jpy-1",
        body,
    )
    .await;
    resp.expect_status(200);
    assert_eq!(resp.json, json!({"accepted": 0, "duplicates": 1}));
    assert_eq!(sluice.events(&inst).await.len(), 1);
}

async fn refusals_store_nothing(backend: Backend) {
    let Some(sluice) = start(backend).await else {
        return;
    };
    let (inst, secret) = installation(
        &sluice,
        json!({"shop": SHOP, "webhook_topics": ["orders/create"]}),
    )
    .await;
    let body = JPY_ORDER.as_bytes();

    // Forged: signed with another secret.
    let forged = shopify_hmac("not-the-app-secret", body);
    let resp = post(&sluice, &inst, Some(&forged), "orders/create", "wh-1", body).await;
    resp.expect_status(401);
    // Unsigned.
    let resp = post(&sluice, &inst, None, "orders/create", "wh-2", body).await;
    resp.expect_status(401);
    // Signed over a different body.
    let other = shopify_hmac(&secret, b"{}");
    let resp = post(&sluice, &inst, Some(&other), "orders/create", "wh-3", body).await;
    resp.expect_status(401);
    // Garbage in the header.
    let resp = post(
        &sluice,
        &inst,
        Some("not base64!"),
        "orders/create",
        "wh-4",
        body,
    )
    .await;
    resp.expect_status(401);
    assert!(
        sluice.events(&inst).await.is_empty(),
        "nothing stored after refusals"
    );

    // Correctly signed, topic not subscribed: acknowledged, not stored.
    let good = shopify_hmac(&secret, body);
    let resp = post(&sluice, &inst, Some(&good), "orders/paid", "wh-5", body).await;
    resp.expect_status(200);
    assert_eq!(resp.json["accepted"], 0, "{}", resp.text);
    assert!(sluice.events(&inst).await.is_empty());

    // Correctly signed, malformed JSON: 400.
    let bad = b"{not json";
    let resp = post(
        &sluice,
        &inst,
        Some(&shopify_hmac(&secret, bad)),
        "orders/create",
        "wh-6",
        bad,
    )
    .await;
    resp.expect_status(400);

    // And the good one goes through.
    let resp = post(&sluice, &inst, Some(&good), "orders/create", "wh-7", body).await;
    resp.expect_status(200);
    assert_eq!(resp.json["accepted"], 1, "{}", resp.text);
    assert_eq!(sluice.events(&inst).await.len(), 1);
}
