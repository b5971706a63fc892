//! # sluice-example-driver
//!
//! A small, complete Sluice driver for a fictional provider, **Acme Payments** (id `acme`),
//! walked through in `docs/driver-guide.md`. Acme pushes webhooks signed with
//! `X-Acme-Signature: sha256=<hex HMAC-SHA256 of the raw body>`; the driver verifies them
//! host-side and maps `payment.completed` and `payment.refunded` to canonical records.
//!
//! Acme's API authorizes apps with OAuth 2.0 (authorization code with PKCE, rotating
//! refresh tokens); the host runs the flow and keeps the tokens, the driver only describes
//! Acme's side of it.
//!
//! - [`webhook`]: the signature header and the event envelope → raw event;
//! - [`normalize`]: the event payload → canonical records;
//! - [`oauth`]: the authorize URL and the token-endpoint forms;
//! - [`settings`]: the settings schema and parser.
//!
//! All are plain Rust and tested natively; `component.rs` only wires them to the WIT world.

pub mod normalize;
pub mod oauth;
pub mod settings;
pub mod webhook;

#[cfg(target_arch = "wasm32")]
mod component;

/// The driver id installations name as `driver_id`.
pub const DRIVER_ID: &str = "acme";

/// The secret holding the endpoint's signing key.
pub const WEBHOOK_SECRET: &str = "webhook_secret";
