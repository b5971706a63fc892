//! Webhooks and admin calls that must be refused, on both backends, with nothing stored.

use reqwest::Method;
use sluice_testkit::{
    Backend, Sluice, both_backends, stripe_charge_payload, stripe_header, unix_now,
};

both_backends!(refused_webhooks_store_nothing => sqlite_refused_webhooks_store_nothing, postgres_refused_webhooks_store_nothing);
both_backends!(unknown_installation_and_oversized_body => sqlite_unknown_installation_and_oversized_body, postgres_unknown_installation_and_oversized_body);
both_backends!(admin_api_needs_the_token => sqlite_admin_api_needs_the_token, postgres_admin_api_needs_the_token);

/// Posts and checks the status and error code, then that the installation has no events.
async fn expect_refused(
    sluice: &Sluice,
    inst: &str,
    what: &str,
    signature: Option<&str>,
    body: Vec<u8>,
    status: u16,
    code: &str,
) {
    let headers: Vec<(&str, &str)> = signature
        .map(|s| vec![("stripe-signature", s)])
        .unwrap_or_default();
    let resp = sluice.post_webhook(inst, &headers, body).await;
    assert_eq!(
        resp.status.as_u16(),
        status,
        "{what}: unexpected status; body: {}",
        resp.text
    );
    assert_eq!(resp.error_code(), Some(code), "{what}: body {}", resp.text);
    let events = sluice.events(inst).await;
    assert!(events.is_empty(), "{what}: stored {events:#?}");
}

async fn refused_webhooks_store_nothing(backend: Backend) {
    let Some(sluice) = Sluice::start(backend).await else {
        return;
    };
    let (inst, secret) = sluice.stripe_installation().await;
    let payload = stripe_charge_payload();
    let now = unix_now();

    // Signed, then one byte of the amount changed.
    let signature = stripe_header(&payload, &secret, now);
    let text = String::from_utf8(payload.clone()).unwrap();
    let tampered = text.replacen("\"amount\": 100,", "\"amount\": 900,", 1);
    assert_ne!(tampered, text, "the fixture's amount line moved");
    expect_refused(
        &sluice,
        &inst,
        "tampered body",
        Some(&signature),
        tampered.into_bytes(),
        401,
        "unauthorized",
    )
    .await;

    let wrong = stripe_header(&payload, "whsec_not_the_installations_secret", now);
    expect_refused(
        &sluice,
        &inst,
        "wrong secret",
        Some(&wrong),
        payload.clone(),
        401,
        "unauthorized",
    )
    .await;

    let stale = stripe_header(&payload, &secret, now - 400);
    expect_refused(
        &sluice,
        &inst,
        "t = now - 400",
        Some(&stale),
        payload.clone(),
        401,
        "unauthorized",
    )
    .await;

    let future = stripe_header(&payload, &secret, now + 400);
    expect_refused(
        &sluice,
        &inst,
        "t = now + 400",
        Some(&future),
        payload.clone(),
        401,
        "unauthorized",
    )
    .await;

    expect_refused(
        &sluice,
        &inst,
        "no Stripe-Signature",
        None,
        payload.clone(),
        401,
        "unauthorized",
    )
    .await;

    // A correct signature over a body that is not JSON: authentic but unusable.
    let malformed = br#"{"id": "evt_e2e_malformed", "object": "event", "type": "#.to_vec();
    let signature = stripe_header(&malformed, &secret, unix_now());
    expect_refused(
        &sluice,
        &inst,
        "malformed JSON",
        Some(&signature),
        malformed,
        400,
        "bad_request",
    )
    .await;

    // And the genuine delivery still goes through afterwards.
    let resp = sluice.post_stripe(&inst, &secret, &payload).await;
    resp.expect_status(200);
    assert_eq!(sluice.events(&inst).await.len(), 1);
}

async fn unknown_installation_and_oversized_body(backend: Backend) {
    let Some(sluice) = Sluice::start(backend).await else {
        return;
    };
    let payload = stripe_charge_payload();
    let signature = stripe_header(&payload, "whsec_whatever", unix_now());
    let resp = sluice
        .post_webhook(
            "inst_does_not_exist",
            &[("stripe-signature", signature.as_str())],
            payload,
        )
        .await;
    // Answered exactly like a bad signature, so a prober learns nothing about which ids
    // exist.
    resp.expect_status(401);
    assert_eq!(resp.error_code(), Some("unauthorized"), "{}", resp.text);
    let (inst, secret) = sluice.stripe_installation().await;
    // Signed with a secret that is not the installation's: a bad signature.
    let forged = sluice
        .post_webhook(
            &inst,
            &[("stripe-signature", signature.as_str())],
            stripe_charge_payload(),
        )
        .await;
    forged.expect_status(401);
    assert_eq!(forged.text, resp.text, "the two refusals differ");
    assert!(sluice.events(&inst).await.is_empty());

    // One byte over the default 1 MiB limit, to a real installation with a signature.
    let mut big = b"{\"id\":\"evt_e2e_big\",\"object\":\"event\",\"pad\":\"".to_vec();
    big.resize(1024 * 1024 - 2, b'a');
    big.extend_from_slice(b"\"}");
    big.push(b' ');
    assert_eq!(big.len(), 1024 * 1024 + 1);
    let signature = stripe_header(&big, &secret, unix_now());
    expect_refused(
        &sluice,
        &inst,
        "body over 1 MiB",
        Some(&signature),
        big,
        413,
        "payload_too_large",
    )
    .await;
}

async fn admin_api_needs_the_token(backend: Backend) {
    let Some(sluice) = Sluice::start(backend).await else {
        return;
    };
    for path in ["/v1/installations", "/v1/drivers", "/v1/events"] {
        let resp = sluice.admin_as(None, Method::GET, path, None).await;
        assert_eq!(
            resp.status.as_u16(),
            401,
            "GET {path} without a token: {}",
            resp.text
        );
        assert_eq!(resp.error_code(), Some("unauthorized"), "{}", resp.text);

        let wrong = format!("{}x", sluice.admin_token);
        let resp = sluice.admin_as(Some(&wrong), Method::GET, path, None).await;
        assert_eq!(
            resp.status.as_u16(),
            401,
            "GET {path} with a wrong token: {}",
            resp.text
        );
        assert_eq!(resp.error_code(), Some("unauthorized"), "{}", resp.text);
    }

    // Creating without the token stores nothing.
    let resp = sluice
        .admin_as(
            None,
            Method::POST,
            "/v1/installations",
            Some(serde_json::json!({"driver_id": "stripe"})),
        )
        .await;
    resp.expect_status(401);
    let resp = sluice.admin(Method::GET, "/v1/installations", None).await;
    resp.expect_status(200);
    assert_eq!(
        resp.json["installations"],
        serde_json::json!([]),
        "{}",
        resp.text
    );

    // Probes need no token.
    let resp = sluice.admin_as(None, Method::GET, "/healthz", None).await;
    resp.expect_status(200);
}
