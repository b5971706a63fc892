//! `sluice serve`: open the store, load the drivers, serve HTTP until interrupted.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use tracing_subscriber::EnvFilter;

use crate::capabilities::{CapabilityConfig, Clock};
use crate::config::Config;
use crate::drivers::DriverCatalog;
use crate::pipeline::{Pipeline, PipelineOptions};
use crate::registry::DriverRegistry;
use crate::runtime::{CodeCache, Runtime};
use crate::server::{AppState, listener, router};

#[derive(Args)]
pub struct ServeArgs {
    /// Configuration file. Default: `sluice.toml` when present.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Address to listen on [env: SLUICE_LISTEN] [default: 127.0.0.1:8080].
    #[arg(long)]
    listen: Option<String>,
    /// `sqlite://FILE` or `postgres://…` [env: SLUICE_DATABASE_URL] [default: sqlite in the data dir].
    #[arg(long)]
    database_url: Option<String>,
    /// Directory of driver components [env: SLUICE_DRIVERS_DIR] [default: target/drivers].
    #[arg(long)]
    drivers_dir: Option<PathBuf>,
    /// Data directory [env: SLUICE_DATA_DIR] [default: sluice-data].
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    // A configuration error is printed by `main` (stderr); everything after it is logged
    // in the configured format.
    let mut config = Config::load(args.config.as_deref())?;
    init_tracing(config.log_format);
    crate::metrics::set_installation_series(
        usize::try_from(config.server.metrics_installation_series).unwrap_or(usize::MAX),
    );
    if let Some(handle) = crate::metrics::install() {
        // Histograms keep their samples until upkeep folds them in; without a scraper
        // that would grow without bound.
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(5));
            loop {
                tick.tick().await;
                handle.run_upkeep();
            }
        });
    }
    if let Some(v) = args.listen {
        config.listen = v;
    }
    if let Some(v) = args.database_url {
        config.database_url = Some(v);
    }
    if let Some(v) = args.drivers_dir {
        config.drivers_dir = v;
    }
    if let Some(v) = args.data_dir {
        config.data_dir = v;
    }
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
        config.store.options(),
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
        },
        Some(CodeCache::new(config.cache_dir(), &key)),
    )?;
    let listener = tokio::net::TcpListener::bind(&config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    let pipeline = Arc::new(Pipeline::new(
        Arc::new(runtime),
        Arc::new(DriverRegistry::default()),
        store.clone(),
        PipelineOptions {
            commit_timeout: config.server.commit_timeout(),
            installation_ttl: config.server.installation_cache_ttl(),
        },
    ));
    // Refusals are logged as they happen; the other drivers load.
    let catalog = Arc::new(DriverCatalog::new(
        pipeline.clone(),
        config.catalog.options(&config.drivers_dir),
    ));
    catalog
        .start()
        .await
        .context("loading the drivers kept in the database")?;
    if pipeline.drivers().list().is_empty() {
        tracing::warn!(dir = %config.drivers_dir.display(), "no drivers loaded; run `cargo xtask build-drivers`");
    }
    let auth = Arc::new(crate::auth::Auth::new(
        pipeline.clone(),
        config.auth_options(),
    ));
    let scheduler = Arc::new(crate::scheduler::Scheduler::new(
        pipeline.clone(),
        auth.clone(),
        config.scheduler.options(),
    ));
    let scheduled = scheduler
        .sync()
        .await
        .context("scheduling the polled installations")?;
    // Background work stops when the server does.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let until_stopped = move || {
        let mut stopped = stopped.clone();
        async move {
            let _ = stopped.wait_for(|s| *s).await;
        }
    };
    let maintenance = {
        let (auth, until) = (auth.clone(), until_stopped.clone());
        tokio::spawn(async move { auth.run_maintenance(until()).await })
    };
    let polling = tokio::spawn(scheduler.clone().run(until_stopped()));
    let delivery = Arc::new(
        crate::delivery::Deliverer::new(store.clone(), config.delivery.options()?, grants.clone())
            .context("setting up delivery")?,
    );
    let delivering = tokio::spawn(delivery.clone().run(until_stopped()));
    let cataloguing = tokio::spawn(catalog.clone().run(until_stopped()));
    let retries = {
        let (pipeline, until, options) = (
            pipeline.clone(),
            until_stopped.clone(),
            config.retries.options(),
        );
        tokio::spawn(async move { pipeline.run_retries(options, until()).await })
    };
    let state = Arc::new(AppState {
        catalog,
        max_driver_bytes: config.catalog.max_driver_bytes,
        auth,
        scheduler,
        delivery,
        retries: config.retries.options(),
        pipeline,
        public_url: config.public_url(),
        admin_token,
        max_body_bytes: config.max_body_bytes,
        body_timeout: config.server.body_timeout(),
    });
    tracing::info!(
        listen = %config.listen,
        database = %redact_url(&config.database_url()),
        drivers = ?state.pipeline.drivers().list().iter().map(|d| d.info.id.clone()).collect::<Vec<_>>(),
        polled_installations = scheduled,
        "sluice listening on http://{}",
        config.listen
    );
    listener::serve(listener, router(state), &config.server, shutdown_signal())
        .await
        .context("serving HTTP")?;
    let _ = stop.send(true);
    let _ = maintenance.await;
    let _ = polling.await;
    let _ = retries.await;
    let _ = delivering.await;
    let _ = cataloguing.await;
    // In-flight deliveries have been answered; let queued commits finish before exiting.
    store.close().await;
    tracing::info!("stopped");
    Ok(())
}

fn init_tracing(format: crate::config::LogFormat) {
    let filter = EnvFilter::try_from_env("SLUICE_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    // `try_init` because tests may start several servers in one process.
    let _ = match format {
        crate::config::LogFormat::Text => builder.try_init(),
        // One JSON object a line: `timestamp`, `level`, `target`, `fields` (with `message`).
        crate::config::LogFormat::Json => builder.json().flatten_event(false).try_init(),
    };
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

/// Hide a password in a database URL before logging it.
fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("redacted"));
            u.to_string()
        }
        _ => url.to_string(),
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let ctrl_c = tokio::signal::ctrl_c();
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = ctrl_c.await;
        }
    }
    tracing::info!("shutting down");
}
