//! The component glue: wires the plain-Rust modules to the WIT imports and exports.

use sluice_sdk::bindings::exports::sluice::driver::{auth, ingest, metadata, normalize as norm};
use sluice_sdk::bindings::sluice::driver::{clock, http, secrets};
use sluice_sdk::types::{CallContext, IncomingRequest};
use sluice_sdk::{DriverError, error, headers};

use crate::poll::{self, Cursor};
use crate::{API_KEY, DRIVER_ID, NO_OAUTH, WEBHOOK_SECRET, events, normalize, settings, signature};

struct Stripe;

sluice_sdk::export!(Stripe);

fn load_settings(ctx: &CallContext) -> Result<settings::Settings, DriverError> {
    settings::parse(&ctx.settings).map_err(error::invalid_settings)
}

impl metadata::Guest for Stripe {
    fn get() -> metadata::DriverInfo {
        metadata::DriverInfo {
            id: DRIVER_ID.into(),
            version: env!("CARGO_PKG_VERSION").into(),
            display_name: "Stripe".into(),
            auth_kind: metadata::AuthKind::SharedSecret,
            ingestion_modes: vec![
                metadata::IngestionMode::Webhook,
                metadata::IngestionMode::Polling,
            ],
            settings_schema: settings::SCHEMA.into(),
            outbound_hosts: vec![settings::DEFAULT_API_BASE.into()],
            secrets: vec![
                metadata::SecretSpec {
                    name: WEBHOOK_SECRET.into(),
                    description: "The endpoint's webhook signing secret (whsec_…)".into(),
                    required: true,
                },
                metadata::SecretSpec {
                    name: API_KEY.into(),
                    description:
                        "A secret or restricted API key with read access to events, for polling"
                            .into(),
                    required: false,
                },
            ],
            wit_version: "0.1.0".into(),
        }
    }
}

impl auth::Guest for Stripe {
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

    fn verify_webhook(ctx: CallContext, request: IncomingRequest) -> Result<(), DriverError> {
        let settings = load_settings(&ctx)?;
        let header = headers::get(&request.headers, signature::HEADER);
        let now = clock::now().seconds;
        let result = signature::verify(
            header,
            &request.body,
            now,
            Some(settings.tolerance_seconds),
            |message, candidates| {
                secrets::verify_hmac(
                    WEBHOOK_SECRET,
                    secrets::HmacAlgorithm::Sha256,
                    message,
                    candidates,
                )
            },
        );
        result.map_err(|e| match e {
            signature::SignatureError::Verifier(secrets::Error::NotFound(_)) => {
                error::invalid_settings("the installation has no webhook_secret")
            }
            signature::SignatureError::Verifier(other) => {
                error::internal(format!("secrets.verify-hmac failed: {other:?}"))
            }
            other => error::unauthorized(other.to_string()),
        })
    }
}

impl ingest::Guest for Stripe {
    fn route_key(request: IncomingRequest) -> Option<String> {
        events::route_key(&request.body)
    }

    fn handle_webhook(
        _: CallContext,
        request: IncomingRequest,
    ) -> Result<ingest::WebhookOutcome, DriverError> {
        let event = events::raw_event(&request.body).map_err(error::bad_request)?;
        Ok(ingest::WebhookOutcome {
            events: vec![event],
            reply: None,
        })
    }

    fn poll(ctx: CallContext, cursor: Option<String>) -> Result<ingest::PollResult, DriverError> {
        let settings = load_settings(&ctx)?;
        let cursor = Cursor::parse(cursor.as_deref());
        let mut request_headers = vec![("Accept".to_string(), "application/json".to_string())];
        if let Some(account) = &settings.account {
            request_headers.push(("Stripe-Account".to_string(), account.clone()));
        }
        let request = http::Request {
            method: http::Method::Get,
            url: poll::events_url(&settings.api_base, &cursor),
            headers: request_headers,
            body: http::Body::Empty,
            credential: Some(http::Credential::Bearer(API_KEY.into())),
            capture: Vec::new(),
            timeout_ms: Some(30_000),
        };
        let response = http::send(&request).map_err(|e| error::from_http(e, "Stripe"))?;
        match response.status {
            200..=299 => {
                let page = poll::parse_page(&response.body, &cursor)
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

impl norm::Guest for Stripe {
    fn normalize(
        _: CallContext,
        event: ingest::RawEvent,
    ) -> Result<Vec<sluice_sdk::canonical::CanonicalRecord>, DriverError> {
        normalize::normalize_payload(&event.payload).map_err(|e| error::bad_request(e.to_string()))
    }
}
