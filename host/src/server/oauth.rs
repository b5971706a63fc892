//! The OAuth routes providers and users reach without the admin token:
//! `GET /oauth/{installation_id}/start` (a `302` to the provider) and
//! `GET /oauth/callback` (the provider's redirect back). See `crate::auth`.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use sluice_store::InstallationId;

use super::error::ErrorBody;
use super::{ApiError, AppState};
use crate::auth::AuthError;

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        let message = e.to_string();
        match e {
            AuthError::UnknownInstallation => ApiError::not_found(message),
            AuthError::DriverUnavailable(_) => ApiError {
                retry_after: Some(super::error::UNAVAILABLE_RETRY_AFTER),
                ..ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "driver_unavailable",
                    message,
                )
            },
            AuthError::Unsupported(_) => {
                ApiError::new(StatusCode::CONFLICT, "unsupported", message)
            }
            AuthError::InvalidState(_) => {
                ApiError::new(StatusCode::BAD_REQUEST, "invalid_state", message)
            }
            AuthError::ExpiredState => {
                ApiError::new(StatusCode::BAD_REQUEST, "expired_state", message)
            }
            AuthError::Refused(_) => ApiError::unauthorized(message),
            AuthError::BadCallback(_) => ApiError::bad_request(message),
            AuthError::NotReady(_) => ApiError::new(StatusCode::CONFLICT, "not_ready", message),
            AuthError::Provider(_) | AuthError::ProviderRefused(_) => {
                ApiError::new(StatusCode::BAD_GATEWAY, "provider_error", message)
            }
            AuthError::Conflict(_) => ApiError::new(StatusCode::CONFLICT, "conflict", message),
            AuthError::Driver(e) => {
                ApiError::new(StatusCode::BAD_GATEWAY, "driver_error", e.to_string())
            }
            AuthError::Store(e) => ApiError::from(e),
        }
    }
}

/// `GET /oauth/{installation_id}/start`: `302` to the provider's authorization page.
#[utoipa::path(
    get,
    path = "/oauth/{installation_id}/start",
    tag = "oauth",
    params(("installation_id" = String, Path, description = "The installation id")),
    responses(
        (status = 302, description = "To the provider's authorization page, with a single-use `state`",
         headers(
             ("Location" = String, description = "The driver's `authorize-url`"),
             ("Cache-Control" = String, description = "`no-store`"),
             ("Referrer-Policy" = String, description = "`no-referrer`"),
         )),
        (status = 404, description = "`not_found`: unknown installation", body = ErrorBody),
        (status = 409, description = "`unsupported` (the driver has no OAuth flow), `not_ready` (e.g. no `client_id`)", body = ErrorBody),
        (status = 502, description = "`provider_error` (the URL goes to an origin the driver may not reach), `driver_error`", body = ErrorBody),
        (status = 503, description = "`driver_unavailable`, `unavailable`", body = ErrorBody,
         headers(("Retry-After" = u32, description = "seconds"))),
    )
)]
pub async fn start(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = InstallationId::parse(&id).map_err(|_| ApiError::not_found("unknown installation"))?;
    let url = state.auth.start(&id).await?;
    Ok((
        StatusCode::FOUND,
        [
            (header::LOCATION, url),
            // The URL carries a single-use state: never cache or share it.
            (header::CACHE_CONTROL, "no-store".to_string()),
            (header::REFERRER_POLICY, "no-referrer".to_string()),
        ],
    )
        .into_response())
}

/// `GET /oauth/callback`.
#[derive(utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // a schema only: the body is built with `json!`
pub(super) struct Authorized {
    authorized: crate::auth::Connected,
}

/// `GET /oauth/callback`: complete the authorization; answers the installation's new
/// auth status as JSON.
#[utoipa::path(
    get,
    path = "/oauth/callback",
    tag = "oauth",
    params(
        ("state" = Option<String>, Query, description = "The single-use `state` the start issued"),
        ("code" = Option<String>, Query, description = "The authorization code"),
        ("error" = Option<String>, Query, description = "The provider's refusal (`access_denied`)"),
    ),
    responses(
        (status = 200, description = "Authorized (`needs_reauth` with a `reason` when scopes are missing)", body = Authorized,
         headers(("Cache-Control" = String, description = "`no-store`"))),
        (status = 400, description = "`invalid_state`, `expired_state`, `bad_request` (the provider's `error`, a malformed callback)", body = ErrorBody),
        (status = 401, description = "`unauthorized`: the driver refused the callback (Shopify's `hmac`, shop, timestamp)", body = ErrorBody),
        (status = 404, description = "`not_found`: the installation is gone", body = ErrorBody),
        (status = 409, description = "`conflict` (another installation holds the account key), `unsupported`, `not_ready`", body = ErrorBody),
        (status = 502, description = "`provider_error` (the token endpoint refused), `driver_error`", body = ErrorBody),
        (status = 503, description = "`driver_unavailable`, `unavailable`", body = ErrorBody),
    )
)]
pub async fn callback(
    State(state): State<Arc<AppState>>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let query = query.unwrap_or_default();
    // The exchange runs to its end even if the browser goes away: the code is single-use.
    let auth = state.auth.clone();
    let connected = tokio::spawn(async move { auth.callback(&query).await })
        .await
        .map_err(|e| ApiError::internal("the callback task failed", e))??;
    Ok((
        [(header::CACHE_CONTROL, "no-store")],
        Json(json!({ "authorized": connected })),
    )
        .into_response())
}
