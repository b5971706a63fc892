//! Scheduled polling. Every installation whose driver polls and whose settings name a
//! `poll_interval` (seconds, at least `[scheduler] min_poll_interval_secs`) is polled
//! (`poll`): by one node at a time (a lease per installation in the
//! store, taken over when a node dies), with jitter, a global and a per-driver limit on
//! polls at once, and exponential backoff after failures. A run fetches at most
//! [`MAX_PAGES`] pages; when the provider has more, the next run is due
//! at once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sluice_store::{Installation, InstallationId, PollEnd, StoreError};
use tokio::sync::Semaphore;

mod poll;

use crate::auth::Auth;
use crate::runtime::LoadedDriver;
use crate::services::Services;

pub use poll::{
    CURSOR_KEY, MAX_BACKFILL_PAGES, MAX_PAGES, PollError, Polled, PolledPage, poll_page,
};

/// Scheduled polling (`[scheduler]`).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SchedulerConfig {
    /// How often a node looks for due installations, ms. Default 500.
    pub tick_ms: u64,
    /// How long a node's claim on an installation lasts, seconds (longer than a poll run
    /// takes); a dead node's installations are polled by another once it has passed.
    /// Default 300.
    pub lease_secs: u64,
    /// Polls running at once on a node. Default 16.
    pub max_concurrent_polls: usize,
    /// Polls of one driver running at once on a node. Default 8.
    pub max_concurrent_polls_per_driver: usize,
    /// The shortest `poll_interval` honoured, seconds (shorter ones are raised to it).
    /// Default 5.
    pub min_poll_interval_secs: u64,
    /// The longest wait after failed polls, seconds. Default 3600.
    pub max_backoff_secs: u64,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        Self {
            tick_ms: 500,
            lease_secs: 300,
            max_concurrent_polls: 16,
            max_concurrent_polls_per_driver: 8,
            min_poll_interval_secs: 5,
            max_backoff_secs: 3600,
        }
    }
}

impl SchedulerConfig {
    /// Check what the types cannot; `Err` names the keys.
    pub fn validate(&self) -> Result<(), String> {
        if self.tick_ms == 0
            || self.lease_secs == 0
            || self.max_concurrent_polls == 0
            || self.max_concurrent_polls_per_driver == 0
        {
            return Err(
                "[scheduler] tick_ms, lease_secs and the concurrency limits must be positive"
                    .into(),
            );
        }
        Ok(())
    }

    fn tick(&self) -> Duration {
        Duration::from_millis(self.tick_ms)
    }

    fn lease(&self) -> Duration {
        Duration::from_secs(self.lease_secs)
    }

    fn min_interval(&self) -> Duration {
        Duration::from_secs(self.min_poll_interval_secs)
    }

    fn max_backoff(&self) -> Duration {
        Duration::from_secs(self.max_backoff_secs)
    }
}

/// The scheduler of one node. Cheap to share (`Arc`).
pub struct Scheduler {
    services: Services,
    auth: Arc<Auth>,
    config: SchedulerConfig,
    /// This node's name in poll leases.
    node: String,
    running: Arc<Semaphore>,
    per_driver: Mutex<HashMap<String, Arc<Semaphore>>>,
}

/// Why the operator's "poll now" did not run.
#[derive(Debug, thiserror::Error)]
pub enum PollNowError {
    #[error("a poll of this installation is running already (on this node or another)")]
    Busy,
    #[error(transparent)]
    Poll(#[from] PollError),
}

impl Scheduler {
    /// Polling of `services`' installations, refreshing tokens through `auth`.
    pub fn new(services: Services, auth: Arc<Auth>, config: SchedulerConfig) -> Self {
        Self {
            running: Arc::new(Semaphore::new(config.max_concurrent_polls.max(1))),
            per_driver: Mutex::default(),
            node: format!("node_{}", hex::encode(rand::random::<[u8; 12]>())),
            services,
            auth,
            config,
        }
    }

    fn now_ms(&self) -> i64 {
        self.services.now_ms()
    }

    fn ms(d: Duration) -> i64 {
        i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
    }

    /// The interval an installation is polled at: its `poll_interval` setting when its
    /// driver polls, raised to the floor.
    pub fn interval_for(
        &self,
        driver: &LoadedDriver,
        settings: &serde_json::Value,
    ) -> Option<Duration> {
        if !driver.info.ingestion_modes.contains(&"polling") {
            return None;
        }
        let seconds = settings.get("poll_interval")?.as_u64()?;
        Some(Duration::from_secs(seconds).max(self.config.min_interval()))
    }

    /// Schedule (or unschedule) an installation as its settings say; whether it is polled.
    /// The first poll is due within one interval, at a random point, so installations
    /// created together do not poll together.
    pub async fn schedule(&self, installation: &Installation) -> Result<bool, StoreError> {
        let store = &self.services.store;
        let interval = self
            .services
            .driver_for(installation)
            .and_then(|d| self.interval_for(&d, &installation.settings));
        match interval {
            Some(interval) => {
                let first = self.now_ms() + jitter(Self::ms(interval), 0.0, 1.0);
                store
                    .schedule_poll(&installation.id, Self::ms(interval), first)
                    .await?;
                Ok(true)
            }
            None => store
                .unschedule_poll(&installation.id)
                .await
                .map(|()| false),
        }
    }

    /// Schedule every live installation (at start, when drivers are loaded).
    pub async fn sync(&self) -> Result<usize, StoreError> {
        let mut scheduled = 0;
        for installation in &self.services.store.list_installations().await? {
            // A driver not loaded on this node keeps its schedule for the nodes that have it.
            if self
                .services
                .drivers
                .get(installation.driver_id.as_str())
                .is_none()
            {
                continue;
            }
            scheduled += usize::from(self.schedule(installation).await?);
        }
        Ok(scheduled)
    }

    /// Claim due installations every tick and poll them, until `shutdown` resolves. Polls
    /// running then finish (each commits page by page), their leases released.
    pub async fn run(self: Arc<Self>, shutdown: impl std::future::Future<Output = ()>) {
        let mut tick = tokio::time::interval(self.config.tick());
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => return,
                _ = tick.tick() => {
                    if let Err(e) = self.clone().tick().await {
                        tracing::warn!(error = %e, "claiming due polls failed");
                    }
                }
            }
        }
    }

    async fn tick(self: Arc<Self>) -> Result<(), StoreError> {
        let free = self.running.available_permits();
        if free == 0 {
            return Ok(());
        }
        let now = self.now_ms();
        let due = self
            .services
            .store
            .claim_due_polls(
                &self.node,
                now,
                now + Self::ms(self.config.lease()),
                free as i64,
            )
            .await?;
        for poll in due {
            let Ok(permit) = self.running.clone().try_acquire_owned() else {
                break;
            };
            let scheduler = self.clone();
            tokio::spawn(async move {
                let _permit = permit;
                scheduler
                    .poll_claimed(&poll.installation_id, poll.due_at)
                    .await;
            });
        }
        Ok(())
    }

    /// Poll an installation this node holds the lease of (due at `due_at`), then record
    /// how it went.
    async fn poll_claimed(&self, id: &InstallationId, due_at: i64) {
        let driver_id = self
            .services
            .store
            .get_installation(id)
            .await
            .ok()
            .flatten()
            .map(|i| i.driver_id.to_string())
            .unwrap_or_default();
        let slot = self.driver_slot(&driver_id);
        let result = match slot.acquire().await {
            Ok(_permit) => {
                // Late by the tick, the wait for a slot, and whatever held the node up.
                let lag_ms = self.now_ms().saturating_sub(due_at).max(0);
                crate::metrics::record_poll_lag(&driver_id, Duration::from_millis(lag_ms as u64));
                self.poll_once(id).await
            }
            Err(_) => return,
        };
        if let Err(e) = self.finish(id, &result).await {
            tracing::warn!(installation = %id, error = %e, "recording a poll failed; its lease expires by itself");
        }
    }

    /// When the next poll is due after `result`, and the lease released.
    async fn finish(
        &self,
        id: &InstallationId,
        result: &Result<Polled, PollError>,
    ) -> Result<(), StoreError> {
        let store = &self.services.store;
        let Some(status) = store.poll_status(id).await? else {
            return Ok(());
        };
        let now = self.now_ms();
        let (next, error) = match result {
            Ok(polled) if polled.retry_after_ms.is_some() => {
                let wait = i64::try_from(polled.retry_after_ms.unwrap_or(0)).unwrap_or(i64::MAX);
                (now.saturating_add(wait), None)
            }
            Ok(polled) if polled.has_more => (now, None),
            Ok(_) => (now + jitter(status.interval_ms, 0.9, 1.1), None),
            Err(e) => {
                let failures =
                    u32::try_from(status.consecutive_failures.clamp(0, 20)).unwrap_or(20);
                let backoff = status
                    .interval_ms
                    .saturating_mul(2i64.saturating_pow(failures + 1))
                    .min(Self::ms(self.config.max_backoff()))
                    .max(status.interval_ms);
                tracing::warn!(installation = %id, error = %e, failures = failures + 1, "poll failed");
                (
                    now + jitter(backoff, 0.5, 1.0),
                    Some(crate::text::bounded_error(&e.to_string())),
                )
            }
        };
        store
            .finish_poll(
                id,
                &self.node,
                PollEnd {
                    at: now,
                    next_poll_at: next,
                    error,
                },
            )
            .await
    }

    /// The operator's "poll now": under the installation's lease when it is scheduled, so
    /// it never overlaps a scheduled poll on any node.
    pub async fn poll_now(&self, id: &InstallationId) -> Result<Polled, PollNowError> {
        let store = &self.services.store;
        let scheduled = store
            .poll_status(id)
            .await
            .map_err(PollError::from)?
            .is_some();
        if !scheduled {
            return Ok(self.poll_once(id).await?);
        }
        let now = self.now_ms();
        if !store
            .claim_poll(id, &self.node, now, now + Self::ms(self.config.lease()))
            .await
            .map_err(PollError::from)?
        {
            return Err(PollNowError::Busy);
        }
        let result = self.poll_once(id).await;
        if let Err(e) = self.finish(id, &result).await {
            tracing::warn!(installation = %id, error = %e, "recording a poll failed");
        }
        Ok(result?)
    }

    fn driver_slot(&self, driver_id: &str) -> Arc<Semaphore> {
        let mut slots = self.per_driver.lock().unwrap_or_else(|p| p.into_inner());
        slots
            .entry(driver_id.to_string())
            .or_insert_with(|| {
                Arc::new(Semaphore::new(
                    self.config.max_concurrent_polls_per_driver.max(1),
                ))
            })
            .clone()
    }
}

/// `ms` scaled by a random factor in `[low, high)`.
fn jitter(ms: i64, low: f64, high: f64) -> i64 {
    let factor = low + rand::random::<f64>() * (high - low);
    (ms as f64 * factor) as i64
}
