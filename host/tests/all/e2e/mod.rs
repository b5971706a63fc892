//! The real `sluice` binary, over HTTP and its CLI, on both backends.

mod app_routing;
mod cli;
mod corpus;
mod driver_loading;
mod durability;
mod example_driver;
mod faulty_isolation;
mod hostile_drivers;
mod hostile_traffic;
mod hotmart_fixtures;
mod hotmart_webhooks;
mod hygiene;
mod jwt_jwks;
mod oauth;
mod oauth_providers;
mod outbound_http;
mod refresh;
mod refusals;
mod rotation;
mod secrets;
mod settings;
mod shopify_app_routing;
mod shopify_fixtures;
mod shopify_webhooks;
mod stripe_fixtures;
mod stripe_webhooks;
