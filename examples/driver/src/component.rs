//! The component glue: Acme's metadata, and each export a thin call into the plain modules.
//! Everything Acme does not have (polling, app-level routing) is left to the SDK's
//! defaults, which answer `unsupported`.

use sluice_sdk::bindings::sluice::driver::http;
use sluice_sdk::canonical::CanonicalRecord;
use sluice_sdk::driver::{
    AuthKind, Authorization, Callback, Context, Driver, Handled, Metadata, ScopeCheck, SecretSpec,
    TokenGrant,
};
use sluice_sdk::types::{IncomingRequest, RawEvent};
use sluice_sdk::{DriverError, error, headers, verify};

use crate::oauth::{ACCESS_TOKEN, CLIENT_SECRET, REFRESH_TOKEN};
use crate::settings::{self, Settings};
use crate::{DRIVER_ID, WEBHOOK_SECRET, normalize, oauth, webhook};

struct Acme;

sluice_sdk::register_driver!(Acme);

impl sluice_sdk::driver::Settings for Settings {
    fn parse(text: &str) -> Result<Self, String> {
        settings::parse(text)
    }
}

/// Where the app's credentials and tokens may be sent: the authorization server only.
const AUTH_SERVER: &str = "{oauth_base}";

/// POST a form to the token endpoint; the host captures both tokens from the answer.
fn token_request(
    settings: &Settings,
    form: Vec<(String, http::Value)>,
) -> Result<TokenGrant, DriverError> {
    let captures = [
        ("/access_token", ACCESS_TOKEN),
        ("/refresh_token", REFRESH_TOKEN),
    ];
    let response =
        sluice_sdk::oauth::token_request("Acme", oauth::token_url(settings), form, &captures)?;
    let (scopes, expires_in) = oauth::parse_grant(&response.body)
        .map_err(|e| error::upstream(response.status, e, true))?;
    Ok(TokenGrant {
        scopes,
        expires_in,
        account_key: None,
    })
}

impl Driver for Acme {
    type Settings = Settings;

    fn metadata() -> Metadata {
        Metadata::new(DRIVER_ID, env!("CARGO_PKG_VERSION"), "Acme Payments")
            .auth(AuthKind::SharedSecret)
            .webhooks()
            .settings_schema(settings::SCHEMA)
            .outbound(settings::DEFAULT_OAUTH_BASE)
            .secret(SecretSpec::required(
                WEBHOOK_SECRET,
                "The key Acme signs webhooks with",
            ))
            .secret(
                SecretSpec::optional(CLIENT_SECRET, "The OAuth app's client secret")
                    .sent_to(AUTH_SERVER),
            )
            .secret(
                SecretSpec::optional(ACCESS_TOKEN, "API access token, captured by the OAuth flow")
                    .sent_to(AUTH_SERVER),
            )
            .secret(
                SecretSpec::optional(REFRESH_TOKEN, "Refresh token, captured by the OAuth flow")
                    .sent_to(AUTH_SERVER),
            )
            .signing_header(webhook::SIGNATURE_HEADER, "sha256={hmac-sha256-hex:{body}}")
    }

    fn verify_webhook(_: &Context<Settings>, request: &IncomingRequest) -> Result<(), DriverError> {
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
        _: &Context<Settings>,
        request: &IncomingRequest,
    ) -> Result<Handled, DriverError> {
        let event = webhook::raw_event(&request.body).map_err(error::bad_request)?;
        Ok(Handled::event(event))
    }

    fn normalize(
        _: &Context<Settings>,
        event: &RawEvent,
    ) -> Result<Vec<CanonicalRecord>, DriverError> {
        normalize::normalize(&event.payload).map_err(error::bad_request)
    }

    fn authorize_url(
        ctx: &Context<Settings>,
        request: &Authorization,
    ) -> Result<String, DriverError> {
        oauth::authorize_url(
            &ctx.settings,
            &request.redirect_uri,
            &request.state,
            &request.code_challenge,
        )
        .map_err(error::invalid_settings)
    }

    fn exchange_code(
        ctx: &Context<Settings>,
        callback: &Callback,
    ) -> Result<TokenGrant, DriverError> {
        let code = oauth::callback_code(&callback.query).map_err(error::bad_request)?;
        let form = oauth::code_form(
            &ctx.settings,
            &code,
            &callback.redirect_uri,
            &callback.code_verifier,
        );
        token_request(&ctx.settings, form)
    }

    fn refresh(ctx: &Context<Settings>) -> Result<TokenGrant, DriverError> {
        token_request(&ctx.settings, oauth::refresh_form(&ctx.settings))
    }

    fn validate_scopes(
        ctx: &Context<Settings>,
        granted: &[String],
    ) -> Result<ScopeCheck, DriverError> {
        Ok(ScopeCheck {
            missing: oauth::missing_scopes(&ctx.settings.scopes, granted),
        })
    }
}
