//! Operator commands: thin clients of a running server's admin API.

use std::io::Read;

use anyhow::{Context, bail};
use clap::Subcommand;
use serde_json::{Value, json};

use super::ServerArgs;

#[derive(Subcommand)]
pub enum InstallationsCommand {
    /// Create an installation of a driver.
    Create {
        /// Driver id, e.g. `stripe`.
        #[arg(long)]
        driver: String,
        /// Installation id (generated when omitted).
        #[arg(long)]
        id: Option<String>,
        /// Settings as JSON text.
        #[arg(long, default_value = "{}")]
        settings: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// List live installations, oldest first: every page, or one with `--limit`/`--after`.
    List {
        /// Installations on the page (1 to 1000); only this page is printed.
        #[arg(long)]
        limit: Option<u32>,
        /// The `next_cursor` of the page before; only this page is printed.
        #[arg(long)]
        after: Option<String>,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Show one installation: settings, secret names, auth status, scopes, token expiry.
    Show {
        id: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Print the URL that starts the installation's OAuth authorization (open it in a
    /// browser, or send it to the account owner).
    Authorize {
        id: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Refresh the installation's access token now.
    Refresh {
        id: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Revoke the installation's authorization at the provider and forget its tokens.
    Revoke {
        id: String,
        #[arg(long)]
        reason: Option<String>,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Poll the installation now.
    Poll {
        id: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Backfill the installation from a time (RFC 3339), beside its live cursor.
    Backfill {
        id: String,
        #[arg(long)]
        since: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Pause the installation's scheduled polling.
    Pause {
        id: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Resume the installation's scheduled polling (the next poll is due at once).
    Resume {
        id: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Delete an installation (its events stay readable).
    Delete {
        id: String,
        #[command(flatten)]
        server: ServerArgs,
    },
}

#[derive(Subcommand)]
pub enum SecretsCommand {
    /// Set a secret. The value is read from `--value` or, safer, from standard input.
    Set {
        installation: String,
        name: String,
        /// The value; omit to read it from standard input (keeps it out of shell history).
        #[arg(long)]
        value: Option<String>,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Rotate a secret: the new value is used at once; the previous one still verifies
    /// webhooks for the grace period, then is retired.
    Rotate {
        installation: String,
        name: String,
        /// The new value; omit to read it from standard input.
        #[arg(long)]
        value: Option<String>,
        /// How long the previous value keeps verifying webhooks (at most 604800).
        #[arg(long, default_value_t = 86_400)]
        grace_seconds: u64,
        #[command(flatten)]
        server: ServerArgs,
    },
}

#[derive(Subcommand)]
pub enum EventsCommand {
    /// Print normalized events (CloudEvents JSON), oldest first.
    List {
        #[arg(long)]
        installation: Option<String>,
        /// Cursor from a previous page's `next_cursor`.
        #[arg(long)]
        after: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: u32,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// List raw events whose normalization failed (still retried, or dead).
    DeadLetters {
        #[arg(long)]
        installation: Option<String>,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Normalize failed raw events again with the driver loaded now: one by its id, or
    /// every one of an installation.
    Replay {
        /// The raw event id (`raw_event_id` of `events dead-letters`).
        raw_event: Option<i64>,
        #[arg(long, conflicts_with = "raw_event")]
        installation: Option<String>,
        #[command(flatten)]
        server: ServerArgs,
    },
}

/// An authenticated admin API client.
pub struct AdminClient {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl AdminClient {
    pub fn new(args: &ServerArgs) -> anyhow::Result<Self> {
        let token = match &args.token {
            Some(t) => t.clone(),
            None => {
                let path = args.data_dir.join("admin.token");
                std::fs::read_to_string(&path)
                    .with_context(|| {
                        format!(
                            "no --token / SLUICE_ADMIN_TOKEN, and cannot read {}",
                            path.display()
                        )
                    })?
                    .trim()
                    .to_string()
            }
        };
        Ok(Self {
            http: reqwest::Client::new(),
            base: args.server.trim_end_matches('/').to_string(),
            token,
        })
    }

    /// Send a request; non-2xx answers become errors carrying the server's message.
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let url = format!("{}{path}", self.base);
        let mut request = self.http.request(method, &url);
        if let Some(body) = body {
            request = request.json(&body);
        }
        self.send(request, &url).await
    }

    /// Send raw bytes (a driver component) with `content_type`.
    pub async fn call_bytes(
        &self,
        method: reqwest::Method,
        path: &str,
        content_type: &str,
        bytes: Vec<u8>,
    ) -> anyhow::Result<Value> {
        let url = format!("{}{path}", self.base);
        let request = self
            .http
            .request(method, &url)
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .body(bytes);
        self.send(request, &url).await
    }

    async fn send(&self, request: reqwest::RequestBuilder, url: &str) -> anyhow::Result<Value> {
        let response = request
            .bearer_auth(&self.token)
            .send()
            .await
            .with_context(|| format!("calling {url}"))?;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        let value: Value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        if !status.is_success() {
            bail!(
                "{status}: {}",
                serde_json::to_string_pretty(&value).unwrap_or_default()
            );
        }
        Ok(value)
    }
}

fn print(value: &Value) {
    super::print_json(value);
}

async fn pause_or_resume(id: &str, server: &ServerArgs, action: &str) -> anyhow::Result<()> {
    AdminClient::new(server)?
        .call(
            reqwest::Method::POST,
            &format!("/v1/installations/{id}/{action}"),
            None,
        )
        .await?;
    eprintln!("{action}d polling of {id}");
    Ok(())
}

impl InstallationsCommand {
    pub async fn run(self) -> anyhow::Result<()> {
        match self {
            InstallationsCommand::Create {
                driver,
                id,
                settings,
                server,
            } => {
                let settings: Value =
                    serde_json::from_str(&settings).context("--settings is not JSON")?;
                let mut body = json!({"driver_id": driver, "settings": settings});
                if let Some(id) = id {
                    body["installation_id"] = id.into();
                }
                print(
                    &AdminClient::new(&server)?
                        .call(reqwest::Method::POST, "/v1/installations", Some(body))
                        .await?,
                );
            }
            InstallationsCommand::List {
                limit,
                after,
                server,
            } => {
                let client = AdminClient::new(&server)?;
                let page = |after: Option<String>, limit: Option<u32>| {
                    let mut path = format!("/v1/installations?limit={}", limit.unwrap_or(1000));
                    if let Some(after) = after {
                        path.push_str(&format!("&after={after}"));
                    }
                    path
                };
                if limit.is_some() || after.is_some() {
                    print(
                        &client
                            .call(reqwest::Method::GET, &page(after, limit), None)
                            .await?,
                    );
                    return Ok(());
                }
                let (mut all, mut after) = (Vec::new(), None);
                loop {
                    let answer = client
                        .call(reqwest::Method::GET, &page(after, None), None)
                        .await?;
                    if let Some(list) = answer["installations"].as_array() {
                        all.extend(list.iter().cloned());
                    }
                    after = answer["next_cursor"].as_str().map(str::to_string);
                    if after.is_none() {
                        break;
                    }
                }
                print(&json!({ "installations": all }));
            }
            InstallationsCommand::Show { id, server } => {
                print(
                    &AdminClient::new(&server)?
                        .call(
                            reqwest::Method::GET,
                            &format!("/v1/installations/{id}"),
                            None,
                        )
                        .await?,
                );
            }
            InstallationsCommand::Authorize { id, server } => {
                // The start URL is public (the provider's user opens it); the admin token
                // only proves the installation exists.
                let client = AdminClient::new(&server)?;
                client
                    .call(
                        reqwest::Method::GET,
                        &format!("/v1/installations/{id}"),
                        None,
                    )
                    .await?;
                println!("{}/oauth/{id}/start", client.base);
            }
            InstallationsCommand::Refresh { id, server } => {
                print(
                    &AdminClient::new(&server)?
                        .call(
                            reqwest::Method::POST,
                            &format!("/v1/installations/{id}/refresh"),
                            None,
                        )
                        .await?,
                );
            }
            InstallationsCommand::Revoke { id, reason, server } => {
                let body = reason.map(|r| json!({ "reason": r }));
                AdminClient::new(&server)?
                    .call(
                        reqwest::Method::POST,
                        &format!("/v1/installations/{id}/revoke"),
                        body,
                    )
                    .await?;
                eprintln!("revoked {id}");
            }
            InstallationsCommand::Backfill { id, since, server } => {
                print(
                    &AdminClient::new(&server)?
                        .call(
                            reqwest::Method::POST,
                            &format!("/v1/installations/{id}/backfill"),
                            Some(json!({ "since": since })),
                        )
                        .await?,
                );
            }
            InstallationsCommand::Pause { id, server } => {
                pause_or_resume(&id, &server, "pause").await?
            }
            InstallationsCommand::Resume { id, server } => {
                pause_or_resume(&id, &server, "resume").await?
            }
            InstallationsCommand::Poll { id, server } => {
                print(
                    &AdminClient::new(&server)?
                        .call(
                            reqwest::Method::POST,
                            &format!("/v1/installations/{id}/poll"),
                            None,
                        )
                        .await?,
                );
            }
            InstallationsCommand::Delete { id, server } => {
                AdminClient::new(&server)?
                    .call(
                        reqwest::Method::DELETE,
                        &format!("/v1/installations/{id}"),
                        None,
                    )
                    .await?;
                eprintln!("deleted {id}");
            }
        }
        Ok(())
    }
}

/// `--value`, or standard input without its final line break.
fn secret_value(value: Option<String>) -> anyhow::Result<String> {
    match value {
        Some(v) => Ok(v),
        None => {
            let mut v = String::new();
            std::io::stdin()
                .read_to_string(&mut v)
                .context("reading the secret from stdin")?;
            Ok(v.trim_end_matches(['\n', '\r']).to_string())
        }
    }
}

impl SecretsCommand {
    pub async fn run(self) -> anyhow::Result<()> {
        match self {
            SecretsCommand::Set {
                installation,
                name,
                value,
                server,
            } => {
                let value = secret_value(value)?;
                AdminClient::new(&server)?
                    .call(
                        reqwest::Method::PUT,
                        &format!("/v1/installations/{installation}/secrets/{name}"),
                        Some(json!({ "value": value })),
                    )
                    .await?;
                eprintln!("secret {name} set on {installation}");
            }
            SecretsCommand::Rotate {
                installation,
                name,
                value,
                grace_seconds,
                server,
            } => {
                let value = secret_value(value)?;
                print(
                    &AdminClient::new(&server)?
                        .call(
                            reqwest::Method::POST,
                            &format!("/v1/installations/{installation}/secrets/{name}/rotate"),
                            Some(json!({ "value": value, "grace_seconds": grace_seconds })),
                        )
                        .await?,
                );
            }
        }
        Ok(())
    }
}

impl EventsCommand {
    pub async fn run(self) -> anyhow::Result<()> {
        let (installation, after, limit, server) = match self {
            EventsCommand::List {
                installation,
                after,
                limit,
                server,
            } => (installation, after, limit, server),
            EventsCommand::DeadLetters {
                installation,
                server,
            } => {
                let path = match installation {
                    Some(i) => format!("/v1/dead-letters?installation_id={i}"),
                    None => "/v1/dead-letters".into(),
                };
                print(
                    &AdminClient::new(&server)?
                        .call(reqwest::Method::GET, &path, None)
                        .await?,
                );
                return Ok(());
            }
            EventsCommand::Replay {
                raw_event,
                installation,
                server,
            } => {
                let path = match (raw_event, installation) {
                    (Some(id), None) => format!("/v1/raw-events/{id}/replay"),
                    (None, Some(i)) => format!("/v1/installations/{i}/dead-letters/replay"),
                    _ => bail!("name a raw event id or --installation"),
                };
                print(
                    &AdminClient::new(&server)?
                        .call(reqwest::Method::POST, &path, None)
                        .await?,
                );
                return Ok(());
            }
        };
        let mut query = format!("/v1/events?limit={limit}");
        if let Some(i) = installation {
            query.push_str(&format!("&installation_id={i}"));
        }
        if let Some(a) = after {
            query.push_str(&format!("&after={a}"));
        }
        print(
            &AdminClient::new(&server)?
                .call(reqwest::Method::GET, &query, None)
                .await?,
        );
        Ok(())
    }
}
