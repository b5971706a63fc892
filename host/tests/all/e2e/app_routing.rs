//! App-level webhook routing: `POST /webhooks/drivers/{driver}` finds the installation by
//! the account key the driver reads from the request (Stripe Connect `account`).

use reqwest::Method;
use serde_json::{Value, json};
use sluice_testkit::{
    Backend, Sluice, both_backends, random_hex, stripe_charge_variant, stripe_header, unix_now,
};

both_backends!(connect_events_route_to_their_account => sqlite_connect_events_route_to_their_account, postgres_connect_events_route_to_their_account);
both_backends!(account_keys_are_unique_per_driver => sqlite_account_keys_are_unique_per_driver, postgres_account_keys_are_unique_per_driver);

/// A charge event as Stripe sends it for a connected account.
fn connect_event(event_id: &str, account: Option<&str>) -> Vec<u8> {
    let mut event: Value = serde_json::from_slice(&stripe_charge_variant(
        event_id,
        &format!("ch_{event_id}"),
        "usd",
        700,
    ))
    .unwrap();
    if let Some(account) = account {
        event["account"] = json!(account);
    }
    serde_json::to_vec(&event).unwrap()
}

async fn connected_installation(sluice: &Sluice, account: &str, secret: &str) -> String {
    let inst = sluice
        .create_installation("stripe", json!({"account": account}))
        .await;
    assert_eq!(inst["account_key"], account, "{inst}");
    let id = inst["installation_id"].as_str().unwrap().to_string();
    sluice.put_secret(&id, "webhook_secret", secret).await;
    id
}

async fn post_app_level(
    sluice: &Sluice,
    driver: &str,
    secret: &str,
    body: &[u8],
) -> sluice_testkit::Response {
    let signature = stripe_header(body, secret, unix_now());
    sluice
        .post_webhook(
            &format!("drivers/{driver}"),
            &[("stripe-signature", signature.as_str())],
            body.to_vec(),
        )
        .await
}

async fn connect_events_route_to_their_account(backend: Backend) {
    let Some(sluice) = Sluice::start(backend).await else {
        return;
    };
    // One platform webhook secret signs every connected account's events.
    let secret = format!("whsec_{}", random_hex());
    let a = connected_installation(&sluice, "acct_1A", &secret).await;
    let b = connected_installation(&sluice, "acct_2B", &secret).await;

    post_app_level(
        &sluice,
        "stripe",
        &secret,
        &connect_event("evt_for_a", Some("acct_1A")),
    )
    .await
    .expect_status(200);
    post_app_level(
        &sluice,
        "stripe",
        &secret,
        &connect_event("evt_for_b", Some("acct_2B")),
    )
    .await
    .expect_status(200);
    let a_events = sluice.events(&a).await;
    let b_events = sluice.events(&b).await;
    assert_eq!(a_events.len(), 1, "{a_events:#?}");
    assert_eq!(a_events[0]["sluiceprovidereventid"], "evt_for_a");
    assert_eq!(b_events.len(), 1, "{b_events:#?}");
    assert_eq!(b_events[0]["sluiceprovidereventid"], "evt_for_b");

    // Redelivery through the app URL is deduplicated like any other.
    let again = post_app_level(
        &sluice,
        "stripe",
        &secret,
        &connect_event("evt_for_a", Some("acct_1A")),
    )
    .await;
    again.expect_status(200);
    assert_eq!(again.json["duplicates"], 1, "{}", again.text);

    // Verification still applies after routing: a forged event for a known account is refused.
    let forged = post_app_level(
        &sluice,
        "stripe",
        "whsec_wrong",
        &connect_event("evt_forged", Some("acct_1A")),
    )
    .await;
    forged.expect_status(401);

    // Unknown account, no account: answered like a bad signature (which accounts exist is
    // not for whoever posts to the URL to learn). Unknown driver: 404. Nothing stored.
    post_app_level(
        &sluice,
        "stripe",
        &secret,
        &connect_event("evt_unknown", Some("acct_9Z")),
    )
    .await
    .expect_status(401);
    post_app_level(&sluice, "stripe", &secret, &connect_event("evt_none", None))
        .await
        .expect_status(401);
    post_app_level(
        &sluice,
        "nope",
        &secret,
        &connect_event("evt_driver", Some("acct_1A")),
    )
    .await
    .expect_status(404);
    assert_eq!(sluice.events(&a).await.len(), 1);
    assert_eq!(sluice.events(&b).await.len(), 1);
}

async fn account_keys_are_unique_per_driver(backend: Backend) {
    let Some(sluice) = Sluice::start(backend).await else {
        return;
    };
    sluice
        .create_installation("stripe", json!({"account": "acct_dup"}))
        .await;
    let second = sluice
        .admin(
            Method::POST,
            "/v1/installations",
            Some(json!({"driver_id": "stripe", "settings": {"account": "acct_dup"}})),
        )
        .await;
    second.expect_status(409);
    assert_eq!(second.error_code(), Some("conflict"), "{}", second.text);
}
