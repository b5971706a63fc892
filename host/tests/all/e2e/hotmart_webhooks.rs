//! The Hotmart webhook path through the running `sluice` binary on both backends: a BRL
//! purchase with the right `X-HOTMART-HOTTOK` becomes CloudEvents with exact minor units;
//! a wrong or missing token gets `401` and nothing is stored; a redelivery is deduplicated
//! on the body's `id`.

use serde_json::{Value, json};
use sluice_testkit::{Backend, Sluice, both_backends, bundled_driver, fixture_bytes};

both_backends!(brl_purchase_flow => sqlite_brl_purchase_flow, postgres_brl_purchase_flow);
both_backends!(wrong_or_missing_hottok_is_refused => sqlite_wrong_or_missing_hottok_is_refused, postgres_wrong_or_missing_hottok_is_refused);

const HOTTOK: &str = "ysewXlAZI1iHdUFqC4ZcV1J5RLhiVe518471";

/// A server with the Hotmart driver and one installation holding `HOTTOK`.
async fn start(backend: Backend) -> Option<(Sluice, String)> {
    let wasm = std::fs::read(bundled_driver("hotmart")).expect("hotmart.wasm");
    let sluice = Sluice::start_with(backend, &[], &[("hotmart.wasm", &wasm)]).await?;
    let inst = sluice.create_installation("hotmart", json!({})).await;
    assert_eq!(inst["driver_id"], "hotmart");
    let id = inst["installation_id"].as_str().unwrap().to_string();
    sluice.put_secret(&id, "hottok", HOTTOK).await;
    Some((sluice, id))
}

/// A BRL purchase whose amount paid (`full_price`, the order total) is not a whole number
/// (97.9 → 9790 minor units).
fn purchase_97_9() -> Vec<u8> {
    let text = String::from_utf8(fixture_bytes(
        "hotmart/hotmart_testpostback_purchase_approved.json",
    ))
    .unwrap();
    let text = text
        .replace("545e7d21-8fc4-4906-8fba-dcd7889f6481", "e2e-brl-97-9")
        .replace("HP16015479281022", "HP0000097900")
        .replace(
            "\"full_price\": {\n        \"value\": 1500,",
            "\"full_price\": {\n        \"value\": 97.9,",
        );
    assert!(text.contains("\"value\": 97.9,"), "fixture layout changed");
    text.into_bytes()
}

async fn brl_purchase_flow(backend: Backend) {
    let Some((sluice, inst)) = start(backend).await else {
        return;
    };
    let payload = fixture_bytes("hotmart/hotmart_testpostback_purchase_approved.json");
    let fixture: Value = serde_json::from_slice(&payload).unwrap();
    let resp = sluice
        .post_webhook(&inst, &[("X-HOTMART-HOTTOK", HOTTOK)], payload.clone())
        .await;
    resp.expect_status(200);
    assert_eq!(resp.json, json!({"accepted": 1, "duplicates": 0}));

    let events = sluice.events(&inst).await;
    let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["order.paid", "payment.succeeded"], "{events:#?}");
    for event in &events {
        assert_eq!(event["specversion"], "1.0");
        assert_eq!(event["source"], format!("/sluice/installations/{inst}"));
        assert_eq!(event["subject"], "HP16015479281022");
        assert_eq!(event["sluicedriver"], "hotmart");
        assert_eq!(event["sluiceprovidereventid"], fixture["id"]);
        assert_eq!(event["sluiceprovidereventtype"], "PURCHASE_APPROVED");
        // The postback's `creation_date`, 1763247745737 ms.
        assert_eq!(event["time"], "2025-11-15T23:02:25.737Z", "{event}");
    }
    let payment = &events[1]["data"];
    assert_eq!(payment["kind"], "payment");
    assert_eq!(
        payment["amount"],
        json!({"amount_minor": 150000, "currency": "BRL"})
    );
    assert_eq!(
        payment["fee"],
        json!({"amount_minor": 14950, "currency": "BRL"})
    );
    assert_eq!(payment["status_raw"], "APPROVED");
    // `purchase.order_date`, 1511783344000 ms.
    assert_eq!(payment["created_at"], "2017-11-27T11:49:04Z");
    assert_eq!(payment["method"], "card");
    let order = &events[0]["data"];
    assert_eq!(
        order["total"],
        json!({"amount_minor": 150000, "currency": "BRL"})
    );
    assert_eq!(order["financial_status"], "paid");

    // Redelivery (Hotmart retries with the same id): acknowledged, nothing new stored.
    let resp = sluice
        .post_webhook(&inst, &[("X-HOTMART-HOTTOK", HOTTOK)], payload)
        .await;
    resp.expect_status(200);
    assert_eq!(resp.json, json!({"accepted": 0, "duplicates": 1}));
    assert_eq!(sluice.events(&inst).await.len(), 2);

    // A fractional BRL price stays exact.
    let resp = sluice
        .post_webhook(&inst, &[("X-HOTMART-HOTTOK", HOTTOK)], purchase_97_9())
        .await;
    resp.expect_status(200);
    let events = sluice.events(&inst).await;
    let payment = events
        .iter()
        .find(|e| e["sluiceprovidereventid"] == "e2e-brl-97-9" && e["type"] == "payment.succeeded")
        .unwrap_or_else(|| panic!("no 97.9 payment in {events:#?}"));
    assert_eq!(
        payment["data"]["amount"],
        json!({"amount_minor": 9790, "currency": "BRL"})
    );
    assert_eq!(payment["subject"], "HP0000097900");
}

async fn wrong_or_missing_hottok_is_refused(backend: Backend) {
    let Some((sluice, inst)) = start(backend).await else {
        return;
    };
    let payload = fixture_bytes("hotmart/hotmart_testpostback_purchase_refunded.json");
    let wrong = "ysewXlAZI1iHdUFqC4ZcV1J5RLhiVe518472";
    let cases: [&[(&str, &str)]; 3] = [
        &[("X-HOTMART-HOTTOK", wrong)],
        &[],
        &[("X-HOTMART-HOTTOK", "")],
    ];
    for headers in cases {
        let resp = sluice.post_webhook(&inst, headers, payload.clone()).await;
        resp.expect_status(401);
    }
    // A body that names the right hottok does not authenticate itself.
    let mut body: Value = serde_json::from_slice(&payload).unwrap();
    body["hottok"] = json!(HOTTOK);
    let resp = sluice
        .post_webhook(&inst, &[], serde_json::to_vec(&body).unwrap())
        .await;
    resp.expect_status(401);
    assert!(sluice.events(&inst).await.is_empty(), "nothing stored");

    // The right token still works afterwards.
    let resp = sluice
        .post_webhook(&inst, &[("x-hotmart-hottok", HOTTOK)], payload)
        .await;
    resp.expect_status(200);
    let types: Vec<String> = sluice
        .events(&inst)
        .await
        .iter()
        .map(|e| e["type"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        types,
        ["order.refunded", "payment.refunded", "refund.succeeded"]
    );
}
