//! Scheduled polling. Every installation whose driver polls and whose settings name a
//! `poll_interval` (seconds, at least `[scheduler] min_poll_interval_secs`) is polled
//! through [`Pipeline::poll_now`]: by one node at a time (a lease per installation in the
//! store, taken over when a node dies), with jitter, a global and a per-driver limit on
//! polls at once, and exponential backoff after failures. A run fetches at most
//! [`crate::pipeline::MAX_PAGES`] pages; when the provider has more, the next run is due
//! at once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sluice_store::{Installation, InstallationId, PollEnd, StoreError};
use tokio::sync::Semaphore;

use crate::auth::Auth;
use crate::pipeline::{Pipeline, PollError, Polled};
use crate::runtime::LoadedDriver;

/// How polling is scheduled; defaults in `config` (`[scheduler]`).
#[derive(Debug, Clone)]
pub struct SchedulerOptions {
    /// How often due installations are looked for.
    pub tick: Duration,
    /// How long a node's claim on an installation lasts (longer than a poll run takes).
    pub lease: Duration,
    /// Polls running at once on this node.
    pub max_concurrent: usize,
    /// Polls of one driver running at once on this node.
    pub max_concurrent_per_driver: usize,
    /// The shortest interval honoured; smaller `poll_interval`s are raised to it.
    pub min_interval: Duration,
    /// The longest wait after failures.
    pub max_backoff: Duration,
}

impl Default for SchedulerOptions {
    fn default() -> Self {
        Self {
            tick: Duration::from_millis(500),
            lease: Duration::from_secs(300),
            max_concurrent: 16,
            max_concurrent_per_driver: 8,
            min_interval: Duration::from_secs(5),
            max_backoff: Duration::from_secs(3600),
        }
    }
}

/// The scheduler of one node. Cheap to share (`Arc`).
pub struct Scheduler {
    pipeline: Arc<Pipeline>,
    auth: Arc<Auth>,
    options: SchedulerOptions,
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
    pub fn new(pipeline: Arc<Pipeline>, auth: Arc<Auth>, options: SchedulerOptions) -> Self {
        Self {
            running: Arc::new(Semaphore::new(options.max_concurrent.max(1))),
            per_driver: Mutex::default(),
            node: format!("node_{}", hex::encode(rand::random::<[u8; 12]>())),
            pipeline,
            auth,
            options,
        }
    }

    fn now_ms(&self) -> i64 {
        let now = self.pipeline.runtime().capabilities().clock.now();
        i64::try_from(now.as_millis()).unwrap_or(i64::MAX)
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
        Some(Duration::from_secs(seconds).max(self.options.min_interval))
    }

    /// Schedule (or unschedule) an installation as its settings say; whether it is polled.
    /// The first poll is due within one interval, at a random point, so installations
    /// created together do not poll together.
    pub async fn schedule(&self, installation: &Installation) -> Result<bool, StoreError> {
        let store = self.pipeline.store();
        let interval = self
            .pipeline
            .drivers()
            .for_installation(
                &installation.driver_id,
                installation.driver_sha256.as_deref(),
            )
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
        for installation in self.pipeline.store().list_installations().await? {
            // A driver not loaded on this node keeps its schedule for the nodes that have it.
            if self
                .pipeline
                .drivers()
                .get(&installation.driver_id)
                .is_none()
            {
                continue;
            }
            scheduled += usize::from(self.schedule(&installation).await?);
        }
        Ok(scheduled)
    }

    /// Claim due installations every tick and poll them, until `shutdown` resolves. Polls
    /// running then finish (each commits page by page), their leases released.
    pub async fn run(self: Arc<Self>, shutdown: impl std::future::Future<Output = ()>) {
        let mut tick = tokio::time::interval(self.options.tick);
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
            .pipeline
            .store()
            .claim_due_polls(
                &self.node,
                now,
                now + Self::ms(self.options.lease),
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
            .pipeline
            .store()
            .get_installation(id)
            .await
            .ok()
            .flatten()
            .map(|i| i.driver_id)
            .unwrap_or_default();
        let slot = self.driver_slot(&driver_id);
        let result = match slot.acquire().await {
            Ok(_permit) => {
                // Late by the tick, the wait for a slot, and whatever held the node up.
                let lag_ms = self.now_ms().saturating_sub(due_at).max(0);
                crate::metrics::record_poll_lag(&driver_id, Duration::from_millis(lag_ms as u64));
                self.pipeline.poll_now(&self.auth, id).await
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
        let store = self.pipeline.store();
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
                    .min(Self::ms(self.options.max_backoff))
                    .max(status.interval_ms);
                tracing::warn!(installation = %id, error = %e, failures = failures + 1, "poll failed");
                (
                    now + jitter(backoff, 0.5, 1.0),
                    Some(crate::pipeline::bounded_text(&e.to_string(), 512).into_owned()),
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
        let store = self.pipeline.store();
        let scheduled = store
            .poll_status(id)
            .await
            .map_err(PollError::from)?
            .is_some();
        if !scheduled {
            return Ok(self.pipeline.poll_now(&self.auth, id).await?);
        }
        let now = self.now_ms();
        if !store
            .claim_poll(id, &self.node, now, now + Self::ms(self.options.lease))
            .await
            .map_err(PollError::from)?
        {
            return Err(PollNowError::Busy);
        }
        let result = self.pipeline.poll_now(&self.auth, id).await;
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
                    self.options.max_concurrent_per_driver.max(1),
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
