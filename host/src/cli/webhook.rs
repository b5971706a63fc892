//! `sluice webhook send`: sign a payload exactly as the provider would and post it, so a
//! newcomer can watch an event flow through without the provider.
//!
//! How to sign comes from the installation's driver (its metadata's `webhook-signing`
//! templates, read from the server), so any driver that describes its signature works
//! without a change here; `--sign 'Name: template'` replaces them (see
//! [`crate::signing`] for the template language) and `--header` adds plain headers.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Subcommand;
use serde_json::Value;

use super::ServerArgs;
use super::client::AdminClient;
use crate::signing::{Inputs, Template};

#[derive(Subcommand)]
pub enum WebhookCommand {
    /// Sign FILE as the installation's provider would and POST it to its webhook URL.
    Send {
        /// Installation to deliver to.
        #[arg(long)]
        installation: String,
        /// The signing secret (`whsec_…`, the Shopify app secret, the Hotmart hottok).
        #[arg(long, env = "SLUICE_WEBHOOK_SECRET", hide_env_values = true)]
        secret: String,
        /// The payload, sent byte for byte.
        #[arg(long)]
        file: PathBuf,
        /// An extra header, `Name: value` (repeatable), e.g. `X-Shopify-Topic: orders/create`.
        #[arg(long = "header")]
        headers: Vec<String>,
        /// A signature header template, `Name: template` (repeatable); replaces the driver's.
        #[arg(long = "sign")]
        sign: Vec<String>,
        /// Unix time to sign at (default: now).
        #[arg(long)]
        timestamp: Option<u64>,
        #[command(flatten)]
        server: ServerArgs,
    },
}

/// Split `Name: value`.
fn header_pair(item: &str) -> anyhow::Result<(String, String)> {
    match item.split_once(':') {
        Some((name, value)) if !name.trim().is_empty() => {
            Ok((name.trim().to_string(), value.trim().to_string()))
        }
        _ => bail!("{item:?} is not `Name: value`"),
    }
}

/// The signature headers of `driver_id`, from the server's driver list.
async fn driver_signing(
    api: &AdminClient,
    driver_id: &str,
) -> anyhow::Result<Vec<(String, String)>> {
    let drivers = api.call(reqwest::Method::GET, "/v1/drivers", None).await?;
    let driver = drivers["drivers"]
        .as_array()
        .and_then(|list| list.iter().find(|d| d["id"] == driver_id))
        .with_context(|| format!("the server has no driver {driver_id:?} loaded"))?;
    let signing: Vec<(String, String)> = driver["webhook_signing"]
        .as_array()
        .map(|list| {
            list.iter()
                .filter_map(|h| Some((h["name"].as_str()?.into(), h["template"].as_str()?.into())))
                .collect()
        })
        .unwrap_or_default();
    if signing.is_empty() {
        bail!("the {driver_id} driver does not describe its webhook signature; give --sign");
    }
    Ok(signing)
}

impl WebhookCommand {
    pub async fn run(self) -> anyhow::Result<ExitCode> {
        let WebhookCommand::Send {
            installation,
            secret,
            file,
            headers,
            sign,
            timestamp,
            server,
        } = self;
        let body = std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
        let api = AdminClient::new(&server)?;
        let templates = if sign.is_empty() {
            let path = format!("/v1/installations/{installation}");
            let inst: Value = api.call(reqwest::Method::GET, &path, None).await?;
            let driver_id = inst["driver_id"]
                .as_str()
                .context("the installation has no driver_id")?;
            driver_signing(&api, driver_id).await?
        } else {
            sign.iter()
                .map(|s| header_pair(s))
                .collect::<anyhow::Result<_>>()?
        };
        let inputs = Inputs {
            body: &body,
            secret: secret.as_bytes(),
            timestamp: timestamp
                .unwrap_or_else(|| crate::capabilities::Clock::System.now().as_secs()),
        };
        let url = format!(
            "{}/webhooks/{installation}",
            server.server.trim_end_matches('/')
        );
        let mut request = reqwest::Client::new()
            .post(&url)
            .header("content-type", "application/json")
            .body(body.clone());
        for (name, template) in &templates {
            let value = Template::parse(template)
                .and_then(|t| t.render(&inputs))
                .map_err(|e| anyhow::anyhow!("signature header {name}: {e}"))?;
            request = request.header(name, value);
        }
        for item in &headers {
            let (name, value) = header_pair(item)?;
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
