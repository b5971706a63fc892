//! The store's integration tests, one binary: every behaviour on SQLite and, when
//! `SLUICE_TEST_POSTGRES_URL` is set (always in CI), on PostgreSQL.

#[macro_use]
mod common;
mod auth;
mod delivery;
mod drivers;
mod master_key;
mod store;
