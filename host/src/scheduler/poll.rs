//! One poll of an installation (`POST /v1/installations/{id}/poll`): the driver's `poll`
//! from the stored cursor, page after page while it says `has-more` (at most
//! [`MAX_PAGES`]), each page's events normalized and committed with the next cursor in
//! one transaction, through the same write path as webhooks (so an event delivered both
//! ways is stored once). The token is refreshed first when it is about to expire, and once
//! more when the provider answers `401`. A backfill (`POST …/backfill`) walks the same way
//! from the driver's `backfill-cursor`, beside the live cursor, which it does not move.

use std::sync::Arc;

use sluice_store::{Delivery, InstallationId, StateWrite, StoreError, WritesApply};

use super::Scheduler;
use crate::auth::AuthError;
use crate::canonical;
use crate::capabilities::DataSource;
use crate::pipeline::{DeliveryError, ingested, render};
use crate::runtime::{CallError, LoadedDriver, Session};
use crate::wit::ingest::{ReceivedEvent, WebhookOutcome};
use crate::wit::types::{CallContext, DriverError};

/// The driver-state key holding the polling cursor. Keys under `sluice:` are the host's;
/// drivers cannot write them.
pub const CURSOR_KEY: &str = "sluice:poll-cursor";

/// Most pages one poll fetches before handing back (`has_more` then says so).
pub const MAX_PAGES: usize = 10;

/// Most pages one backfill fetches (`has_more` then says it stopped early).
pub const MAX_BACKFILL_PAGES: usize = 100;

/// Which cursor a run walks.
#[derive(Debug, Clone)]
enum Walk {
    /// The live cursor, stored under [`CURSOR_KEY`] with each page.
    Live,
    /// A backfill's, kept in memory: the live cursor is not moved.
    Backfill(String),
}

/// What a poll did.
#[derive(Debug, Clone, Default, serde::Serialize, utoipa::ToSchema)]
pub struct Polled {
    /// Pages fetched.
    pub pages: usize,
    /// Raw events newly stored.
    pub stored: usize,
    /// Raw events already stored (by a webhook or an earlier poll).
    pub duplicates: usize,
    /// Whether the provider has more after the last page fetched.
    pub has_more: bool,
    /// The provider asked to wait this long before the next poll.
    #[schema(required = true)]
    pub retry_after_ms: Option<u64>,
}

/// Why a poll failed.
#[derive(Debug, thiserror::Error)]
pub enum PollError {
    #[error("unknown installation")]
    UnknownInstallation,
    #[error("driver {0:?} is not loaded")]
    DriverUnavailable(String),
    /// The installation cannot be polled now: its authorization, settings or secrets.
    #[error("{0}")]
    NotReady(String),
    /// The provider answered with an error.
    #[error("the provider answered {status}: {message}")]
    Provider { status: u16, message: String },
    #[error("{0}")]
    Driver(String),
    #[error("storage: {0}")]
    Store(StoreError),
}

impl From<StoreError> for PollError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => PollError::UnknownInstallation,
            other => PollError::Store(other),
        }
    }
}

impl From<DeliveryError> for PollError {
    fn from(e: DeliveryError) -> Self {
        match e {
            DeliveryError::Storage(s) => PollError::Store(s),
            DeliveryError::StoreUnavailable(m) => PollError::Store(StoreError::Unavailable(m)),
            other => PollError::Driver(other.to_string()),
        }
    }
}

impl From<AuthError> for PollError {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::UnknownInstallation => PollError::UnknownInstallation,
            AuthError::DriverUnavailable(d) => PollError::DriverUnavailable(d),
            AuthError::Store(s) => PollError::Store(s),
            other => PollError::NotReady(format!("the token could not be refreshed: {other}")),
        }
    }
}

impl From<CallError> for PollError {
    fn from(e: CallError) -> Self {
        match e {
            CallError::Driver(DriverError::Upstream(u)) => PollError::Provider {
                status: u.status,
                message: u.message,
            },
            CallError::Driver(DriverError::InvalidSettings(m) | DriverError::Unsupported(m)) => {
                PollError::NotReady(m)
            }
            other => PollError::Driver(other.to_string()),
        }
    }
}

/// One page from the driver, normalized, before it is rendered or committed.
pub struct PolledPage {
    /// The page's raw events, each with its records or the error that kept it from them.
    pub outcome: WebhookOutcome,
    pub next_cursor: Option<String>,
    pub has_more: bool,
    pub retry_after_ms: Option<u64>,
}

/// One `poll` from `cursor` and the normalization of its events, in `session`. Shared by
/// the pipeline and `sluice driver test --fixtures`.
pub async fn poll_page(
    session: &mut Session,
    ctx: &CallContext,
    cursor: Option<&str>,
) -> Result<PolledPage, CallError> {
    let result = session.poll(ctx, cursor).await?;
    let mut events = Vec::with_capacity(result.events.len());
    for raw in result.events {
        // A normalization that cannot finish (its enrichment calls spend the session's
        // deadline or request budget) fails that event alone: it is stored failed and
        // retried in a session of its own, and the cursor still moves past the page, which
        // a page-wide failure would pin forever.
        let records = match session.normalize(ctx, &raw).await {
            Ok(records) => records,
            Err(e) => Err(DriverError::Internal(format!(
                "normalize did not finish: {e}"
            ))),
        };
        events.push(ReceivedEvent { raw, records });
    }
    Ok(PolledPage {
        outcome: WebhookOutcome {
            events,
            reply: None,
            revoked: None,
        },
        next_cursor: result.next_cursor,
        has_more: result.has_more,
        retry_after_ms: result.retry_after_ms,
    })
}

/// What asking for a page gave.
enum Fetched {
    Page(Page),
    /// The provider asked to wait this long (nothing to commit).
    RateLimited(u64),
}

/// One page's outcome, before it is committed.
struct Page {
    outcome: WebhookOutcome,
    writes: sluice_store::Writes,
    next_cursor: Option<String>,
    has_more: bool,
    retry_after_ms: Option<u64>,
}

impl Scheduler {
    /// Poll the installation now (see the module documentation).
    pub(super) async fn poll_once(&self, id: &InstallationId) -> Result<Polled, PollError> {
        let result = self.walk(id, None).await;
        let outcome = match &result {
            Ok(polled) if polled.retry_after_ms.is_some() => Some("rate_limited"),
            Ok(_) => Some("ok"),
            Err(PollError::UnknownInstallation) => None,
            Err(_) => Some("failed"),
        };
        if let Some(outcome) = outcome {
            crate::metrics::record_installation_poll(id.as_str(), outcome);
        }
        result
    }

    /// Backfill the installation from `since`: the driver's `backfill-cursor`, then pages
    /// while it says `has-more` (at most [`MAX_BACKFILL_PAGES`]), each committed through the
    /// same write path (so nothing already stored is stored again) — beside the live
    /// cursor, which does not move.
    pub async fn backfill(
        &self,
        id: &InstallationId,
        since: crate::wit::types::Datetime,
    ) -> Result<Polled, PollError> {
        self.walk(id, Some(since)).await
    }

    async fn walk(
        &self,
        id: &InstallationId,
        backfill_since: Option<crate::wit::types::Datetime>,
    ) -> Result<Polled, PollError> {
        let installation = self
            .services
            .store
            .get_installation(id)
            .await?
            .ok_or(PollError::UnknownInstallation)?;
        let driver = self
            .services
            .driver_for(&installation)
            .ok_or_else(|| PollError::DriverUnavailable(installation.driver_id.to_string()))?;
        // An installation that must be authorized again is not polled until it is.
        if let Some(record) = self.services.store.auth_record(id).await?
            && matches!(
                record.status,
                sluice_store::AuthStatus::NeedsReauth | sluice_store::AuthStatus::Revoked
            )
        {
            return Err(PollError::NotReady(format!(
                "the installation is {}: {}; authorize it again",
                record.status.as_str(),
                record.reason.as_deref().unwrap_or("no reason recorded")
            )));
        }
        let ctx = self.services.call_context(&installation);
        let (mut walk, max_pages) = match backfill_since {
            None => (Walk::Live, MAX_PAGES),
            Some(since) => {
                // No provider call here: the first page refreshes the token if it must.
                let cursor = self.backfill_cursor(&driver, id, &ctx, since).await?;
                (Walk::Backfill(cursor), MAX_BACKFILL_PAGES)
            }
        };
        let mut polled = Polled::default();
        for _ in 0..max_pages {
            let page = match self.page_with_fresh_token(&driver, id, &ctx, &walk).await? {
                Fetched::Page(page) => page,
                Fetched::RateLimited(wait) => {
                    polled.retry_after_ms = Some(wait);
                    return Ok(polled);
                }
            };
            polled.pages += 1;
            polled.has_more = page.has_more;
            polled.retry_after_ms = page.retry_after_ms;
            let next = page.next_cursor.clone();
            let outcome = self.commit_page(&driver, id, page, &walk).await?;
            if let (Walk::Backfill(cursor), Some(next)) = (&mut walk, next) {
                *cursor = next;
            }
            polled.stored += outcome.stored;
            polled.duplicates += outcome.duplicates;
            if !polled.has_more || polled.retry_after_ms.is_some() {
                break;
            }
        }
        Ok(polled)
    }

    /// Fetch one page, refreshing the token ahead of expiry and once after a `401`.
    async fn page_with_fresh_token(
        &self,
        driver: &Arc<LoadedDriver>,
        id: &InstallationId,
        ctx: &CallContext,
        walk: &Walk,
    ) -> Result<Fetched, PollError> {
        self.auth.ensure_fresh(id).await?;
        let seen = self
            .services
            .store
            .auth_record(id)
            .await?
            .and_then(|r| r.token_expires_at);
        match self.page(driver, id, ctx, walk).await {
            Err(CallError::Driver(DriverError::Upstream(u))) if u.status == 401 => {
                self.auth.refresh_after_refusal(id, seen).await?;
                Ok(Fetched::Page(self.page(driver, id, ctx, walk).await?))
            }
            Err(CallError::Driver(DriverError::RateLimited(r))) => {
                Ok(Fetched::RateLimited(r.retry_after_ms))
            }
            other => Ok(Fetched::Page(other?)),
        }
    }

    /// One `poll` call and the normalization of its events, in one session.
    async fn page(
        &self,
        driver: &Arc<LoadedDriver>,
        id: &InstallationId,
        ctx: &CallContext,
        walk: &Walk,
    ) -> Result<Page, CallError> {
        let cursor = match walk {
            Walk::Backfill(cursor) => Some(cursor.clone()),
            Walk::Live => self
                .services
                .store
                .get_state(id, CURSOR_KEY)
                .await
                .map_err(|e| CallError::Trap(format!("reading the poll cursor: {e}")))?
                .map(|c| String::from_utf8_lossy(&c).into_owned()),
        };
        let runtime = self.services.runtime.clone();
        let scope = driver.scope(id, DataSource::Store(self.services.store.clone()));
        let (driver, ctx) = (driver.clone(), ctx.clone());
        let work = async move {
            let mut session = runtime.session(&driver, scope).await?;
            let page = poll_page(&mut session, &ctx, cursor.as_deref()).await?;
            Ok::<_, CallError>(Page {
                outcome: page.outcome,
                writes: session.finish(),
                next_cursor: page.next_cursor,
                has_more: page.has_more,
                retry_after_ms: page.retry_after_ms,
            })
        };
        self.services.runtime.on_guest_threads(work).await?
    }

    /// The driver's starting cursor for a backfill from `since`.
    async fn backfill_cursor(
        &self,
        driver: &Arc<LoadedDriver>,
        id: &InstallationId,
        ctx: &CallContext,
        since: crate::wit::types::Datetime,
    ) -> Result<String, PollError> {
        let runtime = self.services.runtime.clone();
        let scope = driver.scope(id, DataSource::Store(self.services.store.clone()));
        let (driver, ctx) = (driver.clone(), ctx.clone());
        let work = async move {
            let mut session = runtime.session(&driver, scope).await?;
            let cursor = session.backfill_cursor(&ctx, since).await;
            session.finish();
            cursor
        };
        Ok(self.services.runtime.on_guest_threads(work).await??)
    }

    /// Commit a page's events (with the live cursor when walking it), in one transaction.
    async fn commit_page(
        &self,
        driver: &LoadedDriver,
        id: &InstallationId,
        page: Page,
        walk: &Walk,
    ) -> Result<sluice_store::CommitOutcome, PollError> {
        let received = render(page.outcome, |_| Ok(())).map_err(PollError::from)?;
        let received_at =
            canonical::rfc3339(&self.services.runtime.capabilities().clock.now_datetime())
                .unwrap_or_default();
        let mut writes = page.writes;
        if let (Walk::Live, Some(cursor)) = (walk, page.next_cursor) {
            writes.state.push(StateWrite::Set {
                key: CURSOR_KEY.into(),
                value: cursor.into_bytes(),
            });
        }
        let events = received
            .processed
            .into_iter()
            .map(|p| ingested(p, id, &received_at))
            .collect();
        Ok(self
            .services
            .store
            .commit_delivery(Delivery {
                installation_id: id.clone(),
                driver_id: driver.info.id.clone(),
                driver_version: driver.info.version.clone(),
                received_at,
                events,
                writes,
                // The cursor moves past a page even when all of it was already stored.
                writes_apply: WritesApply::Always,
            })
            .await?)
    }
}
