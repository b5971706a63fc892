//! `POST /webhooks/{installation_id}`: provider traffic into the pipeline.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use super::{ApiError, AppState};
use crate::pipeline;
use crate::runtime::types::IncomingRequest;

pub async fn receive(
    State(state): State<Arc<AppState>>,
    Path(installation_id): Path<String>,
    request: Request,
) -> Result<Response, ApiError> {
    let id = sluice_store::InstallationId::parse(&installation_id)
        .map_err(|_| ApiError::not_found("unknown installation"))?;
    let installation = state
        .store
        .get_installation(&id)
        .await?
        .ok_or_else(|| ApiError::not_found("unknown installation"))?;
    let driver = loaded_driver(&state, &installation.driver_id)?;
    let incoming = read_request(request, state.max_body_bytes).await?;
    deliver(&state, &driver, &installation, incoming).await
}

/// `POST /webhooks/drivers/{driver_id}`: one URL for every account of a provider app. The
/// driver names the account (`route-key`, before any verification), the host finds the
/// installation that declared it, and the request continues as if sent to that
/// installation's own URL — verification included.
pub async fn receive_for_driver(
    State(state): State<Arc<AppState>>,
    Path(driver_id): Path<String>,
    request: Request,
) -> Result<Response, ApiError> {
    let driver = state
        .drivers
        .get(&driver_id)
        .ok_or_else(|| ApiError::not_found(format!("no driver {driver_id:?} is loaded")))?;
    let incoming = read_request(request, state.max_body_bytes).await?;
    let mut session = state
        .runtime
        .session(
            &driver,
            driver.routing_scope(),
            state.runtime.limits().webhook_timeout(),
        )
        .await
        .map_err(pipeline::DeliveryError::from)?;
    let key = session
        .route_key(&incoming)
        .await
        .map_err(pipeline::DeliveryError::from)?;
    session.finish();
    let key = key
        .ok_or_else(|| ApiError::not_found("the request names no account this driver can route"))?;
    let installation = state
        .store
        .find_by_account_key(&driver.info.id, &key)
        .await?
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "no installation of {driver_id} for account {key:?}"
            ))
        })?;
    deliver(&state, &driver, &installation, incoming).await
}

fn loaded_driver(
    state: &AppState,
    driver_id: &str,
) -> Result<Arc<crate::runtime::LoadedDriver>, ApiError> {
    state.drivers.get(driver_id).ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "driver_unavailable",
            format!("driver {driver_id:?} is not loaded"),
        )
    })
}

async fn deliver(
    state: &AppState,
    driver: &Arc<crate::runtime::LoadedDriver>,
    installation: &sluice_store::Installation,
    incoming: IncomingRequest,
) -> Result<Response, ApiError> {
    let accepted =
        pipeline::deliver(&state.runtime, &state.store, driver, installation, incoming).await?;
    tracing::info!(installation = %installation.id, accepted = accepted.accepted, duplicates = accepted.duplicates, "webhook delivered");
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

/// Read the whole request, refusing bodies over `limit` with `413`.
async fn read_request(request: Request, limit: usize) -> Result<IncomingRequest, ApiError> {
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("body is over the {limit}-byte limit"),
        )
    };
    let (parts, body) = request.into_parts();
    let declared = parts
        .headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit as u64) {
        return Err(too_large());
    }
    let body = axum::body::to_bytes(body, limit).await.map_err(|e| {
        let over_limit = std::error::Error::source(&e)
            .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
        if over_limit {
            too_large()
        } else {
            ApiError::bad_request(format!("could not read the body: {e}"))
        }
    })?;
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
