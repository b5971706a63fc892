//! `POST /webhooks/{installation_id}`: provider traffic into the pipeline.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use super::{ApiError, AppState};
use crate::pipeline::{DeliveryError, Target};
use crate::wit::types::IncomingRequest;

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
    let app_level = matches!(target, Target::Driver(_));
    let accepted = state
        .pipeline
        .receive(target, incoming)
        .await
        .map_err(|e| match e {
            // An app-level URL names a driver, not an installation: a missing one is a 404.
            DeliveryError::DriverUnavailable(id) if app_level => {
                ApiError::not_found(format!("no driver {id:?} is loaded"))
            }
            other => ApiError::from(other),
        })?;
    tracing::info!(installation = ?accepted.installation.as_ref().map(|i| i.as_str()), accepted = accepted.accepted, duplicates = accepted.duplicates, "webhook delivered");
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
