//! The one error type of every HTTP answer: a status and `{"error": {code, message, details?}}`.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// The body of every error answer, as `ApiError::into_response` writes it.
#[derive(utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // a schema only: the body is built with `json!`
pub struct ErrorBody {
    error: ErrorObject,
}

/// What went wrong.
#[derive(utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // a schema only
struct ErrorObject {
    /// Stable, machine-readable: `bad_request`, `not_found`, `invalid_settings`, …
    code: String,
    /// For people; never a secret.
    message: String,
    /// Only where there is a list to give (schema failures: `[{"path", "message"}]`).
    #[schema(value_type = Vec<crate::runtime::SettingsViolation>, required = false)]
    details: Option<Value>,
}

// The answers many routes share, as OpenAPI response components (`super::openapi`).

/// `unauthorized`: no `Authorization: Bearer <admin token>`, another scheme, or a wrong token.
#[derive(utoipa::ToResponse)]
#[allow(dead_code)] // a schema only
pub struct Unauthorized(ErrorBody);

/// `request_timeout`: the body did not arrive within `[server] body_timeout_ms`; the
/// connection is closed.
#[derive(utoipa::ToResponse)]
#[response(headers(("Connection" = String, description = "`close`")))]
#[allow(dead_code)] // a schema only
pub struct RequestTimeout(ErrorBody);

/// `payload_too_large`: the body is over `max_body_bytes`; the connection is closed.
#[derive(utoipa::ToResponse)]
#[response(headers(("Connection" = String, description = "`close`")))]
#[allow(dead_code)] // a schema only
pub struct PayloadTooLarge(ErrorBody);

/// `unavailable`: the database is down, locked or slower than the timeouts; nothing was
/// stored or acknowledged. Retry after `Retry-After` seconds.
#[derive(utoipa::ToResponse)]
#[response(headers(("Retry-After" = u32, description = "seconds")))]
#[allow(dead_code)] // a schema only
pub struct Unavailable(ErrorBody);

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub details: Option<Value>,
    /// Seconds for a `Retry-After` header (`503`s the client should retry).
    pub retry_after: Option<u32>,
}

/// What `503`s for an unavailable database ask clients to wait, seconds.
pub const UNAVAILABLE_RETRY_AFTER: u32 = 5;

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            details: None,
            retry_after: None,
        }
    }

    /// The database is unavailable: `503` with `Retry-After`, nothing stored.
    pub fn unavailable(context: &str, error: impl std::fmt::Display) -> Self {
        tracing::warn!(%error, "{context}");
        Self {
            retry_after: Some(UNAVAILABLE_RETRY_AFTER),
            ..Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                format!("{context}; retry later"),
            )
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    pub fn unprocessable(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
    }

    /// A server-side failure: logged in full, answered without internals.
    pub fn internal(context: &str, error: impl std::fmt::Display) -> Self {
        tracing::error!(%error, "{context}");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("{context}; see the server log"),
        )
    }

    pub fn with_details(mut self, details: Value) -> Self {
        self.details = Some(details);
        self
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut error = json!({"code": self.code, "message": self.message});
        if let Some(details) = self.details {
            error["details"] = details;
        }
        let mut response = (self.status, Json(json!({ "error": error }))).into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, seconds.into());
        }
        if matches!(
            self.status,
            StatusCode::PAYLOAD_TOO_LARGE | StatusCode::REQUEST_TIMEOUT
        ) {
            // The body was not read, so the connection cannot carry another request: say so,
            // or a keep-alive client may reuse it and see a reset.
            response.headers_mut().insert(
                axum::http::header::CONNECTION,
                axum::http::HeaderValue::from_static("close"),
            );
        }
        response
    }
}

impl From<sluice_store::StoreError> for ApiError {
    fn from(e: sluice_store::StoreError) -> Self {
        match e {
            sluice_store::StoreError::Conflict(m) => {
                ApiError::new(StatusCode::CONFLICT, "conflict", m)
            }
            sluice_store::StoreError::NotFound => ApiError::not_found("not found"),
            sluice_store::StoreError::Unavailable(m) => {
                ApiError::unavailable("the database is unavailable", m)
            }
            other => ApiError::internal("storage error", other),
        }
    }
}

/// A list's `limit`: 1 to 1000, 100 when absent.
pub fn page_limit(limit: Option<i64>) -> Result<i64, ApiError> {
    match limit {
        None => Ok(100),
        Some(l) if (1..=1000).contains(&l) => Ok(l),
        Some(_) => Err(ApiError::bad_request("limit must be between 1 and 1000")),
    }
}

/// [`page_limit`] from the query's text.
pub fn parse_page_limit(limit: Option<&str>) -> Result<i64, ApiError> {
    let parsed = limit
        .map(|l| {
            l.parse()
                .map_err(|_| ApiError::bad_request("limit must be between 1 and 1000"))
        })
        .transpose()?;
    page_limit(parsed)
}
