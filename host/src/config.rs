//! Configuration: the sections of `sluice.toml`, composed, and where their values come
//! from.
//!
//! Each subsystem owns its section — its type, its defaults, its checks — beside its code:
//! `[sandbox]` ([`SandboxConfig`]), `[server]` ([`ServerConfig`]), `[store]`
//! ([`StoreConfig`]), `[auth]` ([`AuthConfig`]), `[scheduler]` ([`SchedulerConfig`]),
//! `[retries]` ([`RetryConfig`]), `[delivery]` ([`DeliveryConfig`]), `[catalog]`
//! ([`CatalogConfig`]), `[drivers.<id>]` ([`DriverPolicyConfig`]) and each capability's
//! `[capabilities.<name>]` ([`CapabilitiesConfig`]). This module only adds
//! the process-wide keys at the top of the file, composes the sections and reads the
//! layers.
//!
//! Precedence, lowest first: built-in defaults, `sluice.toml` (or `--config FILE`), the
//! environment, command-line flags. A missing `sluice.toml` is fine; a file that exists but
//! does not parse, or names a key no section has, is an error.
//!
//! **Environment variables** follow the TOML path by one rule: `SLUICE_` and the path's
//! keys upper-cased, joined by `_` — `[store] timeout_ms` is `SLUICE_STORE_TIMEOUT_MS`,
//! `[delivery.nats] url` is `SLUICE_DELIVERY_NATS_URL`, the top-level `listen` is
//! `SLUICE_LISTEN`. A list (`allow_hosts`) is comma-separated; an empty variable is
//! ignored. A variable that starts like a section (`SLUICE_STORE_…`) but names no key of it
//! is an error, so a typo is not silently ignored. The names of earlier releases are
//! accepted as aliases ([`ALIASES`]), with a warning. `[drivers.<id>]` tables are set in the
//! file only. `sluice config print` shows the effective configuration and where each value
//! came from.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use figment::providers::Serialized;
use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Profile, Provider};
use serde::{Deserialize, Serialize};

pub use crate::auth::AuthConfig;
pub use crate::capabilities::CapabilitiesConfig;
pub use crate::delivery::{DeliveryConfig, NatsConfig};
pub use crate::drivers::CatalogConfig;
pub use crate::limits::SandboxConfig;
use crate::net::OriginPattern;
pub use crate::pipeline::RetryConfig;
pub use crate::policy::DriverPolicyConfig;
use crate::policy::{DriverDefaults, Policy};
pub use crate::scheduler::SchedulerConfig;
pub use crate::server::ServerConfig;
pub use sluice_store::StoreConfig;

/// The whole configuration of one `sluice serve` process.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address the HTTP server binds. Default `127.0.0.1:8080`.
    pub listen: String,
    /// Base URL providers use to reach this server, for the `webhook_url` of
    /// installations. Default `http://<listen>`.
    pub public_url: Option<String>,
    /// Directory for the SQLite database, the master-key file, the admin-token file and
    /// the compiled-code cache. Default `sluice-data`.
    pub data_dir: PathBuf,
    /// `sqlite://…` or `postgres://…`. Default `sqlite://<data_dir>/sluice.db`.
    pub database_url: Option<String>,
    /// Directory of driver components (`*.wasm`) loaded at start. Default
    /// `target/drivers`, where `cargo xtask build-drivers` puts the bundled drivers.
    pub drivers_dir: PathBuf,
    /// Compiled-code cache. Default `<data_dir>/cache`. Several processes may share one
    /// (entries are written atomically).
    pub cache_dir: Option<PathBuf>,
    /// Bearer token for `/v1`. Default: generated at first start, kept in
    /// `<data_dir>/admin.token`.
    pub admin_token: Option<String>,
    /// 32-byte AEAD key for secrets at rest, base64 or hex. Default: generated at first
    /// start, kept in `<data_dir>/master.key` (mode 0600). Set it explicitly when several
    /// nodes share one PostgreSQL database.
    pub master_key: Option<String>,
    /// Development grant: origins every driver may reach, declared or not, private
    /// addresses included — e.g. `http://127.0.0.1:*` for fakes. Private, loopback and
    /// link-local destinations are refused unless granted here. Not for production.
    pub allow_hosts: Vec<String>,
    /// Largest accepted webhook body. Default 1 MiB.
    pub max_body_bytes: usize,
    /// `text` (default, for people) or `json` (one object a line, for log pipelines).
    pub log_format: LogFormat,
    /// Per-driver policy, `[drivers.<id>]`.
    pub drivers: BTreeMap<String, DriverPolicyConfig>,
    /// Sandbox limits.
    pub sandbox: SandboxConfig,
    /// HTTP server limits and timeouts.
    pub server: ServerConfig,
    /// Database timeouts and pool size.
    pub store: StoreConfig,
    /// OAuth flows, token refresh and secret rotation.
    pub auth: AuthConfig,
    /// Scheduled polling.
    pub scheduler: SchedulerConfig,
    /// Retries of failed normalizations.
    pub retries: RetryConfig,
    /// Outbound webhooks and the NATS JetStream sink.
    pub delivery: DeliveryConfig,
    /// Kept driver versions and hot-loading.
    pub catalog: CatalogConfig,
    /// Each capability's own section, `[capabilities.<name>]`.
    pub capabilities: CapabilitiesConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            public_url: None,
            data_dir: PathBuf::from("sluice-data"),
            database_url: None,
            drivers_dir: PathBuf::from("target/drivers"),
            cache_dir: None,
            admin_token: None,
            master_key: None,
            allow_hosts: Vec::new(),
            max_body_bytes: 1024 * 1024,
            log_format: LogFormat::default(),
            drivers: BTreeMap::new(),
            sandbox: SandboxConfig::default(),
            server: ServerConfig::default(),
            store: StoreConfig::default(),
            auth: AuthConfig::default(),
            scheduler: SchedulerConfig::default(),
            retries: RetryConfig::default(),
            delivery: DeliveryConfig::default(),
            catalog: CatalogConfig::default(),
            capabilities: CapabilitiesConfig::default(),
        }
    }
}

/// How `sluice serve` writes its log (`log_format`, `SLUICE_LOG_FORMAT`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object a line.
    Json,
}

/// Environment variables of earlier releases, accepted for one more release with a
/// warning: (old name, TOML path).
pub const ALIASES: &[(&str, &str)] = &[
    ("SLUICE_WEBHOOK_TIMEOUT_MS", "sandbox.webhook_timeout_ms"),
    ("SLUICE_MAX_MEMORY_BYTES", "sandbox.max_memory_bytes"),
    ("SLUICE_HEADER_TIMEOUT_MS", "server.header_timeout_ms"),
    ("SLUICE_BODY_TIMEOUT_MS", "server.body_timeout_ms"),
    ("SLUICE_SHUTDOWN_GRACE_MS", "server.shutdown_grace_ms"),
    ("SLUICE_COMMIT_TIMEOUT_MS", "server.commit_timeout_ms"),
    (
        "SLUICE_INSTALLATION_CACHE_TTL_MS",
        "server.installation_cache_ttl_ms",
    ),
    (
        "SLUICE_METRICS_INSTALLATION_SERIES",
        "server.metrics_installation_series",
    ),
    ("SLUICE_MAX_CONNECTIONS", "server.max_connections"),
    ("SLUICE_DB_TIMEOUT_MS", "store.timeout_ms"),
    ("SLUICE_OAUTH_REDIRECT_URI", "auth.redirect_uri"),
    ("SLUICE_OAUTH_STATE_TTL_SECS", "auth.state_ttl_secs"),
    ("SLUICE_REFRESH_MARGIN_SECS", "auth.refresh_margin_secs"),
    ("SLUICE_REFRESH_LEASE_SECS", "auth.refresh_lease_secs"),
    (
        "SLUICE_REFRESH_BACKOFF_MIN_SECS",
        "auth.refresh_backoff_min_secs",
    ),
    (
        "SLUICE_REFRESH_BACKOFF_MAX_SECS",
        "auth.refresh_backoff_max_secs",
    ),
    ("SLUICE_REAUTH_AFTER_SECS", "auth.reauth_after_secs"),
    ("SLUICE_DRIVERS_WATCH_MS", "catalog.watch_interval_ms"),
    ("SLUICE_DRIVERS_SYNC_MS", "catalog.sync_interval_ms"),
    ("SLUICE_MAX_DRIVER_BYTES", "catalog.max_driver_bytes"),
    ("SLUICE_RETRY_MAX_ATTEMPTS", "retries.max_attempts"),
    ("SLUICE_RETRY_BASE_MS", "retries.base_ms"),
    ("SLUICE_POLL_LEASE_SECS", "scheduler.lease_secs"),
    (
        "SLUICE_POLL_MIN_INTERVAL_SECS",
        "scheduler.min_poll_interval_secs",
    ),
    ("SLUICE_POLL_MAX_BACKOFF_SECS", "scheduler.max_backoff_secs"),
    (
        "SLUICE_DELIVERY_CIRCUIT_THRESHOLD",
        "delivery.circuit_failure_threshold",
    ),
    ("SLUICE_NATS_URL", "delivery.nats.url"),
    ("SLUICE_NATS_STREAM", "delivery.nats.stream"),
    ("SLUICE_NATS_SUBJECT_PREFIX", "delivery.nats.subject_prefix"),
];

/// The prefix of every configuration variable.
const ENV_PREFIX: &str = "SLUICE_";

/// The configuration's layers: defaults, the file, the environment and the command line,
/// each remembered with where it came from.
pub struct Layers {
    figment: Figment,
    /// Things to tell the operator once logging is up (deprecated variables).
    notices: Vec<String>,
}

impl Layers {
    /// The layers of this process: `file` (else `sluice.toml` when it exists), the
    /// `SLUICE_*` environment and `flags` (TOML path, value) from the command line.
    pub fn load(file: Option<&Path>, flags: &[(&str, String)]) -> anyhow::Result<Self> {
        Self::new(file, std::env::vars(), flags)
    }

    /// The layers over `file`, the variables `env` and `flags`.
    pub fn new(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
        flags: &[(&str, String)],
    ) -> anyhow::Result<Self> {
        let keys = Keys::of_defaults()?;
        let mut figment =
            Figment::from(Serialized::defaults(Config::default()).profile(Profile::Default));
        match file {
            Some(path) => figment = figment.merge(TomlFile::read(path)?),
            None if Path::new("sluice.toml").exists() => {
                figment = figment.merge(TomlFile::read(Path::new("sluice.toml"))?)
            }
            None => {}
        }
        let (aliased, canonical, notices) = Environment::split(&keys, env)?;
        let figment = figment
            .merge(aliased)
            .merge(canonical)
            .merge(CommandLine::new(&keys, flags)?);
        Ok(Self { figment, notices })
    }

    /// The configuration these layers make.
    pub fn extract(&self) -> anyhow::Result<Config> {
        self.figment
            .extract_lossy::<Config>()
            .map_err(|e| anyhow::anyhow!("{e}"))
            .context("reading the configuration")
    }

    /// Warnings about the configuration, for the log.
    pub fn notices(&self) -> &[String] {
        &self.notices
    }

    /// Where the value at `path` (`store.timeout_ms`) came from: `default`, the file, an
    /// environment variable or a flag.
    pub fn source_of(&self, path: &str) -> String {
        match self.figment.find_metadata(path) {
            None => "default".into(),
            Some(metadata) => match &metadata.source {
                Some(figment::Source::File(file)) => file.display().to_string(),
                Some(figment::Source::Code(_)) => "default".into(),
                _ => {
                    let keys: Vec<&str> = path.split('.').collect();
                    metadata.interpolate(&Profile::Default, &keys)
                }
            },
        }
    }

    /// The effective configuration as TOML, secrets redacted, each value followed by
    /// where it came from.
    pub fn print(&self) -> anyhow::Result<String> {
        let config = self.extract()?;
        let value = serde_json::to_value(&config).context("serializing the configuration")?;
        let mut out = String::new();
        let serde_json::Value::Object(top) = value else {
            bail!("the configuration is not a table");
        };
        print_table(self, &mut out, "", &top);
        Ok(out)
    }
}

/// Write `table` (at `prefix`) as TOML: its values, then its tables.
fn print_table(
    layers: &Layers,
    out: &mut String,
    prefix: &str,
    table: &serde_json::Map<String, serde_json::Value>,
) {
    use std::fmt::Write as _;
    let path_of = |key: &str| {
        if prefix.is_empty() {
            key.to_string()
        } else {
            format!("{prefix}.{key}")
        }
    };
    for (key, value) in table {
        if value.is_object() {
            continue;
        }
        let path = path_of(key);
        let source = layers.source_of(&path);
        let shown = match value {
            serde_json::Value::Null => format!("# {key} is unset"),
            value => format!("{key} = {}", toml_value(&redact(&path, value))),
        };
        let _ = writeln!(out, "{shown:<60} # {source}");
    }
    for (key, value) in table {
        let serde_json::Value::Object(inner) = value else {
            continue;
        };
        let path = path_of(key);
        // A table of tables gets no header of its own; an empty one (a capability without
        // a section, no `[drivers.<id>]`) is left out.
        if inner.values().any(|v| !v.is_object()) {
            let _ = writeln!(out, "\n[{path}]");
        }
        print_table(layers, out, &path, inner);
    }
}

/// A value as TOML text (JSON text for what TOML cannot hold, such as a null in a list).
fn toml_value(value: &serde_json::Value) -> String {
    toml::Value::try_from(value).map_or_else(|_| value.to_string(), |v| v.to_string())
}

/// What `config print` shows of the value at `path`: secrets as `[redacted]`, passwords in
/// URLs hidden, `env:` references (not secrets themselves) as they are.
fn redact(path: &str, value: &serde_json::Value) -> serde_json::Value {
    let secret = matches!(path, "admin_token" | "master_key")
        || (path.starts_with("drivers.") && path.contains(".app_secrets."));
    match value {
        serde_json::Value::String(s) if secret && !s.starts_with("env:") => "[redacted]".into(),
        serde_json::Value::String(s) if path == "database_url" || path.ends_with(".url") => {
            redact_url(s).into()
        }
        other => other.clone(),
    }
}

/// Hide a password in a URL.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("redacted"));
            u.to_string()
        }
        _ => url.to_string(),
    }
}

/// Every key a variable can set: the leaves of the default configuration, by path, with
/// whether each is a list.
struct Keys {
    leaves: BTreeMap<String, bool>,
    /// Tables with keys of their own (`store`, `delivery.nats`), for the typo check.
    sections: Vec<String>,
}

impl Keys {
    fn of_defaults() -> anyhow::Result<Self> {
        let value = serde_json::to_value(Config::default()).context("serializing defaults")?;
        let mut keys = Keys {
            leaves: BTreeMap::new(),
            sections: Vec::new(),
        };
        keys.walk("", &value);
        Ok(keys)
    }

    fn walk(&mut self, prefix: &str, value: &serde_json::Value) {
        let serde_json::Value::Object(table) = value else {
            return;
        };
        if !prefix.is_empty() {
            self.sections.push(prefix.to_string());
        }
        for (key, value) in table {
            let path = if prefix.is_empty() {
                key.clone()
            } else {
                format!("{prefix}.{key}")
            };
            match value {
                serde_json::Value::Object(_) => self.walk(&path, value),
                serde_json::Value::Array(_) => {
                    self.leaves.insert(path, true);
                }
                _ => {
                    self.leaves.insert(path, false);
                }
            }
        }
    }

    /// `SLUICE_STORE_TIMEOUT_MS` for `store.timeout_ms`.
    fn variable(path: &str) -> String {
        format!(
            "{ENV_PREFIX}{}",
            path.replace('.', "_").to_ascii_uppercase()
        )
    }

    /// The value a variable's text stands for at `path`.
    fn value(&self, path: &str, text: &str) -> Value {
        if self.leaves.get(path) == Some(&true) {
            let items: Vec<Value> = text
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| Value::from(s.to_string()))
                .collect();
            return Value::from(items);
        }
        // Strings throughout: the lossy extraction reads numbers and booleans out of them
        // where the field wants one, and a numeric-looking token stays a string.
        Value::from(text.to_string())
    }
}

/// The environment, split into deprecated aliases and canonical names (which win).
struct Environment {
    name: &'static str,
    /// (variable, path, value).
    vars: Vec<(String, String, Value)>,
}

impl Environment {
    fn split(
        keys: &Keys,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> anyhow::Result<(Environment, Environment, Vec<String>)> {
        let canonical_names: HashMap<String, &str> = keys
            .leaves
            .keys()
            .map(|path| (Keys::variable(path), path.as_str()))
            .collect();
        let mut aliased = Environment {
            name: "environment (deprecated name)",
            vars: Vec::new(),
        };
        let mut canonical = Environment {
            name: "environment",
            vars: Vec::new(),
        };
        let mut notices = Vec::new();
        let mut unknown = Vec::new();
        let mut env: Vec<(String, String)> = env
            .into_iter()
            .filter(|(name, _)| name.starts_with(ENV_PREFIX))
            .collect();
        env.sort();
        for (name, text) in env {
            let text = text.trim();
            if let Some(path) = canonical_names.get(&name) {
                if !text.is_empty() {
                    let value = keys.value(path, text);
                    canonical.vars.push((name, path.to_string(), value));
                }
            } else if let Some((_, path)) = ALIASES.iter().find(|(alias, _)| *alias == name) {
                notices.push(format!(
                    "{name} is a deprecated name of {}; it is read for one more release",
                    Keys::variable(path)
                ));
                if !text.is_empty() {
                    let value = keys.value(path, text);
                    aliased.vars.push((name, path.to_string(), value));
                }
            } else if name.starts_with(&format!("{ENV_PREFIX}DRIVERS_")) {
                unknown.push(format!(
                    "{name} ([drivers.<id>] tables are set in the configuration file)"
                ));
            } else if let Some(section) = keys
                .sections
                .iter()
                .filter(|section| name.starts_with(&format!("{}_", Keys::variable(section))))
                .max_by_key(|section| section.len())
            {
                unknown.push(format!("{name} (no key of [{section}])"));
            }
        }
        if !unknown.is_empty() {
            bail!(
                "unknown configuration variables: {}; see `sluice config print` for the names",
                unknown.join(", ")
            );
        }
        Ok((aliased, canonical, notices))
    }
}

impl Provider for Environment {
    fn metadata(&self) -> Metadata {
        let names: HashMap<String, String> = self
            .vars
            .iter()
            .map(|(name, path, _)| (path.clone(), name.clone()))
            .collect();
        Metadata::named(self.name).interpolater(move |_, keys| {
            let path = keys.join(".");
            names
                .get(&path)
                .cloned()
                .unwrap_or_else(|| Keys::variable(&path))
        })
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        let mut dict = Dict::new();
        for (_, path, value) in &self.vars {
            merge_into(&mut dict, path, value.clone());
        }
        Ok(Profile::Default.collect(dict))
    }
}

/// Values given as command-line flags.
struct CommandLine {
    values: Vec<(String, Value)>,
}

impl CommandLine {
    fn new(keys: &Keys, flags: &[(&str, String)]) -> anyhow::Result<Self> {
        let mut values = Vec::new();
        for (path, text) in flags {
            if !keys.leaves.contains_key(*path) {
                bail!("no configuration key {path}");
            }
            values.push((path.to_string(), keys.value(path, text)));
        }
        Ok(Self { values })
    }
}

impl Provider for CommandLine {
    fn metadata(&self) -> Metadata {
        Metadata::named("command line")
            .interpolater(|_, keys| format!("--{}", keys.join(".").replace('_', "-")))
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        let mut dict = Dict::new();
        for (path, value) in &self.values {
            merge_into(&mut dict, path, value.clone());
        }
        Ok(Profile::Default.collect(dict))
    }
}

/// Put `value` at the dotted `path` of `dict`.
fn merge_into(dict: &mut Dict, path: &str, value: Value) {
    match path.split_once('.') {
        None => {
            dict.insert(path.to_string(), value);
        }
        Some((head, rest)) => {
            let entry = dict
                .entry(head.to_string())
                .or_insert_with(|| Value::from(Dict::new()));
            if let Value::Dict(_, inner) = entry {
                merge_into(inner, rest, value);
            }
        }
    }
}

/// The configuration file.
struct TomlFile {
    path: PathBuf,
    table: toml::Table,
}

impl TomlFile {
    fn read(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading config file {}", path.display()))?;
        let table = toml::from_str(&text)
            .with_context(|| format!("parsing config file {}", path.display()))?;
        Ok(Self {
            path: path.to_path_buf(),
            table,
        })
    }
}

impl Provider for TomlFile {
    fn metadata(&self) -> Metadata {
        Metadata::from("(configuration file)", self.path.as_path())
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        Serialized::defaults(&self.table).data()
    }
}

impl Config {
    /// Load defaults, then the file (`path`, or `sluice.toml` if it exists), then the
    /// environment.
    pub fn load(path: Option<&Path>) -> anyhow::Result<Self> {
        Layers::load(path, &[])?.extract()
    }

    /// The database URL in force.
    pub fn database_url(&self) -> String {
        match &self.database_url {
            Some(url) => url.clone(),
            None => format!("sqlite://{}", self.data_dir.join("sluice.db").display()),
        }
    }

    /// The compiled-code cache in force.
    pub fn cache_dir(&self) -> PathBuf {
        self.cache_dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("cache"))
    }

    /// The public base URL in force, without a trailing slash.
    pub fn public_url(&self) -> String {
        match &self.public_url {
            Some(url) => url.trim_end_matches('/').to_string(),
            None => format!("http://{}", self.listen),
        }
    }

    /// The driver policy in force: `[drivers.<id>]` over the defaults beside the drivers in
    /// `drivers_dir`.
    pub fn policy(&self) -> anyhow::Result<Policy> {
        let defaults = DriverDefaults::read_dir(&self.drivers_dir).map_err(anyhow::Error::msg)?;
        Policy::new(&self.drivers, defaults).map_err(anyhow::Error::msg)
    }

    /// Parse and check everything that can be wrong before starting; returns the
    /// development grants.
    pub fn validate(&self) -> anyhow::Result<Vec<OriginPattern>> {
        self.policy()?;
        if self.max_body_bytes == 0 {
            bail!("max_body_bytes must be positive");
        }
        for check in [
            self.sandbox.validate(),
            self.server.validate(),
            self.store.validate(),
            self.auth.validate(),
            self.scheduler.validate(),
            self.retries.validate(),
            self.delivery.validate(),
            self.catalog.validate(),
        ] {
            check.map_err(anyhow::Error::msg)?;
        }
        self.allow_hosts
            .iter()
            .map(|p| OriginPattern::parse(p).map_err(|e| anyhow::anyhow!("allow_hosts entry: {e}")))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &[(&str, &str)]) -> Vec<(String, String)> {
        vars.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn load(vars: &[(&str, &str)]) -> anyhow::Result<Config> {
        Layers::new(None, env(vars), &[])?.extract()
    }

    #[test]
    fn variables_follow_the_toml_path() {
        let config = load(&[
            ("SLUICE_LISTEN", "127.0.0.1:9999"),
            (
                "SLUICE_ALLOW_HOSTS",
                "http://127.0.0.1:*, https://a.example",
            ),
            ("SLUICE_SANDBOX_WEBHOOK_TIMEOUT_MS", "500"),
            ("SLUICE_STORE_TIMEOUT_MS", "750"),
            ("SLUICE_STORE_MAX_CONNECTIONS", "3"),
            ("SLUICE_DELIVERY_NATS_URL", "nats://127.0.0.1:4222"),
            ("SLUICE_ADMIN_TOKEN", "1234567890123456"),
            ("SLUICE_LOG_FORMAT", "json"),
        ])
        .unwrap();
        assert_eq!(config.listen, "127.0.0.1:9999");
        assert_eq!(
            config.allow_hosts,
            ["http://127.0.0.1:*", "https://a.example"]
        );
        assert_eq!(config.sandbox.webhook_timeout_ms, 500);
        assert_eq!(config.store.timeout_ms, 750);
        assert_eq!(config.store.max_connections, Some(3));
        assert_eq!(
            config.delivery.nats.url.as_deref(),
            Some("nats://127.0.0.1:4222")
        );
        // A token of digits is still a string.
        assert_eq!(config.admin_token.as_deref(), Some("1234567890123456"));
        assert_eq!(config.log_format, LogFormat::Json);
        assert_eq!(config.public_url(), "http://127.0.0.1:9999");
        assert_eq!(config.validate().unwrap().len(), 2);
    }

    #[test]
    fn every_key_has_a_distinct_variable() {
        let keys = Keys::of_defaults().unwrap();
        let mut seen = HashMap::new();
        for path in keys.leaves.keys() {
            if let Some(other) = seen.insert(Keys::variable(path), path) {
                panic!("{path} and {other} share a variable");
            }
        }
        assert!(seen.contains_key("SLUICE_DELIVERY_NATS_SUBJECT_PREFIX"));
        assert!(seen.contains_key("SLUICE_SCHEDULER_MAX_CONCURRENT_POLLS_PER_DRIVER"));
    }

    #[test]
    fn aliases_name_existing_keys_and_lose_to_canonical_names() {
        let keys = Keys::of_defaults().unwrap();
        for (alias, path) in ALIASES {
            assert!(keys.leaves.contains_key(*path), "{alias} -> {path}");
            assert_ne!(Keys::variable(path), *alias, "{alias} is canonical already");
        }
        let layers = Layers::new(
            None,
            env(&[
                ("SLUICE_DB_TIMEOUT_MS", "100"),
                ("SLUICE_NATS_URL", "nats://old:4222"),
                ("SLUICE_DELIVERY_NATS_URL", "nats://new:4222"),
            ]),
            &[],
        )
        .unwrap();
        let config = layers.extract().unwrap();
        assert_eq!(config.store.timeout_ms, 100);
        assert_eq!(config.delivery.nats.url.as_deref(), Some("nats://new:4222"));
        assert_eq!(layers.source_of("store.timeout_ms"), "SLUICE_DB_TIMEOUT_MS");
        assert_eq!(
            layers.source_of("delivery.nats.url"),
            "SLUICE_DELIVERY_NATS_URL"
        );
        assert_eq!(layers.notices().len(), 2);
        assert!(layers.notices()[0].contains("SLUICE_STORE_TIMEOUT_MS"));
    }

    #[test]
    fn bad_values_are_reported_with_their_variable() {
        let err = load(&[("SLUICE_MAX_BODY_BYTES", "lots")]).unwrap_err();
        assert!(
            format!("{err:#}").contains("SLUICE_MAX_BODY_BYTES"),
            "{err:#}"
        );
        let err = load(&[("SLUICE_LOG_FORMAT", "xml")]).unwrap_err();
        assert!(format!("{err:#}").contains("SLUICE_LOG_FORMAT"), "{err:#}");
    }

    #[test]
    fn a_misspelt_section_variable_is_an_error_and_others_are_not_ours() {
        let err = load(&[("SLUICE_STORE_TIMEOUT", "5")]).unwrap_err();
        assert!(err.to_string().contains("SLUICE_STORE_TIMEOUT"), "{err}");
        let err = load(&[("SLUICE_DRIVERS_STRIPE_ORIGINS", "x")]).unwrap_err();
        assert!(err.to_string().contains("[drivers.<id>]"), "{err}");
        // The CLI's, the log filter's and the test harness's variables are not settings.
        load(&[
            ("SLUICE_SERVER", "http://127.0.0.1:8080"),
            ("SLUICE_LOG", "debug"),
            ("SLUICE_DRIVERS", "target/drivers"),
            ("SLUICE_TEST_POSTGRES_URL", "postgres://x"),
        ])
        .unwrap();
    }

    #[test]
    fn empty_variables_are_ignored() {
        let config = load(&[("SLUICE_MASTER_KEY", ""), ("SLUICE_DELIVERY_NATS_URL", " ")]).unwrap();
        assert_eq!(config.master_key, None);
        assert_eq!(config.delivery.nats.url, None);
    }

    #[test]
    fn the_file_rejects_unknown_keys_and_the_environment_wins_over_it() {
        let dir = std::env::temp_dir().join(format!("sluice-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("sluice.toml");
        std::fs::write(&file, "listne = \"x\"\n").unwrap();
        let err = Layers::new(Some(&file), env(&[]), &[])
            .unwrap()
            .extract()
            .unwrap_err();
        assert!(format!("{err:#}").contains("listne"), "{err:#}");

        std::fs::write(&file, "listen = \"127.0.0.1:1\"\n[store]\ntimeout_ms = 9\n").unwrap();
        let layers = Layers::new(
            Some(&file),
            env(&[("SLUICE_LISTEN", "127.0.0.1:2")]),
            &[("data_dir", "elsewhere".into())],
        )
        .unwrap();
        let config = layers.extract().unwrap();
        assert_eq!(config.listen, "127.0.0.1:2");
        assert_eq!(config.store.timeout_ms, 9);
        assert_eq!(config.data_dir, PathBuf::from("elsewhere"));
        assert_eq!(layers.source_of("listen"), "SLUICE_LISTEN");
        assert_eq!(
            layers.source_of("store.timeout_ms"),
            file.display().to_string()
        );
        assert_eq!(layers.source_of("data_dir"), "--data-dir");
        assert_eq!(layers.source_of("server.commit_timeout_ms"), "default");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn print_redacts_secrets_and_names_sources() {
        let layers = Layers::new(
            None,
            env(&[
                ("SLUICE_ADMIN_TOKEN", "sk_admin_0123456789abcdef"),
                ("SLUICE_DATABASE_URL", "postgres://sluice:hunter2@db/sluice"),
            ]),
            &[],
        )
        .unwrap();
        let text = layers.print().unwrap();
        assert!(!text.contains("sk_admin_0123456789abcdef"), "{text}");
        assert!(!text.contains("hunter2"), "{text}");
        assert!(text.contains("admin_token = \"[redacted]\""), "{text}");
        assert!(text.contains("# SLUICE_DATABASE_URL"), "{text}");
        assert!(text.contains("\n[store]\n"), "{text}");
        assert!(text.contains("\n[delivery.nats]\n"), "{text}");
        // What it prints is a configuration file that loads.
        let reparsed: toml::Table = toml::from_str(&text).unwrap();
        assert_eq!(reparsed["store"]["timeout_ms"].as_integer(), Some(5000));
    }

    #[test]
    fn driver_policy_parses_from_the_file() {
        let config: Config = toml::from_str(
            r#"
            [drivers.acme]
            origins = ["https://api.acme.test"]
            installations = ["inst_acme_*"]
            "#,
        )
        .unwrap();
        let policy = config.policy().unwrap();
        let declared = [OriginPattern::parse("https://api.acme.test").unwrap()];
        assert_eq!(policy.resolve("acme", &declared).effective.len(), 1);
        assert!(!policy.permits_installation("acme", "inst_other"));

        let bad: Config =
            toml::from_str("[drivers.acme]\norigins = [\"https://*.com\"]\n").unwrap();
        let err = bad.validate().unwrap_err().to_string();
        assert!(err.contains("drivers.acme.origins"), "{err}");
        assert!(toml::from_str::<Config>("[drivers.acme]\norigin = []\n").is_err());
    }

    /// The README's configuration table names every key, and only keys that exist; where it
    /// gives a plain number as the default, it is the default's.
    #[test]
    fn the_readme_documents_every_key_and_its_default() {
        let readme = include_str!("../../README.md");
        let section = readme
            .split("## Configuration")
            .nth(1)
            .and_then(|rest| rest.split("\n## ").next())
            .expect("a Configuration section");
        let mut documented = BTreeMap::new();
        for row in section.lines().filter(|l| l.starts_with("| `")) {
            let cells: Vec<&str> = row.trim_matches('|').split('|').map(str::trim).collect();
            let (keys, default) = (cells[0], cells[1]);
            if default == "default" {
                continue; // the header
            }
            let mut table = String::new();
            let names: Vec<&str> = keys.split('`').skip(1).step_by(2).collect();
            let defaults: Vec<&str> = default.split('`').skip(1).step_by(2).collect();
            for (i, name) in names.iter().enumerate() {
                let name = match name.strip_prefix('[').and_then(|n| n.split_once("] ")) {
                    Some((t, key)) => {
                        table = t.to_string();
                        key
                    }
                    None => name,
                };
                if name.starts_with("--") || name.contains('<') && !table.contains('<') {
                    continue;
                }
                let path = if table.is_empty() {
                    name.to_string()
                } else {
                    format!("{table}.{name}")
                };
                // A plain number per key, when the cell holds one per key.
                let number = (defaults.len() == names.len())
                    .then(|| defaults[i].parse::<i64>().ok())
                    .flatten();
                documented.insert(path, number);
            }
        }
        let defaults = serde_json::to_value(Config::default()).unwrap();
        let keys = Keys::of_defaults().unwrap();
        for path in keys.leaves.keys() {
            assert!(
                documented.contains_key(path),
                "README's configuration table does not document {path}"
            );
        }
        for (path, number) in &documented {
            if path.starts_with("drivers.") {
                continue;
            }
            assert!(
                keys.leaves.contains_key(path),
                "README documents {path}, which is no key"
            );
            if let Some(number) = number {
                let pointer = format!("/{}", path.replace('.', "/"));
                assert_eq!(
                    defaults.pointer(&pointer).and_then(|v| v.as_i64()),
                    Some(*number),
                    "README's default of {path}"
                );
            }
        }
    }

    #[test]
    fn defaults_live_in_the_data_dir() {
        assert_eq!(
            Config::default().cache_dir(),
            PathBuf::from("sluice-data/cache")
        );
        assert_eq!(
            Config::default().database_url(),
            "sqlite://sluice-data/sluice.db"
        );
        let config = load(&[("SLUICE_CACHE_DIR", "/tmp/c")]).unwrap();
        assert_eq!(config.cache_dir(), PathBuf::from("/tmp/c"));
    }
}
