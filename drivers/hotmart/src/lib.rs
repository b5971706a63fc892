//! # sluice-driver-hotmart
//!
//! The Sluice driver for [Hotmart](https://developers.hotmart.com): accepts postback 2.0.0
//! webhooks authenticated by the static `X-HOTMART-HOTTOK` token, polls
//! `GET /payments/api/v1/sales/history` with a client-credentials token, and normalizes
//! purchases, refunds, chargebacks and subscription changes into Sluice's canonical records.
//!
//! The logic lives in plain Rust modules that build and test natively:
//!
//! - [`webhook`]: postback envelopes → raw events, the hottok header policy;
//! - [`normalize`]: webhook events and sales-history items → canonical records (one shared
//!   sale model, so both give the same record for the same sale);
//! - [`decimal`]: money fields read from the JSON number's text (never a float);
//! - [`poll`]: sales-history URLs, the poll cursor, pages and the token request;
//! - [`settings`]: the settings schema and parser.
//!
//! The `wasm32` component glue (`component.rs`) only wires these to the WIT imports
//! (`clock`, `secrets.equals`, `http`, `state`) and exports. Build the component with
//! `cargo build -p sluice-driver-hotmart --target wasm32-wasip2 --profile driver`.

pub mod decimal;
pub mod normalize;
pub mod poll;
pub mod settings;
pub mod webhook;

#[cfg(target_arch = "wasm32")]
mod component;

/// The driver id.
pub const DRIVER_ID: &str = "hotmart";

/// The secret holding the installation's hottok (webhook token).
pub const HOTTOK: &str = "hottok";

/// The secret holding the API client id (polling).
pub const CLIENT_ID: &str = "client_id";

/// The secret holding the API client secret (polling).
pub const CLIENT_SECRET: &str = "client_secret";

/// The secret the host captures the API access token into (never seen by the guest).
pub const ACCESS_TOKEN: &str = "access_token";
