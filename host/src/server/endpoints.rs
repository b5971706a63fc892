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
use super::error::{ErrorBody, Unavailable};
use super::{ApiError, AppState};
use crate::delivery::standard_webhooks::SigningKey;
use crate::delivery::{nats, now_ms};
use crate::time::rfc3339;

/// The default grace of a rotated-out signing key, and the longest allowed.
const DEFAULT_GRACE_SECS: i64 = 24 * 3600;
const MAX_GRACE_SECS: i64 = 7 * 24 * 3600;

fn endpoint_id(id: &str) -> Result<EndpointId, ApiError> {
    EndpointId::parse(id).map_err(|_| ApiError::not_found("no such endpoint"))
}

async fn live(state: &AppState, id: &str) -> Result<Endpoint, ApiError> {
    let id = endpoint_id(id)?;
    state
        .services
        .store
        .endpoint(&id)
        .await?
        .ok_or_else(|| ApiError::not_found("no such endpoint"))
}

/// An endpoint as the API shows it (`endpoint_json`).
#[derive(utoipa::ToSchema)]
#[schema(as = Endpoint)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // a schema only: the body is built with `json!`
pub(super) struct EndpointView {
    #[schema(example = "ep_01jz…")]
    id: String,
    url: String,
    #[schema(required = true)]
    description: Option<String>,
    /// Only this installation's events; `null`: every installation's.
    #[schema(required = true)]
    installation_id: Option<String>,
    /// Only this driver's installations' events; `null`: every driver's.
    #[schema(required = true)]
    driver_id: Option<String>,
    /// Only these CloudEvent types; `null`: all.
    #[schema(required = true)]
    event_types: Option<Vec<String>>,
    #[schema(required = true)]
    rate_limit_per_sec: Option<i64>,
    disabled: bool,
    /// RFC 3339 UTC.
    created_at: String,
    /// While a rotated-out secret still signs beside the new one: until when.
    #[schema(required = true)]
    previous_secret_valid_until: Option<String>,
    delivery: EndpointDelivery,
    /// The signing secret (`whsec_<base64>`): only in the answer to `POST` and to a `PATCH`
    /// that rotates it, this once.
    #[schema(nullable = false)]
    secret: Option<String>,
}

/// How deliveries to an endpoint stand (`status_json`).
#[derive(utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // a schema only
struct EndpointDelivery {
    /// Events waiting for it, pending retries included.
    backlog: i64,
    /// Dead deliveries.
    dead: i64,
    #[schema(required = true)]
    oldest_undelivered_received_at: Option<String>,
    #[schema(required = true)]
    oldest_undelivered_age_secs: Option<i64>,
    consecutive_failures: i64,
    #[schema(required = true)]
    last_error: Option<String>,
    circuit: Circuit,
    /// While `open`.
    #[schema(required = true)]
    circuit_open_until: Option<String>,
}

#[derive(utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)] // a schema only
enum Circuit {
    Closed,
    /// Nothing is sent until `circuit_open_until`.
    Open,
    /// The next attempt is the probe.
    HalfOpen,
}

/// An endpoint as the API shows it: never its secret.
async fn endpoint_json(state: &AppState, e: &Endpoint) -> Result<Value, ApiError> {
    let store = &state.services.store;
    let backlog = store.endpoint_backlog(e).await?;
    let sink = store.sink_state(e.id.as_str()).await?;
    let now = now_ms();
    let threshold = state.delivery.config().circuit_failure_threshold;
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

/// The fields `POST` and `PATCH` take: `url` is required by `POST`; on `PATCH` an absent
/// field stays as it is and `null` clears it.
#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EndpointBody {
    /// `http` or `https`, without credentials, allowed by the outbound policy.
    #[schema(nullable = false, example = "https://engine.example.com/sluice")]
    url: Option<String>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    description: Option<Option<String>>,
    /// Only this installation's events.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    installation_id: Option<Option<String>>,
    /// Only events of this (loaded) driver's installations.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    driver_id: Option<Option<String>>,
    /// CloudEvent types, exactly; `null`: all.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<Vec<String>>, min_items = 1)]
    event_types: Option<Option<Vec<String>>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<i64>, minimum = 1, maximum = 10000)]
    rate_limit_per_sec: Option<Option<i64>>,
    /// `true` stops sending (events keep waiting); `false` resumes.
    #[schema(nullable = false)]
    disabled: Option<bool>,
    /// `PATCH` only: a new signing secret, the current one kept for `grace_seconds`.
    #[schema(nullable = false)]
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

#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Rotate {
    /// How long the previous secret keeps signing beside the new one; `0` drops it at once.
    #[schema(minimum = 0, maximum = 604800, default = 86400)]
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
        filter.driver_id = match driver {
            None => None,
            Some(d) => {
                let id = DriverId::parse(d).map_err(|_| ApiError::bad_request("bad driver_id"))?;
                if state.services.drivers.get(d).is_none() {
                    return Err(ApiError::unprocessable(
                        "unknown_driver",
                        format!("no driver {d:?} is loaded"),
                    ));
                }
                Some(id)
            }
        };
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

/// Create an outbound webhook endpoint; the answer holds its signing secret, this once.
#[utoipa::path(
    post,
    path = "/v1/endpoints",
    operation_id = "create_endpoint",
    tag = "endpoints",
    request_body = EndpointBody,
    responses(
        (status = 201, description = "Created, with `secret`", body = EndpointView),
        (status = 400, description = "`bad_request`: malformed JSON, an unknown field, a malformed value, no `url`, `rotate_secret`", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`", body = ErrorBody),
        (status = 422, description = "`url_not_allowed` (with the reason), `unknown_driver`", body = ErrorBody),
        (status = 503, response = Unavailable),
    )
)]
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
        .services
        .store
        .create_endpoint(&new, key.expose())
        .await?;
    state.delivery.nudge();
    let mut out = endpoint_json(&state, &endpoint).await?;
    // Shown this once: only its holder can verify deliveries.
    out["secret"] = json!(key.to_secret());
    Ok((StatusCode::CREATED, Json(out)).into_response())
}

/// `GET /v1/endpoints`.
#[derive(utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // a schema only
pub(super) struct EndpointList {
    endpoints: Vec<EndpointView>,
}

/// Every endpoint, never a secret.
#[utoipa::path(
    get,
    path = "/v1/endpoints",
    operation_id = "list_endpoints",
    tag = "endpoints",
    responses(
        (status = 200, description = "Every endpoint", body = EndpointList),
        (status = 503, response = Unavailable),
    )
)]
pub async fn list(State(state): State<Arc<AppState>>) -> Result<Json<Value>, ApiError> {
    let mut out = Vec::new();
    for e in state.services.store.list_endpoints().await? {
        out.push(endpoint_json(&state, &e).await?);
    }
    Ok(Json(json!({ "endpoints": out })))
}

/// One endpoint, never its secret.
#[utoipa::path(
    get,
    path = "/v1/endpoints/{id}",
    operation_id = "get_endpoint",
    tag = "endpoints",
    params(("id" = String, Path, description = "The endpoint id (`ep_…`)")),
    responses(
        (status = 200, description = "The endpoint", body = EndpointView),
        (status = 404, description = "`not_found`: no such endpoint", body = ErrorBody),
        (status = 503, response = Unavailable),
    )
)]
pub async fn get(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let e = live(&state, &id).await?;
    Ok(Json(endpoint_json(&state, &e).await?))
}

/// Change an endpoint, or rotate its secret (`rotate_secret`).
#[utoipa::path(
    patch,
    path = "/v1/endpoints/{id}",
    operation_id = "update_endpoint",
    tag = "endpoints",
    params(("id" = String, Path, description = "The endpoint id (`ep_…`)")),
    request_body = EndpointBody,
    responses(
        (status = 200, description = "The endpoint, with `secret` when it was rotated", body = EndpointView),
        (status = 400, description = "`bad_request`: malformed JSON, an unknown field, a malformed value, `grace_seconds` out of range", body = ErrorBody),
        (status = 404, description = "`not_found`: no such endpoint", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`", body = ErrorBody),
        (status = 422, description = "`url_not_allowed`, `unknown_driver`", body = ErrorBody),
        (status = 503, response = Unavailable),
    )
)]
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
    let store = &state.services.store;
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

/// Delete an endpoint with its outbox and attempts; its id is not reused.
#[utoipa::path(
    delete,
    path = "/v1/endpoints/{id}",
    operation_id = "delete_endpoint",
    tag = "endpoints",
    params(("id" = String, Path, description = "The endpoint id (`ep_…`)")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "`not_found`: no such endpoint", body = ErrorBody),
        (status = 503, response = Unavailable),
    )
)]
pub async fn delete(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = endpoint_id(&id)?;
    if state.services.store.delete_endpoint(&id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found("no such endpoint"))
    }
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AttemptsQuery {
    /// Only this event's attempts.
    event_id: Option<String>,
    #[param(minimum = 1, maximum = 1000, default = 100)]
    limit: Option<i64>,
}

/// `GET /v1/endpoints/{id}/attempts`.
#[derive(utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // a schema only: the body is built with `json!`
pub(super) struct AttemptList {
    attempts: Vec<AttemptView>,
}

/// One delivery attempt.
#[derive(utoipa::ToSchema)]
#[schema(as = Attempt)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // a schema only
struct AttemptView {
    event_id: String,
    /// 1 for the first.
    attempt: i64,
    /// When it started, RFC 3339 UTC.
    at: String,
    duration_ms: i64,
    /// The endpoint's HTTP status; `null` when none came.
    #[schema(required = true)]
    status: Option<i64>,
    #[schema(required = true)]
    error: Option<String>,
    /// The answer's first KiB.
    #[schema(required = true)]
    response: Option<String>,
}

/// An endpoint's delivery attempts, newest first.
#[utoipa::path(
    get,
    path = "/v1/endpoints/{id}/attempts",
    tag = "endpoints",
    params(("id" = String, Path, description = "The endpoint id (`ep_…`)"), AttemptsQuery),
    responses(
        (status = 200, description = "Attempts, newest first", body = AttemptList),
        (status = 400, description = "`bad_request`: `limit` out of range", body = ErrorBody),
        (status = 404, description = "`not_found`: no such endpoint", body = ErrorBody),
        (status = 503, response = Unavailable),
    )
)]
pub async fn attempts(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    Query(query): Query<AttemptsQuery>,
) -> Result<Json<Value>, ApiError> {
    let e = live(&state, &id).await?;
    let attempts = state
        .services
        .store
        .list_attempts(
            &e.id,
            query.event_id.as_deref(),
            super::error::page_limit(query.limit)?,
        )
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

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeliveriesQuery {
    /// Only deliveries in this state.
    #[param(value_type = Option<DeliveryState>)]
    status: Option<String>,
    #[param(minimum = 1, maximum = 1000, default = 100)]
    limit: Option<i64>,
}

/// Where a delivery stands (`DeliveryStatus`).
#[derive(utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)] // a schema only
pub(super) enum DeliveryState {
    Pending,
    Delivered,
    Dead,
}

/// `GET /v1/endpoints/{id}/deliveries`.
#[derive(utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // a schema only: the body is built with `json!`
pub(super) struct DeliveryList {
    deliveries: Vec<DeliveryView>,
}

/// One event in an endpoint's outbox.
#[derive(utoipa::ToSchema)]
#[schema(as = Delivery)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // a schema only
struct DeliveryView {
    event_id: String,
    installation_id: String,
    status: DeliveryState,
    attempts: i64,
    /// While `pending`: when the next attempt is due, RFC 3339 UTC.
    #[schema(required = true)]
    next_attempt_at: Option<String>,
    enqueued_at: String,
    #[schema(required = true)]
    finished_at: Option<String>,
    #[schema(required = true)]
    last_status: Option<i64>,
    #[schema(required = true)]
    last_error: Option<String>,
    #[schema(required = true)]
    last_response: Option<String>,
}

/// An endpoint's outbox in log order.
#[utoipa::path(
    get,
    path = "/v1/endpoints/{id}/deliveries",
    tag = "endpoints",
    params(("id" = String, Path, description = "The endpoint id (`ep_…`)"), DeliveriesQuery),
    responses(
        (status = 200, description = "Deliveries in log order", body = DeliveryList),
        (status = 400, description = "`bad_request`: a bad `status` or `limit`", body = ErrorBody),
        (status = 404, description = "`not_found`: no such endpoint", body = ErrorBody),
        (status = 503, response = Unavailable),
    )
)]
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
        .services
        .store
        .list_deliveries(&e.id, status, super::error::page_limit(query.limit)?)
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

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplayBody {
    /// RFC 3339: every event received since then (to the second, inclusive).
    #[schema(format = DateTime, example = "2026-12-01T00:00:00Z")]
    since: String,
}

/// How many deliveries were sent again.
#[derive(utoipa::ToSchema)]
#[schema(as = ReplayCount)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // a schema only: the body is built with `json!`
pub(super) struct ReplayedCount {
    replayed: u64,
}

/// Send again, from a fresh retry schedule, what the endpoint has taken in since `since`.
#[utoipa::path(
    post,
    path = "/v1/endpoints/{id}/replay",
    operation_id = "replay_endpoint",
    tag = "endpoints",
    params(("id" = String, Path, description = "The endpoint id (`ep_…`)")),
    request_body = ReplayBody,
    responses(
        (status = 200, description = "Replayed, in log order", body = ReplayedCount),
        (status = 400, description = "`bad_request`: malformed JSON, `since` not RFC 3339", body = ErrorBody),
        (status = 404, description = "`not_found`: no such endpoint", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`", body = ErrorBody),
        (status = 503, response = Unavailable),
    )
)]
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
        .services
        .store
        .replay_endpoint_since(&e, &since, now_ms())
        .await?;
    state.delivery.nudge();
    Ok(Json(json!({ "replayed": count })))
}

/// Send one event again, from a fresh retry schedule.
#[utoipa::path(
    post,
    path = "/v1/endpoints/{id}/deliveries/{event_id}/replay",
    operation_id = "replay_delivery",
    tag = "endpoints",
    params(("id" = String, Path, description = "The endpoint id (`ep_…`)"), ("event_id" = String, Path, description = "The event id (`evt_…`)")),
    responses(
        (status = 200, description = "Replayed (`replayed: 1`)", body = ReplayedCount),
        (status = 404, description = "`not_found`: no such endpoint or event, or the endpoint does not receive it", body = ErrorBody),
        (status = 409, description = "`not_yet_delivered`: the endpoint has not reached it yet; it is on its way, in order", body = ErrorBody),
        (status = 503, response = Unavailable),
    )
)]
pub async fn replay_one(
    State(state): State<Arc<AppState>>,
    Path((id, event_id)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let e = live(&state, &id).await?;
    let event = sluice_store::EventId::parse(&event_id)
        .map_err(|_| ApiError::not_found("no such event"))?;
    match state
        .services
        .store
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

/// `GET /v1/sinks`.
#[derive(utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // a schema only: the body is built with `json!`
pub(super) struct SinkList {
    /// `[]` without NATS.
    sinks: Vec<SinkView>,
}

/// The NATS JetStream sink.
#[derive(utoipa::ToSchema)]
#[schema(as = Sink)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // a schema only
struct SinkView {
    /// `nats`
    id: String,
    /// `nats_jetstream`
    kind: String,
    #[schema(example = "SLUICE_EVENTS")]
    stream: String,
    #[schema(example = "sluice.events.>")]
    subjects: String,
    delivery: SinkDelivery,
}

/// How publishing to a sink stands.
#[derive(utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // a schema only
struct SinkDelivery {
    backlog: i64,
    #[schema(required = true)]
    oldest_undelivered_received_at: Option<String>,
    #[schema(required = true)]
    oldest_undelivered_age_secs: Option<i64>,
    consecutive_failures: i64,
    #[schema(required = true)]
    last_error: Option<String>,
}

/// `GET /v1/sinks`: the NATS sink's state, when configured.
#[utoipa::path(
    get,
    path = "/v1/sinks",
    tag = "endpoints",
    responses(
        (status = 200, description = "The sinks", body = SinkList),
        (status = 503, response = Unavailable),
    )
)]
pub async fn sinks(State(state): State<Arc<AppState>>) -> Result<Json<Value>, ApiError> {
    let mut out = Vec::new();
    let options = &state.delivery.config().nats;
    if options.url().is_some() {
        let store = &state.services.store;
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
