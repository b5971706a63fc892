//! The `[server]` section: how the HTTP server protects itself from slow and numerous
//! clients, and how long a webhook waits for its commit.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How the HTTP server protects itself from slow and numerous clients (`[server]`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Time a client has to send a request's headers, ms, from the moment the connection
    /// can take one (just opened, or the previous response sent): this is also how long an
    /// idle keep-alive connection stays open. Default 10000.
    pub header_timeout_ms: u64,
    /// Time a client has to send a whole request body once its headers are in, ms.
    /// Default 10000.
    pub body_timeout_ms: u64,
    /// Connections served at once; more wait in the listen backlog. Default 4096.
    pub max_connections: usize,
    /// On SIGTERM/SIGINT: how long in-flight requests may take to finish before the process
    /// exits anyway, ms. Default 10000.
    pub shutdown_grace_ms: u64,
    /// Longest a webhook waits for its commit before answering `503`, ms (the provider
    /// retries; a commit that lands later makes the retry a duplicate). Default 5000.
    pub commit_timeout_ms: u64,
    /// How long a node trusts what it has cached of an installation (settings, sealed
    /// secrets) before reading it again, ms; changes through this node apply at once.
    /// Default 2000.
    pub installation_cache_ttl_ms: u64,
    /// Installations that get series of their own in `/metrics` (the first this many a node
    /// records); the rest share `installation="_other"`, so the series stay bounded.
    /// `0` turns the per-installation series off. Default 100.
    pub metrics_installation_series: u64,
    /// How often a long-poll (`GET /v1/events?wait=`) reads the log again on its own, ms, to
    /// see events other nodes committed (this node's own commits wake it at once).
    /// Default 1000.
    pub long_poll_recheck_ms: u64,
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
            long_poll_recheck_ms: 1_000,
        }
    }
}

impl ServerConfig {
    /// Check what the types cannot; `Err` names the keys.
    pub fn validate(&self) -> Result<(), String> {
        if [
            self.header_timeout_ms,
            self.body_timeout_ms,
            self.commit_timeout_ms,
            self.long_poll_recheck_ms,
        ]
        .contains(&0)
            || self.max_connections == 0
        {
            return Err(
                "[server] header_timeout_ms, body_timeout_ms, commit_timeout_ms, long_poll_recheck_ms and max_connections must be positive"
                    .into(),
            );
        }
        Ok(())
    }

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

    pub fn long_poll_recheck(&self) -> Duration {
        Duration::from_millis(self.long_poll_recheck_ms)
    }

    pub fn installation_cache_ttl(&self) -> Duration {
        Duration::from_millis(self.installation_cache_ttl_ms)
    }
}
