//! Stripe Connect OAuth (Standard and Express accounts): the authorize URL, the
//! `/oauth/token` forms, the token answer and `/oauth/deauthorize`, as in
//! `stripe_connect_oauth_cases.json` (stripe-go's `oauth` tests).
//!
//! The platform's secret key (`platform_secret_key`) authenticates every call and goes in
//! the form as `client_secret`; the host inserts it. The answer's `access_token` (a secret
//! key for the connected account) is captured into `api_key`, so polling works on the
//! account's behalf, and `refresh_token` into `refresh_token`. Connect has no PKCE.

use sluice_sdk::bindings::sluice::driver::http::Value as FormValue;
use sluice_sdk::paging::{decode_query_component, encode_query_value};

use crate::settings::Settings;

/// The platform's secret key (`sk_…`), for the Connect OAuth endpoints only.
pub const PLATFORM_SECRET_KEY: &str = "platform_secret_key";
/// The connected account's refresh token.
pub const REFRESH_TOKEN: &str = "refresh_token";
/// The driver-state key remembering the connected account (`stripe_user_id`).
pub const ACCOUNT_STATE: &str = "stripe_user_id";

/// The scope the settings ask for.
pub fn scope(settings: &Settings) -> &'static str {
    if settings.connect_read_only {
        "read_only"
    } else {
        "read_write"
    }
}

/// `https://connect.stripe.com/oauth/authorize?response_type=code&client_id=ca_…&scope=…`
/// (`/express/oauth/authorize` for Express accounts).
pub fn authorize_url(
    settings: &Settings,
    redirect_uri: &str,
    state: &str,
) -> Result<String, String> {
    let client_id = settings
        .connect_client_id
        .as_deref()
        .ok_or("connecting an account needs the connect_client_id setting (ca_…)")?;
    let path = if settings.connect_express {
        "/express/oauth/authorize"
    } else {
        "/oauth/authorize"
    };
    Ok(format!(
        "{}{path}?response_type=code&client_id={}&scope={}&redirect_uri={}&state={}",
        settings.connect_base,
        encode_query_value(client_id),
        scope(settings),
        encode_query_value(redirect_uri),
        encode_query_value(state),
    ))
}

/// The `code` of a callback, or the error Stripe redirected with (`access_denied` when the
/// user declined).
pub fn callback_code(query: &str) -> Result<String, String> {
    let mut code = None;
    let mut error = None;
    for pair in query.split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "code" => code = Some(decode_query_component(value)),
            "error" => error = Some(decode_query_component(value)),
            _ => {}
        }
    }
    if let Some(error) = error {
        return Err(format!("Stripe answered error={error}"));
    }
    code.filter(|c| !c.is_empty())
        .ok_or_else(|| "the callback has no code".to_string())
}

/// `POST /oauth/token` with `grant_type=authorization_code`.
pub fn code_form(code: &str) -> Vec<(String, FormValue)> {
    vec![
        (
            "client_secret".into(),
            FormValue::Secret(PLATFORM_SECRET_KEY.into()),
        ),
        (
            "grant_type".into(),
            FormValue::Text("authorization_code".into()),
        ),
        ("code".into(), FormValue::Text(code.into())),
    ]
}

/// `POST /oauth/token` with `grant_type=refresh_token`.
pub fn refresh_form() -> Vec<(String, FormValue)> {
    vec![
        (
            "client_secret".into(),
            FormValue::Secret(PLATFORM_SECRET_KEY.into()),
        ),
        ("grant_type".into(), FormValue::Text("refresh_token".into())),
        (
            "refresh_token".into(),
            FormValue::Secret(REFRESH_TOKEN.into()),
        ),
    ]
}

/// `POST /oauth/deauthorize`: the platform's client id and the account.
pub fn deauthorize_form(client_id: &str, account: &str) -> Vec<(String, FormValue)> {
    vec![
        ("client_id".into(), FormValue::Text(client_id.into())),
        ("stripe_user_id".into(), FormValue::Text(account.into())),
    ]
}

/// What a (redacted) token answer says: the account and the scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub stripe_user_id: String,
    pub scope: Option<String>,
}

pub fn parse_grant(body: &[u8]) -> Result<Grant, String> {
    let v: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("token answer is not JSON: {e}"))?;
    let account = v
        .get("stripe_user_id")
        .and_then(|a| a.as_str())
        .filter(|a| a.starts_with("acct_"))
        .ok_or("the token answer has no stripe_user_id")?;
    Ok(Grant {
        stripe_user_id: account.to_string(),
        scope: v.get("scope").and_then(|s| s.as_str()).map(str::to_owned),
    })
}

/// Scopes the grant lacks: `read_write` covers `read_only`.
pub fn missing_scopes(settings: &Settings, granted: &[String]) -> Vec<String> {
    let want = scope(settings);
    let covered = granted
        .iter()
        .any(|g| g == want || (g == "read_write" && want == "read_only"));
    if covered {
        Vec::new()
    } else {
        vec![want.to_string()]
    }
}
