//! # sluice-sdk
//!
//! The guest-side SDK for writing Sluice drivers: WebAssembly
//! components that implement the `sluice:driver@0.6.1` WIT world (`wit/` at the workspace
//! root) and are hot-loaded by the Sluice host.
//!
//! A driver crate (`crate-type = ["cdylib", "rlib"]`) implements [`driver::Driver`] — its
//! metadata, `normalize`, and whichever of webhooks, polling and OAuth its provider has —
//! and registers it with [`register_driver!`]; everything it does not implement answers
//! `unsupported`:
//!
//! ```ignore
//! struct MyDriver;
//! impl sluice_sdk::driver::Driver for MyDriver { /* … */ }
//! sluice_sdk::register_driver!(MyDriver);
//! ```
//!
//! Build it with `cargo build --target wasm32-wasip2 --profile driver` (release, stripped).
//!
//! Besides the generated [`bindings`], the SDK holds the small, dependency-light helpers every
//! driver needs and that are easy to get subtly wrong:
//!
//! - [`driver`]: the [`Driver`](driver::Driver) trait, [`Metadata`](driver::Metadata) builder
//!   and settings parsing;
//! - [`money`]: ISO 4217 exponents and exact decimal/minor-unit conversion (never via floats);
//! - [`time`]: Unix timestamps and RFC 3339 text to the WIT `datetime`;
//! - [`headers`]: case-insensitive lookup in WIT header lists;
//! - [`error`]: constructors for [`DriverError`] variants;
//! - [`json`]: reading optional fields from `serde_json::Value`, ids kept exact;
//! - [`enums`]: provider enumerations to Sluice's vocabulary, raw value kept;
//! - [`verify`]: webhook signature and token checks computed by the host over named secrets;
//! - [`log`]: messages into the host's log, formatted only when the host keeps them (`log!`);
//! - [`paging`]: `Link` headers, cursors in URLs, `Retry-After`;
//! - [`oauth`]: the token-endpoint request (tokens captured by the host) and its errors.
//!
//! Everything except the `export!`-ed glue compiles and runs natively, so driver logic can be
//! unit-tested and benchmarked with a plain `cargo test`. Off-wasm the imported host functions
//! are stubs that must not be called: keep the logic that touches imports thin and inject
//! closures instead (see the Stripe driver's signature verifier).

#![warn(missing_docs)]

// Lets the generated code refer to `sluice_sdk::…` paths from inside this crate too.
extern crate self as sluice_sdk;

#[cfg(target_arch = "wasm32")]
pub mod bump;
pub mod driver;
pub mod enrich;
pub mod enums;
pub mod error;
pub mod headers;
pub mod json;
pub mod log;
pub mod money;
pub mod oauth;
pub mod paging;
pub mod record;
pub mod state;
pub mod time;
pub mod verify;

/// The `wit-bindgen` runtime, re-exported so driver crates need not depend on it directly
/// (the generated `export!` macro refers to it through this path).
#[doc(hidden)]
pub use wit_bindgen as __wit_bindgen;

/// Bindings generated from the `sluice:driver` WIT world.
///
/// - `bindings::sluice::driver::*`: the imported host capabilities (`http`, `secrets`, `log`,
///   `clock`, `state`) and the shared `types` / `canonical` records;
/// - `bindings::exports::sluice::driver::{metadata, auth, ingest, normalize}`: the export
///   traits, which [`register_driver!`] implements for a [`driver::Driver`].
#[allow(missing_docs, clippy::all)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "sluice:driver/driver",
        generate_all,
        pub_export_macro: true,
        export_macro_name: "export",
        default_bindings_module: "sluice_sdk::bindings",
        runtime_path: "sluice_sdk::__wit_bindgen::rt",
        additional_derives: [PartialEq, Clone],
    });
}

pub use bindings::sluice::driver::canonical;
pub use bindings::sluice::driver::types::{self, Datetime, DriverError, Money};

/// The raw `wit-bindgen` export macro: `sluice_sdk::export!(T)` exports a type implementing
/// the four `Guest` traits itself. Prefer [`register_driver!`] and [`driver::Driver`].
pub use bindings::export;

/// Every call runs in a fresh instance, so drivers allocate from a bump arena by default
/// (see [`bump`]); turn off the `bump-allocator` feature to use the system allocator.
#[cfg(all(target_arch = "wasm32", feature = "bump-allocator"))]
#[global_allocator]
static ALLOCATOR: bump::Bump = bump::Bump::new();

/// The version of the `sluice:driver` WIT package this SDK is generated from; every
/// driver's metadata reports it.
pub const WIT_VERSION: &str = "0.6.1";

#[cfg(test)]
mod tests {
    #[test]
    fn wit_version_is_the_package_version() {
        let world = include_str!("../../wit/world.wit");
        assert!(
            world.starts_with(&format!("package sluice:driver@{};", super::WIT_VERSION)),
            "wit/world.wit does not declare version {}",
            super::WIT_VERSION
        );
    }
}
