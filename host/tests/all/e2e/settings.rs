//! Installation settings are validated against the driver's JSON Schema; unknown drivers
//! are refused. Nothing is created in either case.

use reqwest::Method;
use serde_json::{Value, json};
use sluice_testkit::{Backend, Sluice, both_backends};

both_backends!(settings_are_validated => sqlite_settings_are_validated, postgres_settings_are_validated);

/// The `details` of an `invalid_settings` answer, checked for shape.
fn details(resp: &sluice_testkit::Response) -> Vec<(String, String)> {
    let details = resp.json["error"]["details"]
        .as_array()
        .unwrap_or_else(|| panic!("no error.details list in {}", resp.text));
    assert!(!details.is_empty(), "empty details in {}", resp.text);
    details
        .iter()
        .map(|d| {
            let path = d["path"]
                .as_str()
                .unwrap_or_else(|| panic!("detail without path: {d}"));
            let message = d["message"]
                .as_str()
                .unwrap_or_else(|| panic!("detail without message: {d}"));
            (path.to_string(), message.to_string())
        })
        .collect()
}

async fn create(sluice: &Sluice, body: Value) -> sluice_testkit::Response {
    sluice
        .admin(Method::POST, "/v1/installations", Some(body))
        .await
}

async fn settings_are_validated(backend: Backend) {
    let Some(sluice) = Sluice::start(backend).await else {
        return;
    };

    let resp = create(
        &sluice,
        json!({"driver_id": "stripe", "settings": {"tolerance_seconds": 0}}),
    )
    .await;
    resp.expect_status(422);
    assert_eq!(resp.error_code(), Some("invalid_settings"), "{}", resp.text);
    let listed = details(&resp);
    assert!(
        listed.iter().any(|(path, _)| path == "/tolerance_seconds"),
        "no detail for /tolerance_seconds in {listed:?}"
    );

    // `additionalProperties: false`: the failing path is the object itself or the key;
    // either way the detail must name the unknown key.
    let resp = create(
        &sluice,
        json!({"driver_id": "stripe", "settings": {"unknown": 1}}),
    )
    .await;
    resp.expect_status(422);
    assert_eq!(resp.error_code(), Some("invalid_settings"), "{}", resp.text);
    let listed = details(&resp);
    assert!(
        listed
            .iter()
            .any(|(path, message)| path.contains("unknown") || message.contains("unknown")),
        "no detail naming `unknown` in {listed:?}"
    );

    // The faulty driver's schema is an enum: a value outside it is refused too.
    let resp = create(
        &sluice,
        json!({"driver_id": "faulty", "settings": {"mode": "explode"}}),
    )
    .await;
    resp.expect_status(422);
    assert_eq!(resp.error_code(), Some("invalid_settings"), "{}", resp.text);
    assert!(
        details(&resp).iter().any(|(path, _)| path == "/mode"),
        "{}",
        resp.text
    );

    let resp = create(
        &sluice,
        json!({"driver_id": "no_such_driver", "settings": {}}),
    )
    .await;
    resp.expect_status(422);
    assert_eq!(resp.error_code(), Some("unknown_driver"), "{}", resp.text);

    let resp = sluice.admin(Method::GET, "/v1/installations", None).await;
    resp.expect_status(200);
    assert_eq!(resp.json["installations"], json!([]), "{}", resp.text);

    // A valid one is accepted with the settings as given.
    let resp = create(
        &sluice,
        json!({"driver_id": "stripe", "settings": {"tolerance_seconds": 300}}),
    )
    .await;
    resp.expect_status(201);
    assert_eq!(resp.json["settings"], json!({"tolerance_seconds": 300}));
}
