//! The webhook pipeline: find the installation, run verify → handle → normalize in one
//! sandbox instance, then commit raw events, normalized events and the call's writes in
//! one transaction.
//!
//! Nothing is written before the driver has finished, so a trap, a timeout or a refusal
//! leaves no trace, and the provider (which gets a non-2xx) retries.

mod poll;
mod retry;

use std::sync::Arc;
use std::time::Duration;

use sluice_store::{
    Delivery, EventId, IngestedEvent, InstallationId, NewEvent, NormalizeOutcome, Store,
    StoreError, WritesApply,
};

use crate::canonical;
use crate::capabilities::DataSource;
use crate::installations::{CachedInstallation, Installations};
use crate::registry::DriverRegistry;
use crate::runtime::{CallError, LoadedDriver, Runtime, Session};
use crate::wit::ingest::{WebhookOutcome, WebhookReply};
use crate::wit::types::{CallContext, DriverError, IncomingRequest, RawEvent};

pub use poll::{
    CURSOR_KEY, MAX_BACKFILL_PAGES, MAX_PAGES, PollError, Polled, PolledPage, poll_page,
};
pub(crate) use retry::NormalizeFailed;
pub use retry::{Replayed, RetryOptions};

/// Why a delivery was not accepted, by what the provider should be told.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    /// No live installation has that id (`404`).
    #[error("unknown installation")]
    UnknownInstallation,
    /// The installation's driver, or the driver of an app-level URL, is not loaded
    /// (`503` for installations: the operator may load it; `404` for app-level URLs).
    #[error("driver {0:?} is not loaded")]
    DriverUnavailable(String),
    /// An app-level delivery names no account, or one no installation has (`404`).
    #[error("{0}")]
    Unroutable(String),
    /// The driver refused the signature, token or timestamp (`401`).
    #[error("{0}")]
    Unauthorized(String),
    /// The operator's policy no longer lets the installation use its driver (`401`, like
    /// a bad signature: the answer tells a caller nothing about the policy).
    #[error("{0}")]
    PolicyRefused(String),
    /// The payload cannot be understood (`400`).
    #[error("{0}")]
    BadRequest(String),
    /// No sandbox slot free (`503`).
    #[error("every sandbox slot is busy")]
    Overloaded,
    /// The installation cannot take deliveries yet, e.g. its signing secret is not set
    /// (`503`: the provider retries, and succeeds once the operator has fixed it).
    #[error("{0}")]
    NotReady(String),
    /// The driver trapped, timed out or misbehaved (`500`, provider retries).
    #[error("{0}")]
    DriverFailed(String),
    /// The database cannot take the delivery now: down, locked, or slower than the commit
    /// timeout (`503` with `Retry-After`; nothing was acknowledged).
    #[error("storage unavailable: {0}")]
    StoreUnavailable(String),
    /// The commit failed (`500`, provider retries).
    #[error("storage: {0}")]
    Storage(StoreError),
}

impl From<StoreError> for DeliveryError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(m) => DeliveryError::StoreUnavailable(m),
            other => DeliveryError::Storage(other),
        }
    }
}

impl From<CallError> for DeliveryError {
    fn from(e: CallError) -> Self {
        match e {
            CallError::Overloaded => DeliveryError::Overloaded,
            CallError::Driver(DriverError::Unauthorized(m)) => DeliveryError::Unauthorized(m),
            CallError::Driver(DriverError::BadRequest(m)) => DeliveryError::BadRequest(m),
            CallError::Driver(DriverError::InvalidSettings(m)) => DeliveryError::NotReady(m),
            other => DeliveryError::DriverFailed(other.to_string()),
        }
    }
}

/// Where a webhook request was sent.
#[derive(Debug, Clone)]
pub enum Target {
    /// `/webhooks/{installation_id}`.
    Installation(String),
    /// `/webhooks/drivers/{driver_id}`: one URL for every account of a provider app; the
    /// driver names the account (`route-key`) and the installation holding it gets it.
    Driver(String),
}

/// What an accepted delivery produced.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Accepted {
    /// Raw events newly stored.
    pub accepted: usize,
    /// Raw events already stored by an earlier delivery.
    pub duplicates: usize,
    /// The installation that received it (useful for app-level URLs).
    #[serde(skip)]
    pub installation: Option<InstallationId>,
    /// The reply the driver asked for instead of the default one.
    #[serde(skip)]
    pub reply: Option<WebhookReply>,
}

/// One normalized raw event, ready for the store.
pub struct Processed {
    pub raw: RawEvent,
    pub outcome: Result<Vec<canonical::Rendered>, String>,
}

/// What one webhook delivery made, rendered.
pub struct Received {
    pub processed: Vec<Processed>,
    pub reply: Option<WebhookReply>,
    /// The delivery revokes the installation's authorization, for this reason.
    pub revoked: Option<String>,
}

/// Run one webhook request through the driver (`receive`: verify, raw events, records)
/// and render its records. Shared by the pipeline and `sluice driver test`.
pub async fn process(
    session: &mut Session,
    ctx: &CallContext,
    request: &IncomingRequest,
) -> Result<Received, CallError> {
    let outcome = session.receive(ctx, request).await?;
    render(outcome, |bytes| session.charge_output(bytes))
}

/// Render what a poll page (or a delivery) produced, charged to `session`'s output cap.
pub fn render_outcome(
    session: &mut Session,
    outcome: WebhookOutcome,
) -> Result<Received, CallError> {
    render(outcome, |bytes| session.charge_output(bytes))
}

/// Render what a delivery produced, charging the rendered size with `charge`.
fn render(
    outcome: WebhookOutcome,
    mut charge: impl FnMut(usize) -> Result<(), CallError>,
) -> Result<Received, CallError> {
    let mut processed = Vec::with_capacity(outcome.events.len());
    for event in outcome.events {
        let raw = event.raw;
        let result = match event.records {
            Ok(records) => records
                .iter()
                .map(|r| canonical::render(r, &raw.event_type))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| e.to_string()),
            Err(e) => Err(crate::runtime::describe_driver_error(&e)),
        };
        // Everything the call produced counts against its output cap, error texts
        // included, and a stored or logged error text is bounded.
        let result = result.map_err(|reason| bounded_text(&reason, MAX_ERROR_TEXT).into_owned());
        charge(match &result {
            Ok(rendered) => rendered
                .iter()
                .map(|r| canonical::approx_json_size(&r.data))
                .sum(),
            Err(reason) => reason.len(),
        })?;
        processed.push(Processed {
            raw,
            outcome: result,
        });
    }
    if let Some(reply) = &outcome.reply {
        charge(reply.body.len() + reply.content_type.len())?;
    }
    let revoked = outcome
        .revoked
        .map(|r| bounded_text(&r, MAX_ERROR_TEXT).into_owned());
    Ok(Received {
        processed,
        reply: outcome.reply,
        revoked,
    })
}

/// Longest error text (a failed normalization's reason, a driver's error message) that is
/// stored or logged; the rest is cut off.
pub const MAX_ERROR_TEXT: usize = 1024;

/// `text`, cut at a character boundary to at most `max` bytes plus a marker saying how long
/// it was.
pub fn bounded_text(text: &str, max: usize) -> std::borrow::Cow<'_, str> {
    if text.len() <= max {
        return text.into();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes in all)", &text[..end], text.len()).into()
}

/// How long the pipeline waits, and how long it trusts what it has cached.
#[derive(Debug, Clone, Copy)]
pub struct PipelineOptions {
    /// Longest wait for a delivery's commit before answering "unavailable".
    pub commit_timeout: Duration,
    /// How long an installation's cached settings and secrets are trusted.
    pub installation_ttl: Duration,
}

impl Default for PipelineOptions {
    fn default() -> Self {
        Self {
            commit_timeout: Duration::from_secs(5),
            installation_ttl: Duration::from_secs(2),
        }
    }
}

/// Provider traffic into durable events.
pub struct Pipeline {
    runtime: Arc<Runtime>,
    drivers: Arc<DriverRegistry>,
    store: Store,
    installations: Installations,
    options: PipelineOptions,
    /// Bench-only: run the Stripe driver natively (`SLUICE_NATIVE_STRIPE=1`).
    #[cfg(feature = "native-stripe")]
    native_stripe: bool,
}

impl Pipeline {
    pub fn new(
        runtime: Arc<Runtime>,
        drivers: Arc<DriverRegistry>,
        store: Store,
        options: PipelineOptions,
    ) -> Self {
        Self {
            installations: Installations::new(
                store.clone(),
                runtime.policy().clone(),
                options.installation_ttl,
            ),
            runtime,
            drivers,
            store,
            options,
            #[cfg(feature = "native-stripe")]
            native_stripe: crate::native::enabled(),
        }
    }

    /// The installations as the webhook path sees them; invalidate after changing one.
    pub fn installations(&self) -> &Installations {
        &self.installations
    }

    pub fn runtime(&self) -> &Arc<Runtime> {
        &self.runtime
    }

    pub fn drivers(&self) -> &Arc<DriverRegistry> {
        &self.drivers
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Deliver one webhook request and commit what it produced.
    pub async fn receive(
        &self,
        target: Target,
        request: IncomingRequest,
    ) -> Result<Accepted, DeliveryError> {
        let (driver, installation, request) = match target {
            Target::Installation(id) => {
                let id =
                    InstallationId::parse(&id).map_err(|_| DeliveryError::UnknownInstallation)?;
                let installation = self
                    .installations
                    .get(&id)
                    .await?
                    .ok_or(DeliveryError::UnknownInstallation)?;
                let driver = self
                    .drivers
                    .for_installation(
                        &installation.driver_id,
                        installation.driver_sha256.as_deref(),
                    )
                    .ok_or_else(|| {
                        DeliveryError::DriverUnavailable(installation.driver_id.clone())
                    })?;
                (driver, installation, request)
            }
            Target::Driver(driver_id) => {
                let driver = self
                    .drivers
                    .get(&driver_id)
                    .ok_or(DeliveryError::DriverUnavailable(driver_id))?;
                let (installation, request) = self.route(&driver, request).await?;
                // Routing asks the active version; a pinned installation is served by its own.
                let driver = match installation.driver_sha256.as_deref() {
                    None => driver,
                    pinned => self
                        .drivers
                        .for_installation(&installation.driver_id, pinned)
                        .ok_or_else(|| {
                            DeliveryError::DriverUnavailable(installation.driver_id.clone())
                        })?,
                };
                (driver, installation, request)
            }
        };
        // The policy may have changed since the installation was created.
        if !self
            .runtime
            .policy()
            .permits_installation(&driver.info.id, installation.id.as_str())
        {
            return Err(DeliveryError::PolicyRefused(format!(
                "the operator's policy does not let installation {} use driver {}",
                installation.id, driver.info.id
            )));
        }
        self.deliver(&driver, &installation, request).await
    }

    /// The installation an app-level request is for: the driver's `route-key`, called
    /// before any verification, names the account.
    async fn route(
        &self,
        driver: &Arc<LoadedDriver>,
        request: IncomingRequest,
    ) -> Result<(Arc<CachedInstallation>, IncomingRequest), DeliveryError> {
        let runtime = self.runtime.clone();
        let on_guest = driver.clone();
        let (key, request) = self
            .runtime
            .on_guest_threads(async move {
                let mut session = runtime.session(&on_guest, on_guest.routing_scope()).await?;
                let key = session.route_key(&request).await?;
                session.finish();
                Ok::<_, CallError>((key, request))
            })
            .await??;
        let key = key.ok_or_else(|| {
            DeliveryError::Unroutable("the request names no account this driver can route".into())
        })?;
        let installation = self
            .installations
            .by_account_key(&driver.info.id, &key)
            .await?
            .ok_or_else(|| {
                DeliveryError::Unroutable(format!(
                    "no installation of {} for account {key:?}",
                    driver.info.id
                ))
            })?;
        Ok((installation, request))
    }

    async fn deliver(
        &self,
        driver: &Arc<LoadedDriver>,
        installation: &Arc<CachedInstallation>,
        request: IncomingRequest,
    ) -> Result<Accepted, DeliveryError> {
        let (received, writes) = self.run(driver, installation, request).await?;
        let Received {
            processed,
            reply,
            revoked,
        } = received;
        if processed.is_empty() && writes.is_empty() {
            // Acknowledged, nothing to keep (e.g. a topic the installation does not store);
            // a revocation is acted on all the same.
            if let Some(reason) = &revoked {
                self.revoke(&installation.id, reason).await?;
            }
            return Ok(Accepted {
                accepted: 0,
                duplicates: 0,
                installation: Some(installation.id.clone()),
                reply,
            });
        }
        let received_at = canonical::rfc3339(&self.runtime.capabilities().clock.now_datetime())
            .unwrap_or_default();
        let events = processed
            .into_iter()
            .map(|p| ingested(p, &installation.id, &received_at))
            .collect();
        let commit = self.store.commit_delivery(Delivery {
            installation_id: installation.id.clone(),
            driver_id: driver.info.id.clone(),
            driver_version: driver.info.version.clone(),
            received_at,
            events,
            writes,
            writes_apply: WritesApply::UnlessDuplicate,
        });
        let outcome = tokio::time::timeout(self.options.commit_timeout, commit)
            .await
            .map_err(|_| {
                DeliveryError::StoreUnavailable(format!(
                    "the commit took longer than {:?}",
                    self.options.commit_timeout
                ))
            })?
            .map_err(|e| match e {
                // Deleted between lookup and commit.
                StoreError::NotFound => DeliveryError::UnknownInstallation,
                other => DeliveryError::from(other),
            })?;
        // Only once the delivery is stored: a provider that saw no `2xx` sends it again.
        if let Some(reason) = &revoked {
            self.revoke(&installation.id, reason).await?;
        }
        Ok(Accepted {
            accepted: outcome.stored,
            duplicates: outcome.duplicates,
            installation: Some(installation.id.clone()),
            reply,
        })
    }
}

impl Pipeline {
    /// A verified delivery said the installation's authorization is revoked: forget its
    /// tokens and mark it `revoked`. (A redelivery does it again, harmlessly.)
    async fn revoke(&self, id: &InstallationId, reason: &str) -> Result<(), DeliveryError> {
        self.store.forget_tokens(id).await?;
        self.store
            .set_auth_status(id, sluice_store::AuthStatus::Revoked, Some(reason))
            .await?;
        self.installations.invalidate(id);
        tracing::warn!(installation = %id, %reason, "authorization revoked by the provider");
        Ok(())
    }

    /// Run the driver on a request, on the guest threads: its processed events, reply and
    /// writes.
    async fn run(
        &self,
        driver: &Arc<LoadedDriver>,
        installation: &Arc<CachedInstallation>,
        request: IncomingRequest,
    ) -> Result<(Received, sluice_store::Writes), DeliveryError> {
        let runtime = self.runtime.clone();
        let (driver, installation) = (driver.clone(), installation.clone());
        #[cfg(feature = "native-stripe")]
        let native = self.native_stripe && driver.info.id == "stripe";
        let work = async move {
            #[cfg(feature = "native-stripe")]
            if native {
                let now = runtime.capabilities().clock.now().as_secs() as i64;
                let outcome = crate::native::receive(&installation, &request, now)?;
                return Ok((
                    render(outcome, |_| Ok(()))?,
                    sluice_store::Writes::default(),
                ));
            }
            let scope = driver.scope(
                &installation.id,
                DataSource::Installation(installation.clone()),
            );
            let ctx = CallContext {
                installation_id: installation.id.to_string(),
                settings: installation.settings.to_string(),
            };
            let mut session = runtime.session(&driver, scope).await?;
            let received = process(&mut session, &ctx, &request).await?;
            // Release the sandbox slot before waiting on the database.
            let writes = session.finish();
            Ok::<_, CallError>((received, writes))
        };
        Ok(self.runtime.on_guest_threads(work).await??)
    }
}

/// Pair a raw event with its normalized events (or its failure).
fn ingested(p: Processed, installation: &InstallationId, received_at: &str) -> IngestedEvent {
    let time = p
        .raw
        .occurred_at
        .as_ref()
        .and_then(|t| canonical::rfc3339(t).ok())
        .unwrap_or_else(|| received_at.to_string());
    let outcome = match p.outcome {
        Ok(rendered) => NormalizeOutcome::Normalized(
            rendered
                .into_iter()
                .map(|r| NewEvent {
                    event_id: EventId::generate(),
                    event_type: r.event_type,
                    subject: r.subject,
                    time: time.clone(),
                    data: r.data.to_string(),
                })
                .collect(),
        ),
        Err(reason) => {
            tracing::warn!(%installation, provider_event_id = %p.raw.provider_event_id, %reason, "normalization failed; kept as dead letter");
            NormalizeOutcome::Failed { reason }
        }
    };
    IngestedEvent {
        provider_event_id: p.raw.provider_event_id,
        event_type: p.raw.event_type,
        account_key: p.raw.account_key,
        payload: p.raw.payload,
        api_version: p.raw.api_version,
        outcome,
    }
}

#[cfg(test)]
mod tests {
    use super::bounded_text;

    #[test]
    fn error_texts_are_cut_at_a_character_boundary() {
        assert_eq!(bounded_text("short", 10), "short");
        // "é" is two bytes: a cut at byte 3 would split the second one.
        assert_eq!(bounded_text("aéé", 4), "aé… (5 bytes in all)");
        let long = "x".repeat(5000);
        let cut = bounded_text(&long, 1024);
        assert!(cut.starts_with(&"x".repeat(1024)));
        assert!(cut.ends_with("… (5000 bytes in all)"));
        assert_eq!(cut.len(), 1024 + "… (5000 bytes in all)".len());
    }
}
