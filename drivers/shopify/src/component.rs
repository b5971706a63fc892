//! The component glue: the Shopify driver's metadata and exports, each a thin call into the
//! plain-Rust modules (which build and test natively).

use sluice_sdk::bindings::sluice::driver::{clock, http, log, secrets};
use sluice_sdk::canonical::CanonicalRecord;
use sluice_sdk::driver::{
    AuthKind, Authorization, Callback, Context, Driver, Handled, Metadata, PollResult, ScopeCheck,
    SecretSpec, TokenGrant,
};
use sluice_sdk::types::{IncomingRequest, RawEvent};
use sluice_sdk::{DriverError, error, headers, verify};

use crate::oauth::{self, CallbackError};
use crate::poll::{self, Cursor};
use crate::settings::{self, Settings};
use crate::webhook::{self, VerifyError};
use crate::{
    ACCESS_TOKEN, ACCESS_TOKEN_HEADER, CLIENT_ID, CLIENT_SECRET, DRIVER_ID, REFRESH_TOKEN,
    WEBHOOK_SECRET, normalize,
};

struct Shopify;

sluice_sdk::register_driver!(Shopify);

impl sluice_sdk::driver::Settings for Settings {
    fn parse(text: &str) -> Result<Self, String> {
        settings::parse(text)
    }
}

/// Where an installation's credentials may go: its own shop.
const SHOP_ORIGIN: &str = "https://{shop}";

fn metadata() -> Metadata {
    Metadata::new(DRIVER_ID, env!("CARGO_PKG_VERSION"), "Shopify")
        .auth(AuthKind::Oauth2)
        .webhooks()
        .polling()
        .settings_schema(settings::SCHEMA)
        .outbound("https://*.myshopify.com")
        // Every credential goes to the installation's own shop (or its api_base override)
        // only, although the driver may reach every shop.
        .secret(
            SecretSpec::required(
                WEBHOOK_SECRET,
                "The app's client secret (API secret key): signs webhooks and OAuth callbacks",
            )
            .sent_to(SHOP_ORIGIN)
            .sent_to("{api_base}"),
        )
        .secret(
            SecretSpec::optional(
                ACCESS_TOKEN,
                "Admin API access token (X-Shopify-Access-Token), for polling; captured by the OAuth exchange",
            )
            .sent_to(SHOP_ORIGIN)
            .sent_to("{api_base}")
            .in_header(ACCESS_TOKEN_HEADER),
        )
        .secret(
            SecretSpec::optional(
                REFRESH_TOKEN,
                "Refresh token of an expiring offline access token; captured by the OAuth exchange",
            )
            .sent_to(SHOP_ORIGIN)
            .sent_to("{api_base}"),
        )
        .secret(
            SecretSpec::optional(
                CLIENT_ID,
                "The app's client id (API key), for the token endpoint when not in the settings",
            )
            .sent_to(SHOP_ORIGIN)
            .sent_to("{api_base}"),
        )
        .secret(
            SecretSpec::optional(
                CLIENT_SECRET,
                "The app's client secret for the token endpoint (defaults to webhook_secret)",
            )
            .sent_to(SHOP_ORIGIN)
            .sent_to("{api_base}"),
        )
        .signing_header("X-Shopify-Hmac-Sha256", "{hmac-sha256-base64:{body}}")
        .signing_header("X-Shopify-Webhook-Id", "{uuid}")
}

/// Map a `secrets` failure: a missing secret is the operator's to fix, not a forgery.
fn secrets_error(e: secrets::Error) -> DriverError {
    match e {
        secrets::Error::NotFound(name) => {
            error::invalid_settings(format!("the installation has no {name} secret"))
        }
        other => error::internal(format!("secrets call failed: {other:?}")),
    }
}

fn verify_app_hmac(message: &[u8], candidates: &[Vec<u8>]) -> Result<bool, secrets::Error> {
    secrets::verify_hmac(
        WEBHOOK_SECRET,
        secrets::HmacAlgorithm::Sha256,
        message,
        candidates,
    )
}

/// The secret holding the client secret for the token endpoint.
fn client_secret_name() -> &'static str {
    if secrets::exists(CLIENT_SECRET) {
        CLIENT_SECRET
    } else {
        WEBHOOK_SECRET
    }
}

/// POST a form to the token endpoint, capturing the tokens into secrets.
fn token_request(
    settings: &Settings,
    form: Vec<(String, http::Value)>,
) -> Result<TokenGrant, DriverError> {
    let captures = [
        ("/access_token", ACCESS_TOKEN),
        ("/refresh_token", REFRESH_TOKEN),
    ];
    let response =
        sluice_sdk::oauth::token_request("Shopify", oauth::token_url(settings), form, &captures)?;
    let grant = oauth::parse_grant(&response.body)
        .map_err(|e| error::upstream(response.status, e, false))?;
    Ok(TokenGrant {
        scopes: grant.scopes,
        expires_in: grant.expires_in,
        account_key: Some(settings.shop.clone()),
    })
}

impl Driver for Shopify {
    type Settings = Settings;

    fn metadata() -> Metadata {
        metadata()
    }

    // Shopify has no PKCE: the challenge is left out, and the callback's `hmac` (keyed by
    // the app secret) is what proves the redirect came from Shopify.
    fn authorize_url(
        ctx: &Context<Settings>,
        request: &Authorization,
    ) -> Result<String, DriverError> {
        oauth::authorize_url(&ctx.settings, &request.redirect_uri, &request.state)
            .map_err(error::unsupported)
    }

    fn exchange_code(
        ctx: &Context<Settings>,
        callback: &Callback,
    ) -> Result<TokenGrant, DriverError> {
        let settings = &ctx.settings;
        let now = clock::now().seconds;
        let callback = oauth::verify_callback(settings, &callback.query, now, verify_app_hmac)
            .map_err(|e| match e {
                CallbackError::Check(e) => secrets_error(e),
                CallbackError::MissingCode => error::bad_request("the callback has no code"),
                other => error::unauthorized(format!("OAuth callback refused: {other:?}")),
            })?;
        let form = oauth::code_form(
            settings,
            oauth::client_id_value(settings, CLIENT_ID),
            client_secret_name(),
            &callback.code,
        );
        token_request(settings, form)
    }

    fn refresh(ctx: &Context<Settings>) -> Result<TokenGrant, DriverError> {
        if !secrets::exists(REFRESH_TOKEN) {
            return Err(error::unsupported(
                "no refresh_token: the access token does not expire",
            ));
        }
        let form = oauth::refresh_form(
            oauth::client_id_value(&ctx.settings, CLIENT_ID),
            client_secret_name(),
            REFRESH_TOKEN,
        );
        token_request(&ctx.settings, form)
    }

    fn validate_scopes(
        ctx: &Context<Settings>,
        granted: &[String],
    ) -> Result<ScopeCheck, DriverError> {
        Ok(ScopeCheck {
            missing: oauth::missing_scopes(&ctx.settings.scopes, granted),
        })
    }

    fn verify_webhook(_: &Context<Settings>, request: &IncomingRequest) -> Result<(), DriverError> {
        webhook::verify(&request.headers, &request.body, |body, header| {
            verify::hmac_sha256_base64(WEBHOOK_SECRET, body, header, "X-Shopify-Hmac-Sha256")
        })
        .map_err(|e| match e {
            VerifyError::MissingHmac => error::unauthorized("missing X-Shopify-Hmac-Sha256 header"),
            VerifyError::MissingBody => error::unauthorized("empty body"),
            VerifyError::Check(e) => e,
        })
    }

    fn route_key(request: &IncomingRequest) -> Option<String> {
        webhook::route_key(&request.headers)
    }

    fn handle_webhook(
        ctx: &Context<Settings>,
        request: &IncomingRequest,
    ) -> Result<Handled, DriverError> {
        let topic = webhook::header(&request.headers, webhook::TOPIC);
        // The merchant uninstalled the app: its token is dead, whatever topics are stored.
        let revoked = topic
            .filter(|t| t.eq_ignore_ascii_case(webhook::APP_UNINSTALLED))
            .map(|_| {
                "Shopify: the app was uninstalled from the shop (app/uninstalled)".to_string()
            });
        let events = match webhook::handle(&ctx.settings, &request.headers, &request.body)
            .map_err(error::bad_request)?
        {
            webhook::Outcome::Event(event) => {
                if let Some(version) = webhook::header(&request.headers, webhook::API_VERSION) {
                    // Formatted only when the host keeps debug lines.
                    sluice_sdk::log!(
                        log::Level::Debug,
                        "webhook {} ({}) rendered with API version {version}",
                        event.provider_event_id,
                        event.event_type
                    );
                }
                vec![*event]
            }
            webhook::Outcome::Ignored { topic } => {
                log::log(
                    log::Level::Info,
                    &format!("topic {topic} is not in webhook_topics: acknowledged, not stored"),
                );
                Vec::new()
            }
        };
        Ok(Handled {
            events,
            reply: None,
            revoked,
        })
    }

    fn backfill_cursor(
        _: &Context<Settings>,
        since: &sluice_sdk::Datetime,
    ) -> Result<String, DriverError> {
        Ok(poll::backfill_cursor(sluice_sdk::time::to_rfc3339(since)))
    }

    fn poll(ctx: &Context<Settings>, cursor: Option<&str>) -> Result<PollResult, DriverError> {
        let settings = &ctx.settings;
        let cursor = Cursor::parse(cursor);
        let request = http::Request {
            method: http::Method::Get,
            url: poll::orders_url(settings, &cursor),
            headers: vec![("Accept".into(), "application/json".into())],
            body: http::Body::Empty,
            credential: Some(http::Credential::Header(http::HeaderCredential {
                name: ACCESS_TOKEN_HEADER.into(),
                secret: ACCESS_TOKEN.into(),
            })),
            capture: Vec::new(),
            timeout_ms: Some(30_000),
        };
        let response = http::send(&request).map_err(|e| error::from_http(e, "Shopify"))?;
        match response.status {
            200..=299 => {
                let link = headers::get(&response.headers, "link");
                let page = poll::parse_page(settings, &response.body, link, &cursor)
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
        ctx: &Context<Settings>,
        event: &RawEvent,
    ) -> Result<Vec<CanonicalRecord>, DriverError> {
        normalize::normalize_versioned(
            &event.event_type,
            &event.payload,
            event.api_version.as_deref(),
            &mut AdminFetch(&ctx.settings),
        )
    }
}

/// Enrichment through `http`: `GET {api_base}/admin/api/{api_version}/{path}` with the
/// installation's access token.
struct AdminFetch<'a>(&'a Settings);

impl sluice_sdk::enrich::Fetch for AdminFetch<'_> {
    fn get(
        &mut self,
        path: &str,
    ) -> Result<sluice_sdk::enrich::Fetched, sluice_sdk::enrich::FetchError> {
        use sluice_sdk::enrich::FetchError;
        if !secrets::exists(ACCESS_TOKEN) {
            return Err(FetchError::Unavailable(
                "the installation has no access_token to fetch its order with".into(),
            ));
        }
        let settings = self.0;
        let url = format!(
            "{}/admin/api/{}/{path}",
            settings.api_base, settings.api_version
        );
        let credential = http::Credential::Header(http::HeaderCredential {
            name: ACCESS_TOKEN_HEADER.into(),
            secret: ACCESS_TOKEN.into(),
        });
        sluice_sdk::enrich::get_json("Shopify", url, Vec::new(), Some(credential))
            .map_err(FetchError::Failed)
    }
}
