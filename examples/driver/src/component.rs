//! The component glue: the WIT exports, each a thin call into the plain modules.

use sluice_sdk::bindings::exports::sluice::driver::{auth, ingest, metadata, normalize as norm};
use sluice_sdk::canonical::CanonicalRecord;
use sluice_sdk::types::{CallContext, IncomingRequest, RawEvent};
use sluice_sdk::{DriverError, error, headers, verify};

use crate::{DRIVER_ID, WEBHOOK_SECRET, normalize, webhook};

/// No settings: the schema accepts only `{}`.
const SETTINGS_SCHEMA: &str = r#"{"type":"object","additionalProperties":false,"properties":{}}"#;

const NO_OAUTH: &str = "acme signs webhooks with a shared secret; there is no OAuth";

struct Acme;

sluice_sdk::export!(Acme);

impl metadata::Guest for Acme {
    fn get() -> metadata::DriverInfo {
        metadata::DriverInfo {
            id: DRIVER_ID.into(),
            version: env!("CARGO_PKG_VERSION").into(),
            display_name: "Acme Payments".into(),
            auth_kind: metadata::AuthKind::SharedSecret,
            ingestion_modes: vec![metadata::IngestionMode::Webhook],
            settings_schema: SETTINGS_SCHEMA.into(),
            outbound_hosts: Vec::new(),
            secrets: vec![metadata::SecretSpec {
                name: WEBHOOK_SECRET.into(),
                description: "The key Acme signs webhooks with".into(),
                required: true,
            }],
            wit_version: "0.1.0".into(),
        }
    }
}

impl auth::Guest for Acme {
    fn verify_webhook(_: CallContext, request: IncomingRequest) -> Result<(), DriverError> {
        let header = headers::get(&request.headers, webhook::SIGNATURE_HEADER);
        // The host computes the HMAC with the secret and compares in constant time.
        verify::hmac_sha256_hex(
            WEBHOOK_SECRET,
            &request.body,
            webhook::signature_hex(header),
            webhook::SIGNATURE_HEADER,
        )
    }

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
        Err(error::unsupported(NO_OAUTH))
    }
}

impl ingest::Guest for Acme {
    fn route_key(_: IncomingRequest) -> Option<String> {
        None // Acme bodies name no account: use the installation's own webhook URL
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

    fn poll(_: CallContext, _: Option<String>) -> Result<ingest::PollResult, DriverError> {
        Err(error::unsupported("acme only pushes webhooks"))
    }
}

impl norm::Guest for Acme {
    fn normalize(_: CallContext, event: RawEvent) -> Result<Vec<CanonicalRecord>, DriverError> {
        normalize::normalize(&event.payload).map_err(error::bad_request)
    }
}
