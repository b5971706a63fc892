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
    let (inst, secret) = sluice.stripe_installation().await;
    let token = sluice.admin_token.clone();
    // Same length, last character changed: only a constant-time compare of the whole
    // token tells it apart.
    let mut same_length = token.clone();
    let last = same_length.pop().unwrap();
    same_length.push(if last == 'a' { 'b' } else { 'a' });
    let basic = format!(
        "Basic {}",
        base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            format!("admin:{token}")
        )
    );
    let refused = [
        None,
        Some(format!("Bearer {same_length}")),
        Some(format!("Bearer {token}x")),
        Some(basic),
        Some(token.clone()),
        Some(format!("Bearer  {token}")),
        Some("Bearer ".to_string()),
    ];
    let routes = [
        (Method::GET, "/v1/drivers".to_string(), None),
        (Method::GET, "/v1/installations".to_string(), None),
        (
            Method::POST,
            "/v1/installations".to_string(),
            Some(serde_json::json!({"driver_id": "stripe", "installation_id": "inst_sneaky"})),
        ),
        (Method::GET, format!("/v1/installations/{inst}"), None),
        (Method::DELETE, format!("/v1/installations/{inst}"), None),
        (
            Method::PUT,
            format!("/v1/installations/{inst}/secrets/webhook_secret"),
            Some(serde_json::json!({"value": "whsec_sneaky"})),
        ),
        (Method::GET, format!("/v1/installations/{inst}/audit"), None),
        (Method::GET, "/v1/events".to_string(), None),
    ];
    for (method, path, body) in &routes {
        for authorization in &refused {
            let resp = sluice
                .admin_with_authorization(
                    authorization.as_deref(),
                    method.clone(),
                    path,
                    body.clone(),
                )
                .await;
            assert_eq!(
                resp.status.as_u16(),
                401,
                "{method} {path} with {authorization:?}: {}",
                resp.text
            );
            assert_eq!(resp.error_code(), Some("unauthorized"), "{}", resp.text);
        }
        // The scheme is case-insensitive (RFC 9110 §11.1): `bearer` works as `Bearer`.
        if *method == Method::GET {
            let resp = sluice
                .admin_with_authorization(
                    Some(&format!("bearer {token}")),
                    method.clone(),
                    path,
                    None,
                )
                .await;
            assert_eq!(resp.status.as_u16(), 200, "{method} {path}: {}", resp.text);
        }
    }
    // The route table is public (this document): a path that is no route is a 404, token
    // or not.
    for authorization in [None, Some(format!("Bearer {token}"))] {
        let resp = sluice
            .admin_with_authorization(authorization.as_deref(), Method::GET, "/v1/nope", None)
            .await;
        resp.expect_status(404);
    }
    // None of those reached a handler: the installation and its secrets are as they were.
    let resp = sluice
        .admin(Method::GET, &format!("/v1/installations/{inst}"), None)
        .await;
    resp.expect_status(200);
    let resp = sluice
        .admin(Method::GET, "/v1/installations/inst_sneaky", None)
        .await;
    resp.expect_status(404);

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
    let ids: Vec<&str> = resp.json["installations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["installation_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [inst.as_str()], "{}", resp.text);
    // The secret PUT without the token did not replace the real one.
    let resp = sluice
        .admin(Method::GET, &format!("/v1/installations/{inst}"), None)
        .await;
    assert_eq!(resp.json["secrets"], serde_json::json!(["webhook_secret"]));
    sluice
        .post_stripe(&inst, &secret, &stripe_charge_payload())
        .await
        .expect_status(200);

    // Probes need no token.
    let resp = sluice.admin_as(None, Method::GET, "/healthz", None).await;
    resp.expect_status(200);
}
