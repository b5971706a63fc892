//! Installation settings: the JSON Schema the host validates against, and a parser with
//! defaults (defensive: it re-checks what the schema says, the shop domain included).

use serde_json::Value;

use crate::shop;

/// The Admin API version used when the settings name none.
pub const DEFAULT_API_VERSION: &str = "2025-10";

/// Seconds between polls when the settings name none.
pub const DEFAULT_POLL_INTERVAL: u64 = 60;

/// Every webhook topic [`crate::normalize`] maps to a canonical record; the default of
/// `webhook_topics`.
pub const NORMALIZED_TOPICS: [&str; 9] = [
    "orders/create",
    "orders/updated",
    "orders/paid",
    "orders/cancelled",
    "orders/fulfilled",
    "orders/partially_fulfilled",
    "refunds/create",
    "customers/create",
    "customers/update",
];

/// OAuth scopes asked for when the settings name none: enough to poll orders.
pub const DEFAULT_SCOPES: [&str; 2] = ["read_orders", "read_customers"];

/// JSON Schema (draft 2020-12) for an installation's settings. `shop` is the installation's
/// routing account key (`x-sluice-account-key`).
pub const SCHEMA: &str = r#"{"$schema":"https://json-schema.org/draft/2020-12/schema","type":"object","additionalProperties":false,"required":["shop"],"properties":{"shop":{"type":"string","pattern":"^[a-z0-9][a-z0-9_-]*\\.myshopify\\.(com|io)$","x-sluice-account-key":true,"description":"The shop's permanent domain, e.g. my-shop.myshopify.com (lower case). Webhooks sent to the app-level URL are routed by it."},"api_version":{"type":"string","pattern":"^\\d{4}-\\d{2}$","default":"2025-10","description":"Admin API version used for polling, e.g. 2025-10."},"webhook_topics":{"type":"array","items":{"type":"string","pattern":"^[a-z_]+/[a-z_]+$"},"uniqueItems":true,"default":["orders/create","orders/updated","orders/paid","orders/cancelled","orders/fulfilled","orders/partially_fulfilled","refunds/create","customers/create","customers/update"],"description":"Webhook topics to store; deliveries of other topics are acknowledged and dropped."},"poll_interval":{"type":"integer","minimum":1,"maximum":86400,"default":60,"description":"Seconds between polls of orders.json."},"api_base":{"type":"string","format":"uri","pattern":"^https?://","description":"Replaces https://{shop} (fakes, proxies); must still be granted by the operator."},"client_id":{"type":"string","minLength":1,"description":"The app's client id (API key), public; needed for authorize-url."},"scopes":{"type":"array","items":{"type":"string","pattern":"^[a-z_]+$"},"uniqueItems":true,"default":["read_orders","read_customers"],"description":"OAuth scopes to request."},"access_mode":{"enum":["offline","online"],"default":"offline","description":"offline: a token for the app (polling, webhooks setup); online: a token for the user who installs (grant_options[]=per-user), expiring with their session."},"expiring_offline_tokens":{"type":"boolean","default":true,"description":"Ask for an expiring offline token with a rotating refresh token (expiring=1), as Shopify requires of public apps; false asks for a non-expiring one (expiring=0)."}}}"#;

/// Parsed settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The shop's domain, normalised (`my-shop.myshopify.com`).
    pub shop: String,
    /// Admin API version, `YYYY-MM`.
    pub api_version: String,
    /// Topics to store.
    pub webhook_topics: Vec<String>,
    /// Seconds between polls.
    pub poll_interval: u64,
    /// Base URL without a trailing slash (`https://{shop}` unless overridden).
    pub api_base: String,
    /// The app's client id, when configured.
    pub client_id: Option<String>,
    /// OAuth scopes to request.
    pub scopes: Vec<String>,
    /// Whether the token is for the installing user (online) rather than the app.
    pub online: bool,
    /// Whether an offline token should expire and come with a rotating refresh token.
    pub expiring_offline_tokens: bool,
}

impl Settings {
    /// Whether deliveries of `topic` are stored.
    pub fn wants_topic(&self, topic: &str) -> bool {
        self.webhook_topics
            .iter()
            .any(|t| t.eq_ignore_ascii_case(topic))
    }
}

fn strings(v: &Value, what: &str) -> Result<Vec<String>, String> {
    v.as_array()
        .and_then(|a| {
            a.iter()
                .map(|s| s.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()
        })
        .ok_or_else(|| format!("{what} must be a list of strings"))
}

fn is_api_version(v: &str) -> bool {
    let b = v.as_bytes();
    b.len() == 7
        && b[4] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || c.is_ascii_digit())
}

/// Parse the settings JSON text. Errors are human-readable.
pub fn parse(text: &str) -> Result<Settings, String> {
    let value: Value =
        serde_json::from_str(text).map_err(|e| format!("settings are not JSON: {e}"))?;
    let Value::Object(map) = value else {
        return Err("settings must be a JSON object".into());
    };
    let mut shop_domain = None;
    let mut settings = Settings {
        shop: String::new(),
        api_version: DEFAULT_API_VERSION.into(),
        webhook_topics: NORMALIZED_TOPICS.iter().map(|t| t.to_string()).collect(),
        poll_interval: DEFAULT_POLL_INTERVAL,
        api_base: String::new(),
        client_id: None,
        scopes: DEFAULT_SCOPES.iter().map(|t| t.to_string()).collect(),
        online: false,
        expiring_offline_tokens: true,
    };
    let mut api_base = None;
    for (key, v) in &map {
        match key.as_str() {
            "shop" => {
                let text = v.as_str().ok_or("shop must be a string")?;
                if !shop::is_canonical(text) {
                    return Err(format!(
                        "shop {text:?} is not a shop domain like my-shop.myshopify.com"
                    ));
                }
                shop_domain = Some(text.to_string());
            }
            "api_version" => {
                let text = v
                    .as_str()
                    .filter(|t| is_api_version(t))
                    .ok_or("api_version must look like 2025-10")?;
                settings.api_version = text.to_string();
            }
            "webhook_topics" => settings.webhook_topics = strings(v, "webhook_topics")?,
            "poll_interval" => {
                settings.poll_interval = v
                    .as_u64()
                    .filter(|t| (1..=86_400).contains(t))
                    .ok_or("poll_interval must be an integer between 1 and 86400")?;
            }
            "api_base" => {
                let base = v
                    .as_str()
                    .filter(|b| b.starts_with("https://") || b.starts_with("http://"))
                    .ok_or("api_base must be an http(s) URL")?;
                api_base = Some(base.trim_end_matches('/').to_string());
            }
            "client_id" => {
                let id = v
                    .as_str()
                    .filter(|s| !s.is_empty())
                    .ok_or("client_id must be a non-empty string")?;
                settings.client_id = Some(id.to_string());
            }
            "scopes" => settings.scopes = strings(v, "scopes")?,
            "access_mode" => {
                settings.online = match v.as_str() {
                    Some("online") => true,
                    Some("offline") => false,
                    _ => return Err("access_mode must be \"offline\" or \"online\"".into()),
                }
            }
            "expiring_offline_tokens" => {
                settings.expiring_offline_tokens = v
                    .as_bool()
                    .ok_or("expiring_offline_tokens must be true or false")?;
            }
            other => return Err(format!("unknown setting {other:?}")),
        }
    }
    settings.shop = shop_domain.ok_or("shop is required")?;
    settings.api_base = api_base.unwrap_or_else(|| format!("https://{}", settings.shop));
    Ok(settings)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_is_json_and_matches_the_constants() {
        let v: Value = serde_json::from_str(SCHEMA).unwrap();
        assert_eq!(v["additionalProperties"], false);
        assert_eq!(v["properties"]["shop"]["x-sluice-account-key"], true);
        assert_eq!(
            v["properties"]["api_version"]["default"],
            DEFAULT_API_VERSION
        );
        assert_eq!(
            v["properties"]["poll_interval"]["default"],
            DEFAULT_POLL_INTERVAL
        );
        let topics: Vec<_> = v["properties"]["webhook_topics"]["default"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap())
            .collect();
        assert_eq!(topics, NORMALIZED_TOPICS);
        let scopes: Vec<_> = v["properties"]["scopes"]["default"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap())
            .collect();
        assert_eq!(scopes, DEFAULT_SCOPES);
    }

    #[test]
    fn defaults_and_values() {
        let s = parse(r#"{"shop":"my-shop.myshopify.com"}"#).unwrap();
        assert_eq!(s.api_base, "https://my-shop.myshopify.com");
        assert_eq!(s.api_version, "2025-10");
        assert!(s.wants_topic("orders/create") && !s.wants_topic("products/create"));
        assert_eq!(s.poll_interval, 60);
        let s = parse(r#"{"shop":"a.myshopify.io","api_version":"2024-01","webhook_topics":["orders/create"],"poll_interval":5,"api_base":"http://127.0.0.1:9/","client_id":"abc","scopes":["write_orders"]}"#).unwrap();
        assert_eq!(s.api_base, "http://127.0.0.1:9");
        assert_eq!(s.webhook_topics, ["orders/create"]);
        assert_eq!(s.client_id.as_deref(), Some("abc"));
        assert_eq!(s.scopes, ["write_orders"]);
    }

    #[test]
    fn rejects_invalid() {
        for bad in [
            "{}",
            "[]",
            "nope",
            r#"{"shop":"evil.com"}"#,
            r#"{"shop":"Shop.myshopify.com"}"#,
            r#"{"shop":"https://shop.myshopify.com"}"#,
            r#"{"shop":"shop.myshopify.com","api_version":"2025-1"}"#,
            r#"{"shop":"shop.myshopify.com","poll_interval":0}"#,
            r#"{"shop":"shop.myshopify.com","webhook_topics":"orders/create"}"#,
            r#"{"shop":"shop.myshopify.com","api_base":"ftp://x"}"#,
            r#"{"shop":"shop.myshopify.com","extra":1}"#,
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
