//! The authorization lifecycle, run by the host for its drivers.
//!
//! - **OAuth authorization code** ([`Auth::start`], [`Auth::callback`]): the host makes a
//!   single-use, expiring `state` bound to one installation and a PKCE verifier, asks the
//!   driver for the provider's URL, and on the way back checks the `state` before the
//!   driver sees anything. The driver then runs the provider's own checks and the token
//!   request; the host captures the tokens from the response and stores them, sealed,
//!   before the guest sees the (redacted) body. Granted scopes are checked with the
//!   driver's `validate-scopes`.
//! - **Refresh** ([`Auth::refresh`], [`Auth::ensure_fresh`]): ahead of expiry and after a
//!   `401`, one refresh at a time per installation — in this process (a lock per
//!   installation) and across nodes (a lease row in the store). Failures back off; a
//!   refused refresh token, or failures past a bounded time, make it `needs_reauth`.
//! - **Maintenance** ([`Auth::run_maintenance`]): refreshes due tokens and retires the
//!   previous values of rotated secrets whose grace period is over.
//!
//! Nothing here ever reads a token's value: tokens are secrets, seen only by the
//! capabilities that inject them into requests.

mod pkce;
mod refresh;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sluice_store::{
    AuthStatus, Delivery, GrantUpdate, InstallationId, Store, StoreError, Writes, WritesApply,
};

use crate::capabilities::DataSource;
use crate::runtime::{CallError, LoadedDriver};
use crate::services::Services;
use crate::wit::auth::{Authorization, Callback, TokenGrant};
use crate::wit::types::{CallContext, DriverError};

pub use refresh::Refreshed;

/// The authorization lifecycle (`[auth]`).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Where providers send users back after an authorization; must route to
    /// `GET /oauth/callback` of this server. Default `{public_url}/oauth/callback`.
    pub redirect_uri: Option<String>,
    /// How long a started authorization (its `state`) may take, seconds. Default 600.
    pub state_ttl_secs: u64,
    /// Tokens are refreshed this long before they expire, seconds. Default 300.
    pub refresh_margin_secs: u64,
    /// How long a node may hold an installation's refresh before another may take it
    /// over (a node that died mid-refresh), seconds. Default 60.
    pub refresh_lease_secs: u64,
    /// Wait after a failed refresh, seconds, doubled per failure up to the maximum.
    /// Default 30.
    pub refresh_backoff_min_secs: u64,
    /// Longest wait between refresh attempts, seconds. Default 3600.
    pub refresh_backoff_max_secs: u64,
    /// A refresh that has failed for this long makes the installation `needs_reauth`
    /// (a refused refresh token does at once), seconds. Default 86400.
    pub reauth_after_secs: u64,
    /// How often due refreshes and the retirement of rotated secrets run, ms. Default 5000.
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

impl AuthConfig {
    /// Check what the types cannot; `Err` names the keys.
    pub fn validate(&self) -> Result<(), String> {
        if self.state_ttl_secs == 0
            || self.refresh_lease_secs == 0
            || self.maintenance_interval_ms == 0
        {
            return Err(
                "[auth] state_ttl_secs, refresh_lease_secs and maintenance_interval_ms must be positive"
                    .into(),
            );
        }
        if self.refresh_backoff_min_secs > self.refresh_backoff_max_secs {
            return Err(
                "[auth] refresh_backoff_min_secs must not exceed refresh_backoff_max_secs".into(),
            );
        }
        if let Some(uri) = &self.redirect_uri {
            let parsed =
                url::Url::parse(uri).map_err(|e| format!("[auth] redirect_uri {uri:?}: {e}"))?;
            if !matches!(parsed.scheme(), "https" | "http") {
                return Err("[auth] redirect_uri must be an http(s) URL".into());
            }
        }
        Ok(())
    }

    /// The callback providers send users back to: `redirect_uri`, else the one under
    /// `public_url`.
    pub fn redirect_uri(&self, public_url: &str) -> String {
        match &self.redirect_uri {
            Some(uri) => uri.clone(),
            None => format!("{}/oauth/callback", public_url.trim_end_matches('/')),
        }
    }

    fn state_ttl(&self) -> Duration {
        Duration::from_secs(self.state_ttl_secs)
    }

    fn refresh_margin(&self) -> Duration {
        Duration::from_secs(self.refresh_margin_secs)
    }

    fn refresh_lease(&self) -> Duration {
        Duration::from_secs(self.refresh_lease_secs)
    }

    fn backoff_min(&self) -> Duration {
        Duration::from_secs(self.refresh_backoff_min_secs)
    }

    fn backoff_max(&self) -> Duration {
        Duration::from_secs(self.refresh_backoff_max_secs)
    }

    fn reauth_after(&self) -> Duration {
        Duration::from_secs(self.reauth_after_secs)
    }

    fn maintenance_interval(&self) -> Duration {
        Duration::from_millis(self.maintenance_interval_ms)
    }
}

/// Why an authorization step was refused or failed. Each maps to one HTTP answer
/// (`server::oauth`); none carries a secret.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("unknown installation")]
    UnknownInstallation,
    #[error("driver {0:?} is not loaded")]
    DriverUnavailable(String),
    /// The driver has no such flow (e.g. OAuth for an API-key driver).
    #[error("{0}")]
    Unsupported(String),
    /// The callback names no `state`, or one that was never issued or is used up.
    #[error("{0}")]
    InvalidState(String),
    /// The callback came after the authorization's time ran out.
    #[error("the authorization expired; start it again")]
    ExpiredState,
    /// The provider's own checks refused the callback (Shopify's `hmac`, shop, timestamp).
    #[error("the callback was refused: {0}")]
    Refused(String),
    /// The callback is malformed, or says the user did not grant access.
    #[error("{0}")]
    BadCallback(String),
    /// The installation lacks what the flow needs (client id, secrets, settings).
    #[error("the installation is not ready: {0}")]
    NotReady(String),
    /// The provider's token endpoint failed in a way that may pass (`5xx`, rate limit,
    /// transport).
    #[error("the provider failed: {0}")]
    Provider(String),
    /// The provider refused the credentials (`invalid_grant`, a revoked refresh token):
    /// trying again will not help.
    #[error("the provider refused: {0}")]
    ProviderRefused(String),
    /// Another installation of the driver is connected to that account.
    #[error("{0}")]
    Conflict(String),
    #[error("the driver failed: {0}")]
    Driver(CallError),
    #[error("storage: {0}")]
    Store(StoreError),
}

impl From<StoreError> for AuthError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => AuthError::UnknownInstallation,
            StoreError::Conflict(m) => AuthError::Conflict(m),
            other => AuthError::Store(other),
        }
    }
}

impl From<CallError> for AuthError {
    fn from(e: CallError) -> Self {
        match e {
            CallError::Driver(d) => match d {
                DriverError::Unauthorized(m) => AuthError::Refused(m),
                DriverError::BadRequest(m) => AuthError::BadCallback(m),
                DriverError::InvalidSettings(m) => AuthError::NotReady(m),
                DriverError::Unsupported(m) => AuthError::Unsupported(m),
                DriverError::Upstream(u) if u.retryable => {
                    AuthError::Provider(format!("status {}: {}", u.status, u.message))
                }
                DriverError::Upstream(u) => {
                    AuthError::ProviderRefused(format!("status {}: {}", u.status, u.message))
                }
                DriverError::RateLimited(r) => AuthError::Provider(format!(
                    "rate limited for {} ms: {}",
                    r.retry_after_ms, r.message
                )),
                DriverError::Internal(m) => {
                    AuthError::Driver(CallError::Driver(DriverError::Internal(m)))
                }
            },
            other => AuthError::Driver(other),
        }
    }
}

/// What a completed authorization gave.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct Connected {
    pub installation_id: String,
    #[schema(value_type = AuthStatusName)]
    pub status: AuthStatus,
    /// Why, for `needs_reauth`.
    #[schema(required = true)]
    pub reason: Option<String>,
    pub scopes: Vec<String>,
    /// The provider account it routes for (Stripe Connect's `stripe_user_id`).
    #[schema(required = true)]
    pub account_key: Option<String>,
    /// When the access token expires, RFC 3339.
    #[schema(required = true)]
    pub token_expires_at: Option<String>,
}

/// `AuthStatus` as the API writes it, for the OpenAPI document.
#[derive(utoipa::ToSchema)]
#[schema(as = AuthStatus)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)] // a schema only: the store's type serializes itself
pub enum AuthStatusName {
    /// Not authorized yet.
    Pending,
    /// Usable.
    Active,
    /// Authorize again; `reason` says why.
    NeedsReauth,
    /// The provider or the operator revoked it.
    Revoked,
}

/// The lifecycle service. One per process; cheap to share (`Arc`).
pub struct Auth {
    services: Services,
    config: AuthConfig,
    /// Where providers send users back ([`AuthConfig::redirect_uri`]).
    redirect_uri: String,
    /// This process's name in refresh leases.
    node: String,
    /// One lock per installation, so one refresh runs at a time in this process.
    flights: Mutex<HashMap<InstallationId, Arc<tokio::sync::Mutex<()>>>>,
}

impl Auth {
    /// The lifecycle of `services`' installations; callbacks come back under
    /// `public_url` unless `[auth] redirect_uri` says otherwise.
    pub fn new(services: Services, config: AuthConfig, public_url: &str) -> Self {
        Self {
            redirect_uri: config.redirect_uri(public_url),
            services,
            config,
            node: format!("node_{}", pkce::random_token()),
            flights: Mutex::default(),
        }
    }

    /// The configuration in force.
    pub fn config(&self) -> &AuthConfig {
        &self.config
    }

    fn store(&self) -> &Store {
        &self.services.store
    }

    /// Now, Unix seconds, from the host's clock.
    fn now(&self) -> i64 {
        self.services.now_secs()
    }

    /// The live installation and its driver.
    async fn installation(
        &self,
        id: &InstallationId,
    ) -> Result<(sluice_store::Installation, Arc<LoadedDriver>), AuthError> {
        let installation = self
            .store()
            .get_installation(id)
            .await?
            .ok_or(AuthError::UnknownInstallation)?;
        let driver = self
            .services
            .driver_for(&installation)
            .ok_or_else(|| AuthError::DriverUnavailable(installation.driver_id.to_string()))?;
        Ok((installation, driver))
    }

    fn context(&self, installation: &sluice_store::Installation) -> CallContext {
        self.services.call_context(installation)
    }

    /// Start an authorization: the provider URL to send the user to (`302` from
    /// `GET /oauth/{id}/start`).
    pub async fn start(&self, id: &InstallationId) -> Result<String, AuthError> {
        // Any driver may offer an authorization (Stripe Connect beside API keys); one that
        // does not answers `unsupported` from `authorize-url`.
        let (installation, driver) = self.installation(id).await?;
        let state = pkce::random_token();
        let verifier = pkce::random_token();
        let request = Authorization {
            redirect_uri: self.redirect_uri.clone(),
            state: state.clone(),
            code_challenge: pkce::s256_challenge(&verifier),
        };
        let ctx = self.context(&installation);
        let url = self
            .call(&driver, id, move |mut session| async move {
                let url = session.authorize_url(&ctx, &request).await;
                (url, session.finish())
            })
            .await?;
        let parsed = url::Url::parse(&url).map_err(|e| {
            AuthError::Provider(format!("the driver's authorize URL is not a URL: {e}"))
        })?;
        // A driver may send users only to an origin it may reach: never `javascript:`,
        // never a site of its own choosing.
        if !self.may_reach(&driver, &parsed) {
            return Err(AuthError::Provider(format!(
                "the driver's authorize URL goes to {}, which it may not reach",
                parsed.origin().ascii_serialization()
            )));
        }
        let now = self.now();
        let expires_at = now.saturating_add_unsigned(self.config.state_ttl().as_secs());
        self.store()
            .put_oauth_state(
                &state,
                id,
                &self.redirect_uri,
                verifier.as_bytes(),
                expires_at,
                now,
            )
            .await?;
        tracing::info!(installation = %id, driver = %driver.info.id, "authorization started");
        Ok(url)
    }

    fn may_reach(&self, driver: &LoadedDriver, url: &url::Url) -> bool {
        matches!(url.scheme(), "https" | "http")
            && (driver.scope.caps.http.reaches(url)
                || self
                    .services
                    .runtime
                    .capabilities()
                    .http
                    .grants()
                    .iter()
                    .any(|o| o.matches(url)))
    }

    /// Complete an authorization from the provider's redirect (`GET /oauth/callback`).
    /// The `state` is checked (and used up) before the driver is called; a refused
    /// callback makes no token request.
    pub async fn callback(&self, query: &str) -> Result<Connected, AuthError> {
        let params: HashMap<String, String> = url::form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect();
        let state = params
            .get("state")
            .filter(|s| !s.is_empty())
            .ok_or_else(|| AuthError::InvalidState("the callback has no state".into()))?;
        let pending = self.store().take_oauth_state(state).await?.ok_or_else(|| {
            AuthError::InvalidState(
                "unknown or already used state; start the authorization again".into(),
            )
        })?;
        if pending.expires_at <= self.now() {
            return Err(AuthError::ExpiredState);
        }
        let id = pending.installation_id.clone();
        if let Some(error) = params.get("error") {
            // RFC 6749 §4.1.2.1: the user (or the provider) declined.
            let description = params.get("error_description").map_or("", String::as_str);
            return Err(AuthError::BadCallback(format!(
                "the provider answered error={error} {description}"
            )));
        }
        let (installation, driver) = self.installation(&id).await?;
        let callback = Callback {
            query: query.to_string(),
            redirect_uri: pending.redirect_uri.clone(),
            code_verifier: String::from_utf8_lossy(pending.code_verifier.expose()).into_owned(),
        };
        let ctx = self.context(&installation);
        let (grant, missing) = self
            .call(&driver, &id, move |mut session| async move {
                let result = async {
                    let grant = session.exchange_code(&ctx, &callback).await?;
                    let check = session.validate_scopes(&ctx, &grant.scopes).await;
                    // A driver without a scope check has nothing to say about scopes.
                    let missing = match check {
                        Ok(check) => check.missing,
                        Err(CallError::Driver(DriverError::Unsupported(_))) => Vec::new(),
                        Err(e) => return Err(e),
                    };
                    Ok((grant, missing))
                }
                .await;
                (result, session.finish())
            })
            .await?;
        let connected = self
            .record(&installation, &driver, grant, missing, false)
            .await?;
        tracing::info!(installation = %id, driver = %driver.info.id, status = connected.status.as_str(), "authorization completed");
        Ok(connected)
    }

    /// Store what a grant says about the installation.
    async fn record(
        &self,
        installation: &sluice_store::Installation,
        driver: &LoadedDriver,
        grant: TokenGrant,
        missing: Vec<String>,
        refreshed: bool,
    ) -> Result<Connected, AuthError> {
        let status = if missing.is_empty() {
            (AuthStatus::Active, None)
        } else {
            (
                AuthStatus::NeedsReauth,
                Some(format!(
                    "the grant lacks scopes the installation needs: {}",
                    missing.join(", ")
                )),
            )
        };
        let token_expires_at = grant
            .expires_in
            .map(|s| self.now().saturating_add_unsigned(s));
        // The account key routes app-level webhooks; only a driver that has one keeps it.
        let account_key = grant
            .account_key
            .filter(|_| driver.account_key_setting.is_some())
            .filter(|k| installation.account_key.as_deref() != Some(k.as_str()));
        self.store()
            .record_grant(
                &installation.id,
                GrantUpdate {
                    scopes: grant.scopes.clone(),
                    token_expires_at,
                    account_key: account_key.clone(),
                    status: Some(status.clone()),
                    refreshed,
                },
            )
            .await?;
        self.services.installations.invalidate(&installation.id);
        Ok(Connected {
            installation_id: installation.id.to_string(),
            status: status.0,
            reason: status.1,
            scopes: grant.scopes,
            account_key: account_key.or_else(|| installation.account_key.clone()),
            token_expires_at: token_expires_at.map(crate::time::rfc3339),
        })
    }

    /// Revoke the installation's grant: the driver's `revoke` at the provider (when it has
    /// one), then its tokens are forgotten and it is `revoked`, whatever the provider said.
    pub async fn revoke(&self, id: &InstallationId, reason: &str) -> Result<(), AuthError> {
        let (installation, driver) = self.installation(id).await?;
        let ctx = self.context(&installation);
        let outcome = self
            .call(&driver, id, move |mut session| async move {
                let result = session.revoke(&ctx).await;
                (result, session.finish())
            })
            .await;
        match outcome {
            Ok(()) | Err(AuthError::Unsupported(_)) => {}
            Err(e) => {
                tracing::warn!(installation = %id, error = %e, "revocation at the provider failed; forgetting the tokens anyway")
            }
        }
        self.store().forget_tokens(id).await?;
        self.store()
            .set_auth_status(id, AuthStatus::Revoked, Some(reason))
            .await?;
        self.services.installations.invalidate(id);
        tracing::info!(installation = %id, %reason, "authorization revoked");
        Ok(())
    }

    /// Run `work` in a session of `driver` for `id` on the guest threads, with fresh reads
    /// of its secrets and state; the state it wrote is committed when it succeeds.
    async fn call<T, F, Fut>(
        &self,
        driver: &Arc<LoadedDriver>,
        id: &InstallationId,
        work: F,
    ) -> Result<T, AuthError>
    where
        T: Send + 'static,
        F: FnOnce(crate::runtime::Session) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = (Result<T, CallError>, Writes)> + Send,
    {
        let runtime = self.services.runtime.clone();
        let scope = driver.scope(id, DataSource::Store(self.store().clone()));
        let on_guest = driver.clone();
        let (result, writes) = runtime
            .clone()
            .on_guest_threads(async move {
                match runtime.session(&on_guest, scope).await {
                    Ok(session) => work(session).await,
                    Err(e) => (Err(e), Writes::default()),
                }
            })
            .await?;
        // A call that failed keeps nothing of what it wrote (its captured tokens are stored
        // as they arrive: a provider that rotated one has already invalidated the old).
        let value = result?;
        if !writes.state.is_empty() {
            self.commit_state(driver, id, writes).await?;
        }
        Ok(value)
    }

    /// Commit the state a call wrote (e.g. a token expiry the driver tracks itself).
    async fn commit_state(
        &self,
        driver: &LoadedDriver,
        id: &InstallationId,
        writes: Writes,
    ) -> Result<(), AuthError> {
        let received_at = crate::time::now_rfc3339();
        self.store()
            .commit_delivery(Delivery {
                installation_id: id.clone(),
                driver_id: driver.info.id.clone(),
                driver_version: driver.info.version.clone(),
                received_at,
                events: Vec::new(),
                writes,
                writes_apply: WritesApply::Always,
            })
            .await?;
        Ok(())
    }

    /// The per-installation lock of this process.
    fn flight(&self, id: &InstallationId) -> Arc<tokio::sync::Mutex<()>> {
        let mut flights = self.flights.lock().unwrap_or_else(|p| p.into_inner());
        // Locks nobody holds or waits for are dropped, so the map stays small.
        if flights.len() > 1024 {
            flights.retain(|_, lock| Arc::strong_count(lock) > 1);
        }
        flights.entry(id.clone()).or_default().clone()
    }
}
