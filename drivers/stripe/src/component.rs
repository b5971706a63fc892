//! The component glue: the Stripe driver's metadata and exports, each a thin call into the
//! plain-Rust modules (which build and test natively).

use sluice_sdk::bindings::sluice::driver::{clock, http, secrets};
use sluice_sdk::canonical::CanonicalRecord;
use sluice_sdk::driver::{
    AuthKind, Context, Driver, Handled, Metadata, PollResult, ReceivedEvent, SecretSpec,
    WebhookOutcome,
};
use sluice_sdk::types::{IncomingRequest, RawEvent};
use sluice_sdk::{DriverError, error, headers};

use crate::poll::{self, Cursor};
use crate::settings::{self, Settings};
use crate::{API_KEY, DRIVER_ID, WEBHOOK_SECRET, events, normalize, signature};

struct Stripe;

sluice_sdk::register_driver!(Stripe);

impl sluice_sdk::driver::Settings for Settings {
    fn parse(text: &str) -> Result<Self, String> {
        settings::parse(text)
    }
}

impl Driver for Stripe {
    type Settings = Settings;

    fn metadata() -> Metadata {
        Metadata::new(DRIVER_ID, env!("CARGO_PKG_VERSION"), "Stripe")
            .auth(AuthKind::SharedSecret)
            .webhooks()
            .polling()
            .settings_schema(settings::SCHEMA)
            .outbound(settings::DEFAULT_API_BASE)
            .secret(SecretSpec::required(
                WEBHOOK_SECRET,
                "The endpoint's webhook signing secret (whsec_…)",
            ))
            .secret(
                SecretSpec::optional(
                    API_KEY,
                    "A secret or restricted API key with read access to events, for polling",
                )
                .sent_to(settings::DEFAULT_API_BASE)
                .sent_to("{api_base}"),
            )
            .signing_header(
                signature::HEADER,
                "t={timestamp},v1={hmac-sha256-hex:{timestamp}.{body}}",
            )
    }

    fn verify_webhook(
        ctx: &Context<Settings>,
        request: &IncomingRequest,
    ) -> Result<(), DriverError> {
        let header = headers::get(&request.headers, signature::HEADER);
        let now = clock::now().seconds;
        let result = signature::verify(
            header,
            &request.body,
            now,
            Some(ctx.settings.tolerance_seconds),
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

    /// Verify, then parse the event once for both its raw event and its records.
    fn receive(
        ctx: &Context<Settings>,
        request: &IncomingRequest,
    ) -> Result<WebhookOutcome, DriverError> {
        Self::verify_webhook(ctx, request)?;
        let event: serde_json::Value = serde_json::from_slice(&request.body)
            .map_err(|e| error::bad_request(format!("body is not JSON: {e}")))?;
        let raw =
            events::raw_event_from(&event, request.body.clone()).map_err(error::bad_request)?;
        let records =
            normalize::normalize_event(&event).map_err(|e| error::bad_request(e.to_string()));
        Ok(WebhookOutcome {
            events: vec![ReceivedEvent { raw, records }],
            reply: None,
        })
    }

    fn route_key(request: &IncomingRequest) -> Option<String> {
        events::route_key(&request.body)
    }

    fn handle_webhook(
        _: &Context<Settings>,
        request: &IncomingRequest,
    ) -> Result<Handled, DriverError> {
        let event = events::raw_event(&request.body).map_err(error::bad_request)?;
        Ok(Handled::event(event))
    }

    fn poll(ctx: &Context<Settings>, cursor: Option<&str>) -> Result<PollResult, DriverError> {
        let settings = &ctx.settings;
        let cursor = Cursor::parse(cursor);
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
                Ok(PollResult {
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

    fn normalize(
        _: &Context<Settings>,
        event: &RawEvent,
    ) -> Result<Vec<CanonicalRecord>, DriverError> {
        normalize::normalize_payload(&event.payload).map_err(|e| error::bad_request(e.to_string()))
    }
}
