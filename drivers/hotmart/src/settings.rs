//! Installation settings: the JSON Schema the host validates against, and a parser with
//! defaults (defensive: it re-checks what the schema says).

use serde_json::Value;

/// The Hotmart API's default base URL (sales history).
pub const DEFAULT_API_BASE: &str = "https://developers.hotmart.com";

/// Hotmart's token endpoint host.
pub const DEFAULT_AUTH_BASE: &str = "https://api-sec-vlc.hotmart.com";

/// Every `transaction_status` the sales-history endpoint documents. Without an explicit
/// filter the endpoint returns only APPROVED and COMPLETE sales, so the default asks for all
/// of them: refunds, chargebacks and cancellations must not be missed.
pub const ALL_TRANSACTION_STATUSES: [&str; 17] = [
    "APPROVED",
    "BLOCKED",
    "CANCELLED",
    "CHARGEBACK",
    "COMPLETE",
    "EXPIRED",
    "NO_FUNDS",
    "OVERDUE",
    "PARTIALLY_REFUNDED",
    "PRE_ORDER",
    "PRINTED_BILLET",
    "PROCESSING_TRANSACTION",
    "PROTESTED",
    "REFUNDED",
    "STARTED",
    "UNDER_ANALISYS",
    "WAITING_PAYMENT",
];

/// Default trailing window swept by each polling pass, in days.
pub const DEFAULT_POLL_WINDOW_DAYS: u32 = 30;

/// Default page size.
pub const DEFAULT_MAX_RESULTS: u32 = 100;

/// JSON Schema (draft 2020-12) for an installation's settings.
pub const SCHEMA: &str = r#"{"$schema":"https://json-schema.org/draft/2020-12/schema","type":"object","additionalProperties":false,"properties":{"poll_interval":{"type":"integer","minimum":1,"maximum":86400,"description":"Seconds between polls; the host polls the installation on this schedule only when it is set (and at least every [scheduler] min_poll_interval_secs)."},"api_base":{"type":"string","format":"uri","pattern":"^https?://","description":"Replaces https://developers.hotmart.com (fakes, sandbox https://sandbox.hotmart.com); must still be granted by the operator."},"auth_base":{"type":"string","format":"uri","pattern":"^https?://","description":"Replaces https://api-sec-vlc.hotmart.com, the token endpoint's host; must still be granted by the operator."},"poll_window_days":{"type":"integer","minimum":1,"maximum":365,"default":30,"description":"Each polling pass sweeps sales whose purchase date lies in the last N days (Hotmart filters on the purchase date only, so status changes of older sales are found by re-sweeping; Hotmart rejects windows over a year)."},"max_results":{"type":"integer","minimum":1,"maximum":500,"default":100,"description":"Page size for sales history."},"transaction_status":{"type":"array","minItems":1,"uniqueItems":true,"items":{"enum":["APPROVED","BLOCKED","CANCELLED","CHARGEBACK","COMPLETE","EXPIRED","NO_FUNDS","OVERDUE","PARTIALLY_REFUNDED","PRE_ORDER","PRINTED_BILLET","PROCESSING_TRANSACTION","PROTESTED","REFUNDED","STARTED","UNDER_ANALISYS","WAITING_PAYMENT"]},"default":["APPROVED","BLOCKED","CANCELLED","CHARGEBACK","COMPLETE","EXPIRED","NO_FUNDS","OVERDUE","PARTIALLY_REFUNDED","PRE_ORDER","PRINTED_BILLET","PROCESSING_TRANSACTION","PROTESTED","REFUNDED","STARTED","UNDER_ANALISYS","WAITING_PAYMENT"],"description":"Statuses polled explicitly (Hotmart returns only APPROVED and COMPLETE without this filter)."}}}"#;

/// Parsed settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The API base URL without a trailing slash.
    pub api_base: String,
    /// The token endpoint's base URL without a trailing slash.
    pub auth_base: String,
    /// Days swept by each polling pass.
    pub poll_window_days: u32,
    /// Page size.
    pub max_results: u32,
    /// Statuses polled.
    pub transaction_status: Vec<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            api_base: DEFAULT_API_BASE.to_string(),
            auth_base: DEFAULT_AUTH_BASE.to_string(),
            poll_window_days: DEFAULT_POLL_WINDOW_DAYS,
            max_results: DEFAULT_MAX_RESULTS,
            transaction_status: ALL_TRANSACTION_STATUSES
                .iter()
                .map(|s| s.to_string())
                .collect(),
        }
    }
}

fn base_url(v: &Value, name: &str) -> Result<String, String> {
    v.as_str()
        .filter(|b| b.starts_with("https://") || b.starts_with("http://"))
        .map(|b| b.trim_end_matches('/').to_string())
        .ok_or_else(|| format!("{name} must be an http(s) URL"))
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
            "api_base" => settings.api_base = base_url(v, "api_base")?,
            "auth_base" => settings.auth_base = base_url(v, "auth_base")?,
            // Read by the host's scheduler; nothing here depends on it.
            "poll_interval" => {
                v.as_u64()
                    .filter(|t| (1..=86_400).contains(t))
                    .ok_or("poll_interval must be an integer between 1 and 86400")?;
            }
            "poll_window_days" => {
                settings.poll_window_days = v
                    .as_u64()
                    .filter(|d| (1..=365).contains(d))
                    .ok_or("poll_window_days must be an integer between 1 and 365")?
                    as u32;
            }
            "max_results" => {
                settings.max_results = v
                    .as_u64()
                    .filter(|d| (1..=500).contains(d))
                    .ok_or("max_results must be an integer between 1 and 500")?
                    as u32;
            }
            "transaction_status" => {
                let list = v.as_array().ok_or("transaction_status must be a list")?;
                let mut statuses = Vec::with_capacity(list.len());
                for s in list {
                    let s = s
                        .as_str()
                        .filter(|s| ALL_TRANSACTION_STATUSES.contains(s))
                        .ok_or_else(|| format!("unknown transaction_status {s}"))?;
                    if !statuses.iter().any(|x| x == s) {
                        statuses.push(s.to_string());
                    }
                }
                if statuses.is_empty() {
                    return Err("transaction_status must not be empty".into());
                }
                settings.transaction_status = statuses;
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
    fn schema_is_json_and_matches_the_defaults() {
        let v: Value = serde_json::from_str(SCHEMA).unwrap();
        assert_eq!(v["additionalProperties"], false);
        let default: Vec<&str> = v["properties"]["transaction_status"]["default"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap())
            .collect();
        assert_eq!(default, ALL_TRANSACTION_STATUSES);
        assert_eq!(
            v["properties"]["transaction_status"]["items"]["enum"],
            v["properties"]["transaction_status"]["default"]
        );
        assert_eq!(v["properties"]["poll_window_days"]["default"], 30);
        assert_eq!(v["properties"]["max_results"]["default"], 100);
    }

    #[test]
    fn defaults_and_values() {
        assert_eq!(parse("").unwrap(), Settings::default());
        assert_eq!(parse("{}").unwrap(), Settings::default());
        let s = parse(
            r#"{"api_base":"http://127.0.0.1:9000/","auth_base":"http://127.0.0.1:9001","poll_window_days":7,"max_results":500,"transaction_status":["REFUNDED","CHARGEBACK","REFUNDED"]}"#,
        )
        .unwrap();
        assert_eq!(s.api_base, "http://127.0.0.1:9000");
        assert_eq!(s.auth_base, "http://127.0.0.1:9001");
        assert_eq!(s.poll_window_days, 7);
        assert_eq!(s.max_results, 500);
        assert_eq!(s.transaction_status, ["REFUNDED", "CHARGEBACK"]);
    }

    #[test]
    fn rejects_invalid() {
        for bad in [
            "[]",
            "nope",
            r#"{"api_base":"ftp://x"}"#,
            r#"{"auth_base":5}"#,
            r#"{"poll_window_days":0}"#,
            r#"{"poll_window_days":366}"#,
            r#"{"max_results":501}"#,
            r#"{"transaction_status":[]}"#,
            r#"{"transaction_status":["CANCELED"]}"#,
            r#"{"transaction_status":"APPROVED"}"#,
            r#"{"extra":1}"#,
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
