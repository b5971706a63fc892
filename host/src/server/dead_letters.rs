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
use super::{ApiError, AppState};
use crate::pipeline::DeliveryError;

#[derive(Deserialize)]
pub struct ListQuery {
    installation_id: Option<String>,
    limit: Option<i64>,
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
pub async fn list(
    State(state): State<Arc<AppState>>,
    Query(query): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let installation = match &query.installation_id {
        Some(id) => Some(parse_id(id)?),
        None => None,
    };
    let limit = query.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::bad_request("limit must be between 1 and 1000"));
    }
    let letters = state
        .pipeline
        .store()
        .dead_letters(installation.as_ref(), limit)
        .await?;
    let list: Vec<Value> = letters.iter().map(dead_letter_json).collect();
    Ok(Json(json!({ "dead_letters": list })))
}

/// `POST /v1/raw-events/{id}/replay`.
pub async fn replay(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id: i64 = id
        .parse()
        .map_err(|_| ApiError::not_found("unknown raw event"))?;
    let store = state.pipeline.store();
    let raw = store
        .raw_event_by_id(id)
        .await?
        .ok_or_else(|| ApiError::not_found("unknown raw event"))?;
    let (pipeline, options) = (state.pipeline.clone(), state.retries.clone());
    // Runs to its end even if the client leaves: its events are stored once either way.
    let replayed = tokio::spawn(async move { pipeline.replay(&raw, &options).await })
        .await
        .map_err(|e| ApiError::internal("the replay task failed", e))?
        .map_err(replay_error)?;
    Ok(Json(json!({ "replayed": replayed })))
}

/// `POST /v1/installations/{id}/dead-letters/replay`: every failed or dead raw event of
/// the installation, oldest first.
pub async fn replay_installation(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id = parse_id(&id)?;
    let store = state.pipeline.store().clone();
    store
        .get_installation(&id)
        .await?
        .ok_or_else(|| ApiError::not_found("unknown installation"))?;
    let (pipeline, options) = (state.pipeline.clone(), state.retries.clone());
    let outcome = tokio::spawn(async move {
        let (mut normalized, mut failed, mut events) = (0usize, 0usize, 0usize);
        for letter in store.dead_letters(Some(&id), i64::MAX).await? {
            let Some(raw) = store.raw_event_by_id(letter.id).await? else {
                continue;
            };
            let replayed = pipeline.replay(&raw, &options).await?;
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
