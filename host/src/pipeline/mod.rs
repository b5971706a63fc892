//! The webhook pipeline: find the installation, run verify → handle → normalize in one
//! sandbox instance, then commit raw events, normalized events and the call's writes in
//! one transaction.
//!
//! Nothing is written before the driver has finished, so a trap, a timeout or a refusal
//! leaves no trace, and the provider (which gets a non-2xx) retries.

mod in_process;
mod render;
mod retry;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use sluice_store::{Delivery, InstallationId, StoreError, WritesApply};

use crate::canonical;
use crate::capabilities::DataSource;
use crate::installations::CachedInstallation;
use crate::runtime::{CallError, LoadedDriver};
use crate::services::Services;
use crate::wit::ingest::WebhookReply;
use crate::wit::types::{CallContext, DriverError, IncomingRequest};

pub use in_process::InProcessDriver;
pub(crate) use render::ingested;
pub use render::{
    MAX_API_VERSION, MAX_EVENT_ID, MAX_EVENT_TYPE, Processed, Received, process, render,
    render_outcome,
};
pub(crate) use retry::{NormalizeFailed, normalize_stored};
pub use retry::{Replayed, RetryConfig};

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

/// Provider traffic into durable events.
pub struct Pipeline {
    services: Services,
    /// Longest wait for a delivery's commit before answering "unavailable"
    /// (`[server] commit_timeout_ms`).
    commit_timeout: Duration,
    /// How failed normalizations are retried.
    retries: RetryConfig,
    /// Drivers run in the host's own code instead of their components, by driver id.
    in_process: HashMap<String, Arc<dyn InProcessDriver>>,
}

impl Pipeline {
    pub fn new(services: Services, commit_timeout: Duration, retries: RetryConfig) -> Self {
        Self {
            services,
            commit_timeout,
            retries,
            in_process: HashMap::new(),
        }
    }

    /// Serve webhooks of `driver_id` with `driver` instead of its component (see
    /// [`InProcessDriver`]).
    pub fn with_in_process(mut self, driver_id: &str, driver: Arc<dyn InProcessDriver>) -> Self {
        self.in_process.insert(driver_id.to_string(), driver);
        self
    }

    /// The services it runs on.
    pub fn services(&self) -> &Services {
        &self.services
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
                    .services
                    .installations
                    .get(&id)
                    .await?
                    .ok_or(DeliveryError::UnknownInstallation)?;
                let driver = self
                    .services
                    .drivers
                    .for_installation(
                        installation.driver_id.as_str(),
                        installation.driver_sha256.as_deref(),
                    )
                    .ok_or_else(|| {
                        DeliveryError::DriverUnavailable(installation.driver_id.to_string())
                    })?;
                (driver, installation, request)
            }
            Target::Driver(driver_id) => {
                let driver = self
                    .services
                    .drivers
                    .get(&driver_id)
                    .ok_or(DeliveryError::DriverUnavailable(driver_id))?;
                let (installation, request) = self.route(&driver, request).await?;
                // Routing asks the active version; a pinned installation is served by its own.
                let driver = match installation.driver_sha256.as_deref() {
                    None => driver,
                    pinned => self
                        .services
                        .drivers
                        .for_installation(installation.driver_id.as_str(), pinned)
                        .ok_or_else(|| {
                            DeliveryError::DriverUnavailable(installation.driver_id.to_string())
                        })?,
                };
                (driver, installation, request)
            }
        };
        // The policy may have changed since the installation was created.
        if !self
            .services
            .runtime
            .policy()
            .permits_installation(driver.info.id.as_str(), installation.id.as_str())
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
        let runtime = self.services.runtime.clone();
        let on_guest = driver.clone();
        let (key, request) = self
            .services
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
            .services
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
        let received_at =
            canonical::rfc3339(&self.services.runtime.capabilities().clock.now_datetime())
                .unwrap_or_default();
        let events = processed
            .into_iter()
            .map(|p| ingested(p, &installation.id, &received_at))
            .collect();
        let commit = self.services.store.commit_delivery(Delivery {
            installation_id: installation.id.clone(),
            driver_id: driver.info.id.clone(),
            driver_version: driver.info.version.clone(),
            received_at,
            events,
            writes,
            writes_apply: WritesApply::UnlessDuplicate,
        });
        let outcome = tokio::time::timeout(self.commit_timeout, commit)
            .await
            .map_err(|_| {
                DeliveryError::StoreUnavailable(format!(
                    "the commit took longer than {:?}",
                    self.commit_timeout
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
        self.services.store.forget_tokens(id).await?;
        self.services
            .store
            .set_auth_status(id, sluice_store::AuthStatus::Revoked, Some(reason))
            .await?;
        self.services.installations.invalidate(id);
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
        let runtime = self.services.runtime.clone();
        let (driver, installation) = (driver.clone(), installation.clone());
        let in_process = self.in_process.get(driver.info.id.as_str()).cloned();
        let work = async move {
            if let Some(in_process) = in_process {
                let now =
                    i64::try_from(runtime.capabilities().clock.now().as_secs()).unwrap_or(i64::MAX);
                let outcome = in_process.receive(&installation, &request, now)?;
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
        Ok(self.services.runtime.on_guest_threads(work).await??)
    }
}
