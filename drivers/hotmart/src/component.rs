//! The component glue: wires the plain-Rust modules to the WIT imports and exports.

use sluice_sdk::bindings::exports::sluice::driver::{auth, ingest, metadata, normalize as norm};
use sluice_sdk::bindings::sluice::driver::{clock, http, secrets, state};
use sluice_sdk::types::{CallContext, IncomingRequest};
use sluice_sdk::{DriverError, error, paging, verify};

use crate::poll::{self, Cursor};
use crate::{
    ACCESS_TOKEN, CLIENT_ID, CLIENT_SECRET, DRIVER_ID, HOTTOK, NO_OAUTH, normalize, settings,
    webhook,
};

struct Hotmart;

sluice_sdk::export!(Hotmart);

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

impl metadata::Guest for Hotmart {
    fn get() -> metadata::DriverInfo {
        metadata::DriverInfo {
            id: DRIVER_ID.into(),
            version: env!("CARGO_PKG_VERSION").into(),
            display_name: "Hotmart".into(),
            auth_kind: metadata::AuthKind::SharedSecret,
            ingestion_modes: vec![
                metadata::IngestionMode::Webhook,
                metadata::IngestionMode::Polling,
            ],
            settings_schema: settings::SCHEMA.into(),
            outbound_hosts: vec![
                settings::DEFAULT_API_BASE.into(),
                settings::DEFAULT_AUTH_BASE.into(),
            ],
            secrets: vec![
                secret(
                    HOTTOK,
                    "The account's hottok, sent by Hotmart in X-HOTMART-HOTTOK",
                    true,
                ),
                secret(
                    CLIENT_ID,
                    "API client id (Developer Credentials), for polling",
                    false,
                ),
                secret(
                    CLIENT_SECRET,
                    "API client secret (Developer Credentials), for polling",
                    false,
                ),
                secret(
                    ACCESS_TOKEN,
                    "API access token, captured by the host from the token response",
                    false,
                ),
            ],
            wit_version: "0.1.0".into(),
        }
    }
}

impl auth::Guest for Hotmart {
    fn authorize_url(_: CallContext, _: String, _: String) -> Result<String, DriverError> {
        Err(error::unsupported(NO_OAUTH))
    }

    fn exchange_code(
        _: CallContext,
        _: String,
        _: String,
    ) -> Result<auth::TokenGrant, DriverError> {
        Err(error::unsupported(NO_OAUTH))
    }

    fn refresh(_: CallContext) -> Result<auth::TokenGrant, DriverError> {
        Err(error::unsupported(NO_OAUTH))
    }

    fn validate_scopes(_: CallContext, _: Vec<String>) -> Result<auth::ScopeCheck, DriverError> {
        Ok(auth::ScopeCheck {
            missing: Vec::new(),
        })
    }

    fn verify_webhook(_: CallContext, request: IncomingRequest) -> Result<(), DriverError> {
        verify::token(
            HOTTOK,
            webhook::presented_hottok(&request.headers),
            webhook::HOTTOK_WHAT,
        )
    }
}

fn now_ms() -> i64 {
    let now = clock::now();
    now.seconds * 1000 + i64::from(now.nanoseconds / 1_000_000)
}

fn rate_limited(response: &http::Response) -> DriverError {
    let wait = paging::retry_after(&response.headers).unwrap_or(60_000);
    error::rate_limited(wait, poll::error_message(429, &response.body))
}

/// Acquire a token: the host injects the client credentials and captures the token.
fn acquire_token(settings: &settings::Settings) -> Result<(), DriverError> {
    if !secrets::exists(CLIENT_ID) || !secrets::exists(CLIENT_SECRET) {
        return Err(error::invalid_settings(
            "polling needs the client_id and client_secret secrets",
        ));
    }
    let request = http::Request {
        method: http::Method::Post,
        url: poll::token_url(settings),
        headers: vec![("Accept".into(), "application/json".into())],
        body: http::Body::Form(vec![
            (
                "grant_type".into(),
                http::Value::Text("client_credentials".into()),
            ),
            ("client_id".into(), http::Value::Secret(CLIENT_ID.into())),
            (
                "client_secret".into(),
                http::Value::Secret(CLIENT_SECRET.into()),
            ),
        ]),
        credential: Some(http::Credential::Basic(http::BasicCredential {
            username: http::Value::Secret(CLIENT_ID.into()),
            password: http::Value::Secret(CLIENT_SECRET.into()),
        })),
        capture: vec![http::Capture {
            pointer: "/access_token".into(),
            secret: ACCESS_TOKEN.into(),
        }],
        timeout_ms: Some(30_000),
    };
    let now = now_ms();
    let response = http::send(&request).map_err(|e| error::from_http(e, "Hotmart"))?;
    match response.status {
        200..=299 => {
            let expires = poll::token_expires_at(&response.body, now);
            state::set(poll::TOKEN_EXPIRES_AT, expires.to_string().as_bytes())
                .map_err(|e| error::internal(format!("state.set failed: {e}")))?;
            Ok(())
        }
        429 => Err(rate_limited(&response)),
        // Bad client credentials are the operator's to fix.
        400 | 401 | 403 => Err(error::upstream(
            response.status,
            format!(
                "token request refused: {}",
                poll::error_message(response.status, &response.body)
            ),
            false,
        )),
        status => Err(error::upstream_status(
            status,
            poll::error_message(status, &response.body),
        )),
    }
}

fn get_page(url: &str) -> Result<http::Response, DriverError> {
    let request = http::Request {
        method: http::Method::Get,
        url: url.to_string(),
        headers: vec![("Accept".into(), "application/json".into())],
        body: http::Body::Empty,
        credential: Some(http::Credential::Bearer(ACCESS_TOKEN.into())),
        capture: Vec::new(),
        timeout_ms: Some(30_000),
    };
    http::send(&request).map_err(|e| error::from_http(e, "Hotmart"))
}

impl ingest::Guest for Hotmart {
    fn route_key(_: IncomingRequest) -> Option<String> {
        // Hotmart bodies carry no account identifier; see `webhook`.
        None
    }

    fn handle_webhook(
        _: CallContext,
        request: IncomingRequest,
    ) -> Result<ingest::WebhookOutcome, DriverError> {
        let event = webhook::raw_event(&request.body).map_err(error::bad_request)?;
        Ok(ingest::WebhookOutcome {
            events: vec![event],
            reply: None,
        })
    }

    fn poll(ctx: CallContext, cursor: Option<String>) -> Result<ingest::PollResult, DriverError> {
        let settings = load_settings(&ctx)?;
        let cursor = Cursor::parse(cursor.as_deref());
        let page = poll::page_request(&cursor, now_ms(), &settings);
        let url = poll::sales_url(&settings, &page);

        let stored = state::get(poll::TOKEN_EXPIRES_AT);
        let mut fresh = false;
        if !(secrets::exists(ACCESS_TOKEN) && poll::token_usable(stored.as_deref(), now_ms())) {
            acquire_token(&settings)?;
            fresh = true;
        }
        let mut response = get_page(&url)?;
        if response.status == 401 && !fresh {
            // Revoked or expired early: one new token, one retry.
            acquire_token(&settings)?;
            response = get_page(&url)?;
        }
        match response.status {
            200..=299 => {
                let parsed = poll::parse_page(&response.body, &page)
                    .map_err(|e| error::upstream(response.status, e, true))?;
                Ok(ingest::PollResult {
                    events: parsed.events,
                    next_cursor: Some(parsed.next.to_text()),
                    has_more: parsed.has_more,
                    retry_after_ms: None,
                })
            }
            429 => Err(rate_limited(&response)),
            status => Err(error::upstream_status(
                status,
                poll::error_message(status, &response.body),
            )),
        }
    }
}

impl norm::Guest for Hotmart {
    fn normalize(
        _: CallContext,
        event: ingest::RawEvent,
    ) -> Result<Vec<sluice_sdk::canonical::CanonicalRecord>, DriverError> {
        normalize::normalize(&event.event_type, &event.payload).map_err(error::bad_request)
    }
}
