//! OAuth 2.0 authorization code with PKCE (RFC 6749 §4.1, RFC 7636) against Acme's
//! authorization server: the authorize URL and the token-endpoint forms. The host makes
//! the `state` and the PKCE pair, checks the `state` on the way back, and captures the
//! tokens from the answer; the driver never sees them.

use sluice_sdk::bindings::sluice::driver::http::Value as FormValue;
use sluice_sdk::json::serde_json;
use sluice_sdk::paging::encode_query_value;

use crate::settings::Settings;

/// The secret holding the app's client secret (an operator may share one for every
/// installation with `[drivers.acme] app_secrets`).
pub const CLIENT_SECRET: &str = "client_secret";
/// The access token, captured from the token endpoint's answer.
pub const ACCESS_TOKEN: &str = "access_token";
/// The refresh token, captured likewise (and again whenever the server rotates it).
pub const REFRESH_TOKEN: &str = "refresh_token";

/// The authorization URL: `{oauth_base}/authorize?response_type=code&…` with the PKCE
/// `S256` challenge.
pub fn authorize_url(
    settings: &Settings,
    redirect_uri: &str,
    state: &str,
    code_challenge: &str,
) -> Result<String, String> {
    let client_id = settings
        .client_id
        .as_deref()
        .ok_or("the OAuth flow needs the client_id setting")?;
    Ok(format!(
        "{}/authorize?response_type=code&client_id={}&redirect_uri={}&scope={}&state={}&code_challenge={}&code_challenge_method=S256",
        settings.oauth_base,
        encode_query_value(client_id),
        encode_query_value(redirect_uri),
        encode_query_value(&settings.scopes.join(" ")),
        encode_query_value(state),
        encode_query_value(code_challenge),
    ))
}

/// The token endpoint.
pub fn token_url(settings: &Settings) -> String {
    format!("{}/token", settings.oauth_base)
}

/// The `code` of a callback query, or why there is none.
pub fn callback_code(query: &str) -> Result<String, String> {
    let mut code = None;
    for pair in query.split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "code" => code = Some(sluice_sdk::paging::decode_query_component(value)),
            "error" => return Err(format!("the authorization server answered error={value}")),
            _ => {}
        }
    }
    code.filter(|c| !c.is_empty())
        .ok_or_else(|| "the callback has no code".to_string())
}

fn client(settings: &Settings) -> Vec<(String, FormValue)> {
    vec![
        (
            "client_id".into(),
            FormValue::Text(settings.client_id.clone().unwrap_or_default()),
        ),
        (
            "client_secret".into(),
            FormValue::Secret(CLIENT_SECRET.into()),
        ),
    ]
}

/// The authorization-code grant, with the PKCE verifier.
pub fn code_form(
    settings: &Settings,
    code: &str,
    redirect_uri: &str,
    code_verifier: &str,
) -> Vec<(String, FormValue)> {
    let mut form = vec![
        (
            "grant_type".into(),
            FormValue::Text("authorization_code".into()),
        ),
        ("code".into(), FormValue::Text(code.into())),
        ("redirect_uri".into(), FormValue::Text(redirect_uri.into())),
        (
            "code_verifier".into(),
            FormValue::Text(code_verifier.into()),
        ),
    ];
    form.extend(client(settings));
    form
}

/// The refresh-token grant; the refresh token is a secret reference.
pub fn refresh_form(settings: &Settings) -> Vec<(String, FormValue)> {
    let mut form = vec![
        ("grant_type".into(), FormValue::Text("refresh_token".into())),
        (
            "refresh_token".into(),
            FormValue::Secret(REFRESH_TOKEN.into()),
        ),
    ];
    form.extend(client(settings));
    form
}

/// Scopes and lifetime of a token answer (RFC 6749 §5.1: `scope` is space-separated).
pub fn parse_grant(body: &[u8]) -> Result<(Vec<String>, Option<u64>), String> {
    let v: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("token answer is not JSON: {e}"))?;
    let scopes = v
        .get("scope")
        .and_then(|s| s.as_str())
        .map(|s| s.split_whitespace().map(str::to_owned).collect())
        .unwrap_or_default();
    Ok((scopes, v.get("expires_in").and_then(|e| e.as_u64())))
}

/// Which of `required` the grant lacks.
pub fn missing_scopes(required: &[String], granted: &[String]) -> Vec<String> {
    required
        .iter()
        .filter(|r| !granted.contains(r))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings;

    #[test]
    fn authorize_url_carries_the_pkce_challenge() {
        let s = settings::parse(r#"{"client_id":"app 1","scopes":["events:read","refunds:read"]}"#)
            .unwrap();
        assert_eq!(
            authorize_url(
                &s,
                "https://h/cb",
                "st",
                "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
            )
            .unwrap(),
            "https://auth.acme.example/authorize?response_type=code&client_id=app%201&redirect_uri=https%3A%2F%2Fh%2Fcb&scope=events%3Aread%20refunds%3Aread&state=st&code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM&code_challenge_method=S256"
        );
        assert!(authorize_url(&settings::parse("{}").unwrap(), "u", "s", "c").is_err());
    }

    #[test]
    fn callbacks_and_grants() {
        assert_eq!(callback_code("state=x&code=a%2Fb").unwrap(), "a/b");
        assert!(callback_code("state=x&error=access_denied").is_err());
        assert!(callback_code("state=x").is_err());
        assert_eq!(
            parse_grant(br#"{"access_token":"[redacted]","scope":"a b","expires_in":3600}"#)
                .unwrap(),
            (vec!["a".to_string(), "b".to_string()], Some(3600))
        );
        assert_eq!(
            missing_scopes(&["a".into(), "b".into()], &["b".into()]),
            ["a"]
        );
    }
}
