//! # sluice-testkit
//!
//! What every Sluice test crate shares, in one place:
//!
//! - [`fixtures`]: the provider fixtures vendored in `tests/fixtures` (one locator;
//!   `SLUICE_FIXTURES_DIR` overrides it);
//! - [`require`]: services a test needs (PostgreSQL, Node). Outside CI a missing one skips
//!   the test and is counted (the runner prints the count); with `CI` set it fails the test;
//! - [`sign`]: webhook signatures computed natively (HMAC over `hmac`/`sha2`), and by the
//!   official `stripe` Node library as a real peer;
//! - [`server`]: a real `sluice serve` child process on a free loopback port, on SQLite or
//!   PostgreSQL, with HTTP helpers;
//! - [`fake`]: loopback HTTP servers standing in for providers;
//! - [`oauth`]: a real OAuth 2.0 server (`oauth2-mock-server`) on loopback;
//! - [`receiver`]: a webhook receiver verifying with the official `standardwebhooks`;
//! - [`nats`]: a NATS JetStream server of a test's own, to stop and restart;
//! - [`neighbour`]: a healthy Stripe installation's traffic beside a test's attacks;
//! - [`paths`]: the built `sluice` binary, drivers and the shared compile cache;
//! - [`prometheus`]: `GET /metrics` parsed (the text exposition format).

pub mod fake;
pub mod fixtures;
pub mod nats;
pub mod neighbour;
pub mod oauth;
pub mod paths;
pub mod peer;
pub mod prometheus;
pub mod receiver;
pub mod require;
pub mod server;
pub mod sign;

pub use fixtures::{
    fixture, fixture_bytes, fixture_json, stripe_charge_payload, stripe_charge_variant,
};
pub use paths::{bundled_driver, test_driver};
pub use require::{Requirement, postgres_url};
pub use reqwest::StatusCode;
pub use serde_json::json;
pub use server::{
    Backend, DriverTest, DriverTestOutput, Response, Sluice, TEST_MASTER_KEY, TempDir, sluice_cli,
};
pub use sign::{shopify_hmac, stripe_header};

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Runs one async scenario `fn(Backend)` as two tests, one per backend:
/// `both_backends!(scenario => sqlite_scenario, postgres_scenario);`
#[macro_export]
macro_rules! both_backends {
    ($scenario:ident => $sqlite:ident, $postgres:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $sqlite() {
            $scenario($crate::Backend::Sqlite).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $postgres() {
            $scenario($crate::Backend::Postgres).await;
        }
    };
}

/// A random lower-case hex string of 16 characters.
pub fn random_hex() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    hasher.write_u32(std::process::id());
    hasher.write_u128(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    format!("{:016x}", hasher.finish())
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64
}
