//! Installation settings. Everything is optional: webhooks need none; the OAuth flow
//! (for Acme's API) needs `client_id`.

use sluice_sdk::json::{Value, serde_json};

/// Acme's authorization server when the settings name none.
pub const DEFAULT_OAUTH_BASE: &str = "https://auth.acme.example";

/// Scopes asked for when the settings name none.
pub const DEFAULT_SCOPES: [&str; 1] = ["events:read"];

/// JSON Schema (draft 2020-12) of the settings, which the host validates before any call.
pub const SCHEMA: &str = r#"{"$schema":"https://json-schema.org/draft/2020-12/schema","type":"object","additionalProperties":false,"properties":{"oauth_base":{"type":"string","format":"uri","pattern":"^https?://","default":"https://auth.acme.example","description":"Acme's OAuth 2.0 authorization server: /authorize and /token under it."},"client_id":{"type":"string","minLength":1,"description":"The OAuth client id of the app (public)."},"scopes":{"type":"array","items":{"type":"string","minLength":1},"uniqueItems":true,"default":["events:read"],"description":"OAuth scopes to ask for."}}}"#;

/// Parsed settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The authorization server, without a trailing slash.
    pub oauth_base: String,
    /// The app's client id, when configured.
    pub client_id: Option<String>,
    /// Scopes to ask for.
    pub scopes: Vec<String>,
}

/// Parse the settings JSON text (already validated by the host; checked again anyway).
pub fn parse(text: &str) -> Result<Settings, String> {
    let v: Value = serde_json::from_str(text).map_err(|e| format!("settings are not JSON: {e}"))?;
    let base = v
        .get("oauth_base")
        .and_then(Value::as_str)
        .unwrap_or(DEFAULT_OAUTH_BASE);
    if !(base.starts_with("https://") || base.starts_with("http://")) {
        return Err("oauth_base must be an http(s) URL".into());
    }
    let scopes = match v.get("scopes") {
        None => DEFAULT_SCOPES.iter().map(|s| s.to_string()).collect(),
        Some(list) => list
            .as_array()
            .and_then(|a| a.iter().map(|s| s.as_str().map(str::to_owned)).collect())
            .ok_or("scopes must be a list of strings")?,
    };
    Ok(Settings {
        oauth_base: base.trim_end_matches('/').to_string(),
        client_id: v
            .get("client_id")
            .and_then(Value::as_str)
            .map(str::to_owned),
        scopes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_values() {
        let s = parse("{}").unwrap();
        assert_eq!(s.oauth_base, DEFAULT_OAUTH_BASE);
        assert_eq!(s.scopes, ["events:read"]);
        assert_eq!(s.client_id, None);
        let s = parse(r#"{"oauth_base":"http://127.0.0.1:9/","client_id":"c","scopes":["a","b"]}"#)
            .unwrap();
        assert_eq!(s.oauth_base, "http://127.0.0.1:9");
        assert_eq!((s.client_id.as_deref(), s.scopes.len()), (Some("c"), 2));
        assert!(parse(r#"{"oauth_base":"ftp://x"}"#).is_err());
    }

    #[test]
    fn schema_defaults_match_the_constants() {
        let v: Value = serde_json::from_str(SCHEMA).unwrap();
        assert_eq!(v["properties"]["oauth_base"]["default"], DEFAULT_OAUTH_BASE);
        assert_eq!(v["properties"]["scopes"]["default"][0], DEFAULT_SCOPES[0]);
    }
}
