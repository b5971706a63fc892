//! Admin routes of an installation's life beyond its settings: secret rotation, token
//! refresh, revocation, polling now, backfill, and pausing or resuming its schedule.

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};
use sluice_store::InstallationId;

use super::admin::InstallationView;
use super::admin::{body, parse_id};
use super::error::{ErrorBody, Unavailable};
use super::{ApiError, AppState};
use crate::scheduler::PollError;
use crate::scheduler::PollNowError;

/// Longest grace period of a rotation: a week.
pub const MAX_GRACE_SECONDS: u64 = 7 * 24 * 3600;
/// Grace period when the request names none: a day.
pub const DEFAULT_GRACE_SECONDS: u64 = 24 * 3600;

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Rotation {
    /// The new value, primary at once. Not empty.
    #[schema(min_length = 1)]
    value: String,
    /// How long the previous value still verifies webhooks; `0` retires it at once.
    #[schema(minimum = 0, maximum = 604800, default = 86400)]
    grace_seconds: Option<u64>,
}

/// What a rotation did.
#[derive(utoipa::ToSchema)]
#[schema(as = Rotated)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // a schema only: the body is built with `json!`
pub(super) struct RotatedView {
    secret: String,
    /// RFC 3339 UTC.
    rotated_at: String,
    /// Until when the previous value still verifies webhooks; `null` when none does.
    #[schema(required = true)]
    previous_valid_until: Option<String>,
}

/// `POST /v1/installations/{id}/secrets/{name}/rotate`: a new primary value, the previous
/// one still verifying webhooks for `grace_seconds`.
#[utoipa::path(
    post,
    path = "/v1/installations/{id}/secrets/{name}/rotate",
    tag = "installations",
    params(
        ("id" = String, Path, description = "The installation id"),
        ("name" = String, Path, description = "A secret the installation's driver declares"),
    ),
    request_body = Rotation,
    responses(
        (status = 200, description = "Rotated", body = RotatedView),
        (status = 400, description = "`bad_request`: malformed JSON or an unknown field", body = ErrorBody),
        (status = 404, description = "`not_found`: unknown installation", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`", body = ErrorBody),
        (status = 422, description = "`empty_secret`, `invalid_grace`, `unknown_secret`, `nothing_to_rotate` (no value yet: set it first)", body = ErrorBody),
        (status = 503, response = Unavailable),
    )
)]
pub async fn rotate_secret(
    State(state): State<Arc<AppState>>,
    Path((id, name)): Path<(String, String)>,
    payload: Result<Json<Rotation>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let id = parse_id(&id)?;
    let rotation = body(payload)?;
    if rotation.value.is_empty() {
        return Err(ApiError::unprocessable(
            "empty_secret",
            format!("secret {name:?} needs a value; an empty one is refused"),
        ));
    }
    let grace = rotation.grace_seconds.unwrap_or(DEFAULT_GRACE_SECONDS);
    if grace > MAX_GRACE_SECONDS {
        return Err(ApiError::unprocessable(
            "invalid_grace",
            format!("grace_seconds is at most {MAX_GRACE_SECONDS} (7 days)"),
        ));
    }
    let store = &state.services.store;
    let installation = store
        .get_installation(&id)
        .await?
        .ok_or_else(|| ApiError::not_found("unknown installation"))?;
    super::admin::check_declared(&state, &installation, &name)?;
    let now = now(&state);
    let until = store
        .rotate_secret(&id, &name, rotation.value.as_bytes(), grace, now)
        .await
        .map_err(|e| match e {
            sluice_store::StoreError::InvalidInput(m) => {
                ApiError::unprocessable("nothing_to_rotate", m)
            }
            other => other.into(),
        })?;
    state.services.installations.invalidate(&id);
    tracing::info!(installation = %id, secret = %name, grace_seconds = grace, "secret rotated");
    Ok(Json(json!({
        "secret": name,
        "rotated_at": rfc3339(now),
        "previous_valid_until": until.map(rfc3339),
    })))
}

/// What `POST /v1/installations/{id}/refresh` did.
#[derive(utoipa::ToSchema)]
#[schema(as = RefreshResult)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // a schema only
pub(super) struct RefreshView {
    outcome: crate::auth::Refreshed,
    installation: InstallationView,
}

/// `POST /v1/installations/{id}/refresh`: refresh the token now.
#[utoipa::path(
    post,
    path = "/v1/installations/{id}/refresh",
    tag = "installations",
    params(("id" = String, Path, description = "The installation id")),
    responses(
        (status = 200, description = "Refreshed, or already fresh (another caller refreshed it)", body = RefreshView),
        (status = 404, description = "`not_found`: unknown installation", body = ErrorBody),
        (status = 409, description = "`unsupported` (nothing to refresh), `not_ready` (no refresh token or credentials), `conflict`", body = ErrorBody),
        (status = 502, description = "`provider_error` (the provider refused: the installation is `needs_reauth`, or failed), `driver_error`", body = ErrorBody),
        (status = 503, description = "`driver_unavailable` (the driver is not loaded), `unavailable` (the database)", body = ErrorBody,
         headers(("Retry-After" = u32, description = "seconds"))),
    )
)]
pub async fn refresh(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id = parse_id(&id)?;
    let auth = state.auth.clone();
    let task_id = id.clone();
    // Run to the end even if the client leaves: a rotated refresh token must be recorded.
    let outcome = tokio::spawn(async move { auth.refresh(&task_id).await })
        .await
        .map_err(|e| ApiError::internal("the refresh task failed", e))??;
    let store = &state.services.store;
    let installation = store
        .get_installation(&id)
        .await?
        .ok_or_else(|| ApiError::not_found("unknown installation"))?;
    let (auth, polling) = super::admin::installation_status(&state, &id).await?;
    let status = super::admin::Status {
        auth: auth.as_ref(),
        polling: polling.as_ref(),
    };
    Ok(Json(json!({
        "outcome": outcome,
        "installation": super::admin::installation_json(&state, &installation, status),
    })))
}

#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Revocation {
    /// Recorded as the installation's `auth.reason`; `revoked by the operator` when absent.
    reason: Option<String>,
}

/// `POST /v1/installations/{id}/revoke`: revoke at the provider, forget the tokens.
#[utoipa::path(
    post,
    path = "/v1/installations/{id}/revoke",
    tag = "installations",
    params(("id" = String, Path, description = "The installation id")),
    request_body(content = Option<Revocation>, description = "Optional"),
    responses(
        (status = 204, description = "Revoked: the captured tokens are deleted, whatever the provider answered"),
        (status = 404, description = "`not_found`: unknown installation", body = ErrorBody),
        (status = 503, description = "`driver_unavailable`, `unavailable`", body = ErrorBody,
         headers(("Retry-After" = u32, description = "seconds"))),
    )
)]
pub async fn revoke(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    payload: Option<Json<Revocation>>,
) -> Result<StatusCode, ApiError> {
    let id = parse_id(&id)?;
    let reason = payload
        .and_then(|Json(r)| r.reason)
        .unwrap_or_else(|| "revoked by the operator".into());
    state.auth.revoke(&id, &reason).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// What `POST /v1/installations/{id}/poll` did.
#[derive(utoipa::ToSchema)]
#[schema(as = PollResult)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // a schema only
pub(super) struct PollView {
    polled: crate::scheduler::Polled,
}

/// `POST /v1/installations/{id}/poll`: poll now.
#[utoipa::path(
    post,
    path = "/v1/installations/{id}/poll",
    tag = "installations",
    params(("id" = String, Path, description = "The installation id")),
    responses(
        (status = 200, description = "Polled (a rate-limited poll has `pages: 0` and the provider's `retry_after_ms`)", body = PollView),
        (status = 404, description = "`not_found`: unknown installation", body = ErrorBody),
        (status = 409, description = "`poll_in_progress`, `not_ready` (authorization or settings)", body = ErrorBody),
        (status = 502, description = "`provider_error`, `driver_error`", body = ErrorBody),
        (status = 503, description = "`driver_unavailable`, `unavailable`", body = ErrorBody),
    )
)]
pub async fn poll(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id: InstallationId = parse_id(&id)?;
    let scheduler = state.scheduler.clone();
    // A page fetched is committed even if the client leaves.
    let polled = tokio::spawn(async move { scheduler.poll_now(&id).await })
        .await
        .map_err(|e| ApiError::internal("the poll task failed", e))?
        .map_err(|e| match e {
            PollNowError::Busy => {
                ApiError::new(StatusCode::CONFLICT, "poll_in_progress", e.to_string())
            }
            PollNowError::Poll(e) => poll_error(e),
        })?;
    Ok(Json(json!({ "polled": polled })))
}

fn poll_error(e: PollError) -> ApiError {
    let message = e.to_string();
    match e {
        PollError::UnknownInstallation => ApiError::not_found(message),
        PollError::DriverUnavailable(_) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "driver_unavailable",
            message,
        ),
        PollError::NotReady(_) => ApiError::new(StatusCode::CONFLICT, "not_ready", message),
        PollError::Provider { .. } => {
            ApiError::new(StatusCode::BAD_GATEWAY, "provider_error", message)
        }
        PollError::Driver(_) => ApiError::new(StatusCode::BAD_GATEWAY, "driver_error", message),
        PollError::Store(e) => e.into(),
    }
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Backfill {
    /// RFC 3339, not in the future.
    #[schema(format = DateTime, example = "2026-11-01T00:00:00Z")]
    since: String,
}

/// What `POST /v1/installations/{id}/backfill` did.
#[derive(utoipa::ToSchema)]
#[schema(as = BackfillResult)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // a schema only
pub(super) struct BackfillView {
    /// `has_more: true` when it stopped at 100 pages.
    backfilled: crate::scheduler::Polled,
}

/// `POST /v1/installations/{id}/backfill {"since": RFC 3339}`: a bounded backfill beside
/// the live cursor.
#[utoipa::path(
    post,
    path = "/v1/installations/{id}/backfill",
    tag = "installations",
    params(("id" = String, Path, description = "The installation id")),
    request_body = Backfill,
    responses(
        (status = 200, description = "Backfilled", body = BackfillView),
        (status = 400, description = "`bad_request`: malformed JSON, `since` not RFC 3339", body = ErrorBody),
        (status = 404, description = "`not_found`: unknown installation", body = ErrorBody),
        (status = 409, description = "`not_ready`: the driver does not poll, or the installation is not ready", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`", body = ErrorBody),
        (status = 422, description = "`invalid_since`: in the future", body = ErrorBody),
        (status = 502, description = "`provider_error`, `driver_error`", body = ErrorBody),
        (status = 503, description = "`driver_unavailable`, `unavailable`", body = ErrorBody),
    )
)]
pub async fn backfill(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    payload: Result<Json<Backfill>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let id: InstallationId = parse_id(&id)?;
    let since = body(payload)?.since;
    let since = chrono::DateTime::parse_from_rfc3339(&since)
        .map_err(|e| ApiError::bad_request(format!("since must be an RFC 3339 time: {e}")))?;
    if since.timestamp() > now(&state) {
        return Err(ApiError::unprocessable(
            "invalid_since",
            "since is in the future",
        ));
    }
    let since = crate::wit::types::Datetime {
        seconds: since.timestamp(),
        nanoseconds: since.timestamp_subsec_nanos(),
    };
    let scheduler = state.scheduler.clone();
    // Pages fetched are committed even if the client leaves.
    let polled = tokio::spawn(async move { scheduler.backfill(&id, since).await })
        .await
        .map_err(|e| ApiError::internal("the backfill task failed", e))?
        .map_err(poll_error)?;
    Ok(Json(json!({ "backfilled": polled })))
}

/// `POST /v1/installations/{id}/pause`.
#[utoipa::path(
    post,
    path = "/v1/installations/{id}/pause",
    tag = "installations",
    params(("id" = String, Path, description = "The installation id")),
    responses(
        (status = 204, description = "Scheduled polls stop (a running one finishes)"),
        (status = 404, description = "`not_found`: unknown installation", body = ErrorBody),
        (status = 409, description = "`not_polled`: the installation is not polled on a schedule", body = ErrorBody),
        (status = 503, response = Unavailable),
    )
)]
pub async fn pause(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    set_paused(&state, &id, true).await
}

/// `POST /v1/installations/{id}/resume`: polling resumes with a poll at once.
#[utoipa::path(
    post,
    path = "/v1/installations/{id}/resume",
    tag = "installations",
    params(("id" = String, Path, description = "The installation id")),
    responses(
        (status = 204, description = "The next poll is due at once"),
        (status = 404, description = "`not_found`: unknown installation", body = ErrorBody),
        (status = 409, description = "`not_polled`: the installation is not polled on a schedule", body = ErrorBody),
        (status = 503, response = Unavailable),
    )
)]
pub async fn resume(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    set_paused(&state, &id, false).await
}

async fn set_paused(state: &AppState, id: &str, paused: bool) -> Result<StatusCode, ApiError> {
    let id = parse_id(id)?;
    let store = &state.services.store;
    store
        .get_installation(&id)
        .await?
        .ok_or_else(|| ApiError::not_found("unknown installation"))?;
    let now_ms = now(state).saturating_mul(1000);
    if !store.set_poll_paused(&id, paused, now_ms).await? {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_polled",
            "the installation is not polled: its driver does not poll, or its settings name no poll_interval",
        ));
    }
    tracing::info!(installation = %id, paused, "polling {}", if paused { "paused" } else { "resumed" });
    Ok(StatusCode::NO_CONTENT)
}

fn now(state: &AppState) -> i64 {
    let now = state.services.runtime.capabilities().clock.now();
    i64::try_from(now.as_secs()).unwrap_or(i64::MAX)
}

use crate::time::rfc3339;
