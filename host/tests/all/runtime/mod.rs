//! Bundled drivers in an in-process runtime, calling loopback fakes.

mod faulty_poll;
mod harness;
mod hotmart_poll;
mod hotmart_sales_fixture;
mod shopify_oauth;
mod shopify_poll;
mod stripe_poll;
