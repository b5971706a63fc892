//! Loading a driver component: compile (or load from cache), link, read and validate its
//! metadata. A component that fails any step is refused with the reason; drivers
//! already loaded are not touched.

use std::sync::Arc;

use serde::Serialize;
use sha2::{Digest, Sha256};
use wasmtime::Store;

use super::{Runtime, cache};
use crate::capabilities::credentials::SecretBinding;
use crate::capabilities::{CallScope, CallState, DataSource, DriverScope};
use crate::net::OriginPattern;
use crate::wit::{DriverPre, WIT_VERSION, metadata};

/// Why a component was refused.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("not a valid component: {0}")]
    Compile(String),
    #[error("does not implement the sluice:driver@{WIT_VERSION} world: {0}")]
    World(String),
    #[error("metadata call failed: {0}")]
    Metadata(String),
    #[error("invalid metadata: {0}")]
    InvalidMetadata(String),
}

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
    pub id: String,
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
    pub limits: crate::policy::DriverLimits,
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

/// Most a driver's metadata may make the host allocate when it is lifted (its settings
/// schema, descriptions and templates are a few kilobytes).
const MAX_METADATA_LIFT: usize = 1 << 20;

/// The JSON Schema annotation that marks the settings property holding an installation's
/// account key (Shopify `shop`, Stripe `account`), used to route app-level webhooks.
pub const ACCOUNT_KEY_ANNOTATION: &str = "x-sluice-account-key";

/// A loaded, linked, validated driver, ready to instantiate per call.
pub struct LoadedDriver {
    pub info: DriverInfo,
    /// The settings property marked with [`ACCOUNT_KEY_ANNOTATION`], if any.
    pub account_key_setting: Option<String>,
    pub(crate) pre: DriverPre<CallState>,
    pub(crate) exports: super::exports::Exports,
    settings_validator: jsonschema::Validator,
    /// What every call of this driver may name and reach.
    pub scope: Arc<DriverScope>,
    /// This driver's share of the instance slots (`max_concurrent_instances` of its
    /// limits), taken before a slot of the runtime's.
    pub(crate) slots: Arc<tokio::sync::Semaphore>,
}

/// One failing location of a settings object.
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct SettingsViolation {
    /// JSON pointer into the settings, `""` for the object itself.
    pub path: String,
    pub message: String,
}

impl LoadedDriver {
    /// Validate installation settings against the driver's schema.
    pub fn validate_settings(
        &self,
        settings: &serde_json::Value,
    ) -> Result<(), Vec<SettingsViolation>> {
        let violations: Vec<_> = self
            .settings_validator
            .iter_errors(settings)
            .map(|e| SettingsViolation {
                path: e.instance_path().to_string(),
                message: e.to_string(),
            })
            .collect();
        if violations.is_empty() {
            Ok(())
        } else {
            Err(violations)
        }
    }

    /// The installation's account key: its value of the annotated settings property.
    pub fn account_key(&self, settings: &serde_json::Value) -> Option<String> {
        let property = self.account_key_setting.as_deref()?;
        settings.get(property)?.as_str().map(str::to_string)
    }

    /// The scope of a routing call (`route-key`): no installation, no secrets.
    pub fn routing_scope(&self) -> CallScope {
        CallScope::driver_only(self.scope.clone())
    }

    /// The scope of a call on behalf of an installation.
    pub fn scope(
        &self,
        installation: &sluice_store::InstallationId,
        data: DataSource,
    ) -> CallScope {
        CallScope::installation(self.scope.clone(), installation.clone(), data)
    }
}

impl Runtime {
    /// Compile, link and validate a driver component.
    pub async fn load_driver(&self, bytes: &[u8]) -> Result<LoadedDriver, LoadError> {
        let sha256 = hex::encode(Sha256::digest(bytes));
        let component = {
            let engine = self.engine().clone();
            let cache = self.cache().cloned();
            let (sha, bytes) = (sha256.clone(), bytes.to_vec());
            // Compilation is CPU-bound and can take a second: keep it off the reactor.
            tokio::task::spawn_blocking(move || {
                cache::compile(&engine, cache.as_ref(), &sha, &bytes)
            })
            .await
            .map_err(|e| LoadError::Compile(e.to_string()))?
            .map_err(|e| LoadError::Compile(format!("{e:#}")))?
        };
        if let Some(reason) = super::world::missing_import(self.engine(), &component) {
            return Err(LoadError::World(reason));
        }
        let instance_pre = self
            .linker()
            .instantiate_pre(&component)
            .map_err(|e| LoadError::World(format!("{e:#}")))?;
        let exports =
            super::exports::Exports::find(instance_pre.component()).map_err(LoadError::World)?;
        let pre = DriverPre::new(instance_pre).map_err(|e| LoadError::World(format!("{e:#}")))?;

        let loading = Arc::new(DriverScope {
            id: "(loading)".into(),
            version: String::new(),
            secrets: Vec::new(),
            origins: Vec::new(),
            disabled_origins: Vec::new(),
            bindings: Default::default(),
            limits: crate::policy::DriverLimits::defaults(self.limits()),
            app_secrets: Default::default(),
        });
        let state = CallState::new(self.capabilities(), &CallScope::driver_only(loading));
        let mut store = Store::new(self.engine(), state);
        store.set_epoch_deadline(1);
        // Metadata is a few kilobytes; lifting more is refused before it is copied.
        store.set_hostcall_fuel(MAX_METADATA_LIFT);
        let deadline = std::time::Instant::now() + self.limits().webhook_timeout();
        store.limiter(|s| s.store_limits());
        store.epoch_deadline_callback(move |_| super::session::deadline_check(deadline));
        // The epoch deadline stops guest code; the timeout stops a call parked in the host.
        let budget = self.limits().webhook_timeout();
        let raw = tokio::time::timeout(budget, async {
            let driver = pre.instantiate_async(&mut store).await?;
            driver.sluice_driver_metadata().call_get(&mut store).await
        })
        .await;
        let past_deadline = || {
            LoadError::Metadata(format!(
                "metadata did not return within its {} ms deadline",
                budget.as_millis()
            ))
        };
        let raw = match raw {
            Err(_) => return Err(past_deadline()),
            Ok(Err(e))
                if e.downcast_ref::<super::session::DeadlineExceeded>()
                    .is_some() =>
            {
                return Err(past_deadline());
            }
            Ok(Err(e)) => return Err(LoadError::Metadata(format!("{e:#}"))),
            Ok(Ok(raw)) => raw,
        };
        let mut info = validate(raw, sha256)?;
        info.size_bytes = bytes.len();
        let settings_validator = jsonschema::options()
            .should_validate_formats(true)
            .build(&info.settings_schema)
            .map_err(|e| {
                LoadError::InvalidMetadata(format!(
                    "settings-schema is not a valid JSON Schema: {e}"
                ))
            })?;
        let origins = info
            .outbound_hosts
            .iter()
            .map(|h| {
                OriginPattern::parse(h)
                    .map_err(|e| LoadError::InvalidMetadata(format!("outbound-hosts: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let account_key_setting = account_key_setting(&info.settings_schema)?;
        let resolved = self.policy().resolve(&info.id, &origins);
        info.granted_hosts = resolved.effective.iter().map(ToString::to_string).collect();
        info.disabled_hosts = resolved.disabled.iter().map(ToString::to_string).collect();
        info.grant = resolved.source;
        info.limits = self.policy().limits(&info.id, self.limits());
        if !resolved.disabled.is_empty() {
            tracing::warn!(
                driver = %info.id,
                disabled = ?info.disabled_hosts,
                "driver asks for origins the policy does not grant; they are disabled \
                 (grant them under [drivers.{}] origins)",
                info.id
            );
        }
        let properties: Vec<&str> = info.settings_schema["properties"]
            .as_object()
            .map(|p| p.keys().map(String::as_str).collect())
            .unwrap_or_default();
        let bindings = info
            .secrets
            .iter()
            .map(|s| {
                SecretBinding::parse(&s.name, &s.sent_to, s.header.as_deref(), &properties)
                    .map(|b| (s.name.clone(), b))
                    .map_err(LoadError::InvalidMetadata)
            })
            .collect::<Result<_, _>>()?;
        let app_secrets = self.policy().app_secrets(&info.id);
        for name in app_secrets.keys() {
            if !info.secrets.iter().any(|s| &s.name == name) {
                tracing::warn!(driver = %info.id, secret = %name, "[drivers.{}] app_secrets names a secret the driver does not declare; it is never used", info.id);
            }
        }
        let scope = Arc::new(DriverScope {
            id: info.id.clone(),
            version: info.version.clone(),
            secrets: info.secrets.iter().map(|s| s.name.clone()).collect(),
            origins: resolved.effective,
            disabled_origins: resolved.disabled,
            bindings,
            limits: info.limits,
            app_secrets,
        });
        Ok(LoadedDriver {
            account_key_setting,
            slots: Arc::new(tokio::sync::Semaphore::new(
                scope.limits.max_concurrent_instances as usize,
            )),
            scope,
            settings_validator,
            pre,
            exports,
            info,
        })
    }
}

/// Find the one settings property annotated as the account key.
fn account_key_setting(schema: &serde_json::Value) -> Result<Option<String>, LoadError> {
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
        many => Err(LoadError::InvalidMetadata(format!(
            "settings-schema marks {} properties with {ACCOUNT_KEY_ANNOTATION}; at most one may be",
            many.len()
        ))),
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

fn validate(raw: metadata::DriverInfo, sha256: String) -> Result<DriverInfo, LoadError> {
    let bad = |m: String| Err(LoadError::InvalidMetadata(m));
    if sluice_store::DriverId::parse(&raw.id).is_err() {
        return bad(format!(
            "id {:?} must match [a-z][a-z0-9_-]{{0,31}}",
            raw.id
        ));
    }
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
            super::world::compatible_range()
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
        crate::signing::Template::parse(&header.template).map_err(|e| {
            LoadError::InvalidMetadata(format!("webhook-signing {}: {e}", header.name))
        })?;
    }
    let settings_schema: serde_json::Value = serde_json::from_str(&raw.settings_schema)
        .map_err(|e| LoadError::InvalidMetadata(format!("settings-schema is not JSON: {e}")))?;
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
        id: raw.id,
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
        limits: crate::policy::DriverLimits::defaults(&Default::default()),
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
