//! The full webhook path on both backends: create a Stripe installation, set its secret,
//! deliver a webhook signed by Stripe's official library, read the CloudEvent back,
//! deduplicate a redelivery, and keep each currency's own exponent.

use reqwest::Method;
use serde_json::Value;
use sluice_testkit::{
    Backend, Sluice, both_backends, random_hex, stripe_charge_payload, stripe_charge_variant,
};

both_backends!(charge_succeeded_flow => sqlite_charge_succeeded_flow, postgres_charge_succeeded_flow);
both_backends!(zero_and_three_decimal_currencies => sqlite_zero_and_three_decimal_currencies, postgres_zero_and_three_decimal_currencies);

async fn charge_succeeded_flow(backend: Backend) {
    let Some(sluice) = Sluice::start(backend).await else {
        return;
    };

    let resp = sluice
        .admin(
            Method::POST,
            "/v1/installations",
            Some(serde_json::json!({"driver_id": "stripe", "settings": {}})),
        )
        .await;
    resp.expect_status(201);
    let inst = resp.json["installation_id"]
        .as_str()
        .expect("installation_id")
        .to_string();
    assert_eq!(resp.json["driver_id"], "stripe");
    let webhook_url = resp.json["webhook_url"].as_str().expect("webhook_url");
    assert!(
        webhook_url.ends_with(&format!("/webhooks/{inst}")),
        "webhook_url {webhook_url} does not end with /webhooks/{inst}"
    );

    let secret = format!("whsec_{}{}", random_hex(), random_hex());
    sluice.put_secret(&inst, "webhook_secret", &secret).await;

    let payload = stripe_charge_payload();
    let fixture: Value = serde_json::from_slice(&payload).unwrap();
    let charge = &fixture["data"]["object"];

    // Signed by the official `stripe` library, as Stripe signs it.
    let Some(signature) = sluice_testkit::sign::stripe_signature(&payload, &secret, None) else {
        return;
    };
    let resp = sluice
        .post_webhook(
            &inst,
            &[("stripe-signature", signature.as_str())],
            payload.clone(),
        )
        .await;
    resp.expect_status(200);
    assert_eq!(
        resp.json,
        serde_json::json!({"accepted": 1, "duplicates": 0})
    );

    let events = sluice.events(&inst).await;
    assert_eq!(events.len(), 1, "events: {events:#?}");
    let event = &events[0];
    assert_eq!(event["specversion"], "1.0");
    assert_eq!(event["type"], "payment.succeeded");
    assert_eq!(event["source"], format!("/sluice/installations/{inst}"));
    assert_eq!(event["subject"], charge["id"]);
    assert_eq!(event["sluiceinstallation"], inst.as_str());
    assert_eq!(event["sluicedriver"], "stripe");
    assert_eq!(event["sluiceprovidereventid"], fixture["id"]);
    assert_eq!(event["sluiceprovidereventtype"], "charge.succeeded");
    assert!(
        event["id"].as_str().is_some_and(|id| !id.is_empty()),
        "event: {event}"
    );
    let data = &event["data"];
    // The event's `created`, 1748465448.
    assert_eq!(event["time"], "2025-05-28T20:50:48Z", "{event}");
    assert_eq!(data["created_at"], "2025-05-28T20:50:48Z", "{event}");
    assert_eq!(data["kind"], "payment");
    assert_eq!(data["external_id"], charge["id"]);
    assert_eq!(data["status"], "succeeded");
    assert_eq!(data["status_raw"], "succeeded");
    assert_eq!(data["amount"]["amount_minor"], charge["amount"]);
    assert_eq!(
        data["amount"]["currency"],
        charge["currency"].as_str().unwrap().to_uppercase()
    );

    // The same event again (signed afresh, as Stripe does on a retry): acknowledged,
    // counted as a duplicate, nothing new stored.
    let resp = sluice.post_stripe(&inst, &secret, &payload).await;
    resp.expect_status(200);
    assert_eq!(
        resp.json,
        serde_json::json!({"accepted": 0, "duplicates": 1})
    );
    assert_eq!(sluice.events(&inst).await.len(), 1);
}

async fn zero_and_three_decimal_currencies(backend: Backend) {
    let Some(sluice) = Sluice::start(backend).await else {
        return;
    };
    let (inst, secret) = sluice.stripe_installation().await;

    // JPY has no minor unit: 5000 is ¥5000. BHD has three decimals: 12340 is 12.340 BHD.
    let cases = [
        ("evt_e2e_jpy", "ch_e2e_jpy", "jpy", 5000, "JPY"),
        ("evt_e2e_bhd", "ch_e2e_bhd", "bhd", 12340, "BHD"),
    ];
    for (event_id, charge_id, currency, amount, _) in cases {
        let payload = stripe_charge_variant(event_id, charge_id, currency, amount);
        let resp = sluice.post_stripe(&inst, &secret, &payload).await;
        resp.expect_status(200);
        assert_eq!(resp.json["accepted"], 1, "{}", resp.text);
    }

    let events = sluice.events(&inst).await;
    assert_eq!(events.len(), 2, "events: {events:#?}");
    for (event_id, charge_id, _, amount, currency) in cases {
        let event = events
            .iter()
            .find(|e| e["sluiceprovidereventid"] == event_id)
            .unwrap_or_else(|| panic!("no event {event_id} in {events:#?}"));
        assert_eq!(event["type"], "payment.succeeded");
        assert_eq!(event["subject"], charge_id);
        assert_eq!(
            event["data"]["amount"],
            serde_json::json!({"amount_minor": amount, "currency": currency}),
            "event: {event}"
        );
    }
}
