//! Installation settings: the JSON Schema the host validates against, and a parser with
//! defaults (defensive: it re-checks what the schema says).

use serde_json::Value;

use crate::signature::DEFAULT_TOLERANCE_SECS;

/// The Stripe API's default base URL.
pub const DEFAULT_API_BASE: &str = "https://api.stripe.com";

/// JSON Schema (draft 2020-12) for an installation's settings.
pub const SCHEMA: &str = r#"{"$schema":"https://json-schema.org/draft/2020-12/schema","type":"object","additionalProperties":false,"properties":{"poll_interval":{"type":"integer","minimum":1,"maximum":86400,"description":"Seconds between polls; the host polls the installation on this schedule only when it is set (and at least every [scheduler] min_poll_interval_secs)."},"tolerance_seconds":{"type":"integer","minimum":1,"maximum":86400,"default":300,"description":"Allowed difference in seconds between a webhook's signed timestamp and the host clock (both directions)."},"api_base":{"type":"string","format":"uri","pattern":"^https?://","description":"Replaces https://api.stripe.com (fakes, proxies); must still be granted by the operator."},"account":{"type":"string","pattern":"^acct_[A-Za-z0-9]+$","x-sluice-account-key":true,"description":"Connected account to poll on behalf of (sent as Stripe-Account); also routes app-level webhooks carrying this account."},"connect_client_id":{"type":"string","pattern":"^ca_[A-Za-z0-9]+$","description":"The platform's Connect client id (ca_…), for connecting an account with OAuth."},"connect_scope":{"enum":["read_write","read_only"],"default":"read_write","description":"The Connect OAuth scope to ask for."},"connect_express":{"type":"boolean","default":false,"description":"Use the Express onboarding URL (/express/oauth/authorize)."},"connect_base":{"type":"string","format":"uri","pattern":"^https?://","description":"Replaces https://connect.stripe.com (fakes); must still be granted by the operator."}}}"#;

/// Stripe Connect's OAuth host.
pub const DEFAULT_CONNECT_BASE: &str = "https://connect.stripe.com";

/// Parsed settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Allowed `|now - t|` for webhook signatures, seconds.
    pub tolerance_seconds: u64,
    /// The API base URL without a trailing slash.
    pub api_base: String,
    /// The Connect account to act for, if any.
    pub account: Option<String>,
    /// The platform's Connect client id, for OAuth.
    pub connect_client_id: Option<String>,
    /// Whether Connect OAuth asks for `read_only` rather than `read_write`.
    pub connect_read_only: bool,
    /// Whether to use the Express authorize URL.
    pub connect_express: bool,
    /// Connect's OAuth base URL without a trailing slash.
    pub connect_base: String,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            tolerance_seconds: DEFAULT_TOLERANCE_SECS,
            api_base: DEFAULT_API_BASE.to_string(),
            account: None,
            connect_client_id: None,
            connect_read_only: false,
            connect_express: false,
            connect_base: DEFAULT_CONNECT_BASE.to_string(),
        }
    }
}

/// Parse the settings JSON text (empty text means `{}`). Errors are human-readable.
pub fn parse(text: &str) -> Result<Settings, String> {
    let mut settings = Settings::default();
    if text.trim().is_empty() {
        return Ok(settings);
    }
    let value: Value =
        serde_json::from_str(text).map_err(|e| format!("settings are not JSON: {e}"))?;
    let Value::Object(map) = value else {
        return Err("settings must be a JSON object".into());
    };
    for (key, v) in &map {
        match key.as_str() {
            "tolerance_seconds" => {
                settings.tolerance_seconds = v
                    .as_u64()
                    .filter(|t| (1..=86_400).contains(t))
                    .ok_or("tolerance_seconds must be an integer between 1 and 86400")?;
            }
            "api_base" => {
                let base = v
                    .as_str()
                    .filter(|b| b.starts_with("https://") || b.starts_with("http://"))
                    .ok_or("api_base must be an http(s) URL")?;
                settings.api_base = base.trim_end_matches('/').to_string();
            }
            "account" => {
                let acct = v
                    .as_str()
                    .filter(|a| {
                        a.strip_prefix("acct_").is_some_and(|r| {
                            !r.is_empty() && r.bytes().all(|b| b.is_ascii_alphanumeric())
                        })
                    })
                    .ok_or("account must look like acct_…")?;
                settings.account = Some(acct.to_string());
            }
            // Read by the host's scheduler; nothing here depends on it.
            "poll_interval" => {
                v.as_u64()
                    .filter(|t| (1..=86_400).contains(t))
                    .ok_or("poll_interval must be an integer between 1 and 86400")?;
            }
            "connect_client_id" => {
                let id = v
                    .as_str()
                    .filter(|a| a.starts_with("ca_") && a.len() > 3)
                    .ok_or("connect_client_id must look like ca_…")?;
                settings.connect_client_id = Some(id.to_string());
            }
            "connect_scope" => {
                settings.connect_read_only = match v.as_str() {
                    Some("read_only") => true,
                    Some("read_write") => false,
                    _ => return Err("connect_scope must be read_write or read_only".into()),
                }
            }
            "connect_express" => {
                settings.connect_express =
                    v.as_bool().ok_or("connect_express must be a boolean")?;
            }
            "connect_base" => {
                let base = v
                    .as_str()
                    .filter(|b| b.starts_with("https://") || b.starts_with("http://"))
                    .ok_or("connect_base must be an http(s) URL")?;
                settings.connect_base = base.trim_end_matches('/').to_string();
            }
            other => return Err(format!("unknown setting {other:?}")),
        }
    }
    Ok(settings)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_is_json() {
        let v: Value = serde_json::from_str(SCHEMA).unwrap();
        assert_eq!(v["properties"]["tolerance_seconds"]["default"], 300);
        assert_eq!(v["additionalProperties"], false);
    }

    #[test]
    fn defaults_and_values() {
        assert_eq!(parse("").unwrap(), Settings::default());
        assert_eq!(parse("{}").unwrap(), Settings::default());
        let s = parse(r#"{"tolerance_seconds":60,"api_base":"http://127.0.0.1:9000/","account":"acct_123abc"}"#).unwrap();
        assert_eq!(s.tolerance_seconds, 60);
        assert_eq!(s.api_base, "http://127.0.0.1:9000");
        assert_eq!(s.account.as_deref(), Some("acct_123abc"));
    }

    #[test]
    fn rejects_invalid() {
        for bad in [
            "[]",
            "nope",
            r#"{"tolerance_seconds":0}"#,
            r#"{"tolerance_seconds":86401}"#,
            r#"{"tolerance_seconds":"300"}"#,
            r#"{"api_base":"ftp://x"}"#,
            r#"{"account":"acct_"}"#,
            r#"{"account":"cus_1"}"#,
            r#"{"extra":1}"#,
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
