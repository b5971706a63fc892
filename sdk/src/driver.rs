//! The driver trait: a driver says what is provider-specific and nothing else.
//!
//! Implement [`Driver`] — its [`metadata`](Driver::metadata), its
//! [`normalize`](Driver::normalize), and whichever of webhooks, polling and OAuth the
//! provider has — then register it:
//!
//! ```ignore
//! use sluice_sdk::driver::{Context, Driver, Metadata, SecretSpec};
//!
//! struct Acme;
//!
//! impl Driver for Acme {
//!     type Settings = sluice_sdk::driver::NoSettings;
//!
//!     fn metadata() -> Metadata {
//!         Metadata::new("acme", env!("CARGO_PKG_VERSION"), "Acme Payments")
//!             .webhooks()
//!             .secret(SecretSpec::required("webhook_secret", "The key Acme signs with"))
//!     }
//!
//!     fn verify_webhook(_: &Context<Self::Settings>, request: &IncomingRequest) -> Result<(), DriverError> { … }
//!     fn handle_webhook(_: &Context<Self::Settings>, request: &IncomingRequest) -> Result<WebhookOutcome, DriverError> { … }
//!     fn normalize(_: &Context<Self::Settings>, event: &RawEvent) -> Result<Vec<CanonicalRecord>, DriverError> { … }
//! }
//!
//! sluice_sdk::register_driver!(Acme);
//! ```
//!
//! Everything not implemented answers `unsupported` (the host maps that to the right status),
//! the settings arrive parsed into the driver's own type, and the metadata's `wit-version` is
//! the SDK's [`WIT_VERSION`](crate::WIT_VERSION).

use std::marker::PhantomData;

use crate::bindings::exports::sluice::driver::{auth, ingest, metadata, normalize};
use crate::canonical::CanonicalRecord;
use crate::types::{CallContext, IncomingRequest, RawEvent};
use crate::{DriverError, error};

pub use crate::bindings::exports::sluice::driver::auth::{
    Authorization, Callback, ScopeCheck, TokenGrant,
};
pub use crate::bindings::exports::sluice::driver::ingest::{
    PollResult, ReceivedEvent, WebhookOutcome, WebhookReply,
};

/// What [`Driver::handle_webhook`] makes of a verified delivery: its raw events (each then
/// normalized by [`Driver::normalize`]) and, optionally, the reply the provider expects.
#[derive(Debug, Clone, Default)]
pub struct Handled {
    /// Events to store; empty when the delivery is acknowledged but not kept.
    pub events: Vec<RawEvent>,
    /// A reply instead of the host's default `200`.
    pub reply: Option<WebhookReply>,
    /// Set when the delivery says the installation's authorization was revoked (Stripe
    /// `account.application.deauthorized`, Shopify `app/uninstalled`): the reason. The host
    /// marks the installation `revoked` once the delivery is stored.
    pub revoked: Option<String>,
}

impl Handled {
    /// One raw event, the default reply.
    pub fn event(event: RawEvent) -> Self {
        Self {
            events: vec![event],
            ..Self::default()
        }
    }

    /// Say that this delivery revokes the installation's authorization, and why.
    pub fn revoking(mut self, reason: impl Into<String>) -> Self {
        self.revoked = Some(reason.into());
        self
    }
}
pub use crate::bindings::exports::sluice::driver::metadata::{AuthKind, IngestionMode};

/// A driver's installation settings, parsed from the JSON text the host has already validated
/// against the driver's settings schema. Parse defensively anyway: the message of an `Err`
/// becomes an `invalid-settings` error.
pub trait Settings: Sized {
    /// Parse the settings JSON text.
    fn parse(text: &str) -> Result<Self, String>;
}

/// Settings for a driver that has none (its schema should accept only `{}`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NoSettings;

impl Settings for NoSettings {
    fn parse(_: &str) -> Result<Self, String> {
        Ok(NoSettings)
    }
}

/// The settings as a JSON value, for drivers that read them field by field.
impl Settings for serde_json::Value {
    fn parse(text: &str) -> Result<Self, String> {
        from_json(text)
    }
}

/// Parse settings into any `serde` type; for `Settings::parse` of a `#[derive(Deserialize)]`
/// struct.
pub fn from_json<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, String> {
    let text = if text.trim().is_empty() { "{}" } else { text };
    serde_json::from_str(text).map_err(|e| format!("settings: {e}"))
}

/// Who a call is for: the installation and its parsed settings.
#[derive(Debug, Clone)]
pub struct Context<S> {
    /// The installation's id.
    pub installation_id: String,
    /// The installation's settings.
    pub settings: S,
}

impl<S: Settings> Context<S> {
    fn from_wit(ctx: CallContext) -> Result<Self, DriverError> {
        Ok(Self {
            settings: S::parse(&ctx.settings).map_err(error::invalid_settings)?,
            installation_id: ctx.installation_id,
        })
    }
}

/// What a driver declares about itself (the WIT `driver-info`), built step by step.
#[derive(Debug, Clone)]
pub struct Metadata(metadata::DriverInfo);

/// A secret an installation of the driver may hold.
#[derive(Debug, Clone)]
pub struct SecretSpec(metadata::SecretSpec);

impl SecretSpec {
    /// A secret without which webhooks or polling cannot work. It never leaves the host
    /// until [`sent_to`](Self::sent_to) says where it may go.
    pub fn required(name: &str, description: &str) -> Self {
        Self(metadata::SecretSpec {
            name: name.into(),
            description: description.into(),
            required: true,
            sent_to: Vec::new(),
            header: None,
        })
    }

    /// An origin the host may send this secret to (as a credential or form value):
    /// `https://api.stripe.com`, `https://{shop}` (a settings value), or `{api_base}` (the
    /// origin of a URL setting). Call once per origin.
    pub fn sent_to(mut self, origin: &str) -> Self {
        self.0.sent_to.push(origin.into());
        self
    }

    /// The header this secret is sent in with `Credential::Header`, e.g.
    /// `X-Shopify-Access-Token`.
    pub fn in_header(mut self, name: &str) -> Self {
        self.0.header = Some(name.into());
        self
    }

    /// A secret only some features need.
    pub fn optional(name: &str, description: &str) -> Self {
        Self(metadata::SecretSpec {
            required: false,
            ..Self::required(name, description).0
        })
    }
}

impl Metadata {
    /// `id` (`[a-z][a-z0-9_-]{0,31}`), `version` (semantic; pass `env!("CARGO_PKG_VERSION")`)
    /// and a display name. No auth, no ingestion modes, settings schema `{"type":"object",
    /// "additionalProperties":false}`, until said otherwise.
    pub fn new(id: &str, version: &str, display_name: &str) -> Self {
        Self(metadata::DriverInfo {
            id: id.into(),
            version: version.into(),
            display_name: display_name.into(),
            auth_kind: metadata::AuthKind::None,
            ingestion_modes: Vec::new(),
            settings_schema: r#"{"type":"object","additionalProperties":false}"#.into(),
            outbound_hosts: Vec::new(),
            secrets: Vec::new(),
            wit_version: crate::WIT_VERSION.into(),
            webhook_signing: Vec::new(),
        })
    }

    /// How installations authenticate to the provider.
    pub fn auth(mut self, kind: AuthKind) -> Self {
        self.0.auth_kind = kind;
        self
    }

    /// The provider pushes webhooks.
    pub fn webhooks(mut self) -> Self {
        self.0.ingestion_modes.push(IngestionMode::Webhook);
        self
    }

    /// The driver can poll the provider.
    pub fn polling(mut self) -> Self {
        self.0.ingestion_modes.push(IngestionMode::Polling);
        self
    }

    /// The JSON Schema (draft 2020-12) of the installation settings.
    pub fn settings_schema(mut self, schema: &str) -> Self {
        self.0.settings_schema = schema.into();
        self
    }

    /// An origin the driver calls, e.g. `https://api.stripe.com` (`*.` allowed in the host).
    pub fn outbound(mut self, origin: &str) -> Self {
        self.0.outbound_hosts.push(origin.into());
        self
    }

    /// A secret installations may hold.
    pub fn secret(mut self, spec: SecretSpec) -> Self {
        self.0.secrets.push(spec.0);
        self
    }

    /// One header of the provider's webhook signature, as a template (see the WIT
    /// `signing-header`), so `sluice webhook send` can sign test deliveries.
    pub fn signing_header(mut self, name: &str, template: &str) -> Self {
        self.0.webhook_signing.push(metadata::SigningHeader {
            name: name.into(),
            template: template.into(),
        });
        self
    }

    /// The WIT record.
    pub fn into_info(self) -> metadata::DriverInfo {
        self.0
    }
}

/// The answer of every OAuth export a driver does not implement.
fn no_oauth() -> DriverError {
    error::unsupported("this driver has no OAuth flow")
}

/// One provider's driver. Only [`metadata`](Driver::metadata) and
/// [`normalize`](Driver::normalize) are required; everything else answers `unsupported`.
pub trait Driver: 'static {
    /// The installation settings, parsed.
    type Settings: Settings;

    /// What the driver declares about itself; validated by the host at load time.
    fn metadata() -> Metadata;

    /// Verify a webhook's authenticity (signature, token, timestamp tolerance); return
    /// `unauthorized` to refuse it.
    fn verify_webhook(
        _ctx: &Context<Self::Settings>,
        _request: &IncomingRequest,
    ) -> Result<(), DriverError> {
        Err(error::unsupported("this driver takes no webhooks"))
    }

    /// For app-level webhook URLs: the account the request is for, read from the request
    /// alone (it is not verified yet).
    fn route_key(_request: &IncomingRequest) -> Option<String> {
        None
    }

    /// Turn a verified webhook delivery into raw events.
    fn handle_webhook(
        _ctx: &Context<Self::Settings>,
        _request: &IncomingRequest,
    ) -> Result<Handled, DriverError> {
        Err(error::unsupported("this driver takes no webhooks"))
    }

    /// A whole webhook delivery: [`verify_webhook`](Driver::verify_webhook), then
    /// [`handle_webhook`](Driver::handle_webhook), then [`normalize`](Driver::normalize) of
    /// each raw event (a failure there is that event's, kept as a dead letter). Override it
    /// to do all three in one pass, e.g. to parse the payload once.
    fn receive(
        ctx: &Context<Self::Settings>,
        request: &IncomingRequest,
    ) -> Result<WebhookOutcome, DriverError> {
        Self::verify_webhook(ctx, request)?;
        let handled = Self::handle_webhook(ctx, request)?;
        let events = handled
            .events
            .into_iter()
            .map(|raw| ReceivedEvent {
                records: Self::normalize(ctx, &raw),
                raw,
            })
            .collect();
        Ok(WebhookOutcome {
            events,
            reply: handled.reply,
            revoked: handled.revoked,
        })
    }

    /// Fetch the next page of events after `cursor`.
    fn poll(
        _ctx: &Context<Self::Settings>,
        _cursor: Option<&str>,
    ) -> Result<PollResult, DriverError> {
        Err(error::unsupported("this driver does not poll"))
    }

    /// The cursor `poll` walks a backfill from: the provider's events from `since` to now.
    fn backfill_cursor(
        _ctx: &Context<Self::Settings>,
        _since: &crate::Datetime,
    ) -> Result<String, DriverError> {
        Err(error::unsupported("this driver does not poll"))
    }

    /// Map one raw event to canonical records (`unmapped` for what has no mapping).
    fn normalize(
        ctx: &Context<Self::Settings>,
        event: &RawEvent,
    ) -> Result<Vec<CanonicalRecord>, DriverError>;

    /// The provider URL to send a user to, to grant access: put `request.state` (and, when
    /// the provider supports PKCE, `request.code_challenge` with method `S256`) in it.
    fn authorize_url(
        _ctx: &Context<Self::Settings>,
        _request: &Authorization,
    ) -> Result<String, DriverError> {
        Err(no_oauth())
    }

    /// Check an OAuth callback the provider's way and exchange its code for tokens,
    /// captured by the host (`http::Capture`). The host has checked `state` already.
    fn exchange_code(
        _ctx: &Context<Self::Settings>,
        _callback: &Callback,
    ) -> Result<TokenGrant, DriverError> {
        Err(no_oauth())
    }

    /// Get a new access token (refresh token grant, or client credentials), captured by the
    /// host. The host calls it ahead of expiry and after a `401`, once per installation.
    fn refresh(_ctx: &Context<Self::Settings>) -> Result<TokenGrant, DriverError> {
        Err(no_oauth())
    }

    /// Revoke the installation's grant at the provider. The host forgets the tokens either
    /// way; the default says there is no revocation call.
    fn revoke(_ctx: &Context<Self::Settings>) -> Result<(), DriverError> {
        Err(error::unsupported("this provider has no revocation call"))
    }

    /// Which of the scopes the installation needs are missing from `granted`.
    fn validate_scopes(
        _ctx: &Context<Self::Settings>,
        _granted: &[String],
    ) -> Result<ScopeCheck, DriverError> {
        Err(no_oauth())
    }
}

/// The component's exports for driver `D`; [`register_driver!`](crate::register_driver)
/// exports it.
#[doc(hidden)]
pub struct Exports<D>(PhantomData<D>);

impl<D: Driver> metadata::Guest for Exports<D> {
    fn get() -> metadata::DriverInfo {
        D::metadata().into_info()
    }
}

impl<D: Driver> auth::Guest for Exports<D> {
    fn authorize_url(ctx: CallContext, request: Authorization) -> Result<String, DriverError> {
        D::authorize_url(&Context::from_wit(ctx)?, &request)
    }

    fn exchange_code(ctx: CallContext, callback: Callback) -> Result<TokenGrant, DriverError> {
        D::exchange_code(&Context::from_wit(ctx)?, &callback)
    }

    fn refresh(ctx: CallContext) -> Result<TokenGrant, DriverError> {
        D::refresh(&Context::from_wit(ctx)?)
    }

    fn revoke(ctx: CallContext) -> Result<(), DriverError> {
        D::revoke(&Context::from_wit(ctx)?)
    }

    fn validate_scopes(ctx: CallContext, granted: Vec<String>) -> Result<ScopeCheck, DriverError> {
        D::validate_scopes(&Context::from_wit(ctx)?, &granted)
    }
}

impl<D: Driver> ingest::Guest for Exports<D> {
    fn route_key(request: IncomingRequest) -> Option<String> {
        D::route_key(&request)
    }

    fn receive(ctx: CallContext, request: IncomingRequest) -> Result<WebhookOutcome, DriverError> {
        D::receive(&Context::from_wit(ctx)?, &request)
    }

    fn poll(ctx: CallContext, cursor: Option<String>) -> Result<PollResult, DriverError> {
        D::poll(&Context::from_wit(ctx)?, cursor.as_deref())
    }

    fn backfill_cursor(ctx: CallContext, since: crate::Datetime) -> Result<String, DriverError> {
        D::backfill_cursor(&Context::from_wit(ctx)?, &since)
    }
}

impl<D: Driver> normalize::Guest for Exports<D> {
    fn normalize(ctx: CallContext, event: RawEvent) -> Result<Vec<CanonicalRecord>, DriverError> {
        D::normalize(&Context::from_wit(ctx)?, &event)
    }
}

/// `sluice_sdk::register_driver!(MyDriver);` exports a type implementing [`Driver`] as the
/// component's `sluice:driver` world. Use it once, in the crate root or a module compiled
/// only for `wasm32`.
#[macro_export]
macro_rules! register_driver {
    ($driver:ty) => {
        type __SluiceDriverExports = $crate::driver::Exports<$driver>;
        $crate::export!(__SluiceDriverExports);
    };
}
