//! One Shopify app, many shops: deliveries to `/webhooks/drivers/shopify` reach the
//! installation whose `shop` setting matches `X-Shopify-Shop-Domain`.

use serde_json::json;
use sluice_testkit::paths::driver_wasm;
use sluice_testkit::shopify_hmac;
use sluice_testkit::{Backend, Response, Sluice, both_backends, random_hex};

both_backends!(shops_share_one_app_url => sqlite_shops_share_one_app_url, postgres_shops_share_one_app_url);

fn order(id: u64) -> Vec<u8> {
    json!({"id": id, "name": format!("#{id}"), "currency": "USD", "financial_status": "paid",
           "created_at": "2025-10-01T09:00:00-05:00", "updated_at": "2025-10-01T09:00:00-05:00",
           "total_price": "10.00", "line_items": []})
    .to_string()
    .into_bytes()
}

async fn post(
    sluice: &Sluice,
    shop: Option<&str>,
    secret: &str,
    webhook_id: &str,
    body: &[u8],
) -> Response {
    let hmac = shopify_hmac(secret, body);
    let mut headers = vec![
        ("X-Shopify-Topic", "orders/create"),
        ("X-Shopify-Webhook-Id", webhook_id),
        ("X-Shopify-Hmac-Sha256", hmac.as_str()),
    ];
    if let Some(shop) = shop {
        headers.push(("X-Shopify-Shop-Domain", shop));
    }
    sluice
        .post_webhook("drivers/shopify", &headers, body.to_vec())
        .await
}

async fn shops_share_one_app_url(backend: Backend) {
    let wasm = driver_wasm("shopify");
    let Some(sluice) = Sluice::start_with(backend, &[], &[("shopify.wasm", wasm.as_slice())]).await
    else {
        return;
    };
    // The app's client secret signs every shop's webhooks.
    let app_secret = format!("shpss_{}", random_hex());
    let mut installations = Vec::new();
    for shop in ["shop-a.myshopify.com", "shop-b.myshopify.com"] {
        let inst = sluice
            .create_installation("shopify", json!({"shop": shop}))
            .await;
        assert_eq!(inst["account_key"], shop);
        let id = inst["installation_id"].as_str().unwrap().to_string();
        sluice.put_secret(&id, "webhook_secret", &app_secret).await;
        installations.push(id);
    }

    post(
        &sluice,
        Some("shop-a.myshopify.com"),
        &app_secret,
        "wh-a",
        &order(1),
    )
    .await
    .expect_status(200);
    post(
        &sluice,
        Some("shop-b.myshopify.com"),
        &app_secret,
        "wh-b",
        &order(2),
    )
    .await
    .expect_status(200);
    let a = sluice.events(&installations[0]).await;
    let b = sluice.events(&installations[1]).await;
    assert_eq!((a.len(), b.len()), (1, 1), "a: {a:#?}\nb: {b:#?}");
    assert_eq!(a[0]["subject"], "1");
    assert_eq!(b[0]["subject"], "2");

    // Forged for a known shop: verification runs after routing.
    post(
        &sluice,
        Some("shop-a.myshopify.com"),
        "shpss_wrong",
        "wh-forged",
        &order(3),
    )
    .await
    .expect_status(401);
    // A shop nobody installed, and no shop at all: nothing to route to, answered like the
    // forgery above so the answers do not tell which shops are installed.
    post(
        &sluice,
        Some("shop-z.myshopify.com"),
        &app_secret,
        "wh-z",
        &order(4),
    )
    .await
    .expect_status(401);
    post(&sluice, None, &app_secret, "wh-none", &order(5))
        .await
        .expect_status(401);
    assert_eq!(sluice.events(&installations[0]).await.len(), 1);
    assert_eq!(sluice.events(&installations[1]).await.len(), 1);
}
