//! `sluice webhook send`: sign a payload exactly as the provider would and post it, so a
//! newcomer can watch an event flow through without the provider.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use base64::Engine as _;
use clap::{Subcommand, ValueEnum};

use crate::capabilities::secrets::hmac;
use crate::runtime::secrets::HmacAlgorithm;

#[derive(Clone, Copy, ValueEnum)]
pub enum Provider {
    /// `Stripe-Signature: t=<now>,v1=<hex HMAC-SHA256 of "t.body">`.
    Stripe,
    /// `X-Shopify-Hmac-Sha256: <base64 HMAC-SHA256 of body>` with topic, shop and webhook id.
    Shopify,
    /// `X-HOTMART-HOTTOK: <token>`.
    Hotmart,
}

#[derive(Subcommand)]
pub enum WebhookCommand {
    /// Sign FILE as PROVIDER would and POST it to the installation's webhook URL.
    Send {
        #[arg(long, value_enum)]
        provider: Provider,
        /// Installation to deliver to.
        #[arg(long)]
        installation: String,
        /// The signing secret (`whsec_…`, the Shopify app secret, the Hotmart hottok).
        #[arg(long, env = "SLUICE_WEBHOOK_SECRET", hide_env_values = true)]
        secret: String,
        /// The payload, sent byte for byte.
        #[arg(long)]
        file: PathBuf,
        /// Shopify topic.
        #[arg(long, default_value = "orders/create")]
        topic: String,
        /// Shopify shop domain.
        #[arg(long, default_value = "example.myshopify.com")]
        shop: String,
        /// Base URL of the server.
        #[arg(long, env = "SLUICE_SERVER", default_value = "http://127.0.0.1:8080")]
        server: String,
    },
}

/// The headers `provider` would send with `body`, signed at `now` (Unix seconds).
pub fn sign(
    provider: Provider,
    secret: &str,
    body: &[u8],
    now: u64,
    topic: &str,
    shop: &str,
) -> Vec<(String, String)> {
    match provider {
        Provider::Stripe => {
            let signed = [format!("{now}.").as_bytes(), body].concat();
            let v1 = hex::encode(hmac(HmacAlgorithm::Sha256, secret.as_bytes(), &signed));
            vec![("Stripe-Signature".into(), format!("t={now},v1={v1}"))]
        }
        Provider::Shopify => {
            let mac = hmac(HmacAlgorithm::Sha256, secret.as_bytes(), body);
            vec![
                (
                    "X-Shopify-Hmac-Sha256".into(),
                    base64::engine::general_purpose::STANDARD.encode(mac),
                ),
                ("X-Shopify-Topic".into(), topic.into()),
                ("X-Shopify-Shop-Domain".into(), shop.into()),
                (
                    "X-Shopify-Webhook-Id".into(),
                    hex::encode(rand::random::<[u8; 16]>()),
                ),
                ("X-Shopify-API-Version".into(), "2025-10".into()),
            ]
        }
        Provider::Hotmart => vec![("X-HOTMART-HOTTOK".into(), secret.into())],
    }
}

impl WebhookCommand {
    pub async fn run(self) -> anyhow::Result<ExitCode> {
        let WebhookCommand::Send {
            provider,
            installation,
            secret,
            file,
            topic,
            shop,
            server,
        } = self;
        let body = std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
        let now = crate::capabilities::Clock::System.now().as_secs();
        let url = format!("{}/webhooks/{installation}", server.trim_end_matches('/'));
        let mut request = reqwest::Client::new()
            .post(&url)
            .header("content-type", "application/json")
            .body(body.clone());
        for (name, value) in sign(provider, &secret, &body, now, &topic, &shop) {
            request = request.header(name, value);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("posting to {url}"))?;
        let status = response.status();
        println!("{status} {}", response.text().await.unwrap_or_default());
        Ok(if status.is_success() {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stripe_signature_matches_the_dotnet_vector() {
        // shared/fixtures/stripe/stripe_webhook_cases.json, stripe-dotnet/EventUtilityTest.
        let body = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../shared/fixtures/stripe/stripe_dotnet_event_test_signature.json"
        ));
        let Ok(body) = body else {
            eprintln!("shared fixtures not present; skipping");
            return;
        };
        let headers = sign(
            Provider::Stripe,
            "webhook_secret",
            &body,
            1533204620,
            "",
            "",
        );
        assert_eq!(
            headers[0].1,
            "t=1533204620,v1=2220f87ef101a04665f11cdf770523143f875572008577fa0f20882ddb9cc3c7"
        );
    }

    #[test]
    fn shopify_signature_is_base64_hmac_of_body() {
        let headers = sign(
            Provider::Shopify,
            "hush",
            b"{}",
            0,
            "orders/create",
            "a.myshopify.com",
        );
        let mac = hmac(HmacAlgorithm::Sha256, b"hush", b"{}");
        assert_eq!(
            headers[0].1,
            base64::engine::general_purpose::STANDARD.encode(mac)
        );
        assert_eq!(headers[1].1, "orders/create");
    }
}
