//! The HTTP server: provider webhooks, the admin API under `/v1`, and probes.
//! Routes and their answers are documented in `docs/admin-api.md`.

mod admin;
mod error;
mod webhooks;

use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};

pub use error::ApiError;

use crate::capabilities::secrets::constant_time_eq;
use crate::pipeline::Pipeline;

/// Everything a request handler may use.
pub struct AppState {
    pub pipeline: Arc<Pipeline>,
    /// Base URL for `webhook_url`, without a trailing slash.
    pub public_url: String,
    pub admin_token: String,
    pub max_body_bytes: usize,
}

/// Build the router.
pub fn router(state: Arc<AppState>) -> Router {
    let admin = Router::new()
        .route("/drivers", get(admin::list_drivers))
        .route(
            "/installations",
            post(admin::create_installation).get(admin::list_installations),
        )
        .route(
            "/installations/{id}",
            get(admin::get_installation).delete(admin::delete_installation),
        )
        .route("/installations/{id}/secrets/{name}", put(admin::put_secret))
        .route("/events", get(admin::list_events))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_admin));
    Router::new()
        .route("/webhooks/{installation_id}", post(webhooks::receive))
        .route(
            "/webhooks/drivers/{driver_id}",
            post(webhooks::receive_for_driver),
        )
        .nest("/v1", admin)
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .fallback(|| async { ApiError::not_found("no such route") })
        .with_state(state)
}

async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    match state.pipeline.store().ping().await {
        Ok(()) => "ready".into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed");
            (StatusCode::SERVICE_UNAVAILABLE, "database unavailable").into_response()
        }
    }
}

/// `Authorization: Bearer <admin token>` on every `/v1` route.
async fn require_admin(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    let presented = request
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match presented {
        Some(token) if constant_time_eq(token.as_bytes(), state.admin_token.as_bytes()) => {
            next.run(request).await
        }
        Some(_) => ApiError::unauthorized("wrong admin token").into_response(),
        None => {
            ApiError::unauthorized("missing `Authorization: Bearer <admin token>`").into_response()
        }
    }
}
