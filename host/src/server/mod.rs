//! The HTTP server: provider webhooks, the OAuth routes (`oauth`), the admin API under
//! `/v1` (`admin`, `lifecycle`, `dead_letters`, `events`, `endpoints`), and probes.
//! Routes and their answers are documented in `docs/admin-api.md`, and each handler's
//! `#[utoipa::path]` makes the OpenAPI document served at `/v1/openapi.json` (`openapi`).
//!
//! [`listener::serve`] runs the router with header timeouts, a connection cap and a bounded
//! graceful shutdown; the [`buffer_body`] middleware reads every request body within the
//! body deadline and size limit before any handler runs.

mod admin;
mod config;
mod dead_letters;
mod drivers;
mod endpoints;
mod error;
mod events;
mod lifecycle;
pub mod listener;
mod oauth;
mod openapi;
mod webhooks;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Router};
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouter};
use utoipa_axum::routes;

pub use config::ServerConfig;
pub use error::ApiError;
use error::ErrorBody;

use crate::auth::Auth;
use crate::crypto::constant_time_eq;
use crate::pipeline::Pipeline;
use crate::services::Services;

/// Everything a request handler may use.
pub struct AppState {
    /// The store, the sandbox, the loaded drivers, the installation cache.
    pub services: Services,
    /// Webhooks into durable events; replays of failed normalizations.
    pub pipeline: Arc<Pipeline>,
    /// Kept driver versions, activation, hot-loading.
    pub catalog: Arc<crate::drivers::DriverCatalog>,
    /// OAuth flows, refresh and revocation.
    pub auth: Arc<Auth>,
    /// Scheduled polling.
    pub scheduler: Arc<crate::scheduler::Scheduler>,
    /// Outbound webhooks and the NATS sink.
    pub delivery: Arc<crate::delivery::Deliverer>,
    /// Base URL for `webhook_url`, without a trailing slash.
    pub public_url: String,
    pub admin_token: String,
    /// Largest request body (webhooks and admin calls).
    pub max_body_bytes: usize,
    /// Time a client has to send a request body.
    pub body_timeout: Duration,
    /// How often a long-poll reads the log again on its own.
    pub long_poll_recheck: Duration,
}

/// The routes, each registered by its handler and that handler's `#[utoipa::path]`
/// (method, path, parameters, bodies, answers): the router and `GET /v1/openapi.json` are
/// built from these two lists, so no route is served undocumented. One `routes!` per path;
/// handlers of one path go in the same `routes!`.
type Routes = Vec<UtoipaMethodRouter<Arc<AppState>>>;

/// Behind the admin token.
fn admin_routes() -> Routes {
    vec![
        routes!(drivers::list, drivers::upload),
        routes!(drivers::get),
        routes!(drivers::get_version, drivers::remove),
        routes!(drivers::activate),
        routes!(drivers::rollback),
        routes!(drivers::pin),
        routes!(admin::create_installation, admin::list_installations),
        routes!(admin::get_installation, admin::delete_installation),
        routes!(admin::put_secret),
        routes!(lifecycle::rotate_secret),
        routes!(admin::secret_audit),
        routes!(lifecycle::refresh),
        routes!(lifecycle::revoke),
        routes!(lifecycle::poll),
        routes!(lifecycle::backfill),
        routes!(lifecycle::pause),
        routes!(lifecycle::resume),
        routes!(events::list_events),
        routes!(endpoints::create, endpoints::list),
        routes!(endpoints::get, endpoints::update, endpoints::delete),
        routes!(endpoints::attempts),
        routes!(endpoints::deliveries),
        routes!(endpoints::replay),
        routes!(endpoints::replay_one),
        routes!(endpoints::sinks),
        routes!(dead_letters::list),
        routes!(dead_letters::replay),
        routes!(dead_letters::replay_installation),
        // Not under `/v1`, but behind the token all the same: its counters would tell a
        // stranger what the webhook answers never do (which installation ids exist, which
        // drivers run).
        routes!(metrics),
    ]
}

/// Reached without the admin token.
fn public_routes() -> Routes {
    vec![
        routes!(webhooks::receive),
        routes!(webhooks::receive_for_driver),
        routes!(oauth::start),
        routes!(oauth::callback),
        routes!(healthz),
        routes!(readyz),
        routes!(openapi::document),
    ]
}

/// Build the router.
pub fn router(state: Arc<AppState>) -> Router {
    let guard = |admin: OpenApiRouter<Arc<AppState>>| {
        admin.route_layer(middleware::from_fn_with_state(state.clone(), require_admin))
    };
    let (router, document) = openapi::build(public_routes(), admin_routes(), guard);
    // Serializing a document of strings and maps cannot fail.
    let document = document.to_json().expect("the OpenAPI document serializes");
    router
        .fallback(|| async { ApiError::not_found("no such route") })
        .layer(middleware::from_fn_with_state(state.clone(), buffer_body))
        // `buffer_body` enforces the limits (`max_body_bytes`, `max_driver_bytes` for
        // uploads); axum's own 2 MiB default would cut a driver upload short.
        .layer(axum::extract::DefaultBodyLimit::disable())
        .layer(Extension(openapi::Document(document.into())))
        .with_state(state)
}

/// `GET /healthz`: the process runs.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "probes",
    responses((status = 200, description = "`ok`", content_type = "text/plain", body = String, example = "ok"))
)]
async fn healthz() -> &'static str {
    "ok"
}

/// How long `/readyz` waits for the database.
const READY_TIMEOUT: Duration = Duration::from_secs(2);

/// `GET /metrics`: the Prometheus text exposition (`crate::metrics`).
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "probes",
    responses(
        (status = 200, description = "The Prometheus text exposition (`docs/admin-api.md` lists the series)",
         content_type = "text/plain; version=0.0.4; charset=utf-8", body = String),
        (status = 404, description = "`not_found`: metrics are not recorded in this process", body = ErrorBody),
    )
)]
async fn metrics() -> Response {
    match crate::metrics::render() {
        Some(text) => (
            [("content-type", "text/plain; version=0.0.4; charset=utf-8")],
            text,
        )
            .into_response(),
        None => ApiError::not_found("metrics are not recorded in this process").into_response(),
    }
}

/// `GET /readyz`: what `readyz` answers when ready.
#[derive(utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // a schema only: the body is built with `json!`
struct Ready {
    /// `ready`
    #[schema(example = "ready")]
    status: String,
    /// `ok`
    #[schema(example = "ok")]
    database: String,
    drivers: Vec<ReadyDriver>,
}

#[derive(utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // a schema only
struct ReadyDriver {
    id: String,
    version: String,
}

/// Ready when the database answers and at least one driver is loaded: a host without
/// drivers cannot take a single webhook.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "probes",
    responses(
        (status = 200, description = "The database answered within 2 s and a driver is loaded", body = Ready),
        (status = 503, description = "`unavailable`: the database did not answer, or no driver is loaded",
         body = ErrorBody, headers(("Retry-After" = u32, description = "seconds"))),
    )
)]
async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    let ping = tokio::time::timeout(READY_TIMEOUT, state.services.store.ping()).await;
    match ping {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            return ApiError::unavailable("the database is unavailable", e).into_response();
        }
        Err(_) => {
            return ApiError::unavailable("the database is unavailable", "ping timed out")
                .into_response();
        }
    }
    let drivers: Vec<serde_json::Value> = state
        .services
        .drivers
        .list()
        .iter()
        .map(|d| serde_json::json!({"id": d.info.id, "version": d.info.version}))
        .collect();
    if drivers.is_empty() {
        return ApiError::unavailable("no driver is loaded", "the drivers directory is empty")
            .into_response();
    }
    axum::Json(serde_json::json!({"status": "ready", "database": "ok", "drivers": drivers}))
        .into_response()
}

/// Read the whole body before the handler runs: refused with `413` over the size limit
/// (at once when `Content-Length` says so) and `408` when the client does not send it in
/// time, so a slow or huge body never ties up a handler, a sandbox slot or the database.
async fn buffer_body(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    // A driver upload may be far larger than any webhook, but only for the admin: a
    // stranger's upload is held to the ordinary limit before anything checks its token.
    let limit = if request.method() == axum::http::Method::POST
        && request.uri().path() == "/v1/drivers"
        && admin_token_ok(&state, request.headers()).is_ok()
    {
        state.catalog.config().max_driver_bytes
    } else {
        state.max_body_bytes
    };
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("body is over the {limit}-byte limit"),
        )
        .into_response()
    };
    let (parts, body) = request.into_parts();
    let webhook = parts.uri.path().starts_with("/webhooks/");
    let declared = parts
        .headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit as u64) {
        // A client that waits for `100 Continue` has sent nothing yet: reading would
        // invite the upload; answering at once is what it waits for.
        let expects_continue = parts
            .headers
            .get(axum::http::header::EXPECT)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
        if !expects_continue {
            drain(body, limit).await;
        }
        return refused_body(webhook, "oversized", too_large());
    }
    let bytes = match tokio::time::timeout(state.body_timeout, read_body(body, limit)).await {
        Ok(Ok(Some(bytes))) => bytes,
        Ok(Ok(None)) => return refused_body(webhook, "oversized", too_large()),
        Ok(Err(e)) => {
            let answer = ApiError::bad_request(format!("could not read the body: {e}"));
            return refused_body(webhook, "malformed", answer.into_response());
        }
        Err(_) => {
            let answer = ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "request_timeout",
                format!("the body did not arrive within {:?}", state.body_timeout),
            );
            return refused_body(webhook, "body_timeout", answer.into_response());
        }
    };
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

/// `answer`, counted as a refused webhook when the request was one.
fn refused_body(webhook: bool, reason: &'static str, answer: Response) -> Response {
    if webhook {
        crate::metrics::record_webhook_rejected(reason);
    }
    answer
}

/// The whole body, or `None` once it is over `limit` (what the client still sends of it
/// then is drained, see [`drain`]).
async fn read_body(mut body: Body, limit: usize) -> Result<Option<axum::body::Bytes>, axum::Error> {
    use http_body_util::BodyExt;
    let mut buffer = Vec::new();
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame?.into_data() else {
            continue; // trailers
        };
        if buffer.len() + data.len() > limit {
            drain(body, limit).await;
            return Ok(None);
        }
        buffer.extend_from_slice(&data);
    }
    Ok(Some(buffer.into()))
}

/// Read and discard what a client still sends of a refused body — at most `limit` more
/// bytes, for at most [`DRAIN_TIME`] — before answering. Closing a connection with
/// unread bytes makes the kernel reset it, which can destroy the refusal before the
/// client reads it (the lingering close of RFC 9112 §9.6); a client sending far more
/// than that is cut off all the same.
async fn drain(mut body: Body, limit: usize) {
    use http_body_util::BodyExt;
    let mut left = limit;
    let _ = tokio::time::timeout(DRAIN_TIME, async {
        while let Some(Ok(frame)) = body.frame().await {
            let len = frame.data_ref().map_or(0, |d| d.len());
            match left.checked_sub(len) {
                Some(rest) => left = rest,
                None => return,
            }
        }
    })
    .await;
}

/// How long a refused body is drained.
const DRAIN_TIME: Duration = Duration::from_secs(2);

/// `Authorization: Bearer <admin token>` on every `/v1` route.
async fn require_admin(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    match admin_token_ok(&state, request.headers()) {
        Ok(()) => next.run(request).await,
        Err(e) => e.into_response(),
    }
}

/// Whether the request carries `Authorization: Bearer <admin token>`.
fn admin_token_ok(state: &AppState, headers: &axum::http::HeaderMap) -> Result<(), ApiError> {
    let presented = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        // The scheme is case-insensitive (RFC 9110 §11.1); the token is compared exactly.
        .and_then(|v| {
            v.get(..7)
                .filter(|scheme| scheme.eq_ignore_ascii_case("bearer "))
                .map(|_| &v[7..])
        });
    match presented {
        Some(token) if constant_time_eq(token.as_bytes(), state.admin_token.as_bytes()) => Ok(()),
        Some(_) => Err(ApiError::unauthorized("wrong admin token")),
        None => Err(ApiError::unauthorized(
            "missing `Authorization: Bearer <admin token>`",
        )),
    }
}
