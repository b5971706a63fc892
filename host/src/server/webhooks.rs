//! `POST /webhooks/{installation_id}`: provider traffic into the pipeline.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use super::error::ErrorBody;
use super::{ApiError, AppState};
use crate::pipeline::{DeliveryError, Target};
use crate::wit::types::IncomingRequest;

/// What an accepted delivery answers, unless the driver asked for its own reply.
#[derive(utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // a schema only: the body is `crate::pipeline::Accepted`
pub(super) struct Accepted {
    /// Raw events newly stored.
    accepted: u64,
    /// Raw events already stored by an earlier delivery.
    duplicates: u64,
}

/// `POST /webhooks/{installation_id}`: the body is passed to the installation's driver
/// byte for byte; its events are committed before the answer.
#[utoipa::path(
    post,
    path = "/webhooks/{installation_id}",
    tag = "webhooks",
    params(("installation_id" = String, Path, description = "The installation id")),
    request_body(content = String, content_type = "*/*", description = "The provider's delivery, whatever its type: the signature is over the bytes"),
    responses(
        (status = 200, description = "Committed (or a duplicate, stored once); a driver may ask for its own reply (status, type, body) instead", body = Accepted),
        (status = 400, description = "`bad_request`: the driver found the delivery malformed; nothing stored", body = ErrorBody),
        (status = 401, description = "`unauthorized`: not authenticated (bad signature, token or timestamp), an unknown installation, or one the operator's policy refuses, answered alike; nothing stored", body = ErrorBody),
        (status = 500, description = "`driver_failed` (a trap, a timeout, too much output), `internal`; nothing stored: the provider retries", body = ErrorBody),
        (status = 503, description = "`overloaded`, `installation_not_ready`, `driver_unavailable`, `unavailable` (with `Retry-After`); nothing stored", body = ErrorBody),
    )
)]
pub async fn receive(
    State(state): State<Arc<AppState>>,
    Path(installation_id): Path<String>,
    request: Request,
) -> Result<Response, ApiError> {
    let incoming = read_request(request).await?;
    deliver(&state, Target::Installation(installation_id), incoming).await
}

/// `POST /webhooks/drivers/{driver_id}`: one URL for every account of a provider app. The
/// pipeline has the driver name the account and continues as if the request had been sent
/// to that installation's own URL — verification included.
#[utoipa::path(
    post,
    path = "/webhooks/drivers/{driver_id}",
    tag = "webhooks",
    params(("driver_id" = String, Path, description = "The driver id")),
    request_body(content = String, content_type = "*/*", description = "The provider's delivery, whatever its type"),
    responses(
        (status = 200, description = "Committed for the installation whose account key the driver read", body = Accepted),
        (status = 400, description = "`bad_request`; nothing stored", body = ErrorBody),
        (status = 401, description = "`unauthorized`: no account key, one no installation declared, or not authenticated; nothing stored", body = ErrorBody),
        (status = 404, description = "`not_found`: no such driver is loaded", body = ErrorBody),
        (status = 500, description = "`driver_failed`, `internal`; nothing stored", body = ErrorBody),
        (status = 503, description = "`overloaded`, `installation_not_ready`, `unavailable`; nothing stored", body = ErrorBody),
    )
)]
pub async fn receive_for_driver(
    State(state): State<Arc<AppState>>,
    Path(driver_id): Path<String>,
    request: Request,
) -> Result<Response, ApiError> {
    let incoming = read_request(request).await?;
    deliver(&state, Target::Driver(driver_id), incoming).await
}

async fn deliver(
    state: &AppState,
    target: Target,
    incoming: IncomingRequest,
) -> Result<Response, ApiError> {
    let url = match &target {
        Target::Installation(id) => format!("/webhooks/{id}"),
        Target::Driver(id) => format!("/webhooks/drivers/{id}"),
    };
    let app_level = matches!(target, Target::Driver(_));
    let url_installation = match &target {
        Target::Installation(id) => Some(id.clone()),
        Target::Driver(_) => None,
    };
    let accepted = state
        .pipeline
        .receive(target, incoming)
        .await
        .map_err(|e| {
            crate::metrics::record_webhook_rejected(reason_label(&e));
            if let Some(id) = url_installation.as_deref()
                && found_installation(&e)
            {
                crate::metrics::record_installation_webhook(id, "rejected");
            }
            refusal(e, &url, app_level)
        })?;
    crate::metrics::record_webhook_accepted(accepted.accepted as u64, accepted.duplicates as u64);
    if let Some(id) = &accepted.installation {
        crate::metrics::record_installation_webhook(id.as_str(), "accepted");
    }
    tracing::info!(
        installation = accepted.installation.as_ref().map_or("", |i| i.as_str()),
        accepted = accepted.accepted,
        duplicates = accepted.duplicates,
        "webhook delivered"
    );
    Ok(match &accepted.reply {
        Some(reply) => {
            let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::OK);
            (
                status,
                [("content-type", reply.content_type.clone())],
                reply.body.clone(),
            )
                .into_response()
        }
        None => Json(accepted).into_response(),
    })
}

/// The `reason` of a refusal in `sluice_webhooks_rejected_total`. The answers to an
/// unknown installation, an unroutable account, a refused policy and a bad signature are
/// alike (`401`), so a prober learns nothing; the counters sit behind the admin token, and
/// an operator needs to tell a provider pointed at a deleted installation from forgery.
fn reason_label(e: &DeliveryError) -> &'static str {
    match e {
        // Bad signatures, tokens and timestamps: stale ones included, drivers report them
        // the same way.
        DeliveryError::Unauthorized(_) => "signature",
        DeliveryError::UnknownInstallation => "unknown_installation",
        DeliveryError::Unroutable(_) => "unroutable",
        DeliveryError::PolicyRefused(_) => "policy",
        DeliveryError::BadRequest(_) => "malformed",
        DeliveryError::DriverUnavailable(_) => "driver_unavailable",
        DeliveryError::Overloaded => "overloaded",
        DeliveryError::NotReady(_) => "not_ready",
        DeliveryError::DriverFailed(_) => "driver_failed",
        DeliveryError::StoreUnavailable(_) => "store_unavailable",
        DeliveryError::Storage(_) => "storage_error",
    }
}

/// Whether a refusal of a delivery to an installation's URL came after the installation
/// was found, so its id names a live installation (and may be a metric label): not for an
/// unknown one, nor for a store that failed, which may have failed looking it up.
fn found_installation(e: &DeliveryError) -> bool {
    match e {
        DeliveryError::Unauthorized(_)
        | DeliveryError::PolicyRefused(_)
        | DeliveryError::BadRequest(_)
        | DeliveryError::DriverUnavailable(_)
        | DeliveryError::Overloaded
        | DeliveryError::NotReady(_)
        | DeliveryError::DriverFailed(_) => true,
        DeliveryError::UnknownInstallation
        | DeliveryError::Unroutable(_)
        | DeliveryError::StoreUnavailable(_)
        | DeliveryError::Storage(_) => false,
    }
}

/// The answer to a delivery that was not accepted. Whoever posts to a webhook URL may be
/// anyone, so the answer says only what a provider needs to decide whether to retry; the
/// reason — the driver's own words, a trap's backtrace, which account was unknown — goes to
/// the log. An unknown installation or account is answered exactly like a bad signature,
/// so the answers do not tell a prober which ids exist.
fn refusal(e: DeliveryError, url: &str, app_level: bool) -> ApiError {
    const NOT_STORED: &str = "nothing was stored";
    // A trap's backtrace is worth keeping; a driver's megabyte of error text is not.
    let reason = crate::text::bounded_error(&e.to_string());
    match e {
        DeliveryError::UnknownInstallation
        | DeliveryError::Unroutable(_)
        | DeliveryError::PolicyRefused(_)
        | DeliveryError::Unauthorized(_) => {
            tracing::info!(url, reason = %reason, "webhook refused");
            ApiError::unauthorized(format!("the delivery was not authenticated; {NOT_STORED}"))
        }
        DeliveryError::BadRequest(_) => {
            tracing::info!(url, reason = %reason, "webhook refused");
            ApiError::bad_request(format!("the delivery is malformed; {NOT_STORED}"))
        }
        // An app-level URL names a driver, and drivers are public: a missing one is a 404.
        DeliveryError::DriverUnavailable(id) if app_level => {
            ApiError::not_found(format!("no driver {id:?} is loaded"))
        }
        DeliveryError::DriverUnavailable(id) => {
            tracing::warn!(url, driver = %id, "webhook for a driver that is not loaded");
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "driver_unavailable",
                format!("the driver is not loaded on this node; {NOT_STORED}"),
            )
        }
        DeliveryError::Overloaded => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "overloaded",
            "every sandbox slot is busy; retry",
        ),
        DeliveryError::NotReady(_) => {
            tracing::warn!(url, reason = %reason, "webhook for an installation that is not ready");
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "installation_not_ready",
                format!("the installation is not ready for deliveries; {NOT_STORED}"),
            )
        }
        DeliveryError::DriverFailed(_) => {
            tracing::warn!(url, reason = %reason, "driver failed; nothing stored");
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "driver_failed",
                format!("the driver failed; {NOT_STORED}"),
            )
        }
        DeliveryError::StoreUnavailable(m) => {
            ApiError::unavailable(&format!("the database is unavailable; {NOT_STORED}"), m)
        }
        DeliveryError::Storage(e) => {
            ApiError::internal(&format!("could not commit the delivery; {NOT_STORED}"), e)
        }
    }
}

/// The request as the driver sees it; the body was already read by `buffer_body`.
async fn read_request(request: Request) -> Result<IncomingRequest, ApiError> {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, usize::MAX)
        .await
        .map_err(|e| ApiError::bad_request(format!("could not read the body: {e}")))?;
    Ok(IncomingRequest {
        method: parts.method.to_string(),
        path: parts.uri.path().to_string(),
        query: parts.uri.query().unwrap_or("").to_string(),
        headers: headers(&parts.headers),
        body: body.to_vec(),
    })
}

fn headers(map: &HeaderMap) -> Vec<(String, String)> {
    map.iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect()
}
