//! Configuration: every default lives here, in one documented place.
//!
//! Precedence, lowest first: built-in defaults, `sluice.toml` (or `--config FILE`),
//! `SLUICE_*` environment variables, command-line flags. A missing file is fine; a file
//! that exists but does not parse is an error.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use serde::Deserialize;

use crate::net::OriginPattern;
use crate::policy::{DriverPolicyConfig, Policy};

/// The whole configuration of one `sluice serve` process.
#[derive(Debug, Clone, Deserialize)]
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
    /// Per-driver policy, `[drivers.<id>]`: `origins` (what the driver may reach, of
    /// what it declares; bundled drivers default to their providers' API origins, others
    /// to nothing) and `installations` (ids or `prefix*` that may use it; default all).
    pub drivers: std::collections::BTreeMap<String, DriverPolicyConfig>,
    /// Largest accepted webhook body. Default 1 MiB.
    pub max_body_bytes: usize,
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
    pub retries: RetriesConfig,
    /// Outbound webhooks and the NATS JetStream sink.
    pub delivery: DeliveryConfig,
    /// Kept driver versions and hot-loading (`[catalog]`).
    pub catalog: CatalogConfig,
    /// `text` (default, for people) or `json` (one object a line, for log pipelines).
    pub log_format: LogFormat,
}

/// How `sluice serve` writes its log (`log_format`, `SLUICE_LOG_FORMAT`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object a line.
    Json,
}

/// Delivery to the Processing Engine (`[delivery]`, and `[delivery.nats]` for the stream).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DeliveryConfig {
    /// The wait after each failed attempt of an outbound webhook: an event is tried once
    /// more than there are waits, then its delivery is dead. Each wait gets ±10 % jitter.
    /// Default `5s,5m,30m,2h,5h,10h,10h` (8 attempts over about 28 hours).
    pub retry_schedule: String,
    /// The longest one attempt may take. Default 15000.
    pub timeout_ms: u64,
    /// How long a node's claim on an endpoint (or the NATS sink) lasts; a dead node's are
    /// taken over once it has passed. Default 30.
    pub lease_secs: u64,
    /// How often a node looks for endpoints to claim, and the longest a worker sleeps
    /// before looking at its outbox again. Default 1000.
    pub tick_ms: u64,
    /// Installations of one endpoint delivered to at once (each in order). Default 8.
    pub max_in_flight: usize,
    /// Failed attempts in a row that open an endpoint's circuit. Default 5.
    pub circuit_failure_threshold: i64,
    /// How long an open circuit first waits before one probe; doubled after each failed
    /// probe. Default 30000.
    pub circuit_open_ms: u64,
    /// The longest an open circuit waits. Default 600000.
    pub circuit_open_max_ms: u64,
    /// Days delivered deliveries and attempts are kept. Default 7.
    pub retention_days: u64,
    /// The NATS JetStream sink; off unless `url` is set.
    pub nats: NatsConfig,
}

/// The NATS JetStream sink (`[delivery.nats]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NatsConfig {
    /// `nats://host:port`; unset: no sink.
    pub url: Option<String>,
    /// The stream, created if missing. Default `SLUICE_EVENTS`.
    pub stream: String,
    /// Subjects are `{subject_prefix}.{driver}.{installation}`. Default `sluice.events`.
    pub subject_prefix: String,
    /// Retention of a stream this host creates, days. Default 7.
    pub max_age_days: u64,
    /// How long a stream this host creates remembers message ids (duplicates dropped),
    /// seconds. Default 120.
    pub duplicate_window_secs: u64,
}

impl Default for NatsConfig {
    fn default() -> Self {
        let d = crate::delivery::nats::NatsOptions::new(String::new());
        Self {
            url: None,
            stream: d.stream,
            subject_prefix: d.subject_prefix,
            max_age_days: d.max_age.as_secs() / 86_400,
            duplicate_window_secs: d.duplicate_window.as_secs(),
        }
    }
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        let d = crate::delivery::DeliveryOptions::default();
        Self {
            retry_schedule: crate::delivery::DEFAULT_RETRY_SCHEDULE.into(),
            timeout_ms: d.timeout.as_millis() as u64,
            lease_secs: d.lease.as_secs(),
            tick_ms: d.tick.as_millis() as u64,
            max_in_flight: d.max_in_flight,
            circuit_failure_threshold: d.circuit_threshold,
            circuit_open_ms: d.circuit_open.as_millis() as u64,
            circuit_open_max_ms: d.circuit_open_max.as_millis() as u64,
            retention_days: d.retention.as_secs() / 86_400,
            nats: NatsConfig::default(),
        }
    }
}

impl DeliveryConfig {
    pub fn options(&self) -> anyhow::Result<crate::delivery::DeliveryOptions> {
        let retry_schedule = crate::delivery::parse_schedule(&self.retry_schedule)
            .map_err(|e| anyhow::anyhow!("[delivery] retry_schedule: {e}"))?;
        if self.timeout_ms == 0 || self.tick_ms == 0 || self.lease_secs == 0 {
            bail!("[delivery] timeout_ms, tick_ms and lease_secs must be positive");
        }
        if self.lease_secs.saturating_mul(1000) <= self.timeout_ms.saturating_add(1000) {
            bail!(
                "[delivery] lease_secs ({} s) must exceed timeout_ms ({} ms) by more than a second: a node's sends must end inside its lease, or another node may send them again",
                self.lease_secs,
                self.timeout_ms
            );
        }
        if self.circuit_failure_threshold < 1 || self.max_in_flight == 0 {
            bail!("[delivery] circuit_failure_threshold and max_in_flight must be at least 1");
        }
        let nats = match &self.nats.url {
            None => None,
            Some(url) => {
                let n = &self.nats;
                let token_ok = |t: &str| {
                    !t.is_empty()
                        && t.split('.').all(|part| {
                            !part.is_empty()
                                && part
                                    .bytes()
                                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
                        })
                };
                if !token_ok(&n.subject_prefix) {
                    bail!(
                        "[delivery.nats] subject_prefix must be dot-separated tokens of letters, digits, `_` and `-`"
                    );
                }
                if !token_ok(&n.stream) || n.stream.contains('.') {
                    bail!("[delivery.nats] stream must be letters, digits, `_` and `-`");
                }
                Some(crate::delivery::nats::NatsOptions {
                    url: url.clone(),
                    stream: n.stream.clone(),
                    subject_prefix: n.subject_prefix.clone(),
                    max_age: Duration::from_secs(n.max_age_days.max(1) * 86_400),
                    duplicate_window: Duration::from_secs(n.duplicate_window_secs.max(1)),
                })
            }
        };
        Ok(crate::delivery::DeliveryOptions {
            retry_schedule,
            timeout: Duration::from_millis(self.timeout_ms),
            lease: Duration::from_secs(self.lease_secs),
            tick: Duration::from_millis(self.tick_ms),
            max_in_flight: self.max_in_flight,
            circuit_threshold: self.circuit_failure_threshold,
            circuit_open: Duration::from_millis(self.circuit_open_ms),
            circuit_open_max: Duration::from_millis(
                self.circuit_open_max_ms.max(self.circuit_open_ms),
            ),
            retention: Duration::from_secs(self.retention_days.max(1) * 86_400),
            nats,
        })
    }
}

/// Kept driver versions and hot-loading (`[catalog]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CatalogConfig {
    /// How often the drivers directory is scanned for new or changed files, ms; `0` reads
    /// it only at start. Default 2000.
    pub watch_interval_ms: u64,
    /// How often a node compares its drivers with the database, ms (PostgreSQL nodes also
    /// hear of changes at once through `LISTEN/NOTIFY`; this bounds a missed one).
    /// Default 5000.
    pub sync_interval_ms: u64,
    /// Largest component `POST /v1/drivers` takes, bytes. Default 64 MiB.
    pub max_driver_bytes: usize,
}

impl Default for CatalogConfig {
    fn default() -> Self {
        Self {
            watch_interval_ms: 2000,
            sync_interval_ms: 5000,
            max_driver_bytes: 64 << 20,
        }
    }
}

impl CatalogConfig {
    pub fn options(&self, dir: &std::path::Path) -> crate::drivers::CatalogOptions {
        crate::drivers::CatalogOptions {
            dir: dir.to_path_buf(),
            watch_interval: (self.watch_interval_ms > 0)
                .then(|| Duration::from_millis(self.watch_interval_ms)),
            sync_interval: Duration::from_millis(self.sync_interval_ms),
        }
    }
}

/// Retries of failed normalizations (`[retries]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetriesConfig {
    /// Normalizations tried in all, the first included, before an event is a dead letter.
    /// Default 6.
    pub max_attempts: i64,
    /// Wait before the second attempt, ms; each later one waits four times longer
    /// (with jitter). Default 5000.
    pub base_ms: u64,
    /// The longest wait, ms. Default 3600000.
    pub max_ms: u64,
}

impl Default for RetriesConfig {
    fn default() -> Self {
        let d = crate::pipeline::RetryOptions::default();
        Self {
            max_attempts: d.max_attempts,
            base_ms: d.base.as_millis() as u64,
            max_ms: d.max.as_millis() as u64,
        }
    }
}

impl RetriesConfig {
    pub fn options(&self) -> crate::pipeline::RetryOptions {
        crate::pipeline::RetryOptions {
            max_attempts: self.max_attempts,
            base: Duration::from_millis(self.base_ms),
            max: Duration::from_millis(self.max_ms),
            ..Default::default()
        }
    }
}

/// Scheduled polling (`[scheduler]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SchedulerConfig {
    /// How often a node looks for due installations. Default 500.
    pub tick_ms: u64,
    /// How long a node's claim on an installation lasts; a dead node's installations are
    /// polled by another once it has passed. Default 300.
    pub lease_secs: u64,
    /// Polls running at once on a node. Default 16.
    pub max_concurrent_polls: usize,
    /// Polls of one driver running at once on a node. Default 8.
    pub max_concurrent_polls_per_driver: usize,
    /// The shortest `poll_interval` honoured (shorter ones are raised to it). Default 5.
    pub min_poll_interval_secs: u64,
    /// The longest wait after failed polls. Default 3600.
    pub max_backoff_secs: u64,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        let d = crate::scheduler::SchedulerOptions::default();
        Self {
            tick_ms: d.tick.as_millis() as u64,
            lease_secs: d.lease.as_secs(),
            max_concurrent_polls: d.max_concurrent,
            max_concurrent_polls_per_driver: d.max_concurrent_per_driver,
            min_poll_interval_secs: d.min_interval.as_secs(),
            max_backoff_secs: d.max_backoff.as_secs(),
        }
    }
}

impl SchedulerConfig {
    pub fn options(&self) -> crate::scheduler::SchedulerOptions {
        crate::scheduler::SchedulerOptions {
            tick: Duration::from_millis(self.tick_ms),
            lease: Duration::from_secs(self.lease_secs),
            max_concurrent: self.max_concurrent_polls,
            max_concurrent_per_driver: self.max_concurrent_polls_per_driver,
            min_interval: Duration::from_secs(self.min_poll_interval_secs),
            max_backoff: Duration::from_secs(self.max_backoff_secs),
        }
    }
}

/// The authorization lifecycle (`[auth]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Where providers send users back after an authorization; must route to
    /// `GET /oauth/callback` of this server. Default `{public_url}/oauth/callback`.
    pub redirect_uri: Option<String>,
    /// How long a started authorization (its `state`) may take. Default 600.
    pub state_ttl_secs: u64,
    /// Tokens are refreshed this long before they expire. Default 300.
    pub refresh_margin_secs: u64,
    /// How long a node may hold an installation's refresh before another may take it
    /// over (a node that died mid-refresh). Default 60.
    pub refresh_lease_secs: u64,
    /// Wait after a failed refresh, doubled per failure up to the maximum. Default 30.
    pub refresh_backoff_min_secs: u64,
    /// Longest wait between refresh attempts. Default 3600.
    pub refresh_backoff_max_secs: u64,
    /// A refresh that has failed for this long makes the installation `needs_reauth`
    /// (a refused refresh token does at once). Default 86400.
    pub reauth_after_secs: u64,
    /// How often due refreshes and the retirement of rotated secrets run. Default 5000.
    pub maintenance_interval_ms: u64,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            redirect_uri: None,
            state_ttl_secs: 600,
            refresh_margin_secs: 300,
            refresh_lease_secs: 60,
            refresh_backoff_min_secs: 30,
            refresh_backoff_max_secs: 3600,
            reauth_after_secs: 86_400,
            maintenance_interval_ms: 5_000,
        }
    }
}

/// How the HTTP server protects itself from slow and numerous clients.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Time a client has to send a request's headers, from the moment the connection can
    /// take one (just opened, or the previous response sent): this is also how long an idle
    /// keep-alive connection stays open. Default 10000.
    pub header_timeout_ms: u64,
    /// Time a client has to send a whole request body once its headers are in. Default 10000.
    pub body_timeout_ms: u64,
    /// Connections served at once; more wait in the listen backlog. Default 4096.
    pub max_connections: usize,
    /// On SIGTERM/SIGINT: how long in-flight requests may take to finish before the process
    /// exits anyway. Default 10000.
    pub shutdown_grace_ms: u64,
    /// Longest a webhook waits for its commit before answering `503` (the provider retries;
    /// a commit that lands later makes the retry a duplicate). Default 5000.
    pub commit_timeout_ms: u64,
    /// How long a node trusts what it has cached of an installation (settings, sealed
    /// secrets) before reading it again; changes through this node apply at once. Default 2000.
    pub installation_cache_ttl_ms: u64,
    /// Installations that get series of their own in `/metrics` (the first this many a node
    /// records); the rest share `installation="_other"`, so the series stay bounded.
    /// `0` turns the per-installation series off. Default 100.
    pub metrics_installation_series: u64,
}

/// Database limits.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// Longest wait for a connection, a statement or a lock before the operation fails as
    /// unavailable. Default 5000.
    pub timeout_ms: u64,
    /// Pool size. Default 4 on SQLite, 10 on PostgreSQL.
    pub max_connections: Option<u32>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            header_timeout_ms: 10_000,
            body_timeout_ms: 10_000,
            max_connections: 4096,
            shutdown_grace_ms: 10_000,
            commit_timeout_ms: 5_000,
            installation_cache_ttl_ms: 2_000,
            metrics_installation_series: 100,
        }
    }
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            timeout_ms: 5_000,
            max_connections: None,
        }
    }
}

impl ServerConfig {
    pub fn header_timeout(&self) -> Duration {
        Duration::from_millis(self.header_timeout_ms)
    }
    pub fn body_timeout(&self) -> Duration {
        Duration::from_millis(self.body_timeout_ms)
    }
    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_millis(self.shutdown_grace_ms)
    }
    pub fn commit_timeout(&self) -> Duration {
        Duration::from_millis(self.commit_timeout_ms)
    }
    pub fn installation_cache_ttl(&self) -> Duration {
        Duration::from_millis(self.installation_cache_ttl_ms)
    }
}

impl StoreConfig {
    pub fn options(&self) -> sluice_store::StoreOptions {
        sluice_store::StoreOptions {
            timeout: Duration::from_millis(self.timeout_ms),
            max_connections: self.max_connections,
        }
    }
}

/// Limits applied to every driver call.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SandboxConfig {
    /// Wall-clock budget of one webhook delivery (verify + handle + normalize). Default 2000.
    pub webhook_timeout_ms: u64,
    /// Linear memory per instance. Default 64 MiB.
    pub max_memory_bytes: usize,
    /// Bytes a call may return (raw events and records together). Default 8 MiB.
    pub max_output_bytes: usize,
    /// Outbound HTTP requests per call. Default 16.
    pub max_outbound_requests: u32,
    /// Largest outbound response body handed to a guest. Default 4 MiB.
    pub max_response_bytes: usize,
    /// Instances that may run at once; more wait briefly, then get `503`. Default 64.
    pub max_concurrent_instances: u32,
    /// Threads that run driver code, apart from the ones serving HTTP, so a busy or
    /// hostile driver cannot take the cores the server answers on. Default: one less
    /// than the machine's cores, at least 1.
    pub guest_threads: Option<usize>,
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
            drivers: Default::default(),
            max_body_bytes: 1024 * 1024,
            sandbox: SandboxConfig::default(),
            server: ServerConfig::default(),
            store: StoreConfig::default(),
            auth: AuthConfig::default(),
            scheduler: SchedulerConfig::default(),
            retries: RetriesConfig::default(),
            delivery: DeliveryConfig::default(),
            catalog: CatalogConfig::default(),
            log_format: LogFormat::default(),
        }
    }
}

impl Default for SandboxConfig {
    fn default() -> Self {
        Self {
            webhook_timeout_ms: 2_000,
            max_memory_bytes: 64 * 1024 * 1024,
            max_output_bytes: 8 * 1024 * 1024,
            max_outbound_requests: 16,
            max_response_bytes: 4 * 1024 * 1024,
            max_concurrent_instances: 64,
            guest_threads: None,
        }
    }
}

impl SandboxConfig {
    pub fn webhook_timeout(&self) -> Duration {
        Duration::from_millis(self.webhook_timeout_ms)
    }

    /// The guest threads in force.
    pub fn guest_threads(&self) -> usize {
        self.guest_threads.unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map_or(1, |n| n.get().saturating_sub(1))
                .max(1)
        })
    }
}

impl Config {
    /// Load defaults, then the file (`path`, or `sluice.toml` if it exists), then the
    /// environment.
    pub fn load(path: Option<&Path>) -> anyhow::Result<Self> {
        let mut config = match path {
            Some(path) => Self::from_file(path)?,
            None if Path::new("sluice.toml").exists() => Self::from_file(Path::new("sluice.toml"))?,
            None => Self::default(),
        };
        config.apply_env(|key| std::env::var(key).ok())?;
        Ok(config)
    }

    fn from_file(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading config file {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("parsing config file {}", path.display()))
    }

    /// Apply `SLUICE_*` variables over the current values.
    pub fn apply_env(&mut self, var: impl Fn(&str) -> Option<String>) -> anyhow::Result<()> {
        fn parsed<T: std::str::FromStr>(key: &str, value: String) -> anyhow::Result<T> {
            value
                .trim()
                .parse()
                .map_err(|_| anyhow::anyhow!("{key}={value:?} is not a valid number"))
        }
        if let Some(v) = var("SLUICE_LISTEN") {
            self.listen = v;
        }
        if let Some(v) = var("SLUICE_PUBLIC_URL") {
            self.public_url = Some(v);
        }
        if let Some(v) = var("SLUICE_DATA_DIR") {
            self.data_dir = v.into();
        }
        if let Some(v) = var("SLUICE_DATABASE_URL") {
            self.database_url = Some(v);
        }
        if let Some(v) = var("SLUICE_DRIVERS_DIR") {
            self.drivers_dir = v.into();
        }
        if let Some(v) = var("SLUICE_CACHE_DIR") {
            self.cache_dir = Some(v.into());
        }
        if let Some(v) = var("SLUICE_ADMIN_TOKEN") {
            self.admin_token = Some(v);
        }
        if let Some(v) = var("SLUICE_MASTER_KEY") {
            self.master_key = Some(v);
        }
        if let Some(v) = var("SLUICE_ALLOW_HOSTS") {
            self.allow_hosts.extend(
                v.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(String::from),
            );
        }
        if let Some(v) = var("SLUICE_MAX_BODY_BYTES") {
            self.max_body_bytes = parsed("SLUICE_MAX_BODY_BYTES", v)?;
        }
        if let Some(v) = var("SLUICE_WEBHOOK_TIMEOUT_MS") {
            self.sandbox.webhook_timeout_ms = parsed("SLUICE_WEBHOOK_TIMEOUT_MS", v)?;
        }
        if let Some(v) = var("SLUICE_MAX_MEMORY_BYTES") {
            self.sandbox.max_memory_bytes = parsed("SLUICE_MAX_MEMORY_BYTES", v)?;
        }
        let numbers: [(&str, &mut u64); 7] = [
            (
                "SLUICE_HEADER_TIMEOUT_MS",
                &mut self.server.header_timeout_ms,
            ),
            ("SLUICE_BODY_TIMEOUT_MS", &mut self.server.body_timeout_ms),
            (
                "SLUICE_SHUTDOWN_GRACE_MS",
                &mut self.server.shutdown_grace_ms,
            ),
            (
                "SLUICE_COMMIT_TIMEOUT_MS",
                &mut self.server.commit_timeout_ms,
            ),
            (
                "SLUICE_INSTALLATION_CACHE_TTL_MS",
                &mut self.server.installation_cache_ttl_ms,
            ),
            (
                "SLUICE_METRICS_INSTALLATION_SERIES",
                &mut self.server.metrics_installation_series,
            ),
            ("SLUICE_DB_TIMEOUT_MS", &mut self.store.timeout_ms),
        ];
        for (key, field) in numbers {
            if let Some(v) = var(key) {
                *field = parsed(key, v)?;
            }
        }
        if let Some(v) = var("SLUICE_OAUTH_REDIRECT_URI") {
            self.auth.redirect_uri = Some(v);
        }
        let auth: [(&str, &mut u64); 7] = [
            ("SLUICE_OAUTH_STATE_TTL_SECS", &mut self.auth.state_ttl_secs),
            (
                "SLUICE_REFRESH_MARGIN_SECS",
                &mut self.auth.refresh_margin_secs,
            ),
            (
                "SLUICE_REFRESH_LEASE_SECS",
                &mut self.auth.refresh_lease_secs,
            ),
            (
                "SLUICE_REFRESH_BACKOFF_MIN_SECS",
                &mut self.auth.refresh_backoff_min_secs,
            ),
            (
                "SLUICE_REFRESH_BACKOFF_MAX_SECS",
                &mut self.auth.refresh_backoff_max_secs,
            ),
            ("SLUICE_REAUTH_AFTER_SECS", &mut self.auth.reauth_after_secs),
            (
                "SLUICE_AUTH_MAINTENANCE_INTERVAL_MS",
                &mut self.auth.maintenance_interval_ms,
            ),
        ];
        for (key, field) in auth {
            if let Some(v) = var(key) {
                *field = parsed(key, v)?;
            }
        }
        if let Some(v) = var("SLUICE_DRIVERS_WATCH_MS") {
            self.catalog.watch_interval_ms = parsed("SLUICE_DRIVERS_WATCH_MS", v)?;
        }
        if let Some(v) = var("SLUICE_DRIVERS_SYNC_MS") {
            self.catalog.sync_interval_ms = parsed("SLUICE_DRIVERS_SYNC_MS", v)?;
        }
        if let Some(v) = var("SLUICE_MAX_DRIVER_BYTES") {
            self.catalog.max_driver_bytes = parsed("SLUICE_MAX_DRIVER_BYTES", v)?;
        }
        if let Some(v) = var("SLUICE_RETRY_MAX_ATTEMPTS") {
            self.retries.max_attempts = parsed("SLUICE_RETRY_MAX_ATTEMPTS", v)?;
        }
        if let Some(v) = var("SLUICE_RETRY_BASE_MS") {
            self.retries.base_ms = parsed("SLUICE_RETRY_BASE_MS", v)?;
        }
        let scheduler: [(&str, &mut u64); 4] = [
            ("SLUICE_SCHEDULER_TICK_MS", &mut self.scheduler.tick_ms),
            ("SLUICE_POLL_LEASE_SECS", &mut self.scheduler.lease_secs),
            (
                "SLUICE_POLL_MIN_INTERVAL_SECS",
                &mut self.scheduler.min_poll_interval_secs,
            ),
            (
                "SLUICE_POLL_MAX_BACKOFF_SECS",
                &mut self.scheduler.max_backoff_secs,
            ),
        ];
        for (key, field) in scheduler {
            if let Some(v) = var(key) {
                *field = parsed(key, v)?;
            }
        }
        if let Some(v) = var("SLUICE_MAX_CONNECTIONS") {
            self.server.max_connections = parsed("SLUICE_MAX_CONNECTIONS", v)?;
        }
        if let Some(v) = var("SLUICE_LOG_FORMAT") {
            self.log_format = match v.trim() {
                "" => self.log_format,
                "text" => LogFormat::Text,
                "json" => LogFormat::Json,
                other => bail!("SLUICE_LOG_FORMAT={other:?}: use text or json"),
            };
        }
        let delivery = &mut self.delivery;
        if let Some(v) = var("SLUICE_DELIVERY_RETRY_SCHEDULE") {
            delivery.retry_schedule = v;
        }
        let delivery_numbers: [(&str, &mut u64); 5] = [
            ("SLUICE_DELIVERY_TIMEOUT_MS", &mut delivery.timeout_ms),
            ("SLUICE_DELIVERY_LEASE_SECS", &mut delivery.lease_secs),
            ("SLUICE_DELIVERY_TICK_MS", &mut delivery.tick_ms),
            (
                "SLUICE_DELIVERY_CIRCUIT_OPEN_MS",
                &mut delivery.circuit_open_ms,
            ),
            (
                "SLUICE_DELIVERY_CIRCUIT_OPEN_MAX_MS",
                &mut delivery.circuit_open_max_ms,
            ),
        ];
        for (key, field) in delivery_numbers {
            if let Some(v) = var(key) {
                *field = parsed(key, v)?;
            }
        }
        if let Some(v) = var("SLUICE_DELIVERY_CIRCUIT_THRESHOLD") {
            delivery.circuit_failure_threshold = parsed("SLUICE_DELIVERY_CIRCUIT_THRESHOLD", v)?;
        }
        if let Some(v) = var("SLUICE_NATS_URL") {
            delivery.nats.url = Some(v).filter(|v| !v.trim().is_empty());
        }
        if let Some(v) = var("SLUICE_NATS_STREAM") {
            delivery.nats.stream = v;
        }
        if let Some(v) = var("SLUICE_NATS_SUBJECT_PREFIX") {
            delivery.nats.subject_prefix = v;
        }
        Ok(())
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

    /// The authorization lifecycle's options in force.
    pub fn auth_options(&self) -> crate::auth::AuthOptions {
        let a = &self.auth;
        let mut options = crate::auth::AuthOptions::new(&self.public_url());
        if let Some(uri) = &a.redirect_uri {
            options.redirect_uri = uri.clone();
        }
        options.state_ttl = Duration::from_secs(a.state_ttl_secs);
        options.refresh_margin = Duration::from_secs(a.refresh_margin_secs);
        options.refresh_lease = Duration::from_secs(a.refresh_lease_secs);
        options.backoff_min = Duration::from_secs(a.refresh_backoff_min_secs);
        options.backoff_max = Duration::from_secs(a.refresh_backoff_max_secs);
        options.reauth_after = Duration::from_secs(a.reauth_after_secs);
        options.maintenance_interval = Duration::from_millis(a.maintenance_interval_ms);
        options
    }

    /// The driver policy in force.
    pub fn policy(&self) -> anyhow::Result<Policy> {
        Policy::new(&self.drivers).map_err(|e| anyhow::anyhow!(e))
    }

    /// Parse and check everything that can be wrong before starting; returns the
    /// development grants.
    pub fn validate(&self) -> anyhow::Result<Vec<OriginPattern>> {
        self.policy()?;
        self.delivery.options()?;
        if self.max_body_bytes == 0 {
            bail!("max_body_bytes must be positive");
        }
        let server = &self.server;
        if [
            server.header_timeout_ms,
            server.body_timeout_ms,
            server.commit_timeout_ms,
            self.store.timeout_ms,
        ]
        .contains(&0)
            || server.max_connections == 0
        {
            bail!("server timeouts, server.max_connections and store.timeout_ms must be positive");
        }
        if self.sandbox.webhook_timeout_ms == 0
            || self.sandbox.max_concurrent_instances == 0
            || self.sandbox.guest_threads == Some(0)
        {
            bail!(
                "sandbox.webhook_timeout_ms, max_concurrent_instances and guest_threads must be positive"
            );
        }
        if self.catalog.sync_interval_ms == 0 || self.catalog.max_driver_bytes == 0 {
            bail!("catalog.sync_interval_ms and catalog.max_driver_bytes must be positive");
        }
        if self.retries.max_attempts < 1 || self.retries.base_ms == 0 {
            bail!("retries.max_attempts and retries.base_ms must be positive");
        }
        let s = &self.scheduler;
        if s.tick_ms == 0
            || s.lease_secs == 0
            || s.max_concurrent_polls == 0
            || s.max_concurrent_polls_per_driver == 0
        {
            bail!("scheduler.tick_ms, lease_secs and the concurrency limits must be positive");
        }
        let auth = &self.auth;
        if auth.state_ttl_secs == 0
            || auth.refresh_lease_secs == 0
            || auth.maintenance_interval_ms == 0
        {
            bail!(
                "auth.state_ttl_secs, refresh_lease_secs and maintenance_interval_ms must be positive"
            );
        }
        if auth.refresh_backoff_min_secs > auth.refresh_backoff_max_secs {
            bail!("auth.refresh_backoff_min_secs must not exceed refresh_backoff_max_secs");
        }
        if let Some(uri) = &auth.redirect_uri {
            let parsed = url::Url::parse(uri)
                .map_err(|e| anyhow::anyhow!("auth.redirect_uri {uri:?}: {e}"))?;
            if !matches!(parsed.scheme(), "https" | "http") {
                bail!("auth.redirect_uri must be an http(s) URL");
            }
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

    #[test]
    fn env_overrides_defaults() {
        let mut config = Config::default();
        config
            .apply_env(|k| match k {
                "SLUICE_LISTEN" => Some("127.0.0.1:9999".into()),
                "SLUICE_ALLOW_HOSTS" => Some("http://127.0.0.1:*, https://a.example".into()),
                "SLUICE_WEBHOOK_TIMEOUT_MS" => Some("500".into()),
                _ => None,
            })
            .unwrap();
        assert_eq!(config.listen, "127.0.0.1:9999");
        assert_eq!(
            config.allow_hosts,
            ["http://127.0.0.1:*", "https://a.example"]
        );
        assert_eq!(config.sandbox.webhook_timeout_ms, 500);
        assert_eq!(config.public_url(), "http://127.0.0.1:9999");
        assert_eq!(config.validate().unwrap().len(), 2);
    }

    #[test]
    fn bad_numbers_are_reported_with_their_variable() {
        let err = Config::default()
            .apply_env(|k| (k == "SLUICE_MAX_BODY_BYTES").then(|| "lots".into()))
            .unwrap_err();
        assert!(err.to_string().contains("SLUICE_MAX_BODY_BYTES"));
    }

    #[test]
    fn file_rejects_unknown_keys() {
        let err = toml::from_str::<Config>("listne = \"x\"").unwrap_err();
        assert!(err.to_string().contains("listne"));
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

    #[test]
    fn default_cache_is_in_data_dir() {
        assert_eq!(
            Config::default().cache_dir(),
            PathBuf::from("sluice-data/cache")
        );
        let mut config = Config::default();
        config
            .apply_env(|k| (k == "SLUICE_CACHE_DIR").then(|| "/tmp/c".into()))
            .unwrap();
        assert_eq!(config.cache_dir(), PathBuf::from("/tmp/c"));
    }

    #[test]
    fn default_database_is_sqlite_in_data_dir() {
        assert_eq!(
            Config::default().database_url(),
            "sqlite://sluice-data/sluice.db"
        );
    }
}
