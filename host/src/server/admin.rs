//! The admin API under `/v1`: drivers, installations, secrets, events.

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use sluice_store::{
    AuthRecord, AuthStatus, Installation, InstallationId, NewInstallation, PollStatus,
};

use super::error::{ErrorBody, Unavailable};
use super::{ApiError, AppState};

/// A JSON body, with malformed input answered as our `400`.
pub(super) fn body<T>(payload: Result<Json<T>, JsonRejection>) -> Result<T, ApiError> {
    payload.map(|Json(v)| v).map_err(|e| match e {
        JsonRejection::MissingJsonContentType(_) => ApiError::new(
            axum::http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "the admin API takes `Content-Type: application/json`",
        ),
        other => ApiError::bad_request(other.body_text()),
    })
}

/// An installation's authorization as the API shows it: never a token.
pub(super) fn auth_json(record: Option<&AuthRecord>, auth_kind: &str, secrets_set: bool) -> Value {
    let time = |t: Option<i64>| t.map(crate::time::rfc3339);
    let Some(r) = record else {
        // Nothing recorded yet: OAuth and client-credentials installations wait for their
        // first token; the others are ready once their required secrets are set.
        let token_based = matches!(auth_kind, "oauth2" | "client_credentials");
        let status = if token_based || !secrets_set {
            AuthStatus::Pending
        } else {
            AuthStatus::Active
        };
        return json!({"status": status, "scopes": [], "token_expires_at": null});
    };
    json!({
        "status": r.status,
        "reason": r.reason,
        "scopes": r.scopes,
        "token_expires_at": time(r.token_expires_at),
        "authorized_at": r.authorized_at,
        "refreshed_at": r.refreshed_at,
        "refresh_failures": r.refresh_failures,
        "last_refresh_error": r.last_error,
        "next_refresh_attempt_at": time(r.next_refresh_at),
    })
}

/// Whether the installation's driver declares the secret `name`.
pub(super) fn check_declared(
    state: &AppState,
    installation: &Installation,
    name: &str,
) -> Result<(), ApiError> {
    let declared = state
        .services
        .drivers
        .get(installation.driver_id.as_str())
        .is_some_and(|d| d.info.secrets.iter().any(|s| s.name == name));
    if declared {
        Ok(())
    } else {
        Err(ApiError::unprocessable(
            "unknown_secret",
            format!(
                "the {} driver declares no secret {name:?}",
                installation.driver_id
            ),
        ))
    }
}

/// An installation's scheduled polling, `null` when it is not polled.
fn polling_json(status: Option<&PollStatus>) -> Value {
    let time = |ms: i64| {
        chrono::DateTime::from_timestamp_millis(ms)
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
    };
    match status {
        None => Value::Null,
        Some(p) => json!({
            "interval_seconds": p.interval_ms / 1000,
            "paused": p.paused,
            "next_poll_at": time(p.next_poll_at),
            "last_poll_at": p.last_poll_at.and_then(time),
            "last_error": p.last_error,
            "consecutive_failures": p.consecutive_failures,
        }),
    }
}

/// An installation as the API shows it (`installation_json`).
#[derive(utoipa::ToSchema)]
#[schema(as = Installation)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // a schema only: the body is built with `json!`
pub(super) struct InstallationView {
    #[schema(example = "inst_shop_42")]
    installation_id: String,
    #[schema(example = "stripe")]
    driver_id: String,
    /// Valid against the driver's settings schema.
    #[schema(value_type = Object)]
    settings: Value,
    /// The provider account it routes app-level webhooks for (Shopify `shop`, Stripe Connect
    /// `account`).
    #[schema(required = true)]
    account_key: Option<String>,
    /// RFC 3339 UTC.
    created_at: String,
    /// The driver version (sha256) it is pinned to; `null`: it follows the active one.
    #[schema(required = true)]
    pinned_driver_sha256: Option<String>,
    /// `{public_url}/webhooks/{installation_id}`.
    webhook_url: String,
    /// The names of the secrets set, sorted; never a value.
    secrets: Vec<String>,
    /// Required secrets not set yet (nor shared as app credentials): deliveries answer `503
    /// installation_not_ready` until they are.
    secrets_missing: Vec<String>,
    auth: AuthView,
    /// `null` when it is not polled on a schedule.
    #[schema(required = true)]
    polling: Option<PollingView>,
}

/// An installation's authorization (`auth_json`), never a token. Before anything is
/// recorded only `status`, `scopes` (`[]`) and `token_expires_at` (`null`) are present.
#[derive(utoipa::ToSchema)]
#[schema(as = Authorization)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // a schema only
struct AuthView {
    status: crate::auth::AuthStatusName,
    /// Why, for `needs_reauth` and `revoked`.
    reason: Option<String>,
    scopes: Vec<String>,
    /// RFC 3339 UTC; `null` when the token does not expire or there is none.
    #[schema(required = true)]
    token_expires_at: Option<String>,
    authorized_at: Option<String>,
    refreshed_at: Option<String>,
    #[schema(nullable = false)]
    refresh_failures: Option<i64>,
    last_refresh_error: Option<String>,
    next_refresh_attempt_at: Option<String>,
}

/// An installation's scheduled polling (`polling_json`).
#[derive(utoipa::ToSchema)]
#[schema(as = Polling)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // a schema only
struct PollingView {
    interval_seconds: i64,
    paused: bool,
    /// RFC 3339 UTC, milliseconds.
    #[schema(required = true)]
    next_poll_at: Option<String>,
    #[schema(required = true)]
    last_poll_at: Option<String>,
    #[schema(required = true)]
    last_error: Option<String>,
    consecutive_failures: i64,
}

/// What the store knows of an installation beside its row: its authorization and polling.
#[derive(Default)]
pub(super) struct Status<'a> {
    pub auth: Option<&'a AuthRecord>,
    pub polling: Option<&'a PollStatus>,
}

pub(super) async fn installation_status(
    state: &AppState,
    id: &InstallationId,
) -> Result<(Option<AuthRecord>, Option<PollStatus>), ApiError> {
    let store = &state.services.store;
    Ok((store.auth_record(id).await?, store.poll_status(id).await?))
}

pub(super) fn installation_json(state: &AppState, i: &Installation, status: Status<'_>) -> Value {
    let auth = status.auth;
    // The version it runs: its pin, else the active one.
    let driver = state
        .services
        .drivers
        .for_installation(i.driver_id.as_str(), i.driver_sha256.as_deref())
        .or_else(|| state.services.drivers.get(i.driver_id.as_str()));
    // Required secrets not set yet (nor shared by the operator as app credentials): the
    // installation cannot take deliveries until they are.
    let missing: Vec<String> = driver
        .as_ref()
        .map(|d| {
            d.info
                .secrets
                .iter()
                .filter(|s| {
                    s.required
                        && !i.secret_names.contains(&s.name)
                        && !d.scope.caps.secrets.has_app_secret(&s.name)
                })
                .map(|s| s.name.clone())
                .collect()
        })
        .unwrap_or_default();
    let auth_kind = driver.as_ref().map_or("none", |d| d.info.auth_kind);
    json!({
        "installation_id": i.id.as_str(),
        "driver_id": i.driver_id,
        "settings": i.settings,
        "account_key": i.account_key,
        "created_at": i.created_at,
        "pinned_driver_sha256": i.driver_sha256,
        "webhook_url": format!("{}/webhooks/{}", state.public_url, i.id),
        "secrets": i.secret_names,
        "secrets_missing": missing,
        "auth": auth_json(auth, auth_kind, missing.is_empty()),
        "polling": polling_json(status.polling),
    })
}

pub(super) fn parse_id(id: &str) -> Result<InstallationId, ApiError> {
    InstallationId::parse(id).map_err(|_| ApiError::not_found("unknown installation"))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateInstallation {
    /// Generated as `inst_…` when absent.
    #[schema(pattern = "^[A-Za-z0-9_-]{1,64}$", example = "inst_shop_42")]
    installation_id: Option<String>,
    #[schema(example = "stripe")]
    driver_id: String,
    /// Validated against the driver's settings schema; `{}` when absent.
    #[serde(default = "empty_object")]
    #[schema(value_type = Object)]
    settings: Value,
}

fn empty_object() -> Value {
    json!({})
}

/// Create an installation of a loaded driver.
#[utoipa::path(
    post,
    path = "/v1/installations",
    tag = "installations",
    request_body = CreateInstallation,
    responses(
        (status = 201, description = "Created", body = InstallationView),
        (status = 400, description = "`bad_request`: malformed JSON, an unknown field, a bad `installation_id`", body = ErrorBody),
        (status = 409, description = "`conflict`: the id is taken, or another live installation of the driver has the same account key", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`: not `Content-Type: application/json`", body = ErrorBody),
        (status = 422, description = "`unknown_driver`, `invalid_settings` (with `details`), `driver_not_permitted`", body = ErrorBody),
        (status = 503, response = Unavailable),
    )
)]
pub async fn create_installation(
    State(state): State<Arc<AppState>>,
    payload: Result<Json<CreateInstallation>, JsonRejection>,
) -> Result<Response, ApiError> {
    let request = body(payload)?;
    check_settings_size(&request.settings)?;
    let driver = state
        .services
        .drivers
        .get(&request.driver_id)
        .ok_or_else(|| {
            ApiError::unprocessable(
                "unknown_driver",
                format!("no driver {:?} is loaded", request.driver_id),
            )
        })?;
    if let Err(violations) = driver.validate_settings(&request.settings) {
        return Err(ApiError::unprocessable(
            "invalid_settings",
            format!(
                "settings do not match the {} driver's schema",
                driver.info.id
            ),
        )
        .with_details(json!(violations)));
    }
    let id = match request.installation_id {
        Some(id) => InstallationId::parse(&id)
            .map_err(|_| ApiError::bad_request("installation_id must match [A-Za-z0-9_-]{1,64}"))?,
        None => InstallationId::generate(),
    };
    if !state
        .services
        .runtime
        .policy()
        .permits_installation(driver.info.id.as_str(), id.as_str())
    {
        return Err(ApiError::unprocessable(
            "driver_not_permitted",
            format!(
                "the operator's policy ([drivers.{}] installations) does not let {id} use this driver",
                driver.info.id
            ),
        ));
    }
    let account_key = driver.account_key(&request.settings);
    if let Some(key) = &account_key
        && key.len() > crate::pipeline::MAX_EVENT_ID
    {
        return Err(ApiError::unprocessable(
            "invalid_settings",
            format!(
                "the account key is {} bytes; at most {}",
                key.len(),
                crate::pipeline::MAX_EVENT_ID
            ),
        ));
    }
    let installation = state
        .services
        .store
        .create_installation(NewInstallation {
            id,
            driver_id: driver.info.id.clone(),
            account_key,
            settings: request.settings,
        })
        .await?;
    // A webhook may have arrived for it before it existed.
    state.services.installations.invalidate_unknown();
    state.scheduler.schedule(&installation).await?;
    let polling = state.services.store.poll_status(&installation.id).await?;
    tracing::info!(installation = %installation.id, driver = %installation.driver_id, "installation created");
    Ok((
        StatusCode::CREATED,
        Json(installation_json(
            &state,
            &installation,
            Status {
                auth: None,
                polling: polling.as_ref(),
            },
        )),
    )
        .into_response())
}

/// Most bytes of an installation's settings (as JSON): they are read by every call and
/// listed with the installation.
pub const MAX_SETTINGS_BYTES: usize = 64 * 1024;

/// Settings past [`MAX_SETTINGS_BYTES`] are refused before the driver's schema sees them.
fn check_settings_size(settings: &Value) -> Result<(), ApiError> {
    let size = serde_json::to_vec(settings).map_or(usize::MAX, |v| v.len());
    if size > MAX_SETTINGS_BYTES {
        return Err(ApiError::unprocessable(
            "invalid_settings",
            format!("the settings are {size} bytes of JSON; at most {MAX_SETTINGS_BYTES}"),
        ));
    }
    Ok(())
}

/// `GET /v1/installations`.
#[derive(utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // a schema only
pub(super) struct InstallationList {
    installations: Vec<InstallationView>,
    /// Whether installations follow this page.
    has_more: bool,
    /// The `after` of the next page (the last installation's id); `null` on the last.
    #[schema(required = true)]
    next_cursor: Option<String>,
}

/// `GET /v1/installations` paging: `limit` (1–1000, default 100) and `after` (a
/// `next_cursor`).
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct InstallationPage {
    /// Installations per page, 1 to 1000 (default 100).
    limit: Option<String>,
    /// The `next_cursor` of the page before.
    after: Option<String>,
}

/// Installations in the order they were created, a page at a time.
#[utoipa::path(
    get,
    path = "/v1/installations",
    tag = "installations",
    params(InstallationPage),
    responses(
        (status = 200, description = "A page of installations", body = InstallationList),
        (status = 400, description = "`bad_request`: a bad `limit` or `after`, or another parameter", body = ErrorBody),
        (status = 503, response = Unavailable),
    )
)]
pub async fn list_installations(
    State(state): State<Arc<AppState>>,
    query: Result<axum::extract::Query<InstallationPage>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let page = query
        .map_err(|e| ApiError::bad_request(format!("bad query: {}", e.body_text())))?
        .0;
    let limit = super::error::parse_page_limit(page.limit.as_deref())?;
    let after = match page.after.as_deref() {
        None | Some("") => None,
        Some(a) => Some(
            InstallationId::parse(a)
                .map_err(|_| ApiError::bad_request("after must be a next_cursor"))?,
        ),
    };
    let (all, has_more) = state
        .services
        .store
        .list_installations_page(after.as_ref(), limit)
        .await?;
    let auth = state.services.store.auth_records().await?;
    let polling = state.services.store.poll_statuses().await?;
    let list: Vec<_> = all
        .iter()
        .map(|i| {
            let status = Status {
                auth: auth.get(&i.id),
                polling: polling.get(&i.id),
            };
            installation_json(&state, i, status)
        })
        .collect();
    let next_cursor = has_more
        .then(|| all.last().map(|i| i.id.to_string()))
        .flatten();
    Ok(Json(json!({
        "installations": list,
        "has_more": has_more,
        "next_cursor": next_cursor,
    })))
}

/// One installation.
#[utoipa::path(
    get,
    path = "/v1/installations/{id}",
    tag = "installations",
    params(("id" = String, Path, description = "The installation id")),
    responses(
        (status = 200, description = "The installation", body = InstallationView),
        (status = 404, description = "`not_found`: unknown installation", body = ErrorBody),
        (status = 503, response = Unavailable),
    )
)]
pub async fn get_installation(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id = parse_id(&id)?;
    let store = &state.services.store;
    let installation = store
        .get_installation(&id)
        .await?
        .ok_or_else(|| ApiError::not_found("unknown installation"))?;
    let (auth, polling) = installation_status(&state, &id).await?;
    let status = Status {
        auth: auth.as_ref(),
        polling: polling.as_ref(),
    };
    Ok(Json(installation_json(&state, &installation, status)))
}

/// `GET /v1/installations/{id}/audit`.
#[derive(utoipa::ToSchema)]
#[schema(as = SecretAudit)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // a schema only
pub(super) struct SecretAuditView {
    installation_id: String,
    changes: Vec<SecretChangeView>,
}

/// One change to a secret.
#[derive(utoipa::ToSchema)]
#[schema(as = SecretChange)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // a schema only
struct SecretChangeView {
    /// The secret's name.
    secret: String,
    action: SecretActionName,
    /// RFC 3339 UTC.
    at: String,
}

/// `sluice_store::SecretAction` as the audit log writes it.
#[derive(utoipa::ToSchema)]
#[schema(as = SecretAction)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)] // a schema only
enum SecretActionName {
    Set,
    Captured,
    Rotated,
    Retired,
    Deleted,
}

/// `GET /v1/installations/{id}/audit`: every change to the installation's secrets (which,
/// how, when), oldest first. Never a value.
#[utoipa::path(
    get,
    path = "/v1/installations/{id}/audit",
    tag = "installations",
    params(("id" = String, Path, description = "The installation id")),
    responses(
        (status = 200, description = "The changes, oldest first", body = SecretAuditView),
        (status = 404, description = "`not_found`: unknown installation", body = ErrorBody),
        (status = 503, response = Unavailable),
    )
)]
pub async fn secret_audit(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id = parse_id(&id)?;
    let store = &state.services.store;
    store
        .get_installation(&id)
        .await?
        .ok_or_else(|| ApiError::not_found("unknown installation"))?;
    let changes: Vec<Value> = store
        .secret_audit(&id)
        .await?
        .into_iter()
        .map(|c| json!({"secret": c.name, "action": c.action, "at": c.at}))
        .collect();
    Ok(Json(
        json!({"installation_id": id.as_str(), "changes": changes}),
    ))
}

/// Delete an installation; its stored events stay readable.
#[utoipa::path(
    delete,
    path = "/v1/installations/{id}",
    tag = "installations",
    params(("id" = String, Path, description = "The installation id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "`not_found`: unknown installation", body = ErrorBody),
        (status = 503, response = Unavailable),
    )
)]
pub async fn delete_installation(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    if state
        .services
        .store
        .delete_installation(&parse_id(&id)?)
        .await?
    {
        tracing::info!(installation = %id, "installation deleted");
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found("unknown installation"))
    }
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SecretValue {
    /// Not empty.
    #[schema(min_length = 1)]
    value: String,
}

/// Set a secret the driver declares. Write-only: no route returns a value.
#[utoipa::path(
    put,
    path = "/v1/installations/{id}/secrets/{name}",
    tag = "installations",
    params(
        ("id" = String, Path, description = "The installation id"),
        ("name" = String, Path, description = "A secret the installation's driver declares"),
    ),
    request_body = SecretValue,
    responses(
        (status = 204, description = "Stored, encrypted; the change is in the audit log"),
        (status = 400, description = "`bad_request`: malformed JSON or an unknown field", body = ErrorBody),
        (status = 404, description = "`not_found`: unknown installation", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`", body = ErrorBody),
        (status = 422, description = "`unknown_secret` (the driver declares no such secret), `empty_secret`", body = ErrorBody),
        (status = 503, response = Unavailable),
    )
)]
pub async fn put_secret(
    State(state): State<Arc<AppState>>,
    Path((id, name)): Path<(String, String)>,
    payload: Result<Json<SecretValue>, JsonRejection>,
) -> Result<StatusCode, ApiError> {
    let id = parse_id(&id)?;
    let value = body(payload)?.value;
    if value.is_empty() {
        // An empty credential is never what an operator meant, and an empty webhook secret
        // would make every HMAC a driver checks computable by anyone.
        return Err(ApiError::unprocessable(
            "empty_secret",
            format!("secret {name:?} needs a value; an empty one is refused"),
        ));
    }
    let installation = state
        .services
        .store
        .get_installation(&id)
        .await?
        .ok_or_else(|| ApiError::not_found("unknown installation"))?;
    check_declared(&state, &installation, &name)?;
    state
        .services
        .store
        .put_secret(&id, &name, value.as_bytes())
        .await?;
    // The value is never logged: only which secret changed.
    tracing::info!(installation = %id, secret = %name, "secret set");
    Ok(StatusCode::NO_CONTENT)
}
