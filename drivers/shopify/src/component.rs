//! The component glue: wires the plain-Rust modules to the WIT imports and exports.

use sluice_sdk::bindings::exports::sluice::driver::{auth, ingest, metadata, normalize as norm};
use sluice_sdk::bindings::sluice::driver::{clock, http, log, secrets};
use sluice_sdk::types::{CallContext, IncomingRequest};
use sluice_sdk::{DriverError, error, headers, verify};

use crate::oauth::{self, CallbackError};
use crate::poll::{self, Cursor};
use crate::webhook::{self, VerifyError};
use crate::{
    ACCESS_TOKEN, ACCESS_TOKEN_HEADER, CLIENT_ID, CLIENT_SECRET, DRIVER_ID, REFRESH_TOKEN,
    WEBHOOK_SECRET, normalize, settings,
};

struct Shopify;

sluice_sdk::export!(Shopify);

fn load_settings(ctx: &CallContext) -> Result<settings::Settings, DriverError> {
    settings::parse(&ctx.settings).map_err(error::invalid_settings)
}

fn secret(name: &str, description: &str, required: bool) -> metadata::SecretSpec {
    metadata::SecretSpec {
        name: name.into(),
        description: description.into(),
        required,
    }
}

impl metadata::Guest for Shopify {
    fn get() -> metadata::DriverInfo {
        metadata::DriverInfo {
            id: DRIVER_ID.into(),
            version: env!("CARGO_PKG_VERSION").into(),
            display_name: "Shopify".into(),
            auth_kind: metadata::AuthKind::Oauth2,
            ingestion_modes: vec![
                metadata::IngestionMode::Webhook,
                metadata::IngestionMode::Polling,
            ],
            settings_schema: settings::SCHEMA.into(),
            outbound_hosts: vec!["https://*.myshopify.com".into()],
            secrets: vec![
                secret(
                    WEBHOOK_SECRET,
                    "The app's client secret (API secret key): signs webhooks and OAuth callbacks",
                    true,
                ),
                secret(
                    ACCESS_TOKEN,
                    "Admin API access token (X-Shopify-Access-Token), for polling; captured by the OAuth exchange",
                    false,
                ),
                secret(
                    REFRESH_TOKEN,
                    "Refresh token of an expiring offline access token; captured by the OAuth exchange",
                    false,
                ),
                secret(
                    CLIENT_ID,
                    "The app's client id (API key), for the token endpoint when not in the settings",
                    false,
                ),
                secret(
                    CLIENT_SECRET,
                    "The app's client secret for the token endpoint (defaults to webhook_secret)",
                    false,
                ),
            ],
            wit_version: "0.1.0".into(),
        }
    }
}

/// Map a `secrets` failure: a missing secret is the operator's to fix, not a forgery.
fn secrets_error(e: secrets::Error) -> DriverError {
    match e {
        secrets::Error::NotFound(name) => {
            error::invalid_settings(format!("the installation has no {name} secret"))
        }
        other => error::internal(format!("secrets call failed: {other:?}")),
    }
}

fn verify_app_hmac(message: &[u8], candidates: &[Vec<u8>]) -> Result<bool, secrets::Error> {
    secrets::verify_hmac(
        WEBHOOK_SECRET,
        secrets::HmacAlgorithm::Sha256,
        message,
        candidates,
    )
}

/// The secret holding the client secret for the token endpoint.
fn client_secret_name() -> &'static str {
    if secrets::exists(CLIENT_SECRET) {
        CLIENT_SECRET
    } else {
        WEBHOOK_SECRET
    }
}

/// POST a form to the token endpoint, capturing the tokens into secrets.
fn token_request(
    settings: &settings::Settings,
    form: Vec<(String, http::Value)>,
) -> Result<auth::TokenGrant, DriverError> {
    let request = http::Request {
        method: http::Method::Post,
        url: oauth::token_url(settings),
        headers: vec![("Accept".into(), "application/json".into())],
        body: http::Body::Form(form),
        credential: None,
        capture: vec![
            http::Capture {
                pointer: "/access_token".into(),
                secret: ACCESS_TOKEN.into(),
            },
            http::Capture {
                pointer: "/refresh_token".into(),
                secret: REFRESH_TOKEN.into(),
            },
        ],
        timeout_ms: Some(30_000),
    };
    let response = http::send(&request).map_err(|e| error::from_http(e, "Shopify"))?;
    match response.status {
        200..=299 => {
            let grant = oauth::parse_grant(&response.body)
                .map_err(|e| error::upstream(response.status, e, false))?;
            Ok(auth::TokenGrant {
                scopes: grant.scopes,
                expires_in: grant.expires_in,
                account_key: Some(settings.shop.clone()),
            })
        }
        status => Err(error::from_status(
            status,
            &response.headers,
            poll::error_message(status, &response.body),
        )),
    }
}

impl auth::Guest for Shopify {
    fn authorize_url(
        ctx: CallContext,
        redirect_uri: String,
        state: String,
    ) -> Result<String, DriverError> {
        let settings = load_settings(&ctx)?;
        oauth::authorize_url(&settings, &redirect_uri, &state).map_err(error::unsupported)
    }

    fn exchange_code(
        ctx: CallContext,
        callback_query: String,
        _redirect_uri: String,
    ) -> Result<auth::TokenGrant, DriverError> {
        let settings = load_settings(&ctx)?;
        let now = clock::now().seconds;
        let callback = oauth::verify_callback(&settings, &callback_query, now, verify_app_hmac)
            .map_err(|e| match e {
                CallbackError::Check(e) => secrets_error(e),
                CallbackError::MissingCode => error::bad_request("the callback has no code"),
                other => error::unauthorized(format!("OAuth callback refused: {other:?}")),
            })?;
        let form = oauth::code_form(
            oauth::client_id_value(&settings, CLIENT_ID),
            client_secret_name(),
            &callback.code,
        );
        token_request(&settings, form)
    }

    fn refresh(ctx: CallContext) -> Result<auth::TokenGrant, DriverError> {
        let settings = load_settings(&ctx)?;
        if !secrets::exists(REFRESH_TOKEN) {
            return Err(error::unsupported(
                "no refresh_token: the access token does not expire",
            ));
        }
        let form = oauth::refresh_form(
            oauth::client_id_value(&settings, CLIENT_ID),
            client_secret_name(),
            REFRESH_TOKEN,
        );
        token_request(&settings, form)
    }

    fn validate_scopes(
        ctx: CallContext,
        granted: Vec<String>,
    ) -> Result<auth::ScopeCheck, DriverError> {
        let settings = load_settings(&ctx)?;
        Ok(auth::ScopeCheck {
            missing: oauth::missing_scopes(&settings.scopes, &granted),
        })
    }

    fn verify_webhook(_: CallContext, request: IncomingRequest) -> Result<(), DriverError> {
        webhook::verify(&request.headers, &request.body, |body, header| {
            verify::hmac_sha256_base64(WEBHOOK_SECRET, body, header, "X-Shopify-Hmac-Sha256")
        })
        .map_err(|e| match e {
            VerifyError::MissingHmac => error::unauthorized("missing X-Shopify-Hmac-Sha256 header"),
            VerifyError::MissingBody => error::unauthorized("empty body"),
            VerifyError::Check(e) => e,
        })
    }
}

impl ingest::Guest for Shopify {
    fn route_key(request: IncomingRequest) -> Option<String> {
        webhook::route_key(&request.headers)
    }

    fn handle_webhook(
        ctx: CallContext,
        request: IncomingRequest,
    ) -> Result<ingest::WebhookOutcome, DriverError> {
        let settings = load_settings(&ctx)?;
        let events = match webhook::handle(&settings, &request.headers, &request.body)
            .map_err(error::bad_request)?
        {
            webhook::Outcome::Event(event) => {
                if let Some(version) = webhook::header(&request.headers, webhook::API_VERSION) {
                    log::log(
                        log::Level::Debug,
                        &format!(
                            "webhook {} ({}) rendered with API version {version}",
                            event.provider_event_id, event.event_type
                        ),
                    );
                }
                vec![*event]
            }
            webhook::Outcome::Ignored { topic } => {
                log::log(
                    log::Level::Info,
                    &format!("topic {topic} is not in webhook_topics: acknowledged, not stored"),
                );
                Vec::new()
            }
        };
        Ok(ingest::WebhookOutcome {
            events,
            reply: None,
        })
    }

    fn poll(ctx: CallContext, cursor: Option<String>) -> Result<ingest::PollResult, DriverError> {
        let settings = load_settings(&ctx)?;
        let cursor = Cursor::parse(cursor.as_deref());
        let request = http::Request {
            method: http::Method::Get,
            url: poll::orders_url(&settings, &cursor),
            headers: vec![("Accept".into(), "application/json".into())],
            body: http::Body::Empty,
            credential: Some(http::Credential::Header(http::HeaderCredential {
                name: ACCESS_TOKEN_HEADER.into(),
                secret: ACCESS_TOKEN.into(),
            })),
            capture: Vec::new(),
            timeout_ms: Some(30_000),
        };
        let response = http::send(&request).map_err(|e| error::from_http(e, "Shopify"))?;
        match response.status {
            200..=299 => {
                let link = headers::get(&response.headers, "link");
                let page = poll::parse_page(&settings, &response.body, link, &cursor)
                    .map_err(|e| error::upstream(response.status, e, true))?;
                Ok(ingest::PollResult {
                    events: page.events,
                    next_cursor: Some(page.next.to_text()),
                    has_more: page.has_more,
                    retry_after_ms: None,
                })
            }
            status => Err(error::from_status(
                status,
                &response.headers,
                poll::error_message(status, &response.body),
            )),
        }
    }
}

impl norm::Guest for Shopify {
    fn normalize(
        _: CallContext,
        event: ingest::RawEvent,
    ) -> Result<Vec<sluice_sdk::canonical::CanonicalRecord>, DriverError> {
        normalize::normalize(&event.event_type, &event.payload)
            .map_err(|e| error::bad_request(e.to_string()))
    }
}
