//! The component glue: the Hotmart driver's metadata and exports, each a thin call into the
//! plain-Rust modules (which build and test natively).

use sluice_sdk::bindings::sluice::driver::{clock, http, secrets, state};
use sluice_sdk::canonical::CanonicalRecord;
use sluice_sdk::driver::{
    AuthKind, Context, Driver, Handled, Metadata, PollResult, SecretSpec, TokenGrant,
};
use sluice_sdk::types::{IncomingRequest, RawEvent};
use sluice_sdk::{DriverError, error, paging, verify};

use crate::poll::{self, Cursor};
use crate::settings::{self, Settings};
use crate::{ACCESS_TOKEN, CLIENT_ID, CLIENT_SECRET, DRIVER_ID, HOTTOK, normalize, webhook};

struct Hotmart;

sluice_sdk::register_driver!(Hotmart);

impl sluice_sdk::driver::Settings for Settings {
    fn parse(text: &str) -> Result<Self, String> {
        settings::parse(text)
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
/// Returns its lifetime in seconds.
fn acquire_token(settings: &Settings) -> Result<u64, DriverError> {
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
            Ok(u64::try_from(expires.saturating_sub(now) / 1000).unwrap_or(0))
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

impl Driver for Hotmart {
    type Settings = Settings;

    fn metadata() -> Metadata {
        Metadata::new(DRIVER_ID, env!("CARGO_PKG_VERSION"), "Hotmart")
            // Webhooks carry the hottok; the API takes a client-credentials token, which the
            // host fetches with `refresh` and renews shortly before it expires.
            .auth(AuthKind::ClientCredentials)
            .webhooks()
            .polling()
            .settings_schema(settings::SCHEMA)
            .outbound(settings::DEFAULT_API_BASE)
            .outbound(settings::DEFAULT_AUTH_BASE)
            .secret(SecretSpec::required(
                HOTTOK,
                "The account's hottok, sent by Hotmart in X-HOTMART-HOTTOK",
            ))
            // Client credentials go to the token endpoint only, the token to the API (and the
            // endpoint that issues it).
            .secret(
                SecretSpec::optional(
                    CLIENT_ID,
                    "API client id (Developer Credentials), for polling",
                )
                .sent_to(settings::DEFAULT_AUTH_BASE)
                .sent_to("{auth_base}"),
            )
            .secret(
                SecretSpec::optional(
                    CLIENT_SECRET,
                    "API client secret (Developer Credentials), for polling",
                )
                .sent_to(settings::DEFAULT_AUTH_BASE)
                .sent_to("{auth_base}"),
            )
            .secret(
                SecretSpec::optional(
                    ACCESS_TOKEN,
                    "API access token, captured by the host from the token response",
                )
                .sent_to(settings::DEFAULT_API_BASE)
                .sent_to("{api_base}")
                // The token endpoint issues it: the host takes a capture into a secret
                // only from an origin the secret may go to.
                .sent_to(settings::DEFAULT_AUTH_BASE)
                .sent_to("{auth_base}"),
            )
            .signing_header("X-HOTMART-HOTTOK", "{secret}")
    }

    fn verify_webhook(_: &Context<Settings>, request: &IncomingRequest) -> Result<(), DriverError> {
        verify::token(
            HOTTOK,
            webhook::presented_hottok(&request.headers),
            webhook::HOTTOK_WHAT,
        )
    }

    fn handle_webhook(
        _: &Context<Settings>,
        request: &IncomingRequest,
    ) -> Result<Handled, DriverError> {
        // Hotmart bodies carry no account identifier (see `webhook`): no `route_key`.
        let event = webhook::raw_event(&request.body).map_err(error::bad_request)?;
        Ok(Handled::event(event))
    }

    fn refresh(ctx: &Context<Settings>) -> Result<TokenGrant, DriverError> {
        let expires_in = acquire_token(&ctx.settings)?;
        Ok(TokenGrant {
            scopes: Vec::new(),
            expires_in: Some(expires_in),
            account_key: None,
        })
    }

    fn backfill_cursor(
        _: &Context<Settings>,
        since: &sluice_sdk::Datetime,
    ) -> Result<String, DriverError> {
        let since_ms = since.seconds.saturating_mul(1000);
        Ok(poll::backfill_cursor(since_ms, now_ms()))
    }

    fn poll(ctx: &Context<Settings>, cursor: Option<&str>) -> Result<PollResult, DriverError> {
        let settings = &ctx.settings;
        let cursor = Cursor::parse(cursor);
        let page = poll::page_request(&cursor, now_ms(), settings);
        let url = poll::sales_url(settings, &page);

        let stored = state::get(poll::TOKEN_EXPIRES_AT);
        let mut fresh = false;
        if !(secrets::exists(ACCESS_TOKEN) && poll::token_usable(stored.as_deref(), now_ms())) {
            acquire_token(settings)?;
            fresh = true;
        }
        let mut response = get_page(&url)?;
        if response.status == 401 && !fresh {
            // Revoked or expired early: one new token, one retry.
            acquire_token(settings)?;
            response = get_page(&url)?;
        }
        match response.status {
            200..=299 => {
                let parsed = poll::parse_page(&response.body, &page)
                    .map_err(|e| error::upstream(response.status, e, true))?;
                Ok(PollResult {
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

    fn normalize(
        _: &Context<Settings>,
        event: &RawEvent,
    ) -> Result<Vec<CanonicalRecord>, DriverError> {
        normalize::normalize(&event.event_type, &event.payload).map_err(error::bad_request)
    }
}
