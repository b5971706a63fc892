//! `/v1/endpoints`: outbound webhook endpoints, their deliveries, attempts and replays;
//! `/v1/sinks`: how the NATS sink stands.

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use sluice_store::{
    Backlog, DeliveryStatus, DriverId, Endpoint, EndpointFilter, EndpointId, EndpointUpdate,
    InstallationId, NewEndpoint, ReplayOne,
};

use super::admin::body;
use super::{ApiError, AppState};
use crate::auth::rfc3339;
use crate::delivery::standard_webhooks::SigningKey;
use crate::delivery::{nats, now_ms};

/// The default grace of a rotated-out signing key, and the longest allowed.
const DEFAULT_GRACE_SECS: i64 = 24 * 3600;
const MAX_GRACE_SECS: i64 = 7 * 24 * 3600;

fn endpoint_id(id: &str) -> Result<EndpointId, ApiError> {
    EndpointId::parse(id).map_err(|_| ApiError::not_found("no such endpoint"))
}

async fn live(state: &AppState, id: &str) -> Result<Endpoint, ApiError> {
    let id = endpoint_id(id)?;
    state
        .pipeline
        .store()
        .endpoint(&id)
        .await?
        .ok_or_else(|| ApiError::not_found("no such endpoint"))
}

/// An endpoint as the API shows it: never its secret.
async fn endpoint_json(state: &AppState, e: &Endpoint) -> Result<Value, ApiError> {
    let store = state.pipeline.store();
    let backlog = store.endpoint_backlog(e).await?;
    let sink = store.sink_state(e.id.as_str()).await?;
    let now = now_ms();
    let threshold = state.delivery.options().circuit_threshold;
    let (failures, last_error, open_until) = sink
        .map(|s| (s.consecutive_failures, s.last_error, s.circuit_open_until))
        .unwrap_or_default();
    let circuit = match open_until {
        Some(until) if until > now => "open",
        _ if failures >= threshold => "half_open",
        _ => "closed",
    };
    Ok(json!({
        "id": e.id,
        "url": e.url,
        "description": e.description,
        "installation_id": e.filter.installation_id,
        "driver_id": e.filter.driver_id,
        "event_types": e.filter.event_types,
        "rate_limit_per_sec": e.rate_limit_per_sec,
        "disabled": e.disabled,
        "created_at": e.created_at,
        "previous_secret_valid_until": e.previous_secret_until.filter(|u| *u > now).map(rfc3339),
        "delivery": status_json(&backlog, failures, last_error.as_deref(), circuit, open_until),
    }))
}

fn status_json(
    backlog: &Backlog,
    failures: i64,
    last_error: Option<&str>,
    circuit: &str,
    open_until: Option<i64>,
) -> Value {
    let oldest_age = backlog.oldest_received_at.as_deref().and_then(|t| {
        chrono::DateTime::parse_from_rfc3339(t)
            .ok()
            .map(|t| ((now_ms() - t.timestamp_millis()) / 1000).max(0))
    });
    json!({
        "backlog": backlog.pending,
        "dead": backlog.dead,
        "oldest_undelivered_received_at": backlog.oldest_received_at,
        "oldest_undelivered_age_secs": oldest_age,
        "consecutive_failures": failures,
        "last_error": last_error,
        "circuit": circuit,
        "circuit_open_until": open_until.filter(|u| *u > now_ms()).map(rfc3339),
    })
}

/// The fields `POST` and `PATCH` take.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct EndpointBody {
    url: Option<String>,
    #[serde(default, deserialize_with = "present")]
    description: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    installation_id: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    driver_id: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    event_types: Option<Option<Vec<String>>>,
    #[serde(default, deserialize_with = "present")]
    rate_limit_per_sec: Option<Option<i64>>,
    disabled: Option<bool>,
    /// `PATCH` only: a new signing secret, the current one kept for `grace_seconds`.
    rotate_secret: Option<Rotate>,
}

/// A field that is present, `null` included: `Some(None)` clears, absent leaves as is.
fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Rotate {
    grace_seconds: Option<i64>,
}

fn filter_from(
    base: EndpointFilter,
    body: &EndpointBody,
    state: &AppState,
) -> Result<EndpointFilter, ApiError> {
    let mut filter = base;
    if let Some(installation) = &body.installation_id {
        filter.installation_id = installation
            .as_deref()
            .map(InstallationId::parse)
            .transpose()
            .map_err(|_| ApiError::bad_request("bad installation_id"))?;
    }
    if let Some(driver) = &body.driver_id {
        if let Some(d) = driver {
            DriverId::parse(d).map_err(|_| ApiError::bad_request("bad driver_id"))?;
            if state.pipeline.drivers().get(d).is_none() {
                return Err(ApiError::unprocessable(
                    "unknown_driver",
                    format!("no driver {d:?} is loaded"),
                ));
            }
        }
        filter.driver_id = driver.clone();
    }
    if let Some(types) = &body.event_types {
        if let Some(types) = types
            && (types.is_empty() || types.iter().any(|t| t.is_empty() || t.len() > 200))
        {
            return Err(ApiError::bad_request(
                "event_types must be a non-empty list of event types (or null for all)",
            ));
        }
        filter.event_types = types.clone();
    }
    Ok(filter)
}

fn check_rate(limit: Option<i64>) -> Result<(), ApiError> {
    match limit {
        Some(n) if !(1..=10_000).contains(&n) => Err(ApiError::bad_request(
            "rate_limit_per_sec must be between 1 and 10000 (or null for no limit)",
        )),
        _ => Ok(()),
    }
}

fn check_url(state: &AppState, url: &str) -> Result<(), ApiError> {
    state
        .delivery
        .check_url(url)
        .map(drop)
        .map_err(|why| ApiError::unprocessable("url_not_allowed", why))
}

pub async fn create(
    State(state): State<Arc<AppState>>,
    payload: Result<Json<EndpointBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    let b = body(payload)?;
    let Some(url) = b.url.clone() else {
        return Err(ApiError::bad_request("url is required"));
    };
    if b.rotate_secret.is_some() {
        return Err(ApiError::bad_request("rotate_secret is for PATCH"));
    }
    check_url(&state, &url)?;
    let rate = b.rate_limit_per_sec.flatten();
    check_rate(rate)?;
    let new = NewEndpoint {
        url,
        description: b.description.clone().flatten(),
        filter: filter_from(EndpointFilter::default(), &b, &state)?,
        rate_limit_per_sec: rate,
        disabled: b.disabled.unwrap_or(false),
    };
    let key = SigningKey::generate();
    let endpoint = state
        .pipeline
        .store()
        .create_endpoint(&new, key.expose())
        .await?;
    state.delivery.nudge();
    let mut out = endpoint_json(&state, &endpoint).await?;
    // Shown this once: only its holder can verify deliveries.
    out["secret"] = json!(key.to_secret());
    Ok((StatusCode::CREATED, Json(out)).into_response())
}

pub async fn list(State(state): State<Arc<AppState>>) -> Result<Json<Value>, ApiError> {
    let mut out = Vec::new();
    for e in state.pipeline.store().list_endpoints().await? {
        out.push(endpoint_json(&state, &e).await?);
    }
    Ok(Json(json!({ "endpoints": out })))
}

pub async fn get(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let e = live(&state, &id).await?;
    Ok(Json(endpoint_json(&state, &e).await?))
}

pub async fn update(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    payload: Result<Json<EndpointBody>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let b = body(payload)?;
    let current = live(&state, &id).await?;
    if let Some(url) = &b.url {
        check_url(&state, url)?;
    }
    if let Some(rate) = b.rate_limit_per_sec {
        check_rate(rate)?;
    }
    let grace = match &b.rotate_secret {
        None => None,
        Some(rotate) => {
            let grace = rotate.grace_seconds.unwrap_or(DEFAULT_GRACE_SECS);
            if !(0..=MAX_GRACE_SECS).contains(&grace) {
                return Err(ApiError::bad_request(
                    "grace_seconds must be between 0 and 604800 (7 days)",
                ));
            }
            Some(grace)
        }
    };
    let update = EndpointUpdate {
        url: b.url.clone(),
        description: b.description.clone(),
        filter: Some(filter_from(current.filter.clone(), &b, &state)?),
        rate_limit_per_sec: b.rate_limit_per_sec,
        disabled: b.disabled,
    };
    let store = state.pipeline.store();
    let mut endpoint = store.update_endpoint(&current.id, &update).await?;
    let mut secret = None;
    if let Some(grace) = grace {
        let key = SigningKey::generate();
        let now = now_ms();
        endpoint = store
            .rotate_endpoint_secret(&current.id, key.expose(), now + grace * 1000, now)
            .await?;
        secret = Some(key.to_secret());
    }
    state.delivery.nudge();
    let mut out = endpoint_json(&state, &endpoint).await?;
    if let Some(secret) = secret {
        out["secret"] = json!(secret);
    }
    Ok(Json(out))
}

pub async fn delete(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = endpoint_id(&id)?;
    if state.pipeline.store().delete_endpoint(&id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found("no such endpoint"))
    }
}

#[derive(Deserialize)]
pub struct AttemptsQuery {
    event_id: Option<String>,
    limit: Option<i64>,
}

fn limit(l: Option<i64>) -> Result<i64, ApiError> {
    match l {
        None => Ok(100),
        Some(l) if (1..=1000).contains(&l) => Ok(l),
        Some(_) => Err(ApiError::bad_request("limit must be between 1 and 1000")),
    }
}

pub async fn attempts(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    Query(query): Query<AttemptsQuery>,
) -> Result<Json<Value>, ApiError> {
    let e = live(&state, &id).await?;
    let attempts = state
        .pipeline
        .store()
        .list_attempts(&e.id, query.event_id.as_deref(), limit(query.limit)?)
        .await?;
    let out: Vec<Value> = attempts
        .iter()
        .map(|a| {
            json!({
                "event_id": a.event_id,
                "attempt": a.attempt,
                "at": rfc3339(a.at),
                "duration_ms": a.duration_ms,
                "status": a.status,
                "error": a.error,
                "response": a.response,
            })
        })
        .collect();
    Ok(Json(json!({ "attempts": out })))
}

#[derive(Deserialize)]
pub struct DeliveriesQuery {
    status: Option<String>,
    limit: Option<i64>,
}

pub async fn deliveries(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    Query(query): Query<DeliveriesQuery>,
) -> Result<Json<Value>, ApiError> {
    let e = live(&state, &id).await?;
    let status = query
        .status
        .as_deref()
        .map(|s| {
            DeliveryStatus::parse(s)
                .ok_or_else(|| ApiError::bad_request("status must be pending, delivered or dead"))
        })
        .transpose()?;
    let deliveries = state
        .pipeline
        .store()
        .list_deliveries(&e.id, status, limit(query.limit)?)
        .await?;
    let out: Vec<Value> = deliveries
        .iter()
        .map(|d| {
            json!({
                "event_id": d.event_id,
                "installation_id": d.installation_id,
                "status": d.status.as_str(),
                "attempts": d.attempts,
                "next_attempt_at": (d.status == DeliveryStatus::Pending).then(|| rfc3339(d.next_attempt_at)),
                "enqueued_at": rfc3339(d.enqueued_at),
                "finished_at": d.finished_at.map(rfc3339),
                "last_status": d.last_status,
                "last_error": d.last_error,
                "last_response": d.last_response,
            })
        })
        .collect();
    Ok(Json(json!({ "deliveries": out })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplayBody {
    since: String,
}

pub async fn replay(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    payload: Result<Json<ReplayBody>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let b = body(payload)?;
    let e = live(&state, &id).await?;
    let since = chrono::DateTime::parse_from_rfc3339(&b.since)
        .map_err(|_| ApiError::bad_request("since must be an RFC 3339 time"))?;
    // Stored receive times have second precision: compare at that precision, inclusive.
    let since = since
        .with_timezone(&chrono::Utc)
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let count = state
        .pipeline
        .store()
        .replay_endpoint_since(&e, &since, now_ms())
        .await?;
    state.delivery.nudge();
    Ok(Json(json!({ "replayed": count })))
}

pub async fn replay_one(
    State(state): State<Arc<AppState>>,
    Path((id, event_id)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let e = live(&state, &id).await?;
    let event = sluice_store::EventId::parse(&event_id)
        .map_err(|_| ApiError::not_found("no such event"))?;
    match state
        .pipeline
        .store()
        .replay_delivery(&e, event.as_str(), now_ms())
        .await?
    {
        ReplayOne::Replayed => {}
        ReplayOne::NoSuchEvent => {
            return Err(ApiError::not_found(
                "no such event, or this endpoint does not receive it",
            ));
        }
        ReplayOne::NotYetTaken => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "not_yet_delivered",
                "the endpoint has not reached this event yet; it will be delivered in order",
            ));
        }
    }
    state.delivery.nudge();
    Ok(Json(json!({ "replayed": 1 })))
}

/// `GET /v1/sinks`: the NATS sink's state, when configured.
pub async fn sinks(State(state): State<Arc<AppState>>) -> Result<Json<Value>, ApiError> {
    let mut out = Vec::new();
    if let Some(options) = &state.delivery.options().nats {
        let store = state.pipeline.store();
        let backlog = store.log_backlog(nats::SINK_ID).await?;
        let sink = store.sink_state(nats::SINK_ID).await?;
        let (failures, last_error) = sink
            .map(|s| (s.consecutive_failures, s.last_error))
            .unwrap_or_default();
        let mut status = status_json(&backlog, failures, last_error.as_deref(), "closed", None);
        if let Some(o) = status.as_object_mut() {
            o.remove("dead");
            o.remove("circuit");
            o.remove("circuit_open_until");
        }
        out.push(json!({
            "id": nats::SINK_ID,
            "kind": "nats_jetstream",
            "stream": options.stream,
            "subjects": format!("{}.>", options.subject_prefix),
            "delivery": status,
        }));
    }
    Ok(Json(json!({ "sinks": out })))
}
