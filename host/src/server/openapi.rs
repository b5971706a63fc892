//! `GET /v1/openapi.json`: the OpenAPI 3.1 description of every route, generated from the
//! handlers' `#[utoipa::path]` attributes.
//!
//! The router and the document are built from the same lists of `routes!` (see
//! `super::router`): a route is registered by its documented handler or not at all, and
//! what the document says about the admin token follows from the layer actually applied.
//! The answers every route shares (a refused body, a missing token) are added here, once.

use axum::Extension;
use axum::response::{IntoResponse, Response};
use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{Components, Ref, RefOr};
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouter};

use super::error::{ErrorBody, PayloadTooLarge, RequestTimeout, Unauthorized, Unavailable};

/// The security scheme of the admin routes.
pub const ADMIN_TOKEN: &str = "admin_token";

/// The document, serialized once when the router is built (a clone shares the bytes).
#[derive(Clone)]
pub struct Document(pub axum::body::Bytes);

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Sluice",
        description = "Sluice's HTTP API: provider webhooks, the OAuth routes, the admin API \
            under `/v1` and the probes. The prose reference is `docs/admin-api.md`."
    ),
    components(
        schemas(ErrorBody),
        responses(Unauthorized, RequestTimeout, PayloadTooLarge, Unavailable)
    ),
    tags(
        (name = "webhooks", description = "Provider traffic, verified by the driver"),
        (name = "oauth", description = "The account owner's browser, redirected by the provider"),
        (name = "drivers", description = "The loaded drivers"),
        (name = "installations", description = "Installations, their secrets and their life"),
        (name = "events", description = "Normalized events, for the Processing Engine"),
        (name = "dead-letters", description = "Raw events whose normalization failed"),
        (name = "endpoints", description = "Outbound webhook endpoints and sinks"),
        (name = "probes", description = "Liveness, readiness, metrics"),
        (name = "openapi", description = "This document"),
    )
)]
struct Base;

/// `GET /v1/openapi.json`. Public: it describes the API and holds no data (docs/security.md).
#[utoipa::path(
    get,
    path = "/v1/openapi.json",
    operation_id = "openapi",
    tag = "openapi",
    responses(
        (status = 200, description = "This document (OpenAPI 3.1)", content_type = "application/json", body = serde_json::Value),
    )
)]
pub async fn document(Extension(document): Extension<Document>) -> Response {
    ([("content-type", "application/json")], document.0).into_response()
}

/// The routers of `public` and `admin` routes (the latter marked as needing the admin token
/// in the document; `guard` applies the layer that enforces it), merged, and the document.
pub fn build<S>(
    public: Vec<UtoipaMethodRouter<S>>,
    admin: Vec<UtoipaMethodRouter<S>>,
    guard: impl FnOnce(OpenApiRouter<S>) -> OpenApiRouter<S>,
) -> (axum::Router<S>, utoipa::openapi::OpenApi)
where
    S: Clone + Send + Sync + 'static,
{
    let collect = |routes: Vec<UtoipaMethodRouter<S>>| {
        routes
            .into_iter()
            .fold(OpenApiRouter::new(), |router, route| router.routes(route))
    };
    let mut admin = collect(admin);
    for operation in operations(admin.get_openapi_mut()) {
        operation.security = Some(vec![SecurityRequirement::new(
            ADMIN_TOKEN,
            Vec::<String>::new(),
        )]);
        shared_response(operation, "401", "Unauthorized");
    }
    let (router, paths) = collect(public).merge(guard(admin)).split_for_parts();
    let mut document = Base::openapi();
    document.merge(paths);
    for operation in operations(&mut document) {
        // Every body is read before any handler runs (`super::buffer_body`).
        shared_response(operation, "408", "RequestTimeout");
        shared_response(operation, "413", "PayloadTooLarge");
    }
    document
        .components
        .get_or_insert_with(Components::new)
        .add_security_scheme(
            ADMIN_TOKEN,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "`Authorization: Bearer <admin token>` (`SLUICE_ADMIN_TOKEN`, or \
                         `<data dir>/admin.token`); the scheme is case-insensitive",
                    ))
                    .build(),
            ),
        );
    (router, document)
}

/// Every operation of the document.
fn operations(
    document: &mut utoipa::openapi::OpenApi,
) -> impl Iterator<Item = &mut utoipa::openapi::path::Operation> {
    document.paths.paths.values_mut().flat_map(|item| {
        [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.options,
            &mut item.head,
            &mut item.patch,
            &mut item.trace,
        ]
        .into_iter()
        .flatten()
    })
}

/// A `$ref` to the shared response `name` for `status`, unless the route describes its own.
fn shared_response(operation: &mut utoipa::openapi::path::Operation, status: &str, name: &str) {
    operation
        .responses
        .responses
        .entry(status.to_string())
        .or_insert_with(|| RefOr::Ref(Ref::from_response_name(name)));
}
