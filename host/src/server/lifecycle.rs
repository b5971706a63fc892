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

use super::admin::{body, parse_id};
use super::{ApiError, AppState};
use crate::pipeline::PollError;
use crate::scheduler::PollNowError;

/// Longest grace period of a rotation: a week.
pub const MAX_GRACE_SECONDS: u64 = 7 * 24 * 3600;
/// Grace period when the request names none: a day.
pub const DEFAULT_GRACE_SECONDS: u64 = 24 * 3600;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rotation {
    value: String,
    grace_seconds: Option<u64>,
}

/// `POST /v1/installations/{id}/secrets/{name}/rotate`.
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
    let store = state.pipeline.store();
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
    state.pipeline.installations().invalidate(&id);
    tracing::info!(installation = %id, secret = %name, grace_seconds = grace, "secret rotated");
    Ok(Json(json!({
        "secret": name,
        "rotated_at": rfc3339(now),
        "previous_valid_until": until.map(rfc3339),
    })))
}

/// `POST /v1/installations/{id}/refresh`: refresh the token now.
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
    let store = state.pipeline.store();
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

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Revocation {
    reason: Option<String>,
}

/// `POST /v1/installations/{id}/revoke`: revoke at the provider, forget the tokens.
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

/// `POST /v1/installations/{id}/poll`: poll now.
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Backfill {
    since: String,
}

/// `POST /v1/installations/{id}/backfill {"since": RFC 3339}`: a bounded backfill beside
/// the live cursor.
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
    let (pipeline, auth) = (state.pipeline.clone(), state.auth.clone());
    // Pages fetched are committed even if the client leaves.
    let polled = tokio::spawn(async move { pipeline.backfill(&auth, &id, since).await })
        .await
        .map_err(|e| ApiError::internal("the backfill task failed", e))?
        .map_err(poll_error)?;
    Ok(Json(json!({ "backfilled": polled })))
}

/// `POST /v1/installations/{id}/pause`.
pub async fn pause(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    set_paused(&state, &id, true).await
}

/// `POST /v1/installations/{id}/resume`: polling resumes with a poll at once.
pub async fn resume(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    set_paused(&state, &id, false).await
}

async fn set_paused(state: &AppState, id: &str, paused: bool) -> Result<StatusCode, ApiError> {
    let id = parse_id(id)?;
    let store = state.pipeline.store();
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
    let now = state.pipeline.runtime().capabilities().clock.now();
    i64::try_from(now.as_secs()).unwrap_or(i64::MAX)
}

pub use crate::auth::rfc3339;
