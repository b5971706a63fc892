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
use sluice_store::{ActivationReason, DriverSource, DriverVersion};

use super::admin::{body, parse_id};
use super::{ApiError, AppState};
use crate::drivers::{Activation, AddOptions, CatalogError};

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
pub async fn list(State(state): State<Arc<AppState>>) -> Json<Value> {
    let drivers: Vec<_> = state
        .pipeline
        .drivers()
        .list()
        .iter()
        .map(|d| d.info.clone())
        .collect();
    Json(json!({ "drivers": drivers }))
}

#[derive(Deserialize)]
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
    let added = state
        .catalog
        .add(
            &bytes,
            DriverSource::Upload,
            AddOptions {
                activation,
                canary: query.canary,
            },
        )
        .await?;
    let status = if added.new {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(json!(added))).into_response())
}

/// `GET /v1/drivers/{id}`: the active version and every kept one.
pub async fn get(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let versions = state.pipeline.store().driver_versions(Some(&id)).await?;
    let active = state.pipeline.drivers().get(&id);
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
pub async fn get_version(
    State(state): State<Arc<AppState>>,
    Path((id, sha256)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let version = state
        .pipeline
        .store()
        .driver_version(&sha256)
        .await?
        .filter(|v| v.driver_id == id)
        .ok_or_else(|| {
            ApiError::not_found(format!("the {id} driver has no kept version {sha256}"))
        })?;
    let mut out = version_json(&version);
    out["driver"] = json!(
        state
            .pipeline
            .drivers()
            .version(&sha256)
            .map(|d| d.info.clone())
    );
    Ok(Json(out))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VersionChoice {
    sha256: Option<String>,
}

/// `POST /v1/drivers/{id}/activate` `{"sha256": …}`.
pub async fn activate(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    payload: Result<Json<VersionChoice>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let choice = body(payload)?;
    let sha256 = choice
        .sha256
        .ok_or_else(|| ApiError::bad_request("`sha256` names the version to activate"))?;
    let driver = state
        .catalog
        .activate(&id, &sha256, ActivationReason::Activate)
        .await?;
    Ok(Json(json!({ "driver": driver.info })))
}

/// `POST /v1/drivers/{id}/rollback`, optionally `{"sha256": …}`: back to the version
/// active before the current one (or the one named).
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
    let driver = state.catalog.rollback(&id, to.as_deref()).await?;
    Ok(Json(json!({ "driver": driver.info })))
}

/// `DELETE /v1/drivers/{id}/versions/{sha256}`: forget a version neither active nor pinned.
pub async fn remove(
    State(state): State<Arc<AppState>>,
    Path((id, sha256)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    state.catalog.remove(&id, &sha256).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `PUT /v1/installations/{id}/driver-version` `{"sha256": … | null}`: pin the installation
/// to a kept version of its driver, or (`null`) let it follow the active one.
pub async fn pin(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    payload: Result<Json<VersionChoice>, JsonRejection>,
) -> Result<Response, ApiError> {
    let id = parse_id(&id)?;
    let choice = body(payload)?;
    state.catalog.pin(&id, choice.sha256.as_deref()).await?;
    super::admin::get_installation(State(state), Path(id.to_string()))
        .await
        .map(IntoResponse::into_response)
}
