//! One call into a driver: a fresh `Store` and instance, a deadline, a sandbox slot.
//!
//! A [`Session`] may make several export calls (a webhook delivery runs verify, handle and
//! normalize in one instance), all under one deadline. Whatever happens inside — trap,
//! timeout, exhausted memory — surfaces as a [`CallError`] for this call only.

use std::time::{Duration, Instant};

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::Instrument;
use wasmtime::component::{Instance, TypedFunc};
use wasmtime::{Store, UpdateDeadline};

use sluice_store::Writes;

use super::exports::Exports;
use super::{LoadedDriver, Runtime};
use crate::capabilities::{CallScope, CallState};
use crate::wit::canonical::CanonicalRecord;
use crate::wit::{auth, ingest, types};

/// How long a call waits for a free sandbox slot before answering "overloaded".
const SLOT_WAIT: Duration = Duration::from_secs(1);

/// Why a driver call did not produce a result.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("every sandbox slot is busy")]
    Overloaded,
    #[error("the driver exceeded its time budget")]
    Timeout,
    #[error("the driver trapped: {0}")]
    Trap(String),
    #[error("the driver returned too much output (limit {0} bytes)")]
    OutputTooLarge(usize),
    #[error("the driver refused: {}", describe(.0))]
    Driver(types::DriverError),
    /// What the driver returned cannot be used (an id past its size, a reply the host will
    /// not send): nothing of the call is kept.
    #[error("the driver's output is invalid: {0}")]
    InvalidOutput(String),
}

/// A one-line description of a driver error.
pub fn describe(e: &types::DriverError) -> String {
    use types::DriverError as E;
    match e {
        E::Unauthorized(m) => format!("unauthorized: {m}"),
        E::BadRequest(m) => format!("bad request: {m}"),
        E::InvalidSettings(m) => format!("invalid settings: {m}"),
        E::Upstream(u) => format!("provider answered {}: {}", u.status, u.message),
        E::RateLimited(r) => format!("rate limited for {} ms: {}", r.retry_after_ms, r.message),
        E::Unsupported(m) => format!("unsupported: {m}"),
        E::Internal(m) => format!("driver error: {m}"),
    }
}

/// A driver's error with every text in it cut to [`crate::text::MAX_DRIVER_TEXT`]: from
/// here on, whatever answers, logs or stores it holds a bounded text.
fn bounded(e: types::DriverError) -> types::DriverError {
    use crate::text::bounded_error as cut;
    use types::DriverError as E;
    match e {
        E::Unauthorized(m) => E::Unauthorized(cut(&m)),
        E::BadRequest(m) => E::BadRequest(cut(&m)),
        E::InvalidSettings(m) => E::InvalidSettings(cut(&m)),
        E::Upstream(mut u) => {
            u.message = cut(&u.message);
            E::Upstream(u)
        }
        E::RateLimited(mut r) => {
            r.message = cut(&r.message);
            E::RateLimited(r)
        }
        E::Unsupported(m) => E::Unsupported(cut(&m)),
        E::Internal(m) => E::Internal(cut(&m)),
    }
}

/// A driver's own error, bounded, as a call's failure.
fn driver_error(e: types::DriverError) -> CallError {
    CallError::Driver(bounded(e))
}

/// Marker error raised by the epoch callback when the deadline has passed.
#[derive(Debug)]
pub(super) struct DeadlineExceeded;

impl std::fmt::Display for DeadlineExceeded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("deadline exceeded")
    }
}

impl std::error::Error for DeadlineExceeded {}

/// The epoch callback: yield to the executor every tick, trap once past `deadline`.
pub(super) fn deadline_check(deadline: Instant) -> wasmtime::Result<UpdateDeadline> {
    if Instant::now() >= deadline {
        Err(wasmtime::Error::new(DeadlineExceeded))
    } else {
        Ok(UpdateDeadline::Yield(1))
    }
}

/// Wasmtime's text for a lift stopped by hostcall fuel (its error type is private).
const LIFT_FUEL_EXHAUSTED: &str = "fuel allocated for hostcalls has been exhausted";

/// How many bytes one value the guest hands the host (an export's result, an import's
/// arguments) may make the host allocate, given what is left of the call's output cap.
/// Wasmtime charges this while lifting, before it allocates: every list element at its
/// host size and every string at its length, each time it is referenced, so lists that
/// alias one buffer in guest memory are charged per reference and stopped early. Twice
/// the allowance leaves room for host layouts larger than the output they become; the
/// floor, for the small arguments of calls made after the allowance is spent.
pub(super) fn lift_budget(output_left: usize) -> usize {
    output_left.saturating_mul(2).max(64 * 1024)
}

/// `max_output` is the call's output cap, reported when lifting ran out of budget.
fn classify(error: wasmtime::Error, max_output: usize) -> CallError {
    if error.downcast_ref::<DeadlineExceeded>().is_some() {
        return CallError::Timeout;
    }
    let mut root: &dyn std::error::Error = &*error;
    while let Some(source) = root.source() {
        root = source;
    }
    let root = root.to_string();
    if root.contains(LIFT_FUEL_EXHAUSTED) {
        tracing::warn!(error = %root, "driver output stopped while lifting");
        return CallError::OutputTooLarge(max_output);
    }
    // The full chain (with the wasm backtrace) is for the operator's log; callers get
    // the root cause, e.g. "wasm trap: wasm `unreachable` instruction executed".
    tracing::warn!(error = ?error, "driver trapped");
    CallError::Trap(root)
}

/// A live instance of a driver for one call.
pub struct Session {
    store: Store<CallState>,
    instance: Instance,
    exports: Exports,
    deadline: tokio::time::Instant,
    output_left: usize,
    max_output: usize,
    /// Names the installation, driver and version on every line logged during its calls
    /// (by the host's capabilities, the driver's own `log`, a trap).
    span: tracing::Span,
    /// The driver and version, for the call metrics.
    labels: Arc<(String, String)>,
    _permits: (OwnedSemaphorePermit, OwnedSemaphorePermit),
}

impl Runtime {
    /// Instantiate `driver` in a fresh store scoped to `scope`, with `budget` of wall time
    /// for everything the session does.
    pub async fn session(
        &self,
        driver: &LoadedDriver,
        scope: CallScope,
    ) -> Result<Session, CallError> {
        // The driver's share first, so a driver whose calls hang waits on its own slots
        // and leaves the rest of the runtime's to the others.
        let slot = |semaphore: &Arc<Semaphore>| {
            let semaphore = semaphore.clone();
            async move {
                tokio::time::timeout(SLOT_WAIT, semaphore.acquire_owned())
                    .await
                    .map_err(|_| CallError::Overloaded)?
                    .map_err(|_| CallError::Overloaded)
            }
        };
        let span = tracing::info_span!(
            "driver_call",
            driver = %scope.driver.id,
            version = %scope.driver.version,
            installation = tracing::field::Empty,
        );
        if let Some(installation) = &scope.installation {
            span.record("installation", installation.id.as_str());
        }
        let driver_permit = slot(&driver.slots).await?;
        let permit = slot(self.permits()).await?;
        let limits = scope.driver.limits;
        let budget = limits.timeout();
        let state = CallState::new(self.capabilities(), &scope);
        let mut store = Store::new(self.engine(), state);
        store.limiter(|s| s.store_limits());
        store.set_hostcall_fuel(lift_budget(limits.max_output_bytes));
        let started = Instant::now();
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |_| deadline_check(started + budget));
        let deadline = tokio::time::Instant::from_std(started + budget);
        let labels = Arc::new((scope.driver.id.clone(), scope.driver.version.clone()));
        let instantiated = tokio::time::timeout_at(
            deadline,
            driver
                .pre
                .instance_pre()
                .instantiate_async(&mut store)
                .instrument(span.clone()),
        )
        .await
        .map_err(|_| CallError::Timeout)
        .and_then(|r| r.map_err(|e| span.in_scope(|| classify(e, limits.max_output_bytes))));
        let memory = store.data().memory();
        crate::metrics::record_call(
            &labels.0,
            &labels.1,
            "instantiate",
            outcome(&instantiated, memory.refusals() > 0),
            started.elapsed(),
        );
        let instance = match instantiated {
            Ok(instance) => instance,
            Err(e) => {
                crate::metrics::record_memory_peak(&labels.0, &labels.1, memory.peak());
                return Err(e);
            }
        };
        Ok(Session {
            store,
            instance,
            exports: driver.exports,
            deadline,
            output_left: limits.max_output_bytes,
            max_output: limits.max_output_bytes,
            span,
            labels,
            _permits: (driver_permit, permit),
        })
    }
}

/// What an export returns that may be the driver's own error (counted as `driver_error`,
/// apart from calls that returned a value).
trait Returned {
    fn is_driver_error(&self) -> bool;
}

impl<T> Returned for Result<T, types::DriverError> {
    fn is_driver_error(&self) -> bool {
        self.is_err()
    }
}

impl Returned for Option<String> {
    fn is_driver_error(&self) -> bool {
        false
    }
}

/// Instantiation (`export="instantiate"`) runs the component's start code: it traps or
/// times out like an export, and has no error of its own.
impl Returned for Instance {
    fn is_driver_error(&self) -> bool {
        false
    }
}

/// The `outcome` label of a call (`sluice_driver_calls_total`). `refused_memory`: a growth
/// of its memory was refused during the call, so a trap is the driver running out of it
/// (a Rust guest aborts when an allocation fails).
fn outcome<T: Returned>(result: &Result<T, CallError>, refused_memory: bool) -> &'static str {
    match result {
        Ok(out) if out.is_driver_error() => "driver_error",
        Ok(_) => "ok",
        Err(CallError::Timeout) => "timeout",
        Err(CallError::Trap(_)) if refused_memory => "out_of_memory",
        Err(CallError::Trap(_)) => "trap",
        Err(CallError::OutputTooLarge(_)) => "output_too_large",
        Err(CallError::Overloaded) => "overloaded",
        Err(CallError::Driver(_)) => "driver_error",
        Err(CallError::InvalidOutput(_)) => "invalid_output",
    }
}

/// Call export `$export`, whose WIT signature is `($($param),*) -> $ret`, with `$args`,
/// under the session deadline; `charge` gives the bytes of its result that count against
/// the output cap (so a result over it is counted as `output_too_large`, not `ok`).
macro_rules! call {
    ($session:expr, $export:ident: ($($param:ty),*) -> $ret:ty, ($($arg:expr),*)) => {
        call!($session, $export: ($($param),*) -> $ret, ($($arg),*), charge = |_: &$ret| 0)
    };
    ($session:expr, $export:ident: ($($param:ty),*) -> $ret:ty, ($($arg:expr),*), charge = $charge:expr) => {{
        let session = &mut *$session;
        let func = session
            .instance
            .get_func(&mut session.store, session.exports.$export)
            .ok_or_else(|| CallError::Trap(concat!("export ", stringify!($export), " is missing").into()))?;
        // SAFETY: loading the driver instantiated this component through the generated
        // bindings, which type-check every export against the world; sessions instantiate
        // the same component (one `InstancePre`), so the signature is this one.
        let typed = unsafe { TypedFunc::<($($param,)*), ($ret,)>::new_unchecked(func) };
        session.store.set_hostcall_fuel(lift_budget(session.output_left));
        let max_output = session.max_output;
        let refusals = session.store.data().memory().refusals();
        let span = session.span.clone();
        let call = typed
            .call_async(&mut session.store, ($($arg,)*))
            .instrument(span.clone());
        let started = Instant::now();
        let result: Result<$ret, CallError> = tokio::time::timeout_at(session.deadline, call)
            .await
            .map_err(|_| CallError::Timeout)
            .and_then(|r| {
                r.map(|(out,)| out)
                    .map_err(|e| span.in_scope(|| classify(e, max_output)))
            })
            .and_then(|out| {
                let charge: fn(&$ret) -> usize = $charge;
                session.charge_output(charge(&out)).map(|()| out)
            });
        let refused_memory = session.store.data().memory().refusals() > refusals;
        crate::metrics::record_call(
            &session.labels.0,
            &session.labels.1,
            stringify!($export),
            outcome(&result, refused_memory),
            started.elapsed(),
        );
        result
    }};
}

impl Session {
    /// Count `bytes` of output against the call's output cap.
    pub fn charge_output(&mut self, bytes: usize) -> Result<(), CallError> {
        self.output_left = self
            .output_left
            .checked_sub(bytes)
            .ok_or(CallError::OutputTooLarge(self.max_output))?;
        Ok(())
    }

    pub async fn authorize_url(
        &mut self,
        ctx: &types::CallContext,
        request: &auth::Authorization,
    ) -> Result<String, CallError> {
        self.store.data_mut().caps.enter_export(&ctx.settings);
        call!(self, authorize_url: (&types::CallContext, &auth::Authorization) -> Result<String, types::DriverError>, (ctx, request))?
            .map_err(driver_error)
    }

    /// Exchange an OAuth callback for tokens; the tokens themselves are captured by the
    /// host (stored as the provider's response arrives).
    pub async fn exchange_code(
        &mut self,
        ctx: &types::CallContext,
        callback: &auth::Callback,
    ) -> Result<auth::TokenGrant, CallError> {
        self.store.data_mut().caps.enter_export(&ctx.settings);
        call!(self, exchange_code: (&types::CallContext, &auth::Callback) -> Result<auth::TokenGrant, types::DriverError>, (ctx, callback))?
            .map_err(driver_error)
    }

    pub async fn revoke(&mut self, ctx: &types::CallContext) -> Result<(), CallError> {
        self.store.data_mut().caps.enter_export(&ctx.settings);
        call!(self, revoke: (&types::CallContext) -> Result<(), types::DriverError>, (ctx))?
            .map_err(driver_error)
    }

    pub async fn refresh(
        &mut self,
        ctx: &types::CallContext,
    ) -> Result<auth::TokenGrant, CallError> {
        self.store.data_mut().caps.enter_export(&ctx.settings);
        call!(self, refresh: (&types::CallContext) -> Result<auth::TokenGrant, types::DriverError>, (ctx))?
            .map_err(driver_error)
    }

    pub async fn validate_scopes(
        &mut self,
        ctx: &types::CallContext,
        granted: &[String],
    ) -> Result<auth::ScopeCheck, CallError> {
        self.store.data_mut().caps.enter_export(&ctx.settings);
        call!(self, validate_scopes: (&types::CallContext, &[String]) -> Result<auth::ScopeCheck, types::DriverError>, (ctx, granted))?
            .map_err(driver_error)
    }

    pub async fn route_key(
        &mut self,
        request: &types::IncomingRequest,
    ) -> Result<Option<String>, CallError> {
        call!(self, route_key: (&types::IncomingRequest) -> Option<String>, (request))
    }

    /// One webhook delivery: verify, raw events, their records (see the WIT `receive`).
    pub async fn receive(
        &mut self,
        ctx: &types::CallContext,
        request: &types::IncomingRequest,
    ) -> Result<ingest::WebhookOutcome, CallError> {
        self.store.data_mut().caps.enter_export(&ctx.settings);
        let mut outcome = call!(self, receive: (&types::CallContext, &types::IncomingRequest) -> Result<ingest::WebhookOutcome, types::DriverError>, (ctx, request),
            charge = |out| out.as_ref().map_or(0, |o| o.events.iter().map(|e| raw_event_size(&e.raw)).sum()))?
            .map_err(driver_error)?;
        for event in &mut outcome.events {
            if let Err(e) = &mut event.records {
                *e = bounded(std::mem::replace(
                    e,
                    types::DriverError::Internal(String::new()),
                ));
            }
        }
        if let Some(reason) = &mut outcome.revoked {
            *reason = crate::text::bounded_error(reason);
        }
        Ok(outcome)
    }

    /// Normalize one raw event. The outer error fails the call; the inner one is the
    /// driver's verdict on this event (kept as a dead letter by the pipeline).
    pub async fn normalize(
        &mut self,
        ctx: &types::CallContext,
        event: &types::RawEvent,
    ) -> Result<Result<Vec<CanonicalRecord>, types::DriverError>, CallError> {
        self.store.data_mut().caps.enter_export(&ctx.settings);
        call!(self, normalize: (&types::CallContext, &types::RawEvent) -> Result<Vec<CanonicalRecord>, types::DriverError>, (ctx, event))
            .map(|verdict| verdict.map_err(bounded))
    }

    pub async fn poll(
        &mut self,
        ctx: &types::CallContext,
        cursor: Option<&str>,
    ) -> Result<ingest::PollResult, CallError> {
        self.store.data_mut().caps.enter_export(&ctx.settings);
        call!(self, poll: (&types::CallContext, Option<&str>) -> Result<ingest::PollResult, types::DriverError>, (ctx, cursor),
            charge = |out| out.as_ref().map_or(0, |r| r.events.iter().map(raw_event_size).sum()))?
            .map_err(driver_error)
    }

    /// Where a backfill from `since` starts (a cursor for [`Session::poll`]).
    pub async fn backfill_cursor(
        &mut self,
        ctx: &types::CallContext,
        since: types::Datetime,
    ) -> Result<String, CallError> {
        self.store.data_mut().caps.enter_export(&ctx.settings);
        call!(self, backfill_cursor: (&types::CallContext, types::Datetime) -> Result<String, types::DriverError>, (ctx, since))?
            .map_err(driver_error)
    }

    /// End the session, returning the writes to commit with its results.
    pub fn finish(mut self) -> Writes {
        self.store.data_mut().take_writes()
    }
}

impl Drop for Session {
    /// Every session, however it ended, reports the most memory its instance held.
    fn drop(&mut self) {
        let peak = self.store.data().memory().peak();
        crate::metrics::record_memory_peak(&self.labels.0, &self.labels.1, peak);
    }
}

fn raw_event_size(e: &types::RawEvent) -> usize {
    e.payload.len()
        + e.provider_event_id.len()
        + e.event_type.len()
        + e.account_key.as_ref().map_or(0, String::len)
        + 32
}
