//! `sluice drivers …`: a running host's drivers and their kept versions, through the admin
//! API; `inspect FILE` reads a component locally, with no host.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;
use reqwest::Method;
use serde_json::{Value, json};

use super::ServerArgs;
use super::client::AdminClient;

#[derive(Subcommand)]
pub enum DriversCommand {
    /// Upload a component: validated, kept, and activated (unless told otherwise).
    Add {
        file: PathBuf,
        /// Replay the driver's last N stored raw events through it and the active version
        /// first, and print where the normalized output differs.
        #[arg(long)]
        canary: Option<usize>,
        /// Activate only when the canary found no difference (needs --canary).
        #[arg(long, requires = "canary")]
        activate_if_identical: bool,
        /// Keep the version without activating it.
        #[arg(long, conflicts_with = "activate_if_identical")]
        no_activate: bool,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// The active drivers; with an id, that driver's kept versions.
    List {
        id: Option<String>,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// A component file's metadata (no host needed), or a kept version (`ID SHA256`).
    Inspect {
        /// A `.wasm` file, or a driver id.
        target: String,
        /// With a driver id: the version's sha256 (default: the active one).
        sha256: Option<String>,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Activate a kept version.
    Activate {
        id: String,
        sha256: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Back to the version active before the current one (or `--to`).
    Rollback {
        id: String,
        #[arg(long)]
        to: Option<String>,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Forget a kept version that is neither active nor pinned.
    Remove {
        id: String,
        sha256: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Pin an installation to a kept version of its driver (`--unpin`: follow the active).
    Pin {
        installation: String,
        #[arg(required_unless_present = "unpin")]
        sha256: Option<String>,
        #[arg(long, conflicts_with = "sha256")]
        unpin: bool,
        #[command(flatten)]
        server: ServerArgs,
    },
}

impl DriversCommand {
    pub async fn run(self) -> anyhow::Result<ExitCode> {
        let out = match self {
            DriversCommand::Add {
                file,
                canary,
                activate_if_identical,
                no_activate,
                server,
            } => {
                let bytes =
                    std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
                let mut query = vec![format!("activate={}", !no_activate)];
                if let Some(n) = canary {
                    query.push(format!("canary={n}"));
                }
                if activate_if_identical {
                    query.push("activate_if_identical=true".into());
                }
                let added = AdminClient::new(&server)?
                    .call_bytes(
                        Method::POST,
                        &format!("/v1/drivers?{}", query.join("&")),
                        "application/wasm",
                        bytes,
                    )
                    .await?;
                summarize_added(&added);
                added
            }
            DriversCommand::List { id, server } => {
                let path = match id {
                    Some(id) => format!("/v1/drivers/{id}"),
                    None => "/v1/drivers".into(),
                };
                AdminClient::new(&server)?
                    .call(Method::GET, &path, None)
                    .await?
            }
            DriversCommand::Inspect {
                target,
                sha256,
                server,
            } => {
                let path = PathBuf::from(&target);
                if sha256.is_none() && (path.is_file() || target.ends_with(".wasm")) {
                    return super::driver::DriverCommand::Inspect { file: path }
                        .run()
                        .await;
                }
                let client = AdminClient::new(&server)?;
                match sha256 {
                    Some(sha) => {
                        client
                            .call(
                                Method::GET,
                                &format!("/v1/drivers/{target}/versions/{sha}"),
                                None,
                            )
                            .await?
                    }
                    None => {
                        client
                            .call(Method::GET, &format!("/v1/drivers/{target}"), None)
                            .await?
                    }
                }
            }
            DriversCommand::Activate { id, sha256, server } => {
                AdminClient::new(&server)?
                    .call(
                        Method::POST,
                        &format!("/v1/drivers/{id}/activate"),
                        Some(json!({ "sha256": sha256 })),
                    )
                    .await?
            }
            DriversCommand::Rollback { id, to, server } => {
                AdminClient::new(&server)?
                    .call(
                        Method::POST,
                        &format!("/v1/drivers/{id}/rollback"),
                        to.map(|sha| json!({ "sha256": sha })),
                    )
                    .await?
            }
            DriversCommand::Remove { id, sha256, server } => {
                AdminClient::new(&server)?
                    .call(
                        Method::DELETE,
                        &format!("/v1/drivers/{id}/versions/{sha256}"),
                        None,
                    )
                    .await?;
                eprintln!("removed {id} {sha256}");
                return Ok(ExitCode::SUCCESS);
            }
            DriversCommand::Pin {
                installation,
                sha256,
                unpin,
                server,
            } => {
                let sha = if unpin { None } else { sha256 };
                AdminClient::new(&server)?
                    .call(
                        Method::PUT,
                        &format!("/v1/installations/{installation}/driver-version"),
                        Some(json!({ "sha256": sha })),
                    )
                    .await?
            }
        };
        super::print_json(&out);
        Ok(ExitCode::SUCCESS)
    }
}

/// A line on stderr saying what an upload did, and the canary's differences, field by
/// field; stdout keeps the whole JSON answer.
fn summarize_added(added: &Value) {
    let d = &added["driver"];
    let state = if added["activated"] == true {
        "activated"
    } else {
        "kept, not activated"
    };
    eprintln!(
        "{} {} ({}): {state}",
        d["id"].as_str().unwrap_or("?"),
        d["version"].as_str().unwrap_or("?"),
        d["sha256"].as_str().unwrap_or("?")
    );
    let canary = &added["canary"];
    if canary.is_null() {
        return;
    }
    eprintln!(
        "canary: {} stored events compared, {} identical, {} differ",
        canary["compared"], canary["identical"], canary["differing"]
    );
    for event in canary["differences"].as_array().into_iter().flatten() {
        eprintln!(
            "  raw event {} ({} {}):",
            event["raw_event_id"],
            event["event_type"].as_str().unwrap_or(""),
            event["provider_event_id"].as_str().unwrap_or("")
        );
        for side in ["current_error", "candidate_error"] {
            if let Some(e) = event[side].as_str() {
                eprintln!("    {side}: {e}");
            }
        }
        for change in event["changes"].as_array().into_iter().flatten() {
            eprintln!(
                "    record {} {}: {} -> {}",
                change["record"],
                change["path"].as_str().unwrap_or(""),
                change["current"],
                change["candidate"]
            );
        }
    }
}
