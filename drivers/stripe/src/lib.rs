//! # sluice-driver-stripe
//!
//! The Sluice driver for [Stripe](https://stripe.com): verifies `Stripe-Signature` webhooks,
//! polls `GET /v1/events`, and normalizes Stripe events (charges, refunds, payment intents,
//! customers, subscriptions, invoices, disputes) into Sluice's canonical records.
//!
//! The logic lives in plain Rust modules that build and test natively:
//!
//! - [`signature`]: header parsing, tolerance policy and verification with an injected HMAC
//!   verifier;
//! - [`normalize`]: event JSON → canonical records, with Stripe's currency exponents;
//! - [`enrich`]: what an event lacks, fetched while normalizing (thin events, refunds);
//! - [`events`]: event envelopes → raw events, Connect route keys;
//! - [`poll`]: `/v1/events` URLs, cursors and page parsing;
//! - [`connect`]: Stripe Connect OAuth (authorize URL, token and deauthorize forms);
//! - [`settings`]: the settings schema and parser.
//!
//! The `wasm32` component glue (`component.rs`) only wires these to the WIT imports
//! (`clock`, `secrets.verify-hmac`, `http`) and exports. Build the component with
//! `cargo build -p sluice-driver-stripe --target wasm32-wasip2 --profile driver` (or `cargo xtask build-drivers`).

pub mod connect;
pub mod enrich;
pub mod events;
pub mod normalize;
pub mod poll;
pub mod settings;
pub mod signature;

#[cfg(target_arch = "wasm32")]
mod component;

/// The driver id.
pub const DRIVER_ID: &str = "stripe";

/// The secret holding the endpoint's `whsec_…` signing secret.
pub const WEBHOOK_SECRET: &str = "webhook_secret";

/// The secret holding the API key used for polling.
pub const API_KEY: &str = "api_key";
