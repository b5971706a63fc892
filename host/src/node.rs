//! One `sluice serve` node: every subsystem built from the [`Config`], the background
//! loops, and the HTTP server until shutdown.
//!
//! [`Node::start`] opens the store, builds the sandbox and the [`Services`], loads the
//! drivers (kept versions, then the directory) and schedules polling; [`Node::serve`] runs
//! the loops — token maintenance, polling, retries, delivery, the driver catalog — beside
//! the server and, on shutdown, stops them and lets queued commits finish. The process's
//! roles all come from the configuration; this is the one place that wires them.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;

use crate::auth::Auth;
use crate::capabilities::{CapabilityConfig, Clock};
use crate::config::Config;
use crate::delivery::Deliverer;
use crate::drivers::DriverCatalog;
use crate::net::OriginPattern;
use crate::pipeline::{InProcessDriver, Pipeline};
use crate::runtime::{CodeCache, Runtime};
use crate::scheduler::Scheduler;
use crate::server::{AppState, listener, router};
use crate::services::Services;

/// What a program embedding the host adds to a node; `sluice serve` adds nothing.
#[derive(Default)]
pub struct Extensions {
    /// Drivers run as host code instead of their components, by driver id (see
    /// [`InProcessDriver`]).
    pub in_process: Vec<(String, Arc<dyn InProcessDriver>)>,
}

/// A started node, ready to serve.
pub struct Node {
    config: Config,
    grants: Vec<OriginPattern>,
    state: Arc<AppState>,
    /// Installations scheduled for polling at start.
    scheduled: usize,
}

impl Node {
    /// Build every subsystem from `config` (checked first) and load the drivers.
    pub async fn start(config: Config, extensions: Extensions) -> anyhow::Result<Self> {
        let grants = config.validate()?;
        sluice_store::create_private_dir(&config.data_dir)
            .with_context(|| format!("creating data directory {}", config.data_dir.display()))?;
        let key = sluice_store::MasterKey::load(
            config.master_key.as_deref(),
            &config.data_dir.join("master.key"),
        )
        .context("loading the master key for secrets")?;
        let store = sluice_store::Store::connect_with(
            &config.database_url(),
            sluice_store::SecretCipher::new(key),
            config.store,
        )
        .await
        .context("opening the database")?;
        let admin_token = admin_token(&config)?;
        let runtime = Runtime::new(
            CapabilityConfig {
                grants: grants.clone(),
                clock: Clock::System,
                limits: config.sandbox.clone(),
                policy: config.policy()?,
                sections: config.capabilities.clone(),
            },
            Some(CodeCache::new(config.cache_dir(), &key)),
        )?;
        let services = Services::new(
            store.clone(),
            Arc::new(runtime),
            config.server.installation_cache_ttl(),
        );
        let mut pipeline = Pipeline::new(
            services.clone(),
            config.server.commit_timeout(),
            config.retries.clone(),
        );
        for (driver_id, driver) in extensions.in_process {
            pipeline = pipeline.with_in_process(&driver_id, driver);
        }
        // Refusals are logged as they happen; the other drivers load.
        let catalog = Arc::new(DriverCatalog::new(
            services.clone(),
            config.catalog.clone(),
            config.drivers_dir.clone(),
        ));
        catalog
            .start()
            .await
            .context("loading the drivers kept in the database")?;
        if services.drivers.list().is_empty() {
            tracing::warn!(dir = %config.drivers_dir.display(), "no drivers loaded; run `cargo xtask build-drivers`");
        }
        let auth = Arc::new(Auth::new(
            services.clone(),
            config.auth.clone(),
            &config.public_url(),
        ));
        let scheduler = Arc::new(Scheduler::new(
            services.clone(),
            auth.clone(),
            config.scheduler.clone(),
        ));
        let scheduled = scheduler
            .sync()
            .await
            .context("scheduling the polled installations")?;
        let delivery = Arc::new(
            Deliverer::new(store, config.delivery.clone(), grants.clone())
                .context("setting up delivery")?,
        );
        let state = Arc::new(AppState {
            services,
            pipeline: Arc::new(pipeline),
            catalog,
            auth,
            scheduler,
            delivery,
            public_url: config.public_url(),
            admin_token,
            max_body_bytes: config.max_body_bytes,
            body_timeout: config.server.body_timeout(),
            long_poll_recheck: config.server.long_poll_recheck(),
        });
        Ok(Self {
            config,
            grants,
            state,
            scheduled,
        })
    }

    /// What request handlers share.
    pub fn state(&self) -> &Arc<AppState> {
        &self.state
    }

    /// The operator's development grants (`allow_hosts`).
    pub fn grants(&self) -> &[OriginPattern] {
        &self.grants
    }

    /// The HTTP routes over this node.
    pub fn router(&self) -> axum::Router {
        router(self.state.clone())
    }

    /// Serve on `listener`, with every background loop, until `shutdown` resolves; then
    /// stop the loops and let queued commits finish.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let state = self.state.clone();
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let until_stopped = move || {
            let mut stopped = stopped.clone();
            async move {
                let _ = stopped.wait_for(|s| *s).await;
            }
        };
        let loops = [
            {
                let (auth, until) = (state.auth.clone(), until_stopped());
                tokio::spawn(async move { auth.run_maintenance(until).await })
            },
            tokio::spawn(state.scheduler.clone().run(until_stopped())),
            {
                let (pipeline, until) = (state.pipeline.clone(), until_stopped());
                tokio::spawn(async move { pipeline.run_retries(until).await })
            },
            tokio::spawn(state.delivery.clone().run(until_stopped())),
            tokio::spawn(state.catalog.clone().run(until_stopped())),
        ];
        tracing::info!(
            listen = %self.config.listen,
            database = %crate::config::redact_url(&self.config.database_url()),
            drivers = ?state.services.drivers.list().iter().map(|d| d.info.id.clone()).collect::<Vec<_>>(),
            polled_installations = self.scheduled,
            "sluice listening on http://{}",
            self.config.listen
        );
        let served = listener::serve(
            listener,
            router(state.clone()),
            &self.config.server,
            shutdown,
        )
        .await
        .context("serving HTTP");
        let _ = stop.send(true);
        for handle in loops {
            let _ = handle.await;
        }
        // In-flight deliveries have been answered; let queued commits finish before exiting.
        state.services.store.close().await;
        served
    }
}

/// The configured token, or the one kept in the data directory, or a new one (printed once).
fn admin_token(config: &Config) -> anyhow::Result<String> {
    if let Some(token) = &config.admin_token {
        anyhow::ensure!(
            token.len() >= 16,
            "SLUICE_ADMIN_TOKEN must be at least 16 characters"
        );
        return Ok(token.clone());
    }
    let path = config.data_dir.join("admin.token");
    if let Ok(token) = std::fs::read_to_string(&path) {
        return Ok(token.trim().to_string());
    }
    let token = format!("sk_admin_{}", hex::encode(rand::random::<[u8; 24]>()));
    write_private(&path, token.as_bytes())
        .with_context(|| format!("writing {}", path.display()))?;
    // Printed once, on the terminal only, so the operator can copy it; never into a log
    // stream (a service's stdout is its log).
    if !std::io::IsTerminal::is_terminal(&std::io::stdout()) {
        tracing::info!(path = %path.display(), "generated an admin token; it is in this file");
        return Ok(token);
    }
    println!(
        "Generated admin token (kept in {}): {token}",
        path.display()
    );
    let _ = std::io::stdout().flush();
    Ok(token)
}

/// Create a file readable only by its owner.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(bytes)
}
