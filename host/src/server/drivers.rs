//! `/v1/drivers`: the active drivers, every kept version, uploads (with a canary),
//! activation, rollback, removal; and pinning an installation to a version.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use sluice_store::{ActivationReason, DriverId, DriverSource, DriverVersion};

use super::admin::{InstallationView, body, parse_id};
use super::error::{ErrorBody, Unavailable};
use super::{ApiError, AppState};
use crate::drivers::{Activation, AddOptions, CatalogError};
use crate::runtime::DriverInfo;

impl From<CatalogError> for ApiError {
    fn from(e: CatalogError) -> Self {
        match e {
            CatalogError::Invalid(reason) => ApiError::unprocessable(
                "invalid_driver",
                format!("the driver was refused: {reason}"),
            ),
            CatalogError::NotFound(m) => ApiError::not_found(m),
            CatalogError::UnknownVersion(m) => ApiError::unprocessable("unknown_driver_version", m),
            CatalogError::Conflict(m) => ApiError::new(StatusCode::CONFLICT, "conflict", m),
            CatalogError::BadRequest(m) => ApiError::bad_request(m),
            CatalogError::Store(e) => e.into(),
        }
    }
}

/// A kept version ([`version_json`]).
#[derive(utoipa::ToSchema)]
#[schema(as = DriverVersion)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // a schema only: the body is built with `json!`
pub(super) struct DriverVersionView {
    sha256: String,
    driver_id: String,
    version: String,
    wit_version: String,
    size_bytes: i64,
    source: DriverSourceName,
    /// RFC 3339 UTC.
    added_at: String,
    /// Whether it is its driver's active version.
    active: bool,
    /// Live installations pinned to it.
    pinned_installations: i64,
}

/// [`DriverSource`] as the API writes it.
#[derive(utoipa::ToSchema)]
#[schema(as = DriverSource)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)] // a schema only
enum DriverSourceName {
    /// `POST /v1/drivers` (or `sluice drivers add`).
    Upload,
    /// A file in the drivers directory.
    Directory,
}

/// `GET /v1/drivers`.
#[derive(utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // a schema only
pub(super) struct DriverList {
    drivers: Vec<DriverInfo>,
}

/// `GET /v1/drivers/{id}`.
#[derive(utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // a schema only
pub(super) struct DriverDetail {
    /// The active version's metadata; `null` when none is active on this node.
    #[schema(required = true)]
    driver: Option<DriverInfo>,
    versions: Vec<DriverVersionView>,
}

/// `GET /v1/drivers/{id}/versions/{sha256}`: a kept version and, when it is loaded on
/// this node, its metadata.
#[derive(utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // a schema only
pub(super) struct VersionDetail {
    sha256: String,
    driver_id: String,
    version: String,
    wit_version: String,
    size_bytes: i64,
    source: DriverSourceName,
    added_at: String,
    active: bool,
    pinned_installations: i64,
    #[schema(required = true)]
    driver: Option<DriverInfo>,
}

/// The driver's active version after an activation or a rollback.
#[derive(utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // a schema only
pub(super) struct ActiveDriver {
    driver: DriverInfo,
}

/// A driver id from a path: one that cannot be a driver's names none (`404`).
fn driver_id(id: &str) -> Result<DriverId, ApiError> {
    DriverId::parse(id).map_err(|_| ApiError::not_found(format!("no driver {id:?}")))
}

fn version_json(v: &DriverVersion) -> Value {
    json!({
        "sha256": v.sha256,
        "driver_id": v.driver_id,
        "version": v.version,
        "wit_version": v.wit_version,
        "size_bytes": v.size_bytes,
        "source": v.source,
        "added_at": v.added_at,
        "active": v.active,
        "pinned_installations": v.pinned_installations,
    })
}

/// `GET /v1/drivers`: the active version of each driver.
#[utoipa::path(
    get,
    path = "/v1/drivers",
    operation_id = "list_drivers",
    tag = "drivers",
    responses((status = 200, description = "The active version of each driver", body = DriverList))
)]
pub async fn list(State(state): State<Arc<AppState>>) -> Json<Value> {
    let drivers: Vec<_> = state
        .services
        .drivers
        .list()
        .iter()
        .map(|d| d.info.clone())
        .collect();
    Json(json!({ "drivers": drivers }))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct UploadQuery {
    /// `false`: keep the version without activating it. Default `true`.
    activate: Option<bool>,
    /// Replay the last N stored raw events through it and the active version first.
    canary: Option<usize>,
    /// Activate only when the canary found no difference.
    #[serde(default)]
    activate_if_identical: bool,
}

/// `POST /v1/drivers` with the component's bytes (`Content-Type: application/wasm`).
#[utoipa::path(
    post,
    path = "/v1/drivers",
    operation_id = "upload_driver",
    tag = "drivers",
    params(UploadQuery),
    request_body(content = Vec<u8>, content_type = "application/wasm", description = "The component's bytes, up to `max_driver_bytes`"),
    responses(
        (status = 201, description = "A new version, kept (and activated unless asked not to)", body = crate::drivers::Added),
        (status = 200, description = "This exact component (sha256) was kept already", body = crate::drivers::Added),
        (status = 400, description = "`bad_request`: a bad query, `activate=false` with `activate_if_identical=true`", body = ErrorBody),
        (status = 409, description = "`conflict`", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`: not `Content-Type: application/wasm`", body = ErrorBody),
        (status = 422, description = "`invalid_driver`: the component was refused (the reason)", body = ErrorBody),
        (status = 503, response = Unavailable),
    )
)]
pub async fn upload(
    State(state): State<Arc<AppState>>,
    query: Result<Query<UploadQuery>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let content_type = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !content_type.eq_ignore_ascii_case("application/wasm") {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "a driver is uploaded as its component's bytes with `Content-Type: application/wasm`",
        ));
    }
    let activation = match (query.activate, query.activate_if_identical) {
        (Some(false), true) => {
            return Err(ApiError::bad_request(
                "activate=false and activate_if_identical=true contradict each other",
            ));
        }
        (_, true) => Activation::IfIdentical,
        (Some(false), false) => Activation::Keep,
        (_, false) => Activation::Now,
    };
    let catalog = state.catalog.clone();
    let added = detached(async move {
        catalog
            .add(
                &bytes,
                DriverSource::Upload,
                AddOptions {
                    activation,
                    canary: query.canary,
                },
            )
            .await
    })
    .await?;
    let status = if added.new {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(json!(added))).into_response())
}

/// `GET /v1/drivers/{id}`: the active version and every kept one.
#[utoipa::path(
    get,
    path = "/v1/drivers/{id}",
    operation_id = "get_driver",
    tag = "drivers",
    params(("id" = String, Path, description = "The driver id")),
    responses(
        (status = 200, description = "The driver", body = DriverDetail),
        (status = 404, description = "`not_found`: no such driver", body = ErrorBody),
        (status = 503, response = Unavailable),
    )
)]
pub async fn get(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id = driver_id(&id)?;
    let versions = state.services.store.driver_versions(Some(&id)).await?;
    let active = state.services.drivers.get(id.as_str());
    if versions.is_empty() && active.is_none() {
        return Err(ApiError::not_found(format!("no driver {id:?}")));
    }
    Ok(Json(json!({
        "driver": active.map(|d| d.info.clone()),
        "versions": versions.iter().map(version_json).collect::<Vec<_>>(),
    })))
}

/// `GET /v1/drivers/{id}/versions/{sha256}`: one kept version, with its metadata when it
/// is loaded on this node.
#[utoipa::path(
    get,
    path = "/v1/drivers/{id}/versions/{sha256}",
    tag = "drivers",
    params(("id" = String, Path, description = "The driver id"), ("sha256" = String, Path, description = "The version's sha256, lower-case hex")),
    responses(
        (status = 200, description = "The version", body = VersionDetail),
        (status = 404, description = "`not_found`: the driver keeps no such version", body = ErrorBody),
        (status = 503, response = Unavailable),
    )
)]
pub async fn get_version(
    State(state): State<Arc<AppState>>,
    Path((id, sha256)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let id = driver_id(&id)?;
    let version = state
        .services
        .store
        .driver_version(&sha256)
        .await?
        .filter(|v| v.driver_id == id)
        .ok_or_else(|| {
            ApiError::not_found(format!("the {id} driver has no kept version {sha256}"))
        })?;
    let mut out = version_json(&version);
    out["driver"] = json!(
        state
            .services
            .drivers
            .version(&sha256)
            .map(|d| d.info.clone())
    );
    Ok(Json(out))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VersionChoice {
    /// A kept version of the driver, lower-case hex.
    sha256: Option<String>,
}

/// The body of a pin: `sha256` must be there, a version or `null` (unpin), so `{}` is
/// refused instead of unpinning by accident.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PinChoice {
    /// A kept version of the installation's driver, lower-case hex; `null` to unpin.
    #[serde(deserialize_with = "present")]
    #[schema(required = true)]
    sha256: Option<String>,
}

/// A field that must be present and may be `null` (serde treats a missing `Option` as
/// `None` unless told otherwise).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Option::<String>::deserialize(d)
}

/// Run a catalog change in a task of its own: a client that goes away mid-way (say during
/// a long canary) cannot cancel it between the store's commit and this node's swap.
async fn detached<T, F>(work: F) -> Result<T, ApiError>
where
    T: Send + 'static,
    F: std::future::Future<Output = Result<T, CatalogError>> + Send + 'static,
{
    tokio::spawn(work)
        .await
        .map_err(|e| ApiError::internal("the driver change failed", e))?
        .map_err(Into::into)
}

/// `POST /v1/drivers/{id}/activate` `{"sha256": …}`.
#[utoipa::path(
    post,
    path = "/v1/drivers/{id}/activate",
    operation_id = "activate_driver",
    tag = "drivers",
    params(("id" = String, Path, description = "The driver id")),
    request_body = VersionChoice,
    responses(
        (status = 200, description = "Activated", body = ActiveDriver),
        (status = 400, description = "`bad_request`: malformed JSON, no `sha256`", body = ErrorBody),
        (status = 404, description = "`not_found`", body = ErrorBody),
        (status = 409, description = "`conflict`", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`", body = ErrorBody),
        (status = 422, description = "`unknown_driver_version`, `invalid_driver`", body = ErrorBody),
        (status = 503, response = Unavailable),
    )
)]
pub async fn activate(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    payload: Result<Json<VersionChoice>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let id = driver_id(&id)?;
    let choice = body(payload)?;
    let sha256 = choice
        .sha256
        .ok_or_else(|| ApiError::bad_request("`sha256` names the version to activate"))?;
    let catalog = state.catalog.clone();
    let driver = detached(async move {
        catalog
            .activate(&id, &sha256, ActivationReason::Activate)
            .await
    })
    .await?;
    Ok(Json(json!({ "driver": driver.info })))
}

/// `POST /v1/drivers/{id}/rollback`, optionally `{"sha256": …}`: back to the version
/// active before the current one (or the one named).
#[utoipa::path(
    post,
    path = "/v1/drivers/{id}/rollback",
    operation_id = "rollback_driver",
    tag = "drivers",
    params(("id" = String, Path, description = "The driver id")),
    request_body(content = Option<VersionChoice>, description = "Optional: the version to go back to"),
    responses(
        (status = 200, description = "Rolled back", body = ActiveDriver),
        (status = 400, description = "`bad_request`: the body is not `{\"sha256\": …}`", body = ErrorBody),
        (status = 404, description = "`not_found`", body = ErrorBody),
        (status = 409, description = "`conflict`: nothing to roll back to", body = ErrorBody),
        (status = 422, description = "`unknown_driver_version`, `invalid_driver`", body = ErrorBody),
        (status = 503, response = Unavailable),
    )
)]
pub async fn rollback(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    raw: Bytes,
) -> Result<Json<Value>, ApiError> {
    // The body is optional, so it is parsed here rather than by the `Json` extractor.
    let to = if raw.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        serde_json::from_slice::<VersionChoice>(&raw)
            .map_err(|e| ApiError::bad_request(format!("the body is not {{\"sha256\": …}}: {e}")))?
            .sha256
    };
    let id = driver_id(&id)?;
    let catalog = state.catalog.clone();
    let driver = detached(async move { catalog.rollback(&id, to.as_deref()).await }).await?;
    Ok(Json(json!({ "driver": driver.info })))
}

/// `DELETE /v1/drivers/{id}/versions/{sha256}`: forget a version neither active nor pinned.
#[utoipa::path(
    delete,
    path = "/v1/drivers/{id}/versions/{sha256}",
    operation_id = "remove_driver_version",
    tag = "drivers",
    params(("id" = String, Path, description = "The driver id"), ("sha256" = String, Path, description = "The version's sha256, lower-case hex")),
    responses(
        (status = 204, description = "Forgotten"),
        (status = 404, description = "`not_found`", body = ErrorBody),
        (status = 409, description = "`conflict`: the version is active or pinned", body = ErrorBody),
        (status = 503, response = Unavailable),
    )
)]
pub async fn remove(
    State(state): State<Arc<AppState>>,
    Path((id, sha256)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let id = driver_id(&id)?;
    let catalog = state.catalog.clone();
    detached(async move { catalog.remove(&id, &sha256).await }).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `PUT /v1/installations/{id}/driver-version` `{"sha256": … | null}`: pin the installation
/// to a kept version of its driver, or (`null`) let it follow the active one.
#[utoipa::path(
    put,
    path = "/v1/installations/{id}/driver-version",
    operation_id = "pin_driver_version",
    tag = "installations",
    params(("id" = String, Path, description = "The installation id")),
    request_body = PinChoice,
    responses(
        (status = 200, description = "The installation, pinned or following the active version", body = InstallationView),
        (status = 400, description = "`bad_request`: malformed JSON or an unknown field", body = ErrorBody),
        (status = 404, description = "`not_found`: unknown installation", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`", body = ErrorBody),
        (status = 422, description = "`unknown_driver_version`: not a kept version of its driver", body = ErrorBody),
        (status = 503, response = Unavailable),
    )
)]
pub async fn pin(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    payload: Result<Json<PinChoice>, JsonRejection>,
) -> Result<Response, ApiError> {
    let id = parse_id(&id)?;
    let choice = body(payload)?;
    let (catalog, pinned) = (state.catalog.clone(), id.clone());
    detached(async move { catalog.pin(&pinned, choice.sha256.as_deref()).await }).await?;
    super::admin::get_installation(State(state), Path(id.to_string()))
        .await
        .map(IntoResponse::into_response)
}
