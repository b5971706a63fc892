//! The Shopify fixtures through `sluice driver test` (verify → handle → normalize in the
//! sandbox, the real host computing the HMAC over the named secret). Bodies are passed byte
//! for byte.
//!
//! - `shopify/shopify_hmac_cases.json` `webhook_hmac`: the official vector (old and new header
//!   names), its refusals (missing body, missing / forged HMAC, wrong secret) and the derived
//!   vectors; the fixture's headers are used as they are, plus topic / id / shop headers where
//!   a derived vector has none.
//! - `shopify/shopify_order_rest_2025-10.json`: signed here with a test secret (the fixture has
//!   no signature) and delivered as `orders/create`, normalized field by field.

use serde_json::{Value, json};
use sluice_testkit::{DriverTest, DriverTestOutput, fixture_bytes, fixture_json};
use sluice_testkit::{bundled_driver, shopify_hmac};

const CASES: &str = "shopify/shopify_hmac_cases.json";
const ORDER: &str = "shopify/shopify_order_rest_2025-10.json";

fn run(body: &[u8], headers: &[(&str, &str)], secret: &str, settings: Value) -> DriverTestOutput {
    DriverTest {
        driver: bundled_driver("shopify"),
        body,
        headers: headers.to_vec(),
        secrets: vec![("webhook_secret", secret)],
        settings: Some(settings.to_string()),
        now: None,
    }
    .run()
}

fn record(out: &DriverTestOutput) -> &Value {
    &out.json["events"][0]["records"][0]
}

#[track_caller]
fn assert_refused(out: &DriverTestOutput, what: &str) {
    assert!(
        !out.ok() && out.exit_code == Some(1) && out.error_code() == Some("unauthorized"),
        "{what}: {}",
        out.json
    );
}

#[test]
fn official_webhook_vector() {
    let doc = fixture_json(CASES);
    let case = &doc["webhook_hmac"]["official_verbatim"][0];
    let secret = case["secret"].as_str().unwrap();
    let body = case["raw_body"].as_str().unwrap().as_bytes();
    let headers: Vec<(String, String)> = case["headers"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
        .collect();
    let hs: Vec<(&str, &str)> = headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let expect = &case["expect"];
    let subscribed = json!({"shop": "shop1.myshopify.io", "webhook_topics": ["products/create"]});

    let out = run(body, &hs, secret, subscribed.clone());
    assert!(out.ok(), "{} / {}", out.json, out.stderr);
    let event = &out.json["events"][0];
    assert_eq!(event["provider_event_id"], expect["webhookId"]);
    assert_eq!(event["account_key"], expect["domain"]);
    assert_eq!(event["event_type"], "products/create");
    assert_eq!(
        record(&out)["type"],
        "unmapped.products/create",
        "{}",
        out.json
    );

    // The newer un-prefixed lower-case header names.
    let new_names: Vec<(String, String)> = headers
        .iter()
        .map(|(k, v)| {
            (
                k.to_ascii_lowercase().trim_start_matches("x-").to_string(),
                v.clone(),
            )
        })
        .collect();
    let hs_new: Vec<(&str, &str)> = new_names
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let out = run(body, &hs_new, secret, subscribed.clone());
    assert!(out.ok(), "{}", out.json);
    assert_eq!(
        out.json["events"][0]["provider_event_id"],
        expect["webhookId"]
    );

    // Not subscribed (the default topics): accepted, nothing kept.
    let out = run(body, &hs, secret, json!({"shop": "shop1.myshopify.io"}));
    assert!(out.ok(), "{}", out.json);
    assert_eq!(out.json["events"], json!([]));

    // Refusals.
    assert_refused(
        &run(body, &hs, "wrong_secret", subscribed.clone()),
        "wrong secret",
    );
    assert_refused(&run(b"", &hs, secret, subscribed.clone()), "missing body");
    let without: Vec<_> = hs
        .iter()
        .copied()
        .filter(|(k, _)| *k != "X-Shopify-Hmac-Sha256")
        .collect();
    assert_refused(
        &run(body, &without, secret, subscribed.clone()),
        "missing HMAC",
    );
    let mut fake = without.clone();
    fake.push(("X-Shopify-Hmac-Sha256", "fake"));
    assert_refused(&run(body, &fake, secret, subscribed.clone()), "HMAC 'fake'");
    let mut changed = body.to_vec();
    changed.push(b' ');
    assert_refused(
        &run(&changed, &hs, secret, subscribed.clone()),
        "body changed",
    );

    // A missing webhook id is a bad request once the HMAC is good.
    let no_id: Vec<_> = hs
        .iter()
        .copied()
        .filter(|(k, _)| *k != "X-Shopify-Webhook-Id")
        .collect();
    let out = run(body, &no_id, secret, subscribed);
    assert_eq!(out.error_code(), Some("bad_request"), "{}", out.json);
}

#[test]
fn derived_webhook_vectors() {
    let doc = fixture_json(CASES);
    for (i, case) in doc["webhook_hmac"]["derived"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
    {
        let secret = case["secret"].as_str().unwrap();
        let body = case["raw_body"].as_str().unwrap().as_bytes();
        let header = case["expect_header"].as_str().unwrap();
        assert_eq!(
            shopify_hmac(secret, body),
            header,
            "our signer agrees with the vector"
        );
        let id = format!("derived-{i}");
        let hs = [
            ("X-Shopify-Hmac-Sha256", header),
            ("X-Shopify-Topic", "app/uninstalled"),
            ("X-Shopify-Webhook-Id", id.as_str()),
            ("X-Shopify-Shop-Domain", "test-shop.myshopify.com"),
        ];
        let out = run(
            body,
            &hs,
            secret,
            json!({"shop": "test-shop.myshopify.com", "webhook_topics": ["app/uninstalled"]}),
        );
        assert!(out.ok(), "case {i}: {}", out.json);
        assert_eq!(out.json["events"][0]["provider_event_id"], id.as_str());
        assert_eq!(record(&out)["type"], "unmapped.app/uninstalled");
        // Signed for the pretty body, the minified one is refused (raw-body requirement).
        let pretty_header =
            doc["webhook_hmac"]["official_verbatim"][0]["headers"]["X-Shopify-Hmac-Sha256"]
                .as_str()
                .unwrap();
        if case["raw_body"] == "{\"foo\":\"bar\"}" {
            let hs = [
                ("X-Shopify-Hmac-Sha256", pretty_header),
                hs[1],
                hs[2],
                hs[3],
            ];
            assert_refused(
                &run(
                    body,
                    &hs,
                    secret,
                    json!({"shop": "test-shop.myshopify.com"}),
                ),
                "minified body",
            );
        }
    }
}

#[test]
fn rest_order_fixture_as_orders_create() {
    let body = fixture_bytes(ORDER);
    let secret = "shpss_fixture_secret";
    let hmac = shopify_hmac(secret, &body);
    let hs = [
        ("Content-Type", "application/json"),
        ("X-Shopify-Hmac-Sha256", hmac.as_str()),
        ("X-Shopify-Topic", "orders/create"),
        (
            "X-Shopify-Webhook-Id",
            "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043",
        ),
        ("X-Shopify-Shop-Domain", "jsmith.myshopify.com"),
        ("X-Shopify-API-Version", "2025-10"),
        ("X-Shopify-Triggered-At", "2008-01-10T16:00:01.123Z"),
    ];
    let out = run(&body, &hs, secret, json!({"shop": "jsmith.myshopify.com"}));
    assert!(out.ok(), "{} / {}", out.json, out.stderr);
    let event = &out.json["events"][0];
    assert_eq!(
        event["provider_event_id"],
        "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043"
    );
    assert_eq!(event["event_type"], "orders/create");
    assert_eq!(event["account_key"], "jsmith.myshopify.com");
    let r = record(&out);
    assert_eq!(r["type"], "order.partially_refunded");
    assert_eq!(r["subject"], "450789469");
    let d = &r["data"];
    let usd = |m: i64| json!({"amount_minor": m, "currency": "USD"});
    assert_eq!(d["kind"], "order");
    assert_eq!(d["change"], "created");
    assert_eq!(d["external_id"], "450789469");
    assert_eq!(d["number"], "#1001");
    assert_eq!(d["customer_external_id"], "207119551");
    assert_eq!(d["email"], "bob.norman@mail.example.com");
    assert_eq!(
        (&d["status"], &d["status_raw"]),
        (&json!("open"), &json!("open"))
    );
    assert_eq!(
        (&d["financial_status"], &d["financial_status_raw"]),
        (&json!("partially_refunded"), &json!("partially_refunded"))
    );
    assert_eq!(
        (&d["fulfillment_status"], &d["fulfillment_status_raw"]),
        (&json!("unfulfilled"), &Value::Null)
    );
    assert_eq!(d["subtotal"], usd(59700));
    assert_eq!(d["total_tax"], usd(1194));
    assert_eq!(d["total_discounts"], usd(1000));
    assert_eq!(d["total_shipping"], usd(0));
    assert_eq!(d["total"], usd(59894));
    assert_eq!(d["created_at"], "2008-01-10T16:00:00Z");
    assert_eq!(d["updated_at"], "2008-01-10T16:00:00Z");
    assert_eq!(d["cancelled_at"], Value::Null);
    assert_eq!(d["cancel_reason"], Value::Null);
    let items = d["line_items"].as_array().unwrap();
    assert_eq!(items.len(), 3);
    assert_eq!(
        items[0],
        json!({"external_id": "466157049", "product_external_id": "632910392", "variant_external_id": "39072856", "sku": "IPOD2008GREEN", "title": "IPod Nano - 8gb - green", "quantity": 1, "unit_price": usd(19900), "total": usd(19566)})
    );
    assert_eq!(items[1]["total"], usd(19567));
    assert_eq!(items[2]["sku"], "IPOD2008BLACK");
    let address = json!({"name": "Bob Norman", "company": null, "line1": "Chestnut Street 92", "line2": null, "city": "Louisville", "region": "Kentucky", "postal_code": "40202", "country_code": "US", "phone": "+1(502)-459-2181"});
    assert_eq!(d["billing_address"], address);
    assert_eq!(d["shipping_address"], address);
    assert_eq!(
        d["metadata"]["admin_graphql_api_id"],
        "gid://shopify/Order/450789469"
    );
    assert_eq!(d["metadata"]["current_total_price"], "199.65");
    assert_eq!(d["metadata"]["note_attributes.colour"], "green");
}

#[test]
fn embedded_refund_and_customer() {
    let order = fixture_json(ORDER);
    let secret = "shpss_fixture_secret";
    for (topic, payload, kind, subject) in [
        (
            "refunds/create",
            &order["order"]["refunds"][0],
            "refund.succeeded",
            "509562969",
        ),
        (
            "customers/update",
            &order["order"]["customer"],
            "customer.updated",
            "207119551",
        ),
    ] {
        let body = serde_json::to_vec(payload).unwrap();
        let hmac = shopify_hmac(secret, &body);
        let hs = [
            ("X-Shopify-Hmac-Sha256", hmac.as_str()),
            ("X-Shopify-Topic", topic),
            ("X-Shopify-Webhook-Id", subject),
            ("X-Shopify-Shop-Domain", "jsmith.myshopify.com"),
        ];
        let out = run(&body, &hs, secret, json!({"shop": "jsmith.myshopify.com"}));
        assert!(out.ok(), "{topic}: {}", out.json);
        let r = record(&out);
        assert_eq!(r["type"], kind, "{topic}: {r}");
        assert_eq!(r["subject"], subject);
        if topic == "refunds/create" {
            assert_eq!(
                r["data"]["amount"],
                json!({"amount_minor": 20900, "currency": "USD"})
            );
            assert_eq!(r["data"]["order_external_id"], "450789469");
            assert_eq!(r["data"]["status_raw"], "success");
            assert_eq!(r["data"]["created_at"], "2025-04-02T16:29:59Z");
        } else {
            assert_eq!(r["data"]["email"], "bob.norman@mail.example.com");
            assert_eq!(r["data"]["name"], "Bob Norman");
            assert_eq!(r["data"]["address"]["line1"], "Chestnut Street 92");
        }
    }
}
