//! Token refresh: one at a time per installation, here and across nodes, with backoff
//! and a bounded road to `needs_reauth`; and the maintenance loop that runs it ahead of
//! expiry.
//!
//! Single flight: callers of one installation queue on a lock of this process; the first
//! takes the installation's lease row in the store (one `UPDATE` on one row, so exactly
//! one node wins), refreshes, and records the new expiry, which releases the lease. Every
//! caller re-reads the record before refreshing, so those who waited find the token fresh
//! and make no request. A node that finds the lease taken waits for it the same way.

use std::time::{Duration, Instant};

use sluice_store::{AuthRecord, AuthStatus, InstallationId, RefreshFailure};

use super::{Auth, AuthError};
use crate::runtime::{CallError, LoadedDriver};
use crate::time::rfc3339;
use crate::wit::types::DriverError;

/// What a refresh request did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Refreshed {
    /// This call obtained a new token.
    Refreshed,
    /// Nothing to do: the token is fresh, or another caller (here or on another node)
    /// refreshed it meanwhile.
    AlreadyFresh,
}

/// When a refresh is needed.
#[derive(Debug, Clone, Copy)]
enum Need {
    /// When the token expires within the margin (or a client-credentials installation has
    /// none yet).
    Expiring,
    /// The provider refused the token whose expiry the caller saw: unless it has changed
    /// since (someone refreshed), now.
    Refused(Option<i64>),
    /// Now (the operator asked).
    Always,
}

/// How long a caller waits for another node's refresh before giving up.
const LEASE_POLL: Duration = Duration::from_millis(100);

impl Auth {
    /// Make sure the installation's token stays usable for at least the refresh margin,
    /// refreshing it if not. For drivers without tokens to refresh, nothing to do.
    pub async fn ensure_fresh(&self, id: &InstallationId) -> Result<Refreshed, AuthError> {
        self.refresh_when(id, Need::Expiring).await
    }

    /// The provider answered `401` to a call made with the token that expired at `seen`
    /// (the installation's `token_expires_at` when the call began): refresh, unless another
    /// caller already has.
    pub async fn refresh_after_refusal(
        &self,
        id: &InstallationId,
        seen: Option<i64>,
    ) -> Result<Refreshed, AuthError> {
        self.refresh_when(id, Need::Refused(seen)).await
    }

    /// Refresh now (`POST /v1/installations/{id}/refresh`).
    pub async fn refresh(&self, id: &InstallationId) -> Result<Refreshed, AuthError> {
        self.refresh_when(id, Need::Always).await
    }

    async fn refresh_when(&self, id: &InstallationId, need: Need) -> Result<Refreshed, AuthError> {
        let (installation, driver) = self.installation(id).await?;
        // Tokens to refresh: the driver's kind says so, or an authorization gave some
        // (Stripe Connect beside API keys).
        let authorized = self
            .store()
            .auth_record(id)
            .await?
            .is_some_and(|r| r.authorized_at.is_some());
        if !authorized && !matches!(driver.info.auth_kind, "oauth2" | "client_credentials") {
            return match need {
                Need::Always => Err(AuthError::Unsupported(format!(
                    "the {} driver has no tokens to refresh",
                    driver.info.id
                ))),
                _ => Ok(Refreshed::AlreadyFresh),
            };
        }
        let flight = self.flight(id);
        let _turn = flight.lock().await;
        let give_up = Instant::now() + self.config.refresh_lease() + Duration::from_secs(5);
        let record = loop {
            let record = self.store().auth_record(id).await?;
            if !self.needed(&driver, record.as_ref(), need) {
                return Ok(Refreshed::AlreadyFresh);
            }
            self.refreshable(record.as_ref(), need)?;
            let now = self.now();
            let until = now.saturating_add_unsigned(self.config.refresh_lease().as_secs());
            if self
                .store()
                .take_refresh_lease(id, &self.node, now, until)
                .await?
            {
                // Another node may have finished between the read and the lease.
                let record = self.store().auth_record(id).await?;
                if !self.needed(&driver, record.as_ref(), need) {
                    self.store().release_refresh_lease(id, &self.node).await?;
                    return Ok(Refreshed::AlreadyFresh);
                }
                break record;
            }
            if Instant::now() >= give_up {
                return Err(AuthError::Provider(
                    "another node has been refreshing this installation's token for too long"
                        .into(),
                ));
            }
            tokio::time::sleep(LEASE_POLL).await;
        };
        let ctx = self.context(&installation);
        let known_scopes = record
            .as_ref()
            .map(|r| r.scopes.clone())
            .unwrap_or_default();
        let result = self
            .call(&driver, id, move |mut session| async move {
                let result = async {
                    let mut grant = session.refresh(&ctx).await?;
                    if grant.scopes.is_empty() {
                        // Many token endpoints leave `scope` out of a refresh answer.
                        grant.scopes = known_scopes;
                    }
                    // A refreshed grant is checked like a new one: a refresh does not make
                    // up for scopes the installation lacks.
                    let missing = match session.validate_scopes(&ctx, &grant.scopes).await {
                        Ok(check) => check.missing,
                        Err(CallError::Driver(DriverError::Unsupported(_))) => Vec::new(),
                        Err(e) => return Err(e),
                    };
                    Ok((grant, missing))
                }
                .await;
                (result, session.finish())
            })
            .await;
        match result {
            Ok((grant, missing)) => {
                self.record(&installation, &driver, grant, missing, true)
                    .await?;
                tracing::info!(installation = %id, driver = %driver.info.id, "token refreshed");
                crate::metrics::record_refresh(
                    driver.info.id.as_str(),
                    &driver.info.version,
                    "refreshed",
                );
                Ok(Refreshed::Refreshed)
            }
            Err(e) => {
                self.record_failure(&driver, id, record.as_ref(), &e)
                    .await?;
                Err(e)
            }
        }
    }

    /// Whether `need` calls for a refresh given the stored record.
    fn needed(&self, driver: &LoadedDriver, record: Option<&AuthRecord>, need: Need) -> bool {
        let client_credentials = driver.info.auth_kind == "client_credentials";
        match need {
            Need::Always => true,
            Need::Refused(seen) => record.is_none_or(|r| r.token_expires_at == seen),
            Need::Expiring => {
                let horizon = self
                    .now()
                    .saturating_add_unsigned(self.config.refresh_margin().as_secs());
                match record {
                    None => client_credentials,
                    Some(r) => match r.token_expires_at {
                        Some(at) => at <= horizon,
                        None => client_credentials && r.status == AuthStatus::Pending,
                    },
                }
            }
        }
    }

    /// Whether a refresh may be tried now: not for an installation that must be
    /// authorized again, nor before a failed refresh's backoff is over (unless the
    /// operator asks).
    fn refreshable(&self, record: Option<&AuthRecord>, need: Need) -> Result<(), AuthError> {
        let Some(record) = record else { return Ok(()) };
        if matches!(need, Need::Always) {
            return Ok(());
        }
        if matches!(record.status, AuthStatus::NeedsReauth | AuthStatus::Revoked) {
            return Err(AuthError::NotReady(format!(
                "the installation is {}: {}; authorize it again",
                record.status.as_str(),
                record.reason.as_deref().unwrap_or("no reason recorded")
            )));
        }
        if let Some(next) = record.next_refresh_at
            && next > self.now()
        {
            return Err(AuthError::Provider(format!(
                "the last refresh failed ({}); the next attempt is not before {}",
                record.last_error.as_deref().unwrap_or("unknown error"),
                rfc3339(next)
            )));
        }
        Ok(())
    }

    /// Record a failed refresh: back off, or `needs_reauth` when the provider refused the
    /// credentials or the failures have lasted too long.
    async fn record_failure(
        &self,
        driver: &LoadedDriver,
        id: &InstallationId,
        record: Option<&AuthRecord>,
        error: &AuthError,
    ) -> Result<(), AuthError> {
        let now = self.now();
        let failures = record.map_or(0, |r| r.refresh_failures);
        let since = record.and_then(|r| r.failing_since).unwrap_or(now);
        let permanent = matches!(
            error,
            AuthError::Refused(_)
                | AuthError::ProviderRefused(_)
                | AuthError::NotReady(_)
                | AuthError::Unsupported(_)
        );
        let too_long = now.saturating_sub(since)
            >= i64::try_from(self.config.reauth_after().as_secs()).unwrap_or(i64::MAX);
        let needs_reauth = if permanent {
            Some(format!("the token could not be refreshed: {error}"))
        } else if too_long {
            Some(format!(
                "refreshing has failed since {} (last: {error})",
                rfc3339(since)
            ))
        } else {
            None
        };
        let outcome = if needs_reauth.is_some() {
            "needs_reauth"
        } else {
            "failed"
        };
        crate::metrics::record_refresh(driver.info.id.as_str(), &driver.info.version, outcome);
        let retry_at = now.saturating_add_unsigned(self.backoff(failures).as_secs());
        tracing::warn!(installation = %id, error = %error, failures = failures + 1, needs_reauth = needs_reauth.is_some(), "token refresh failed");
        self.store()
            .record_refresh_failure(
                id,
                RefreshFailure {
                    error: crate::text::bounded_error(&error.to_string()),
                    retry_at,
                    needs_reauth,
                },
                now,
            )
            .await?;
        self.services.installations.invalidate(id);
        Ok(())
    }

    /// The wait after `failures` failures in a row: doubling from the minimum, capped,
    /// with jitter (half to all of it) so many installations do not retry in step.
    fn backoff(&self, failures: i64) -> Duration {
        let exponent = u32::try_from(failures.clamp(0, 20)).unwrap_or(20);
        let full = self
            .config
            .backoff_min()
            .saturating_mul(2u32.saturating_pow(exponent))
            .min(self.config.backoff_max());
        full.mul_f64(0.5 + rand::random::<f64>() / 2.0)
    }

    /// One maintenance pass: retire rotated secrets whose grace is over, refresh tokens
    /// that expire within the margin. Failures are logged, not returned.
    pub async fn maintain_once(&self) {
        let now = self.now();
        match self.store().retire_expired_secrets(now).await {
            Ok(retired) => {
                for (id, name) in retired {
                    self.services.installations.invalidate(&id);
                    tracing::info!(installation = %id, secret = %name, "previous secret value retired");
                }
            }
            Err(e) => tracing::warn!(error = %e, "retiring rotated secrets failed"),
        }
        let horizon = now.saturating_add_unsigned(self.config.refresh_margin().as_secs());
        let due = match self.store().due_refreshes(horizon, now).await {
            Ok(due) => due,
            Err(e) => {
                tracing::warn!(error = %e, "listing due token refreshes failed");
                return;
            }
        };
        for id in due {
            if let Err(e) = self.ensure_fresh(&id).await {
                tracing::debug!(installation = %id, error = %e, "scheduled refresh did not succeed");
            }
        }
    }

    /// Run [`Auth::maintain_once`] every `maintenance_interval` until `shutdown` resolves.
    pub async fn run_maintenance(&self, shutdown: impl std::future::Future<Output = ()>) {
        let mut tick = tokio::time::interval(self.config.maintenance_interval());
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => return,
                _ = tick.tick() => self.maintain_once().await,
            }
        }
    }
}
