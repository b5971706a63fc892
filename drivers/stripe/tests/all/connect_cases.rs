//! Stripe Connect OAuth against `stripe_connect_oauth_cases.json` (stripe-go's `oauth`
//! tests): the authorize URL, the token forms, the token answers and deauthorization.

use sluice_driver_stripe::connect;
use sluice_driver_stripe::settings;
use sluice_sdk::bindings::sluice::driver::http::Value as V;

fn cases() -> serde_json::Value {
    sluice_testkit::fixture_json("stripe/stripe_connect_oauth_cases.json")
}

fn text(form: &[(String, V)], key: &str) -> Option<String> {
    form.iter().find(|(k, _)| k == key).map(|(_, v)| match v {
        V::Text(t) => t.clone(),
        V::Secret(s) => format!("<secret {s}>"),
    })
}

#[test]
fn authorize_urls_carry_what_the_sdks_send() {
    let doc = cases();
    let hosts = &doc["hosts"];
    let s = settings::parse(r#"{"connect_client_id":"ca_123"}"#).unwrap();
    let url = connect::authorize_url(&s, "https://t.example.com", "test-state").unwrap();
    assert!(url.starts_with(&format!(
        "{}?",
        hosts["authorize_standard"].as_str().unwrap()
    )));
    // stripe-go's TestAuthorizeURLWithOptionalArgs, for the parameters Sluice sends.
    let expect = doc["authorize_url_cases"][1]["expect_contains"]
        .as_array()
        .unwrap();
    for needle in [
        "client_id=ca_123",
        "redirect_uri=https%3A%2F%2Ft.example.com",
        "state=test-state",
    ] {
        assert!(
            expect.iter().any(|e| e == needle),
            "{needle} is a fixture expectation"
        );
        assert!(url.contains(needle), "{needle} in {url}");
    }
    // stripe-node's default scope is read_write; read_only on request; Express has its own URL.
    assert!(
        url.contains("scope=read_write") && url.contains("response_type=code"),
        "{url}"
    );
    let s = settings::parse(
        r#"{"connect_client_id":"ca_123","connect_scope":"read_only","connect_express":true}"#,
    )
    .unwrap();
    let url = connect::authorize_url(&s, "https://t.example.com", "x").unwrap();
    assert!(
        url.starts_with(&format!(
            "{}?",
            hosts["authorize_express"].as_str().unwrap()
        )),
        "{url}"
    );
    assert!(url.contains("scope=read_only"), "{url}");
    assert!(connect::authorize_url(&settings::parse("{}").unwrap(), "u", "s").is_err());
}

#[test]
fn token_requests_and_answers() {
    let doc = cases();
    let form = connect::code_form("code");
    // TestNewOAuthToken: client_secret=sk_123 (the platform key, inserted by the host),
    // grant_type=authorization_code, code=code.
    assert_eq!(
        text(&form, "client_secret").as_deref(),
        Some("<secret platform_secret_key>")
    );
    assert_eq!(
        text(&form, "grant_type").as_deref(),
        Some("authorization_code")
    );
    assert_eq!(text(&form, "code").as_deref(), Some("code"));
    let refresh = connect::refresh_form();
    assert_eq!(
        text(&refresh, "grant_type").as_deref(),
        Some("refresh_token")
    );
    assert_eq!(
        text(&refresh, "refresh_token").as_deref(),
        Some("<secret refresh_token>")
    );

    let success = &doc["token_response_success"]["body"];
    let grant = connect::parse_grant(success.to_string().as_bytes()).unwrap();
    assert_eq!(grant.stripe_user_id, "acct_123");
    assert_eq!(grant.scope.as_deref(), Some("read_write"));
    let error = &doc["token_response_error"];
    assert_eq!(error["http_status"], 400);
    assert_eq!(
        sluice_sdk::oauth::error_message(400, error["body"].to_string().as_bytes()),
        "invalid_grant: Authorization code does not exist"
    );
    assert!(connect::parse_grant(error["body"].to_string().as_bytes()).is_err());
}

#[test]
fn callbacks_scopes_and_deauthorization() {
    assert_eq!(
        connect::callback_code("code=ac_1&scope=read_write&state=s").unwrap(),
        "ac_1"
    );
    assert!(
        connect::callback_code("error=access_denied&state=s")
            .unwrap_err()
            .contains("access_denied")
    );
    let rw = settings::parse("{}").unwrap();
    let ro = settings::parse(r#"{"connect_scope":"read_only"}"#).unwrap();
    let g = |s: &str| vec![s.to_string()];
    assert!(connect::missing_scopes(&rw, &g("read_write")).is_empty());
    assert_eq!(
        connect::missing_scopes(&rw, &g("read_only")),
        ["read_write"]
    );
    assert!(connect::missing_scopes(&ro, &g("read_write")).is_empty());
    // TestDeauthorize: client_id and stripe_user_id in the body.
    let form = connect::deauthorize_form("ca_123", "acct_123");
    for needle in cases()["deauthorize"]["body_must_contain"]
        .as_array()
        .unwrap()
    {
        let key = needle.as_str().unwrap().split_once('=').unwrap().0;
        assert!(text(&form, key).is_some(), "{key}");
    }
    assert_eq!(text(&form, "stripe_user_id").as_deref(), Some("acct_123"));
}
