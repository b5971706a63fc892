//! OAuth (authorization-code grant): the authorize URL, the callback's `hmac` and
//! `timestamp` checks, the token-endpoint form and the granted scopes.
//!
//! **Callback HMAC.** `hmac` is the hex HMAC-SHA256, keyed by the app's client secret, of
//! the callback's query without `hmac` (and legacy `signature`), decoded, sorted by key and
//! joined as `key=value` with `&`. Shopify's SDKs escape that canonical string two ways (see
//! `shopify_hmac_cases.json`); both are computed and the HMAC must match one of them:
//!
//! - [`Canonical::Docs`] (Shopify's documented rule, shopify_python_api): `%`→`%25` and
//!   `&`→`%26` in keys and values, `=`→`%3D` in keys; array params `k[]=1&k[]=2` are signed
//!   once as `k=["1", "2"]`;
//! - [`Canonical::AppJs`] (shopify-app-js): `URLSearchParams` form encoding with spaces as
//!   `%20` (never `+`).
//!
//! The `timestamp` must be within [`TIMESTAMP_TOLERANCE_SECS`] of the host clock (both
//! directions, as shopify-app-js does), and `shop` must be the installation's shop.

use sluice_sdk::bindings::sluice::driver::http::Value as FormValue;
use sluice_sdk::paging::{decode_query_component, encode_query_value};
use sluice_sdk::verify::decode_hex;

use crate::settings::Settings;
use crate::shop;

/// Allowed `|now - timestamp|` of an OAuth callback, seconds (shopify-app-js).
pub const TIMESTAMP_TOLERANCE_SECS: i64 = 90;

/// The URL to send a merchant to, to install the app / grant scopes.
pub fn authorize_url(
    settings: &Settings,
    redirect_uri: &str,
    state: &str,
) -> Result<String, String> {
    let client_id = settings
        .client_id
        .as_deref()
        .ok_or("authorize-url needs the client_id setting (the app's API key)")?;
    // shopify-app-js `begin()`: `grant_options[]=per-user` asks for an online token.
    Ok(format!(
        "{}/admin/oauth/authorize?client_id={}&scope={}&redirect_uri={}&state={}{}",
        settings.api_base,
        encode_query_value(client_id),
        encode_query_value(&settings.scopes.join(",")),
        encode_query_value(redirect_uri),
        encode_query_value(state),
        if settings.online {
            "&grant_options%5B%5D=per-user"
        } else {
            ""
        },
    ))
}

/// A raw query string as decoded `(key, value)` pairs, in order.
pub fn parse_query(query: &str) -> Vec<(String, String)> {
    query
        .trim_start_matches('?')
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (decode_query_component(k), decode_query_component(v))
        })
        .collect()
}

/// How the canonical string is escaped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Canonical {
    /// Shopify's documented rule (shopify_python_api).
    Docs,
    /// shopify-app-js (`URLSearchParams`, `%20` for spaces).
    AppJs,
}

fn docs_escape(text: &str, key: bool) -> String {
    let mut out = text.replace('%', "%25").replace('&', "%26");
    if key {
        out = out.replace('=', "%3D");
    }
    out
}

fn form_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'*' | b'-' | b'.' | b'_') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The canonical message of decoded query pairs (`hmac` and `signature` left out).
pub fn canonical_message(pairs: &[(String, String)], rule: Canonical) -> String {
    let signed = pairs
        .iter()
        .filter(|(k, _)| k != "hmac" && k != "signature");
    let mut entries: Vec<(String, String)> = match rule {
        Canonical::AppJs => signed
            .map(|(k, v)| (form_escape(k), form_escape(v)))
            .collect(),
        Canonical::Docs => {
            // Array params are grouped under the key without `[]`, values in original order.
            let mut grouped: Vec<(String, Option<Vec<String>>, String)> = Vec::new();
            for (k, v) in signed {
                if let Some(base) = k.strip_suffix("[]") {
                    match grouped
                        .iter_mut()
                        .find(|(gk, list, _)| gk == base && list.is_some())
                    {
                        Some((_, Some(list), _)) => list.push(v.clone()),
                        _ => grouped.push((base.to_string(), Some(vec![v.clone()]), String::new())),
                    }
                } else {
                    grouped.push((k.clone(), None, v.clone()));
                }
            }
            grouped
                .into_iter()
                .map(|(k, list, v)| {
                    let value = match list {
                        Some(items) => format!(
                            "[{}]",
                            items
                                .iter()
                                .map(|i| format!("\"{i}\""))
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                        None => v,
                    };
                    (docs_escape(&k, true), docs_escape(&value, false))
                })
                .collect()
        }
    };
    entries.sort();
    entries
        .into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// Why a callback is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallbackError<E> {
    /// No `hmac` parameter.
    MissingHmac,
    /// `hmac` is not hex or matches no canonical form.
    InvalidHmac,
    /// No usable `timestamp`.
    MissingTimestamp,
    /// `timestamp` is more than the tolerance away from now.
    TimestampOutsideTolerance,
    /// `shop` is missing, not a shop domain, or not the installation's shop.
    BadShop(String),
    /// No `code`.
    MissingCode,
    /// The HMAC checker failed.
    Check(E),
}

fn param<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// Check the `hmac` of decoded query pairs. `check(message, candidates)` says whether the
/// HMAC-SHA256 of `message` under the app secret is one of `candidates` (host-side in the
/// component).
pub fn check_hmac<E>(
    pairs: &[(String, String)],
    mut check: impl FnMut(&[u8], &[Vec<u8>]) -> Result<bool, E>,
) -> Result<(), CallbackError<E>> {
    let hmac = param(pairs, "hmac").ok_or(CallbackError::MissingHmac)?;
    let candidate = decode_hex(hmac)
        .filter(|d| d.len() == 32)
        .ok_or(CallbackError::InvalidHmac)?;
    let candidates = [candidate];
    let docs = canonical_message(pairs, Canonical::Docs);
    let js = canonical_message(pairs, Canonical::AppJs);
    let mut messages = vec![docs];
    if js != messages[0] {
        messages.push(js);
    }
    for message in &messages {
        if check(message.as_bytes(), &candidates).map_err(CallbackError::Check)? {
            return Ok(());
        }
    }
    Err(CallbackError::InvalidHmac)
}

/// Check the callback's `timestamp` against `now` (Unix seconds).
pub fn check_timestamp<E>(pairs: &[(String, String)], now: i64) -> Result<(), CallbackError<E>> {
    let ts: i64 = param(pairs, "timestamp")
        .and_then(|t| t.parse().ok())
        .ok_or(CallbackError::MissingTimestamp)?;
    // `abs_diff`: a timestamp at either end of i64 must be refused, not overflow.
    if now.abs_diff(ts) > TIMESTAMP_TOLERANCE_SECS.unsigned_abs() {
        return Err(CallbackError::TimestampOutsideTolerance);
    }
    Ok(())
}

/// A verified callback: the code to exchange.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Callback {
    /// The authorization code.
    pub code: String,
    /// The shop (the installation's).
    pub shop: String,
}

/// Verify a whole callback query: HMAC, timestamp, shop (must equal the installation's) and
/// code.
pub fn verify_callback<E>(
    settings: &Settings,
    query: &str,
    now: i64,
    check: impl FnMut(&[u8], &[Vec<u8>]) -> Result<bool, E>,
) -> Result<Callback, CallbackError<E>> {
    let pairs = parse_query(query);
    check_hmac(&pairs, check)?;
    check_timestamp(&pairs, now)?;
    let raw_shop =
        param(&pairs, "shop").ok_or_else(|| CallbackError::BadShop("missing shop".into()))?;
    let shop = shop::sanitize(raw_shop)
        .filter(|s| s == raw_shop)
        .ok_or_else(|| CallbackError::BadShop(format!("{raw_shop:?} is not a shop domain")))?;
    if shop != settings.shop {
        return Err(CallbackError::BadShop(format!(
            "callback is for {shop}, this installation is for {}",
            settings.shop
        )));
    }
    let code = param(&pairs, "code")
        .filter(|c| !c.is_empty())
        .ok_or(CallbackError::MissingCode)?;
    Ok(Callback {
        code: code.to_string(),
        shop,
    })
}

/// The token endpoint, `{api_base}/admin/oauth/access_token`.
pub fn token_url(settings: &Settings) -> String {
    format!("{}/admin/oauth/access_token", settings.api_base)
}

/// The client id as a form value: the setting when configured, else the named secret.
pub fn client_id_value(settings: &Settings, client_id_secret: &str) -> FormValue {
    match &settings.client_id {
        Some(id) => FormValue::Text(id.clone()),
        None => FormValue::Secret(client_id_secret.to_string()),
    }
}

/// The authorization-code exchange form; the client secret is a secret reference.
/// `expiring` is `1` for an expiring offline token with a refresh token, `0` otherwise
/// (online tokens expire with the user's session and have no refresh token).
pub fn code_form(
    settings: &Settings,
    client_id: FormValue,
    client_secret: &str,
    code: &str,
) -> Vec<(String, FormValue)> {
    let expiring = !settings.online && settings.expiring_offline_tokens;
    vec![
        ("client_id".into(), client_id),
        (
            "client_secret".into(),
            FormValue::Secret(client_secret.into()),
        ),
        ("code".into(), FormValue::Text(code.into())),
        (
            "expiring".into(),
            FormValue::Text(if expiring { "1" } else { "0" }.into()),
        ),
    ]
}

/// The refresh-token grant form (expiring offline tokens; the refresh token rotates).
pub fn refresh_form(
    client_id: FormValue,
    client_secret: &str,
    refresh_token: &str,
) -> Vec<(String, FormValue)> {
    vec![
        ("client_id".into(), client_id),
        (
            "client_secret".into(),
            FormValue::Secret(client_secret.into()),
        ),
        ("grant_type".into(), FormValue::Text("refresh_token".into())),
        (
            "refresh_token".into(),
            FormValue::Secret(refresh_token.into()),
        ),
    ]
}

/// What a token response (tokens already captured and redacted by the host) describes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// Granted scopes (`scope`, comma separated).
    pub scopes: Vec<String>,
    /// `expires_in`, for expiring tokens.
    pub expires_in: Option<u64>,
}

/// Parse a token response body.
pub fn parse_grant(body: &[u8]) -> Result<Grant, String> {
    let v: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("token response is not JSON: {e}"))?;
    let scopes = v
        .get("scope")
        .and_then(|s| s.as_str())
        .map(|s| {
            s.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    Ok(Grant {
        scopes,
        expires_in: v.get("expires_in").and_then(|e| e.as_u64()),
    })
}

/// Scopes in `required` that `granted` does not cover (`write_X` implies `read_X`, also for
/// `unauthenticated_` scopes).
pub fn missing_scopes(required: &[String], granted: &[String]) -> Vec<String> {
    let granted: Vec<String> = granted.iter().map(|s| s.trim().to_string()).collect();
    let covers = |want: &str| {
        granted.iter().any(|g| {
            g == want
                || want
                    .strip_prefix("read_")
                    .map(|rest| g == &format!("write_{rest}"))
                    .or_else(|| {
                        want.strip_prefix("unauthenticated_read_")
                            .map(|rest| g == &format!("unauthenticated_write_{rest}"))
                    })
                    .unwrap_or(false)
        })
    };
    required.iter().filter(|r| !covers(r)).cloned().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found while writing the `shopify_oauth_query` fuzz target: `now - ts` overflowed
    /// (a panic with debug assertions, a wrong answer without) for a timestamp at the end
    /// of i64.
    #[test]
    fn timestamps_at_the_ends_of_i64_are_refused_not_overflowed() {
        for ts in [i64::MIN, i64::MAX] {
            let pairs = vec![("timestamp".to_string(), ts.to_string())];
            for now in [0, 1_700_000_000, i64::MIN, i64::MAX] {
                let result = check_timestamp::<()>(&pairs, now);
                if now == ts {
                    assert!(result.is_ok());
                } else {
                    assert_eq!(result, Err(CallbackError::TimestampOutsideTolerance));
                }
            }
        }
    }
    use crate::settings;

    #[test]
    fn decodes_queries() {
        assert_eq!(
            parse_query("a=1%26b&c=x+y%20z&d&e=%zz"),
            vec![
                ("a".into(), "1&b".into()),
                ("c".into(), "x y z".into()),
                ("d".into(), "".into()),
                ("e".into(), "%zz".into())
            ]
        );
        assert_eq!(decode_query_component("%4"), "%4");
    }

    #[test]
    fn authorize_urls() {
        let s = settings::parse(r#"{"shop":"s.myshopify.com","client_id":"key","scopes":["read_orders","write_customers"]}"#).unwrap();
        assert_eq!(
            authorize_url(&s, "https://h/cb?x=1", "n 1").unwrap(),
            "https://s.myshopify.com/admin/oauth/authorize?client_id=key&scope=read_orders%2Cwrite_customers&redirect_uri=https%3A%2F%2Fh%2Fcb%3Fx%3D1&state=n%201"
        );
        let s = settings::parse(
            r#"{"shop":"s.myshopify.com","client_id":"key","access_mode":"online"}"#,
        )
        .unwrap();
        assert!(
            authorize_url(&s, "https://h/cb", "n")
                .unwrap()
                .ends_with("&state=n&grant_options%5B%5D=per-user")
        );
        let s = settings::parse(r#"{"shop":"s.myshopify.com"}"#).unwrap();
        assert!(authorize_url(&s, "https://h/cb", "n").is_err());
    }

    #[test]
    fn scopes() {
        let g = |s: &str| s.split(',').map(str::to_owned).collect::<Vec<_>>();
        assert!(missing_scopes(&g("read_products"), &g("write_products,read_orders")).is_empty());
        assert_eq!(
            missing_scopes(&g("write_products"), &g("read_products")),
            ["write_products"]
        );
        assert!(
            missing_scopes(&g("unauthenticated_read_x"), &g("unauthenticated_write_x")).is_empty()
        );
    }

    #[test]
    fn grants() {
        let g = parse_grant(br#"{"access_token" : "[redacted]", "scope": "read_products,write_orders", "expires_in": 1000}"#).unwrap();
        assert_eq!(g.scopes, ["read_products", "write_orders"]);
        assert_eq!(g.expires_in, Some(1000));
        assert!(parse_grant(b"nope").is_err());
    }
}
