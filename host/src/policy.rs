//! The operator's policy for drivers: which origins each driver may reach, which
//! installations may use it, and the limits its calls run under.
//!
//! A driver's metadata only *asks*: the origins a call may reach are the ones it declared
//! **and** the policy grants it (`[drivers.<id>] origins` in `sluice.toml`). A declared
//! origin the policy does not grant is disabled — the driver loads, says so in its
//! `GET /v1/drivers` entry and the log, and requests to it are refused. A driver the
//! operator wrote no origins for gets the default shipped beside it: `<id>.policy.toml` in
//! the drivers directory ([`DriverDefaults`]; the bundled drivers' carry their providers'
//! documented API origins, so the quickstart needs no configuration). Any other driver gets
//! nothing until the operator grants it.
//!
//! The development grant (`allow_hosts`, `SLUICE_ALLOW_HOSTS`) is separate and blunt: it
//! lets every driver reach the named origins, private addresses included, declared or
//! not. It is for fakes on loopback, not for production.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::limits::{DriverLimits, SandboxConfig};
use crate::net::OriginPattern;
use sluice_store::SecretBytes as SecretValue;

/// A driver's default policy, shipped beside its component as `<id>.policy.toml` (the
/// bundled drivers' are `drivers/<id>/policy.toml` in the repository, copied beside their
/// components by `cargo xtask build-drivers`). It stands in for the operator's
/// `[drivers.<id>] origins` when those are not set.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DriverDefaults {
    /// Origins the driver may reach (of those it declares).
    pub origins: Vec<String>,
}

/// The suffix of a default-policy file beside a component.
pub const DEFAULTS_SUFFIX: &str = ".policy.toml";

impl DriverDefaults {
    /// Every `<id>.policy.toml` in `dir`, parsed, by driver id; a missing directory has
    /// none. `Err` names the file that does not parse.
    pub fn read_dir(dir: &Path) -> Result<BTreeMap<String, Vec<OriginPattern>>, String> {
        let mut defaults = BTreeMap::new();
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(defaults),
            Err(e) => return Err(format!("reading {}: {e}", dir.display())),
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Some(id) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(DEFAULTS_SUFFIX))
            else {
                continue;
            };
            defaults.insert(id.to_string(), Self::read(&path)?);
        }
        Ok(defaults)
    }

    /// The default policy beside the component at `wasm` (`stripe.wasm` →
    /// `stripe.policy.toml`), if there is one, by the driver id its name gives.
    pub fn read_beside(wasm: &Path) -> Result<BTreeMap<String, Vec<OriginPattern>>, String> {
        let mut defaults = BTreeMap::new();
        let Some(id) = wasm.file_stem().and_then(|s| s.to_str()) else {
            return Ok(defaults);
        };
        let path = wasm.with_file_name(format!("{id}{DEFAULTS_SUFFIX}"));
        if path.is_file() {
            defaults.insert(id.to_string(), Self::read(&path)?);
        }
        Ok(defaults)
    }

    fn read(path: &Path) -> Result<Vec<OriginPattern>, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("reading {}: {e}", path.display()))?;
        let parsed: DriverDefaults =
            toml::from_str(&text).map_err(|e| format!("parsing {}: {e}", path.display()))?;
        parsed
            .origins
            .iter()
            .map(|o| {
                OriginPattern::parse(o).map_err(|e| format!("{}: origins: {e}", path.display()))
            })
            .collect()
    }
}

/// One driver's entry in `sluice.toml` (`[drivers.<id>]`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DriverPolicyConfig {
    /// Origins the driver may reach (of those it declares). Replaces the bundled default.
    pub origins: Option<Vec<String>>,
    /// Installation ids that may use the driver: exact ids, or a prefix ending in `*`
    /// (`"inst_acme_*"`). Absent: every installation.
    pub installations: Option<Vec<String>>,
    /// Wall-clock budget of one call, ms. Default `[sandbox] webhook_timeout_ms`.
    pub timeout_ms: Option<u64>,
    /// Linear memory of one instance. Default (and most) `[sandbox] max_memory_bytes`.
    pub max_memory_bytes: Option<usize>,
    /// Bytes one call may return. Default `[sandbox] max_output_bytes`.
    pub max_output_bytes: Option<usize>,
    /// Outbound requests per call. Default `[sandbox] max_outbound_requests`.
    pub max_outbound_requests: Option<u32>,
    /// Log bytes per call; messages past it are dropped. Default 65536.
    pub max_log_bytes: Option<usize>,
    /// Bytes of state one installation of the driver may keep. Default
    /// `[sandbox] max_state_bytes`.
    pub max_state_bytes: Option<usize>,
    /// State keys one installation of the driver may keep. Default
    /// `[sandbox] max_state_keys`.
    pub max_state_keys: Option<u32>,
    /// Instances of this driver alive at once. Default three quarters of
    /// `[sandbox] max_concurrent_instances` (and at most all of it), so one driver whose
    /// calls hang cannot take every slot.
    pub max_concurrent_instances: Option<u32>,
    /// App credentials every installation of the driver falls back to when it has no
    /// secret of that name (one OAuth app shared by many installations): secret name to
    /// `env:VARIABLE` (read at start) or the value itself. Names must be secrets the driver
    /// declares.
    pub app_secrets: BTreeMap<String, String>,
    /// Settings every installation of the driver starts from; its own settings win (e.g.
    /// the app's public `client_id`).
    pub app_settings: serde_json::Map<String, serde_json::Value>,
}

/// Where a driver's grant came from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum GrantSource {
    /// `[drivers.<id>]` in the configuration.
    Operator,
    /// The default shipped beside the driver (`<id>.policy.toml` in the drivers
    /// directory; the bundled drivers each have one).
    BundledDefault,
    /// Nothing: the driver may reach no origin of its own.
    #[default]
    None,
}

/// One driver's grant, parsed.
#[derive(Debug, Clone)]
struct DriverGrant {
    origins: Vec<OriginPattern>,
    source: GrantSource,
    /// The entry as configured (installations, limits).
    entry: DriverPolicyConfig,
    /// `app_secrets` with `env:` references resolved.
    app_secrets: Arc<HashMap<String, SecretValue>>,
}

/// The policy for every driver, parsed and validated.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    drivers: HashMap<String, DriverGrant>,
    /// The defaults shipped beside the drivers, by id.
    defaults: HashMap<String, Vec<OriginPattern>>,
}

/// A driver's declared origins split by the policy.
#[derive(Debug, Clone, Default)]
pub struct ResolvedOrigins {
    /// What calls may reach: each declared origin the policy covers, or the narrower
    /// granted patterns inside a declared one.
    pub effective: Vec<OriginPattern>,
    /// Declared origins the policy grants nothing of.
    pub disabled: Vec<OriginPattern>,
    /// Where the grant came from.
    pub source: GrantSource,
}

impl Policy {
    /// The policy from the configuration's `[drivers.*]` tables over the drivers'
    /// `defaults` ([`DriverDefaults`]).
    pub fn new(
        config: &BTreeMap<String, DriverPolicyConfig>,
        defaults: BTreeMap<String, Vec<OriginPattern>>,
    ) -> Result<Self, String> {
        let defaults: HashMap<_, _> = defaults.into_iter().collect();
        let mut drivers = HashMap::new();
        for (id, entry) in config {
            let origins = match &entry.origins {
                Some(list) => list
                    .iter()
                    .map(|o| {
                        OriginPattern::parse(o).map_err(|e| format!("drivers.{id}.origins: {e}"))
                    })
                    .collect::<Result<Vec<_>, _>>()?,
                None => defaults.get(id).cloned().unwrap_or_default(),
            };
            if let Some(patterns) = &entry.installations {
                for p in patterns {
                    let body = p.strip_suffix('*').unwrap_or(p);
                    if body.contains('*') || (body.is_empty() && p != "*") {
                        return Err(format!(
                            "drivers.{id}.installations: {p:?} must be an id or a prefix ending in `*`"
                        ));
                    }
                }
            }
            let source = if entry.origins.is_some() {
                GrantSource::Operator
            } else if defaults.contains_key(id) {
                GrantSource::BundledDefault
            } else {
                GrantSource::None
            };
            let zero = entry.timeout_ms == Some(0)
                || entry.max_memory_bytes == Some(0)
                || entry.max_output_bytes == Some(0)
                || entry.max_log_bytes == Some(0)
                || entry.max_state_bytes == Some(0)
                || entry.max_state_keys == Some(0)
                || entry.max_concurrent_instances == Some(0);
            if zero {
                return Err(format!("drivers.{id}: limits must be positive"));
            }
            let mut app_secrets = HashMap::new();
            for (name, value) in &entry.app_secrets {
                let value = match value.strip_prefix("env:") {
                    Some(var) => std::env::var(var).map_err(|_| {
                        format!(
                            "drivers.{id}.app_secrets.{name}: environment variable {var} is not set"
                        )
                    })?,
                    None => value.clone(),
                };
                if value.is_empty() {
                    return Err(format!("drivers.{id}.app_secrets.{name} is empty"));
                }
                app_secrets.insert(name.clone(), SecretValue::new(value.into_bytes()));
            }
            drivers.insert(
                id.clone(),
                DriverGrant {
                    origins,
                    source,
                    entry: entry.clone(),
                    app_secrets: Arc::new(app_secrets),
                },
            );
        }
        Ok(Self { drivers, defaults })
    }

    /// The drivers' defaults only (no configuration).
    pub fn with_defaults(defaults: BTreeMap<String, Vec<OriginPattern>>) -> Self {
        Self {
            drivers: HashMap::new(),
            defaults: defaults.into_iter().collect(),
        }
    }

    /// Split `declared` (a driver's metadata) into what its calls may reach and what is
    /// disabled.
    pub fn resolve(&self, driver_id: &str, declared: &[OriginPattern]) -> ResolvedOrigins {
        let (granted, source) = match self.drivers.get(driver_id) {
            Some(grant) => (grant.origins.clone(), grant.source),
            None => match self.defaults.get(driver_id) {
                Some(origins) => (origins.clone(), GrantSource::BundledDefault),
                None => (Vec::new(), GrantSource::None),
            },
        };
        let mut resolved = ResolvedOrigins {
            source,
            ..ResolvedOrigins::default()
        };
        for d in declared {
            if granted.iter().any(|g| g.covers(d)) {
                resolved.effective.push(d.clone());
                continue;
            }
            let narrower: Vec<_> = granted.iter().filter(|g| d.covers(g)).cloned().collect();
            if narrower.is_empty() {
                resolved.disabled.push(d.clone());
            } else {
                resolved.effective.extend(narrower);
            }
        }
        resolved
    }

    /// The limits of `driver_id`'s calls: the policy's, within the sandbox's maxima (the
    /// pool is sized for those), else the defaults.
    pub fn limits(&self, driver_id: &str, sandbox: &SandboxConfig) -> DriverLimits {
        let defaults = DriverLimits::defaults(sandbox);
        let Some(e) = self.drivers.get(driver_id).map(|g| &g.entry) else {
            return defaults;
        };
        DriverLimits {
            timeout_ms: e.timeout_ms.unwrap_or(defaults.timeout_ms),
            max_memory_bytes: e
                .max_memory_bytes
                .unwrap_or(defaults.max_memory_bytes)
                .min(sandbox.max_memory_bytes),
            max_output_bytes: e.max_output_bytes.unwrap_or(defaults.max_output_bytes),
            max_outbound_requests: e
                .max_outbound_requests
                .unwrap_or(defaults.max_outbound_requests),
            max_log_bytes: e.max_log_bytes.unwrap_or(defaults.max_log_bytes),
            max_state_bytes: e.max_state_bytes.unwrap_or(defaults.max_state_bytes),
            max_state_keys: e.max_state_keys.unwrap_or(defaults.max_state_keys),
            max_concurrent_instances: e
                .max_concurrent_instances
                .unwrap_or(defaults.max_concurrent_instances)
                .min(sandbox.max_concurrent_instances),
        }
    }

    /// The app credentials installations of `driver_id` fall back to.
    pub fn app_secrets(&self, driver_id: &str) -> Arc<HashMap<String, SecretValue>> {
        self.drivers
            .get(driver_id)
            .map(|g| g.app_secrets.clone())
            .unwrap_or_default()
    }

    /// An installation's settings as its driver's calls see them: the operator's
    /// `app_settings` for the driver, overridden by the installation's own.
    /// Borrowed when the operator set none, the common case (no copy on an installation
    /// cache miss).
    pub fn effective_settings<'a>(
        &self,
        driver_id: &str,
        settings: &'a serde_json::Value,
    ) -> std::borrow::Cow<'a, serde_json::Value> {
        let defaults = match self.drivers.get(driver_id) {
            Some(g) if !g.entry.app_settings.is_empty() => &g.entry.app_settings,
            _ => return std::borrow::Cow::Borrowed(settings),
        };
        let mut merged = defaults.clone();
        if let serde_json::Value::Object(own) = settings {
            merged.extend(own.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        std::borrow::Cow::Owned(serde_json::Value::Object(merged))
    }

    /// Whether `installation_id` may use the driver.
    pub fn permits_installation(&self, driver_id: &str, installation_id: &str) -> bool {
        let Some(patterns) = self
            .drivers
            .get(driver_id)
            .and_then(|g| g.entry.installations.as_ref())
        else {
            return true;
        };
        patterns.iter().any(|p| match p.strip_suffix('*') {
            Some(prefix) => installation_id.starts_with(prefix),
            None => p == installation_id,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn patterns(list: &[&str]) -> Vec<OriginPattern> {
        list.iter()
            .map(|p| OriginPattern::parse(p).unwrap())
            .collect()
    }

    fn names(list: &[OriginPattern]) -> Vec<String> {
        list.iter().map(ToString::to_string).collect()
    }

    /// The default policies shipped with the bundled drivers, as the build puts them
    /// beside the components.
    fn shipped_defaults() -> BTreeMap<String, Vec<OriginPattern>> {
        let drivers = Path::new(env!("CARGO_MANIFEST_DIR")).join("../drivers");
        ["stripe", "shopify", "hotmart"]
            .into_iter()
            .map(|id| {
                let file = drivers.join(id).join("policy.toml");
                (id.to_string(), DriverDefaults::read(&file).unwrap())
            })
            .collect()
    }

    #[test]
    fn bundled_drivers_get_their_providers_documented_origins_only() {
        let policy = Policy::with_defaults(shipped_defaults());
        let stripe = policy.resolve(
            "stripe",
            &patterns(&["https://api.stripe.com", "https://collector.example"]),
        );
        assert_eq!(names(&stripe.effective), ["https://api.stripe.com"]);
        assert_eq!(names(&stripe.disabled), ["https://collector.example"]);
        assert_eq!(stripe.source, GrantSource::BundledDefault);

        let shopify = policy.resolve("shopify", &patterns(&["https://*.myshopify.com"]));
        assert_eq!(names(&shopify.effective), ["https://*.myshopify.com"]);
        let hotmart = policy.resolve(
            "hotmart",
            &patterns(&[
                "https://developers.hotmart.com",
                "https://api-sec-vlc.hotmart.com",
            ]),
        );
        assert_eq!(hotmart.effective.len(), 2);

        // A third-party driver gets nothing until the operator grants it.
        let acme = policy.resolve("acme", &patterns(&["https://api.acme.test"]));
        assert!(acme.effective.is_empty());
        assert_eq!(names(&acme.disabled), ["https://api.acme.test"]);
        assert_eq!(acme.source, GrantSource::None);
    }

    #[test]
    fn the_effective_set_is_declared_intersected_with_granted() {
        let mut config = BTreeMap::new();
        config.insert(
            "acme".to_string(),
            DriverPolicyConfig {
                origins: Some(vec![
                    "https://api.acme.test".into(),
                    "https://shop-1.myshopify.com".into(),
                    "https://never-declared.test".into(),
                ]),
                ..Default::default()
            },
        );
        config.insert(
            "stripe".to_string(),
            DriverPolicyConfig {
                origins: Some(vec![]),
                ..Default::default()
            },
        );
        let policy = Policy::new(&config, shipped_defaults()).unwrap();
        let acme = policy.resolve(
            "acme",
            &patterns(&[
                "https://api.acme.test",
                "https://*.myshopify.com",
                "http://api.acme.test",
            ]),
        );
        // The wildcard is narrowed to the one shop granted; the http origin is a different
        // origin from the https one granted; an origin granted but not declared is not
        // reachable.
        assert_eq!(
            names(&acme.effective),
            ["https://api.acme.test", "https://shop-1.myshopify.com"]
        );
        assert_eq!(names(&acme.disabled), ["http://api.acme.test"]);
        assert_eq!(acme.source, GrantSource::Operator);
        // An operator entry replaces the bundled default, even with nothing in it.
        let stripe = policy.resolve("stripe", &patterns(&["https://api.stripe.com"]));
        assert!(stripe.effective.is_empty());
    }

    #[test]
    fn installations_are_limited_by_id_or_prefix() {
        let mut config = BTreeMap::new();
        config.insert(
            "acme".to_string(),
            DriverPolicyConfig {
                installations: Some(vec!["inst_acme_*".into(), "inst_demo".into()]),
                ..Default::default()
            },
        );
        let policy = Policy::new(&config, shipped_defaults()).unwrap();
        assert!(policy.permits_installation("acme", "inst_acme_1"));
        assert!(policy.permits_installation("acme", "inst_demo"));
        assert!(!policy.permits_installation("acme", "inst_demo2"));
        assert!(!policy.permits_installation("acme", "inst_other"));
        assert!(policy.permits_installation("stripe", "inst_anything"));

        config.insert(
            "bad".to_string(),
            DriverPolicyConfig {
                installations: Some(vec!["inst_*_x".into()]),
                ..Default::default()
            },
        );
        assert!(Policy::new(&config, BTreeMap::new()).is_err());
    }

    #[test]
    fn limits_come_from_the_policy_within_the_sandbox_maxima() {
        let sandbox = SandboxConfig::default();
        let mut config = BTreeMap::new();
        config.insert(
            "acme".to_string(),
            DriverPolicyConfig {
                timeout_ms: Some(500),
                max_memory_bytes: Some(1 << 40),
                max_outbound_requests: Some(2),
                max_concurrent_instances: Some(4),
                ..Default::default()
            },
        );
        let policy = Policy::new(&config, shipped_defaults()).unwrap();
        let acme = policy.limits("acme", &sandbox);
        assert_eq!(acme.timeout_ms, 500);
        // Above the pool's slot size: capped to it.
        assert_eq!(acme.max_memory_bytes, sandbox.max_memory_bytes);
        assert_eq!(acme.max_outbound_requests, 2);
        assert_eq!(acme.max_concurrent_instances, 4);
        assert_eq!(acme.max_output_bytes, sandbox.max_output_bytes);
        // Anyone else: the defaults, with a share of the slots, not all of them.
        let other = policy.limits("stripe", &sandbox);
        assert_eq!(other, DriverLimits::defaults(&sandbox));
        assert_eq!(other.max_concurrent_instances, 48);

        config.insert(
            "zero".to_string(),
            DriverPolicyConfig {
                max_output_bytes: Some(0),
                ..Default::default()
            },
        );
        assert!(Policy::new(&config, BTreeMap::new()).is_err());
    }
}
