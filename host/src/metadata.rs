//! A driver's metadata, validated: what it is, what it asks for (origins, secrets and
//! where each may be sent, settings) and how its provider signs webhooks. The runtime
//! loads a component and asks for it; everything downstream — the policy, the
//! capabilities, the admin API — reads it from here.

use serde::Serialize;

use crate::wit::{WIT_VERSION, metadata};

/// The JSON Schema annotation that marks the settings property holding an installation's
/// account key (Shopify `shop`, Stripe `account`), used to route app-level webhooks.
pub const ACCOUNT_KEY_ANNOTATION: &str = "x-sluice-account-key";

/// A secret a driver declares.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SecretSpec {
    pub name: String,
    pub description: String,
    pub required: bool,
    /// Origins the host may send it to (`{setting}` placeholders allowed); empty: never.
    pub sent_to: Vec<String>,
    /// The one header it may be sent in, if any.
    #[schema(required = true)]
    pub header: Option<String>,
}

/// A driver's validated metadata.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct DriverInfo {
    #[schema(value_type = String)]
    pub id: sluice_store::DriverId,
    pub version: String,
    pub display_name: String,
    #[schema(value_type = AuthKind)]
    pub auth_kind: &'static str,
    #[schema(value_type = Vec<IngestionMode>)]
    pub ingestion_modes: Vec<&'static str>,
    /// The JSON Schema installation settings are validated against.
    #[schema(value_type = Object)]
    pub settings_schema: serde_json::Value,
    /// The origins the driver asks for (its metadata).
    pub outbound_hosts: Vec<String>,
    /// What the operator's policy lets its calls reach, of those.
    pub granted_hosts: Vec<String>,
    /// Origins it asks for that the policy does not grant: requests to them are refused.
    pub disabled_hosts: Vec<String>,
    /// Where the grant came from: `operator`, `bundled_default` or `none`.
    pub grant: crate::policy::GrantSource,
    /// The limits its calls run under.
    pub limits: crate::limits::DriverLimits,
    pub secrets: Vec<SecretSpec>,
    pub wit_version: String,
    /// How the provider signs webhooks: header name → value template (see the WIT
    /// `signing-header`), for `sluice webhook send`.
    pub webhook_signing: Vec<SigningHeader>,
    /// sha256 of the component's bytes, hex.
    pub sha256: String,
    /// Size of the component.
    pub size_bytes: usize,
}

/// The words `DriverInfo::auth_kind` takes, for the OpenAPI document.
#[derive(utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)] // a schema only: the field is a `&'static str` set in `validate`
enum AuthKind {
    Oauth2,
    ClientCredentials,
    ApiKey,
    SharedSecret,
    None,
}

/// The words of `DriverInfo::ingestion_modes`, for the OpenAPI document.
#[derive(utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)] // a schema only
enum IngestionMode {
    Webhook,
    Polling,
}

/// One header of a provider's webhook signature (see the WIT `signing-header`).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SigningHeader {
    pub name: String,
    pub template: String,
}

/// Find the one settings property annotated as the account key.
pub fn account_key_setting(schema: &serde_json::Value) -> Result<Option<String>, String> {
    let Some(properties) = schema.get("properties").and_then(|p| p.as_object()) else {
        return Ok(None);
    };
    let marked: Vec<_> = properties
        .iter()
        .filter(|(_, p)| p.get(ACCOUNT_KEY_ANNOTATION) == Some(&serde_json::Value::Bool(true)))
        .map(|(name, _)| name.clone())
        .collect();
    match marked.as_slice() {
        [] => Ok(None),
        [one] => Ok(Some(one.clone())),
        many => Err(format!(
            "settings-schema marks {} properties with {ACCOUNT_KEY_ANNOTATION}; at most one may be",
            many.len()
        )),
    }
}

fn is_identifier(s: &str, max: usize, extra: &[char]) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some('a'..='z'))
        && s.len() <= max
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || extra.contains(&c))
}

fn is_semver(s: &str) -> bool {
    let core = s.split(['-', '+']).next().unwrap_or("");
    let parts: Vec<_> = core.split('.').collect();
    parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()))
}

/// Check the metadata a component returned and turn it into a [`DriverInfo`] (its
/// grants and limits are the runtime's to fill in, from the policy); `Err` is why it is
/// refused.
pub fn validate(raw: metadata::DriverInfo, sha256: String) -> Result<DriverInfo, String> {
    let bad = |m: String| Err(m);
    let Ok(id) = sluice_store::DriverId::parse(&raw.id) else {
        return bad(format!(
            "id {:?} must match [a-z][a-z0-9_-]{{0,31}}",
            raw.id
        ));
    };
    if !is_semver(&raw.version) {
        return bad(format!(
            "version {:?} is not a semantic version",
            raw.version
        ));
    }
    if raw.display_name.trim().is_empty() {
        return bad("display-name is empty".into());
    }
    // Same 0.MINOR, any patch: the rule the linker matched the imports by.
    if !crate::wit::is_compatible(&raw.wit_version) {
        return bad(format!(
            "wit-version {:?} is not compatible with this host ({WIT_VERSION}): it loads \
             drivers built against {}",
            raw.wit_version,
            crate::wit::compatible_range()
        ));
    }
    if raw.ingestion_modes.is_empty() {
        return bad("ingestion-modes is empty".into());
    }
    for header in &raw.webhook_signing {
        if axum::http::HeaderName::from_bytes(header.name.as_bytes()).is_err() {
            return bad(format!(
                "webhook-signing: {:?} is not a header name",
                header.name
            ));
        }
        crate::signing::Template::parse(&header.template)
            .map_err(|e| format!("webhook-signing {}: {e}", header.name))?;
    }
    let settings_schema: serde_json::Value = serde_json::from_str(&raw.settings_schema)
        .map_err(|e| format!("settings-schema is not JSON: {e}"))?;
    let mut names = std::collections::HashSet::new();
    for s in &raw.secrets {
        if !is_identifier(&s.name, 64, &['_']) {
            return bad(format!(
                "secret name {:?} must match [a-z][a-z0-9_]{{0,63}}",
                s.name
            ));
        }
        if !names.insert(&s.name) {
            return bad(format!("secret {:?} is declared twice", s.name));
        }
    }
    Ok(DriverInfo {
        id,
        version: raw.version,
        display_name: raw.display_name,
        auth_kind: match raw.auth_kind {
            metadata::AuthKind::Oauth2 => "oauth2",
            metadata::AuthKind::ClientCredentials => "client_credentials",
            metadata::AuthKind::ApiKey => "api_key",
            metadata::AuthKind::SharedSecret => "shared_secret",
            metadata::AuthKind::None => "none",
        },
        ingestion_modes: raw
            .ingestion_modes
            .iter()
            .map(|m| match m {
                metadata::IngestionMode::Webhook => "webhook",
                metadata::IngestionMode::Polling => "polling",
            })
            .collect(),
        settings_schema,
        outbound_hosts: raw.outbound_hosts,
        secrets: raw
            .secrets
            .into_iter()
            .map(|s| SecretSpec {
                name: s.name,
                description: s.description,
                required: s.required,
                sent_to: s.sent_to,
                header: s.header,
            })
            .collect(),
        wit_version: raw.wit_version,
        webhook_signing: raw
            .webhook_signing
            .into_iter()
            .map(|h| SigningHeader {
                name: h.name,
                template: h.template,
            })
            .collect(),
        sha256,
        size_bytes: 0,
        granted_hosts: Vec::new(),
        disabled_hosts: Vec::new(),
        grant: crate::policy::GrantSource::None,
        // Filled in by `load_driver` from the policy, with the origins.
        limits: crate::limits::DriverLimits::defaults(&Default::default()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_key_property_is_found_and_unique() {
        let schema = serde_json::json!({"properties": {"shop": {"type": "string", "x-sluice-account-key": true}, "x": {}}});
        assert_eq!(
            account_key_setting(&schema).unwrap().as_deref(),
            Some("shop")
        );
        assert_eq!(
            account_key_setting(&serde_json::json!({"type": "object"})).unwrap(),
            None
        );
        let two = serde_json::json!({"properties": {"a": {"x-sluice-account-key": true}, "b": {"x-sluice-account-key": true}}});
        assert!(account_key_setting(&two).is_err());
    }

    #[test]
    fn identifiers_and_versions() {
        assert!(is_identifier("stripe", 32, &['_', '-']));
        assert!(is_identifier("my-driver_2", 32, &['_', '-']));
        assert!(!is_identifier("Stripe", 32, &['_', '-']));
        assert!(!is_identifier("2stripe", 32, &['_', '-']));
        assert!(!is_identifier("", 32, &['_', '-']));
        assert!(!is_identifier("a/b", 32, &['_', '-']));
        assert!(is_semver("0.1.0") && is_semver("1.2.3-rc.1"));
        assert!(!is_semver("1.2") && !is_semver("v1.2.3") && !is_semver("1..3"));
    }
}
