//! Failed normalizations, again: the host retries each from its stored raw payload with
//! backoff (a driver error, a trap, a timeout — anything that kept it from being
//! normalized), and after `max_attempts` it is a dead letter, replayed by hand
//! (`POST /v1/raw-events/{id}/replay`) with the driver version loaded now, so a driver
//! fix repairs past failures. Resolving is exactly-once (see `sluice_store`'s `retries`).

use std::time::Duration;

use std::sync::Arc;

use sluice_store::{EventId, Installation, NewEvent, RawEvent, RawEventStatus};

use super::{DeliveryError, Pipeline};
use crate::canonical;
use crate::capabilities::DataSource;
use crate::runtime::{CallError, LoadedDriver};
use crate::services::Services;
use crate::wit::types::RawEvent as WitRawEvent;

/// Retries of failed normalizations (`[retries]`).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetryConfig {
    /// Normalizations tried in all, the first included, before an event is a dead letter.
    /// Default 6.
    pub max_attempts: i64,
    /// Wait before the second attempt, ms; each later one waits four times longer
    /// (with jitter). Default 5000.
    pub base_ms: u64,
    /// The longest wait, ms. Default 3600000.
    pub max_ms: u64,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            max_attempts: 6,
            base_ms: 5_000,
            max_ms: 3_600_000,
        }
    }
}

/// How often due retries are looked for.
const RETRY_TICK: Duration = Duration::from_secs(1);

/// Why a stored event could not be normalized: the driver's own answer (its error, or a
/// record that does not render), or the host's (a trap, the deadline, no slot).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NormalizeFailed {
    pub reason: String,
    pub by_driver: bool,
}

/// What a replay (or a retry) did.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct Replayed {
    pub raw_event_id: i64,
    /// Whether the raw event is normalized now by this call.
    pub normalized: bool,
    /// Events it produced.
    pub events: usize,
    /// Why it failed again, if it did.
    #[schema(required = true)]
    pub reason: Option<String>,
}

impl RetryConfig {
    /// Check what the types cannot; `Err` names the keys.
    pub fn validate(&self) -> Result<(), String> {
        if self.max_attempts < 1 || self.base_ms == 0 {
            return Err("[retries] max_attempts and base_ms must be positive".into());
        }
        Ok(())
    }

    /// The wait after `attempts` failed attempts, with jitter (half to all of it).
    fn backoff(&self, attempts: i64) -> Duration {
        let exponent = u32::try_from((attempts - 1).clamp(0, 12)).unwrap_or(12);
        let full = Duration::from_millis(self.base_ms)
            .saturating_mul(4u32.saturating_pow(exponent))
            .min(Duration::from_millis(self.max_ms));
        full.mul_f64(0.5 + rand::random::<f64>() / 2.0)
    }
}

impl Pipeline {
    /// Normalize a stored raw event again with its driver as loaded now and, when that
    /// works, store its events (once, however often this runs). A failure is recorded:
    /// retried later while attempts are left (`[retries]`), else dead.
    pub async fn replay(&self, raw: &RawEvent) -> Result<Replayed, DeliveryError> {
        let mut replayed = Replayed {
            raw_event_id: raw.id,
            normalized: false,
            events: 0,
            reason: None,
        };
        if raw.status == RawEventStatus::Normalized {
            return Ok(replayed);
        }
        match self.renormalize(raw).await? {
            Ok(events) => {
                let count = events.len();
                if self.services.store.resolve_raw_event(raw, events).await? {
                    replayed.normalized = true;
                    replayed.events = count;
                    tracing::info!(installation = %raw.installation_id, raw_event = raw.id, events = count, "failed event normalized");
                }
            }
            Err(reason) => {
                let attempts = self.services.store.raw_event_attempts(raw.id).await? + 1;
                let next = (attempts < self.retries.max_attempts).then(|| {
                    let now = self.services.runtime.capabilities().clock.now();
                    let wait = self.retries.backoff(attempts);
                    i64::try_from((now + wait).as_millis()).unwrap_or(i64::MAX)
                });
                if next.is_none() {
                    tracing::warn!(installation = %raw.installation_id, raw_event = raw.id, attempts, %reason, "normalization failed on every attempt: dead letter");
                }
                self.services
                    .store
                    .record_retry_failure(raw.id, &reason, next)
                    .await?;
                crate::metrics::record_dead_letter(raw, next);
                replayed.reason = Some(reason);
            }
        }
        Ok(replayed)
    }

    /// The stored payload through the driver's `normalize`, rendered as events to store;
    /// the inner error is why it failed (stored with the raw event).
    async fn renormalize(
        &self,
        raw: &RawEvent,
    ) -> Result<Result<Vec<NewEvent>, String>, DeliveryError> {
        let Some(installation) = self
            .services
            .store
            .get_installation(&raw.installation_id)
            .await?
        else {
            return Err(DeliveryError::UnknownInstallation);
        };
        let driver = self
            .services
            .driver_for(&installation)
            .ok_or_else(|| DeliveryError::DriverUnavailable(raw.driver_id.to_string()))?;
        let rendered = match normalize_stored(&self.services, driver, &installation, raw).await? {
            Ok(rendered) => rendered,
            Err(failed) => return Ok(Err(failed.reason)),
        };
        Ok(Ok(rendered
            .into_iter()
            .map(|r| NewEvent {
                event_id: EventId::generate(),
                event_type: r.event_type,
                subject: r.subject,
                // The time the provider gave is in the record; the envelope's is when
                // the event was received, as for a delivery that named none.
                time: raw.received_at.clone(),
                data: r.data.to_string(),
            })
            .collect()))
    }

    /// Retry every failed normalization that is due, until `shutdown` resolves.
    pub async fn run_retries(&self, shutdown: impl std::future::Future<Output = ()>) {
        let mut tick = tokio::time::interval(RETRY_TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => return,
                _ = tick.tick() => {
                    let now = self.services.runtime.capabilities().clock.now();
                    let now = i64::try_from(now.as_millis()).unwrap_or(i64::MAX);
                    let due = match self.services.store.due_retries(now, 64).await {
                        Ok(due) => due,
                        Err(e) => {
                            tracing::warn!(error = %e, "listing due retries failed");
                            continue;
                        }
                    };
                    for raw in due {
                        if let Err(e) = self.replay(&raw).await {
                            tracing::warn!(raw_event = raw.id, error = %e, "retrying a failed normalization failed");
                        }
                    }
                }
            }
        }
    }
}

/// A stored raw event through `driver`'s `normalize`, rendered; nothing is stored.
/// The inner error is why it failed. (Retries, replays, and canaries comparing two
/// versions of a driver.)
pub(crate) async fn normalize_stored(
    services: &Services,
    driver: Arc<LoadedDriver>,
    installation: &Installation,
    raw: &RawEvent,
) -> Result<Result<Vec<canonical::Rendered>, NormalizeFailed>, DeliveryError> {
    let ctx = services.call_context(installation);
    let event = WitRawEvent {
        provider_event_id: raw.provider_event_id.clone(),
        event_type: raw.event_type.clone(),
        account_key: raw.account_key.clone(),
        occurred_at: None,
        payload: raw.payload.clone(),
        api_version: raw.api_version.clone(),
    };
    let runtime = services.runtime.clone();
    let scope = driver.scope(
        &raw.installation_id,
        DataSource::Store(services.store.clone()),
    );
    let work = async move {
        let mut session = runtime.session(&driver, scope).await?;
        let records = session.normalize(&ctx, &event).await?;
        session.finish();
        Ok::<_, CallError>(records)
    };
    let by_driver = |reason: String| NormalizeFailed {
        reason,
        by_driver: true,
    };
    let records = match services.runtime.on_guest_threads(work).await? {
        Ok(Ok(records)) => records,
        Ok(Err(e)) => return Ok(Err(by_driver(crate::runtime::describe_driver_error(&e)))),
        Err(e) => {
            return Ok(Err(NormalizeFailed {
                reason: e.to_string(),
                by_driver: false,
            }));
        }
    };
    Ok(records
        .iter()
        .map(|record| {
            canonical::render(record, &raw.event_type).map_err(|e| by_driver(e.to_string()))
        })
        .collect())
}
