//! The component glue: the Stripe driver's metadata and exports, each a thin call into the
//! plain-Rust modules (which build and test natively).

use sluice_sdk::bindings::sluice::driver::{clock, http, secrets, state};
use sluice_sdk::canonical::CanonicalRecord;
use sluice_sdk::driver::{
    AuthKind, Authorization, Callback, Context, Driver, Handled, Metadata, PollResult,
    ReceivedEvent, ScopeCheck, SecretSpec, TokenGrant, WebhookOutcome,
};
use sluice_sdk::types::{IncomingRequest, RawEvent};
use sluice_sdk::{DriverError, error, headers};

use crate::connect::{self, PLATFORM_SECRET_KEY, REFRESH_TOKEN};
use crate::poll::{self, Cursor};
use crate::settings::{self, Settings};
use crate::{API_KEY, DRIVER_ID, WEBHOOK_SECRET, enrich, events, normalize, signature};

/// Where the platform key and refresh token may go: Connect's OAuth host only.
const CONNECT_ORIGINS: [&str; 2] = [settings::DEFAULT_CONNECT_BASE, "{connect_base}"];

/// POST a form to Connect's `/oauth/token`; the host captures the tokens.
fn token_request(
    settings: &Settings,
    form: Vec<(String, http::Value)>,
) -> Result<TokenGrant, DriverError> {
    let url = format!("{}/oauth/token", settings.connect_base);
    let captures = [
        ("/access_token", API_KEY),
        ("/refresh_token", REFRESH_TOKEN),
    ];
    let response = sluice_sdk::oauth::token_request("Stripe", url, form, &captures)?;
    let grant = connect::parse_grant(&response.body)
        .map_err(|e| error::upstream(response.status, e, false))?;
    state::set(connect::ACCOUNT_STATE, grant.stripe_user_id.as_bytes())
        .map_err(|e| error::internal(format!("state.set failed: {e}")))?;
    Ok(TokenGrant {
        scopes: grant.scope.into_iter().collect(),
        expires_in: None,
        account_key: Some(grant.stripe_user_id),
    })
}

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
            .outbound(settings::DEFAULT_CONNECT_BASE)
            .secret(
                SecretSpec::optional(
                    PLATFORM_SECRET_KEY,
                    "The platform's secret key, for Connect OAuth (share it with [drivers.stripe] app_secrets)",
                )
                .sent_to(CONNECT_ORIGINS[0])
                .sent_to(CONNECT_ORIGINS[1]),
            )
            .secret(
                SecretSpec::optional(
                    REFRESH_TOKEN,
                    "The connected account's refresh token, captured by Connect OAuth",
                )
                .sent_to(CONNECT_ORIGINS[0])
                .sent_to(CONNECT_ORIGINS[1]),
            )
            .secret(SecretSpec::required(
                WEBHOOK_SECRET,
                "The endpoint's webhook signing secret (whsec_…)",
            ))
            .secret(
                SecretSpec::optional(
                    API_KEY,
                    "A secret or restricted API key with read access to events (polling) and charges (enrichment); captured by Connect OAuth",
                )
                .sent_to(settings::DEFAULT_API_BASE)
                .sent_to("{api_base}")
                // Connect's token endpoint issues it: the host takes a capture into a
                // secret only from an origin the secret may go to.
                .sent_to(CONNECT_ORIGINS[0])
                .sent_to(CONNECT_ORIGINS[1]),
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
        let mut fetch = ApiFetch::new(&ctx.settings, raw.account_key.as_deref());
        let records = normalize::normalize_event_with(&event, &mut fetch).map_err(normalize_error);
        // The connected account disconnected the platform: its OAuth grant is gone.
        let revoked = (raw.event_type == events::DEAUTHORIZED).then(|| {
            "Stripe: the account deauthorized the application (account.application.deauthorized)"
                .to_string()
        });
        Ok(WebhookOutcome {
            events: vec![ReceivedEvent { raw, records }],
            reply: None,
            revoked,
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

    fn backfill_cursor(
        _: &Context<Settings>,
        since: &sluice_sdk::Datetime,
    ) -> Result<String, DriverError> {
        Ok(poll::backfill_cursor(since.seconds))
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

    fn authorize_url(
        ctx: &Context<Settings>,
        request: &Authorization,
    ) -> Result<String, DriverError> {
        connect::authorize_url(&ctx.settings, &request.redirect_uri, &request.state)
            .map_err(error::invalid_settings)
    }

    fn exchange_code(
        ctx: &Context<Settings>,
        callback: &Callback,
    ) -> Result<TokenGrant, DriverError> {
        let code = connect::callback_code(&callback.query).map_err(error::bad_request)?;
        token_request(&ctx.settings, connect::code_form(&code))
    }

    fn refresh(ctx: &Context<Settings>) -> Result<TokenGrant, DriverError> {
        if !secrets::exists(REFRESH_TOKEN) {
            return Err(error::unsupported(
                "no refresh_token: the installation was not connected with OAuth",
            ));
        }
        token_request(&ctx.settings, connect::refresh_form())
    }

    fn revoke(ctx: &Context<Settings>) -> Result<(), DriverError> {
        let settings = &ctx.settings;
        let client_id = settings
            .connect_client_id
            .as_deref()
            .ok_or_else(|| error::invalid_settings("deauthorizing needs connect_client_id"))?;
        let account = state::get(connect::ACCOUNT_STATE)
            .map(|a| String::from_utf8_lossy(&a).into_owned())
            .or_else(|| settings.account.clone())
            .ok_or_else(|| error::invalid_settings("no connected account to deauthorize"))?;
        let request = http::Request {
            method: http::Method::Post,
            url: format!("{}/oauth/deauthorize", settings.connect_base),
            headers: vec![("Accept".into(), "application/json".into())],
            body: http::Body::Form(connect::deauthorize_form(client_id, &account)),
            credential: Some(http::Credential::Bearer(PLATFORM_SECRET_KEY.into())),
            capture: Vec::new(),
            timeout_ms: Some(30_000),
        };
        let response = http::send(&request).map_err(|e| error::from_http(e, "Stripe"))?;
        match response.status {
            200..=299 => Ok(()),
            status => Err(error::upstream_status(
                status,
                sluice_sdk::oauth::error_message(status, &response.body),
            )),
        }
    }

    fn validate_scopes(
        ctx: &Context<Settings>,
        granted: &[String],
    ) -> Result<ScopeCheck, DriverError> {
        Ok(ScopeCheck {
            missing: connect::missing_scopes(&ctx.settings, granted),
        })
    }

    fn normalize(
        ctx: &Context<Settings>,
        event: &RawEvent,
    ) -> Result<Vec<CanonicalRecord>, DriverError> {
        let mut fetch = ApiFetch::new(&ctx.settings, event.account_key.as_deref());
        normalize::normalize_payload_with(&event.payload, &mut fetch).map_err(normalize_error)
    }
}

/// A failed enrichment keeps its own error (a retryable upstream error makes the host
/// retry); the payload's own faults are `bad-request`.
fn normalize_error(e: normalize::NormalizeError) -> DriverError {
    match e {
        normalize::NormalizeError::Fetch(e) => e,
        other => error::bad_request(other.to_string()),
    }
}

/// Enrichment through `http`: `GET {api_base}{path}` with the installation's `api_key` as
/// the event's account, in the newest API version the driver knows.
struct ApiFetch<'a> {
    settings: &'a Settings,
    account: Option<String>,
}

impl<'a> ApiFetch<'a> {
    fn new(settings: &'a Settings, event_account: Option<&str>) -> Self {
        let account = event_account
            .map(str::to_owned)
            .or_else(|| settings.account.clone());
        Self { settings, account }
    }
}

impl enrich::Fetch for ApiFetch<'_> {
    fn get(&mut self, path: &str) -> Result<enrich::Fetched, enrich::FetchError> {
        if !secrets::exists(API_KEY) {
            return Err(enrich::FetchError::Unavailable(
                "the installation has no api_key to fetch it with".into(),
            ));
        }
        let mut headers = vec![(
            "Stripe-Version".to_string(),
            normalize::NEWEST_API_VERSION.to_string(),
        )];
        if let Some(account) = &self.account {
            if !enrich::safe_id(account) || !account.starts_with("acct_") {
                return Err(enrich::FetchError::Failed(error::bad_request(
                    "the event names an account that is not an acct_ id",
                )));
            }
            headers.push(("Stripe-Account".to_string(), account.clone()));
        }
        let url = format!("{}{path}", self.settings.api_base);
        sluice_sdk::enrich::get_json(
            "Stripe",
            url,
            headers,
            Some(http::Credential::Bearer(API_KEY.into())),
        )
        .map_err(enrich::FetchError::Failed)
    }
}
