//! # sluice-driver-shopify
//!
//! The Sluice driver for [Shopify](https://shopify.com): verifies `X-Shopify-Hmac-Sha256`
//! webhooks, polls `GET /admin/api/{version}/orders.json`, runs the OAuth authorization-code
//! flow, and normalizes orders, refunds and customers into Sluice's canonical records.
//!
//! The logic lives in plain Rust modules that build and test natively:
//!
//! - [`shop`]: shop-domain validation and normalisation;
//! - [`settings`]: the settings schema and parser;
//! - [`webhook`]: header lookup (old `X-Shopify-*` and new un-prefixed names), HMAC
//!   verification with an injected checker, webhook deliveries → raw events;
//! - [`oauth`]: the authorize URL, callback-query canonicalisation and HMAC/timestamp checks,
//!   token-endpoint forms, scope checks;
//! - [`normalize`]: order / refund / customer JSON → canonical records;
//! - [`poll`]: `orders.json` URLs, cursors and page parsing.
//!
//! The `wasm32` component glue (`component.rs`) only wires these to the WIT imports
//! (`secrets`, `http`, `clock`, `log`) and exports. Build the component with
//! `cargo build -p sluice-driver-shopify --target wasm32-wasip2 --profile driver`.

pub mod normalize;
pub mod oauth;
pub mod poll;
pub mod settings;
pub mod shop;
pub mod webhook;

#[cfg(target_arch = "wasm32")]
mod component;

/// The driver id.
pub const DRIVER_ID: &str = "shopify";

/// The app's client secret (API secret key): signs webhooks and OAuth callbacks.
pub const WEBHOOK_SECRET: &str = "webhook_secret";

/// The Admin API access token, used for polling (captured by `exchange-code`).
pub const ACCESS_TOKEN: &str = "access_token";

/// The refresh token of an expiring offline access token (captured when Shopify sends one).
pub const REFRESH_TOKEN: &str = "refresh_token";

/// The app's client id (API key), for the token endpoint when not in the settings.
pub const CLIENT_ID: &str = "client_id";

/// The app's client secret for the token endpoint.
pub const CLIENT_SECRET: &str = "client_secret";

/// The header the Admin API reads the access token from.
pub const ACCESS_TOKEN_HEADER: &str = "X-Shopify-Access-Token";
