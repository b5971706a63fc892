//! `previous`: a small, real webhook driver built against the **previous** `sluice:driver`
//! world, `wit/` beside this crate: a verbatim copy of the WIT as it was at `0.6.0`, never
//! updated. The host's tests load it on the current host to show that a driver built
//! against an older patch keeps working without a rebuild (docs/driver-guide.md, 6.5).
//!
//! A delivery carries its shared secret in `X-Previous-Token`, compared by the host with
//! the installation's `webhook_token`; the body is one event,
//! `{"id": "evt_1", "type": "customer.created", "created": 1700000000,
//!   "customer": {"id": "cus_1", "email": "ada@example.com", "name": "Ada Lovelace"}}`,
//! normalized to a `customer` record (other types are `unmapped`). It logs each event it
//! accepts: `log` is an interface the current world has added a function to, so linking it
//! shows that the older, smaller import still resolves.
//!
//! With `claims-0-5` or `claims-0-7` its metadata claims a world of another minor, so the
//! host must refuse it. Written with `wit-bindgen` directly, not the SDK, which follows the
//! current world.

wit_bindgen::generate!({
    path: "wit",
    world: "sluice:driver/driver",
});

use exports::sluice::driver::auth::{self, ScopeCheck, TokenGrant};
use exports::sluice::driver::ingest::{self, PollResult, RawEvent, ReceivedEvent, WebhookOutcome};
use exports::sluice::driver::metadata::{self, AuthKind, DriverInfo, IngestionMode};
use exports::sluice::driver::normalize;
use serde_json::Value;
use sluice::driver::canonical::{CanonicalRecord, Change, Customer, RecordData, Unmapped};
use sluice::driver::types::{CallContext, Datetime, DriverError, IncomingRequest};
use sluice::driver::{log, secrets};

/// The world this driver was built against: the version of `wit/`, unless a feature makes
/// it claim another.
const WIT_VERSION: &str = if cfg!(feature = "claims-0-5") {
    "0.5.3"
} else if cfg!(feature = "claims-0-7") {
    "0.7.0"
} else {
    "0.6.0"
};

/// The header a delivery's shared secret travels in.
const TOKEN_HEADER: &str = "X-Previous-Token";
/// The installation secret it must equal.
const TOKEN_SECRET: &str = "webhook_token";

struct Previous;

impl metadata::Guest for Previous {
    fn get() -> DriverInfo {
        DriverInfo {
            id: "previous".into(),
            version: "0.1.0".into(),
            display_name: "Previous world (test driver)".into(),
            auth_kind: AuthKind::SharedSecret,
            ingestion_modes: vec![IngestionMode::Webhook],
            settings_schema: r#"{"type":"object","properties":{},"additionalProperties":false}"#
                .into(),
            outbound_hosts: vec![],
            secrets: vec![metadata::SecretSpec {
                name: TOKEN_SECRET.into(),
                description: "The shared secret every delivery carries in X-Previous-Token".into(),
                required: true,
                sent_to: vec![],
                header: None,
            }],
            wit_version: WIT_VERSION.into(),
            webhook_signing: vec![metadata::SigningHeader {
                name: TOKEN_HEADER.into(),
                template: "{secret}".into(),
            }],
        }
    }
}

impl auth::Guest for Previous {
    fn authorize_url(_: CallContext, _: auth::Authorization) -> Result<String, DriverError> {
        Err(DriverError::Unsupported("previous has no OAuth".into()))
    }

    fn exchange_code(_: CallContext, _: auth::Callback) -> Result<TokenGrant, DriverError> {
        Err(DriverError::Unsupported("previous has no OAuth".into()))
    }

    fn refresh(_: CallContext) -> Result<TokenGrant, DriverError> {
        Err(DriverError::Unsupported("previous has no tokens".into()))
    }

    fn validate_scopes(_: CallContext, _: Vec<String>) -> Result<ScopeCheck, DriverError> {
        Ok(ScopeCheck { missing: vec![] })
    }

    fn revoke(_: CallContext) -> Result<(), DriverError> {
        Err(DriverError::Unsupported("previous has no tokens".into()))
    }
}

impl ingest::Guest for Previous {
    fn route_key(_: IncomingRequest) -> Option<String> {
        None
    }

    fn receive(ctx: CallContext, request: IncomingRequest) -> Result<WebhookOutcome, DriverError> {
        verify(&request)?;
        let body: Value = serde_json::from_slice(&request.body)
            .map_err(|e| DriverError::BadRequest(format!("the body is not JSON: {e}")))?;
        let text = |key: &str| body.get(key).and_then(Value::as_str).map(str::to_string);
        let id = text("id")
            .filter(|id| !id.is_empty())
            .ok_or_else(|| DriverError::BadRequest("the body has no string `id`".into()))?;
        let event_type = text("type")
            .ok_or_else(|| DriverError::BadRequest("the body has no string `type`".into()))?;
        let raw = RawEvent {
            occurred_at: body
                .get("created")
                .and_then(Value::as_i64)
                .map(|seconds| Datetime {
                    seconds,
                    nanoseconds: 0,
                }),
            provider_event_id: id,
            event_type,
            account_key: None,
            payload: request.body,
            api_version: None,
        };
        log::log(
            log::Level::Info,
            &format!(
                "event {} ({}) accepted",
                raw.provider_event_id, raw.event_type
            ),
        );
        let records = <Previous as normalize::Guest>::normalize(ctx, raw.clone());
        Ok(WebhookOutcome {
            events: vec![ReceivedEvent { raw, records }],
            reply: None,
            revoked: None,
        })
    }

    fn poll(_: CallContext, _: Option<String>) -> Result<PollResult, DriverError> {
        Err(DriverError::Unsupported("previous is webhook-only".into()))
    }

    fn backfill_cursor(_: CallContext, _: Datetime) -> Result<String, DriverError> {
        Err(DriverError::Unsupported("previous is webhook-only".into()))
    }
}

/// The delivery's token must equal the installation's secret (compared by the host).
fn verify(request: &IncomingRequest) -> Result<(), DriverError> {
    let token = request
        .headers
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(TOKEN_HEADER))
        .map(|(_, value)| value.as_bytes())
        .ok_or_else(|| DriverError::Unauthorized(format!("{TOKEN_HEADER} is missing")))?;
    match secrets::equals(TOKEN_SECRET, token) {
        Ok(true) => Ok(()),
        Ok(false) => Err(DriverError::Unauthorized(format!(
            "{TOKEN_HEADER} does not match"
        ))),
        Err(secrets::Error::NotFound(_)) => Err(DriverError::InvalidSettings(format!(
            "the installation has no {TOKEN_SECRET}"
        ))),
        Err(e) => Err(DriverError::Internal(format!("{e:?}"))),
    }
}

impl normalize::Guest for Previous {
    fn normalize(_: CallContext, event: RawEvent) -> Result<Vec<CanonicalRecord>, DriverError> {
        let body: Value = serde_json::from_slice(&event.payload)
            .map_err(|e| DriverError::BadRequest(format!("the payload is not JSON: {e}")))?;
        let customer = body.get("customer");
        let field = |key: &str| {
            customer
                .and_then(|c| c.get(key))
                .and_then(Value::as_str)
                .map(str::to_string)
        };
        let data = match (event.event_type.as_str(), field("id")) {
            ("customer.created", Some(external_id)) => RecordData::Customer(Customer {
                external_id,
                email: field("email"),
                name: field("name"),
                first_name: None,
                last_name: None,
                phone: None,
                address: None,
                created_at: event.occurred_at,
                updated_at: None,
                metadata: vec![],
            }),
            ("customer.created", None) => RecordData::Unmapped(Unmapped {
                external_id: None,
                object_type: Some("customer".into()),
                reason: Some("the customer has no string `id`".into()),
            }),
            (_, external_id) => RecordData::Unmapped(Unmapped {
                external_id,
                object_type: customer.map(|_| "customer".into()),
                reason: None,
            }),
        };
        let change = if event.event_type == "customer.created" {
            Change::Created
        } else {
            Change::Observed
        };
        Ok(vec![CanonicalRecord {
            change,
            data,
            warnings: vec![],
            enriched_from: vec![],
        }])
    }
}

export!(Previous);
