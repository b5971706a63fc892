//! Dead letters: raw events whose normalization failed (still retried, or dead), listed and
//! replayed with the driver version loaded now.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};
use sluice_store::{DeadLetter, RawEventStatus};

use super::admin::parse_id;
use super::error::{ErrorBody, Unavailable};
use super::{ApiError, AppState};
use crate::pipeline::DeliveryError;

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only this installation's.
    installation_id: Option<String>,
    #[param(minimum = 1, maximum = 1000, default = 100)]
    limit: Option<i64>,
}

/// `GET /v1/dead-letters`.
#[derive(utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // a schema only: the body is built with `json!`
pub(super) struct DeadLetterList {
    dead_letters: Vec<DeadLetterView>,
}

/// A raw event whose normalization failed (`dead_letter_json`).
#[derive(utoipa::ToSchema)]
#[schema(as = DeadLetter)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // a schema only
struct DeadLetterView {
    raw_event_id: i64,
    installation_id: String,
    provider_event_id: String,
    event_type: String,
    status: DeadLetterStatus,
    /// Normalizations tried.
    attempts: i64,
    /// Why the last one failed.
    reason: String,
    /// RFC 3339 UTC.
    received_at: String,
    /// While `retrying`: when the next attempt is due (RFC 3339 UTC, milliseconds).
    #[schema(required = true)]
    next_attempt_at: Option<String>,
}

#[derive(utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)] // a schema only
enum DeadLetterStatus {
    /// Still retried, with backoff.
    Retrying,
    /// Out of attempts.
    Dead,
}

/// `POST /v1/raw-events/{id}/replay`.
#[derive(utoipa::ToSchema)]
#[schema(as = RawEventReplay)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // a schema only
pub(super) struct ReplayView {
    /// `normalized: false` with a `reason` when it failed again, without one when there was
    /// nothing to do (already normalized).
    replayed: crate::pipeline::Replayed,
}

/// `POST /v1/installations/{id}/dead-letters/replay`.
#[derive(utoipa::ToSchema)]
#[schema(as = InstallationReplay)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // a schema only
pub(super) struct InstallationReplayView {
    /// Raw events normalized now.
    normalized: u64,
    /// Raw events that failed again.
    failed: u64,
    /// Events the normalized ones produced.
    events: u64,
}

fn dead_letter_json(d: &DeadLetter) -> Value {
    json!({
        "raw_event_id": d.id,
        "installation_id": d.installation_id.as_str(),
        "provider_event_id": d.provider_event_id,
        "event_type": d.event_type,
        "status": if d.status == RawEventStatus::Dead { "dead" } else { "retrying" },
        "attempts": d.attempts,
        "reason": d.reason,
        "received_at": d.received_at,
        "next_attempt_at": d.next_attempt_at.and_then(chrono::DateTime::from_timestamp_millis)
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
    })
}

fn replay_error(e: DeliveryError) -> ApiError {
    match e {
        DeliveryError::UnknownInstallation => {
            ApiError::not_found("the raw event's installation is deleted")
        }
        DeliveryError::DriverUnavailable(d) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "driver_unavailable",
            format!("driver {d:?} is not loaded"),
        ),
        DeliveryError::StoreUnavailable(m) => {
            ApiError::unavailable("the database is unavailable", m)
        }
        other => ApiError::internal("replay failed", other),
    }
}

/// `GET /v1/dead-letters?installation_id=&limit=`: oldest first.
#[utoipa::path(
    get,
    path = "/v1/dead-letters",
    operation_id = "list_dead_letters",
    tag = "dead-letters",
    params(ListQuery),
    responses(
        (status = 200, description = "Failed and dead raw events, oldest first", body = DeadLetterList),
        (status = 400, description = "`bad_request`: `limit` out of range", body = ErrorBody),
        (status = 404, description = "`not_found`: a malformed `installation_id`", body = ErrorBody),
        (status = 503, response = Unavailable),
    )
)]
pub async fn list(
    State(state): State<Arc<AppState>>,
    Query(query): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let installation = match &query.installation_id {
        Some(id) => Some(parse_id(id)?),
        None => None,
    };
    let limit = super::error::page_limit(query.limit)?;
    let letters = state
        .services
        .store
        .dead_letters(installation.as_ref(), limit)
        .await?;
    let list: Vec<Value> = letters.iter().map(dead_letter_json).collect();
    Ok(Json(json!({ "dead_letters": list })))
}

/// `POST /v1/raw-events/{id}/replay`: normalize again, now, with the driver loaded now.
#[utoipa::path(
    post,
    path = "/v1/raw-events/{id}/replay",
    operation_id = "replay_raw_event",
    tag = "dead-letters",
    params(("id" = i64, Path, description = "The raw event id (`raw_event_id`, `sluicerawevent`)")),
    responses(
        (status = 200, description = "Replayed", body = ReplayView),
        (status = 404, description = "`not_found`: unknown raw event, or its installation is deleted", body = ErrorBody),
        (status = 500, description = "`internal`", body = ErrorBody),
        (status = 503, description = "`driver_unavailable` (its driver is not loaded), `unavailable`", body = ErrorBody),
    )
)]
pub async fn replay(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id: i64 = id
        .parse()
        .map_err(|_| ApiError::not_found("unknown raw event"))?;
    let store = &state.services.store;
    let raw = store
        .raw_event_by_id(id)
        .await?
        .ok_or_else(|| ApiError::not_found("unknown raw event"))?;
    let pipeline = state.pipeline.clone();
    // Runs to its end even if the client leaves: its events are stored once either way.
    let replayed = tokio::spawn(async move { pipeline.replay(&raw).await })
        .await
        .map_err(|e| ApiError::internal("the replay task failed", e))?
        .map_err(replay_error)?;
    Ok(Json(json!({ "replayed": replayed })))
}

/// `POST /v1/installations/{id}/dead-letters/replay`: every failed or dead raw event of
/// the installation, oldest first.
#[utoipa::path(
    post,
    path = "/v1/installations/{id}/dead-letters/replay",
    tag = "dead-letters",
    params(("id" = String, Path, description = "The installation id")),
    responses(
        (status = 200, description = "Replayed", body = InstallationReplayView),
        (status = 404, description = "`not_found`: unknown installation", body = ErrorBody),
        (status = 500, description = "`internal`", body = ErrorBody),
        (status = 503, description = "`driver_unavailable`, `unavailable`", body = ErrorBody),
    )
)]
pub async fn replay_installation(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id = parse_id(&id)?;
    let store = state.services.store.clone();
    store
        .get_installation(&id)
        .await?
        .ok_or_else(|| ApiError::not_found("unknown installation"))?;
    let pipeline = state.pipeline.clone();
    let outcome = tokio::spawn(async move {
        let (mut normalized, mut failed, mut events) = (0usize, 0usize, 0usize);
        for letter in store.dead_letters(Some(&id), i64::MAX).await? {
            let Some(raw) = store.raw_event_by_id(letter.id).await? else {
                continue;
            };
            let replayed = pipeline.replay(&raw).await?;
            if replayed.normalized {
                normalized += 1;
                events += replayed.events;
            } else if replayed.reason.is_some() {
                failed += 1;
            }
        }
        Ok::<_, DeliveryError>((normalized, failed, events))
    })
    .await
    .map_err(|e| ApiError::internal("the replay task failed", e))?
    .map_err(replay_error)?;
    Ok(Json(
        json!({"normalized": outcome.0, "failed": outcome.1, "events": outcome.2}),
    ))
}
