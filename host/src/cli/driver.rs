//! `sluice driver inspect|test`: load a component locally and run it, no server needed.
//!
//! `test` runs the same verify → handle → normalize path as a webhook delivery, with
//! secrets and settings from the command line and, optionally, the clock pinned, so
//! recorded fixtures with old timestamps can be replayed exactly.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Subcommand;
use serde_json::{Value, json};

use crate::capabilities::secrets::SecretValue;
use crate::capabilities::{CapabilityConfig, Clock, DataSource, FixedData};
use crate::config::Config;
use crate::pipeline;
use crate::runtime::{CallError, CodeCache, Runtime};
use crate::wit::types::{CallContext, DriverError, IncomingRequest};

#[derive(Subcommand)]
pub enum DriverCommand {
    /// Load a component and print its validated metadata.
    Inspect { file: PathBuf },
    /// Run a webhook delivery through a component and print what it produced as JSON.
    /// Exits 0 when accepted, 1 when refused or failed.
    Test {
        #[arg(long)]
        driver: PathBuf,
        /// The request body, sent byte for byte.
        #[arg(long)]
        body: PathBuf,
        /// A request header, `Name: value` (repeatable); the value is everything after the
        /// colon and one space, exactly.
        #[arg(long = "header")]
        headers: Vec<String>,
        /// An installation secret, `name=value` (repeatable).
        #[arg(long = "secret")]
        secrets: Vec<String>,
        /// Installation settings, JSON text.
        #[arg(long, default_value = "{}")]
        settings: String,
        /// Pin the clock to this Unix time (seconds).
        #[arg(long)]
        now: Option<u64>,
    },
}

/// The compile cache, when this machine's master key is at hand (its entries are
/// authenticated with a key derived from it); a driver command never creates a key.
fn code_cache(config: &Config) -> Option<CodeCache> {
    let file = config.data_dir.join("master.key");
    let in_env = config
        .master_key
        .as_deref()
        .is_some_and(|k| !k.trim().is_empty());
    if !in_env && !file.exists() {
        return None;
    }
    let key = sluice_store::MasterKey::load(config.master_key.as_deref(), &file).ok()?;
    Some(CodeCache::new(config.cache_dir(), &key))
}

impl DriverCommand {
    pub async fn run(self) -> anyhow::Result<ExitCode> {
        match self {
            DriverCommand::Inspect { file } => {
                // Under the policy `sluice serve` would apply here (`sluice.toml`), so the
                // output shows which of its origins the driver would get.
                let config = Config::load(None)?;
                let runtime = Runtime::new(
                    CapabilityConfig {
                        policy: config.policy()?,
                        ..CapabilityConfig::new(Vec::new())
                    },
                    code_cache(&config),
                )?;
                let driver = runtime.load_driver(&read(&file)?).await?;
                super::print_json(&driver.info);
                Ok(ExitCode::SUCCESS)
            }
            DriverCommand::Test {
                driver,
                body,
                headers,
                secrets,
                settings,
                now,
            } => {
                // Driver `log` calls go to stderr; stdout stays one JSON document.
                let _ = tracing_subscriber::fmt()
                    .with_writer(std::io::stderr)
                    .with_env_filter(
                        tracing_subscriber::EnvFilter::try_from_env("SLUICE_LOG")
                            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
                    )
                    .try_init();
                let clock = now.map_or(Clock::System, |s| Clock::Pinned(Duration::from_secs(s)));
                let config = Config::load(None)?;
                let runtime = Runtime::new(
                    CapabilityConfig {
                        clock,
                        policy: config.policy()?,
                        ..CapabilityConfig::new(Vec::new())
                    },
                    code_cache(&config),
                )?;
                let driver = Arc::new(runtime.load_driver(&read(&driver)?).await?);
                let settings: Value =
                    serde_json::from_str(&settings).context("--settings is not JSON")?;
                if let Err(violations) = driver.validate_settings(&settings) {
                    return Ok(report(
                        json!({"ok": false, "error": {"code": "invalid_settings", "message": "settings do not match the schema", "details": violations}}),
                    ));
                }
                let request = IncomingRequest {
                    method: "POST".into(),
                    path: "/webhooks/inst_driver_test".into(),
                    query: String::new(),
                    headers: parse_pairs(&headers, ':')?,
                    body: read(&body)?,
                };
                let secrets: HashMap<String, SecretValue> = parse_pairs(&secrets, '=')?
                    .into_iter()
                    .map(|(k, v)| (k, SecretValue::new(v.into_bytes())))
                    .collect();
                let installation = sluice_store::InstallationId::parse("inst_driver_test")?;
                let scope = driver.scope(
                    &installation,
                    DataSource::Fixed(Arc::new(FixedData {
                        secrets,
                        state: HashMap::new(),
                        ..FixedData::default()
                    })),
                );
                let ctx = CallContext {
                    installation_id: "inst_driver_test".into(),
                    settings: settings.to_string(),
                };
                let result = async {
                    let mut session = runtime.session(&driver, scope).await?;
                    pipeline::process(&mut session, &ctx, &request).await
                }
                .await;
                Ok(report(match result {
                    Ok(pipeline::Received {
                        processed,
                        reply,
                        revoked,
                    }) => {
                        let reply = reply.map(|r| {
                            json!({
                                "status": r.status,
                                "content_type": r.content_type,
                                "body": String::from_utf8_lossy(&r.body),
                            })
                        });
                        let mut out = json!({"ok": true, "reply": reply, "events": processed.iter().map(|p| {
                        let mut event = json!({
                            "provider_event_id": p.raw.provider_event_id,
                            "event_type": p.raw.event_type,
                            "account_key": p.raw.account_key,
                        });
                        match &p.outcome {
                            Ok(records) => event["records"] = records.iter().map(|r| json!({"type": r.event_type, "subject": r.subject, "data": r.data})).collect(),
                            Err(reason) => event["error"] = reason.clone().into(),
                        }
                        event
                    }).collect::<Vec<_>>()});
                        if let Some(reason) = revoked {
                            out["revokes_authorization"] = reason.into();
                        }
                        out
                    }
                    Err(e) => {
                        json!({"ok": false, "error": {"code": error_code(&e), "message": e.to_string()}})
                    }
                }))
            }
        }
    }
}

fn error_code(e: &CallError) -> &'static str {
    match e {
        CallError::Driver(DriverError::Unauthorized(_)) => "unauthorized",
        CallError::Driver(DriverError::BadRequest(_)) => "bad_request",
        CallError::Driver(_) => "driver_error",
        CallError::Timeout => "timeout",
        CallError::Trap(_) => "trap",
        CallError::OutputTooLarge(_) => "output_too_large",
        CallError::Overloaded => "overloaded",
    }
}

fn report(value: Value) -> ExitCode {
    super::print_json(&value);
    if value["ok"] == Value::Bool(true) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn read(path: &PathBuf) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading {}", path.display()))
}

/// Split `name<sep>value` pairs; the value keeps any further separators.
fn parse_pairs(items: &[String], sep: char) -> anyhow::Result<Vec<(String, String)>> {
    items
        .iter()
        .map(|item| match item.split_once(sep) {
            Some((k, v)) if !k.trim().is_empty() => {
                // `Name: value`: the one space after the colon separates; the value is kept
                // exactly (a recorded header with odd whitespace stays odd). Secrets are
                // kept exactly too.
                let v = if sep == ':' {
                    v.strip_prefix(' ').unwrap_or(v)
                } else {
                    v
                };
                Ok((k.trim().to_string(), v.to_string()))
            }
            _ => bail!("{item:?} is not `name{sep}value`"),
        })
        .collect()
}
