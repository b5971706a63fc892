//! The component glue: Acme's metadata, and each export a thin call into the plain modules.
//! Everything Acme does not have (polling, OAuth, app-level routing) is left to the SDK's
//! defaults, which answer `unsupported`.

use sluice_sdk::canonical::CanonicalRecord;
use sluice_sdk::driver::{AuthKind, Context, Driver, Handled, Metadata, NoSettings, SecretSpec};
use sluice_sdk::types::{IncomingRequest, RawEvent};
use sluice_sdk::{DriverError, error, headers, verify};

use crate::{DRIVER_ID, WEBHOOK_SECRET, normalize, webhook};

struct Acme;

sluice_sdk::register_driver!(Acme);

impl Driver for Acme {
    type Settings = NoSettings;

    fn metadata() -> Metadata {
        Metadata::new(DRIVER_ID, env!("CARGO_PKG_VERSION"), "Acme Payments")
            .auth(AuthKind::SharedSecret)
            .webhooks()
            .secret(SecretSpec::required(
                WEBHOOK_SECRET,
                "The key Acme signs webhooks with",
            ))
            .signing_header(webhook::SIGNATURE_HEADER, "sha256={hmac-sha256-hex:{body}}")
    }

    fn verify_webhook(
        _: &Context<NoSettings>,
        request: &IncomingRequest,
    ) -> Result<(), DriverError> {
        let header = headers::get(&request.headers, webhook::SIGNATURE_HEADER);
        // The host computes the HMAC with the secret and compares in constant time.
        verify::hmac_sha256_hex(
            WEBHOOK_SECRET,
            &request.body,
            webhook::signature_hex(header),
            webhook::SIGNATURE_HEADER,
        )
    }

    fn handle_webhook(
        _: &Context<NoSettings>,
        request: &IncomingRequest,
    ) -> Result<Handled, DriverError> {
        let event = webhook::raw_event(&request.body).map_err(error::bad_request)?;
        Ok(Handled::event(event))
    }

    fn normalize(
        _: &Context<NoSettings>,
        event: &RawEvent,
    ) -> Result<Vec<CanonicalRecord>, DriverError> {
        normalize::normalize(&event.payload).map_err(error::bad_request)
    }
}
