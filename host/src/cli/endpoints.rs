//! `sluice endpoints …` and `sluice sinks`: outbound webhook endpoints and the NATS sink,
//! through the admin API.

use anyhow::bail;
use clap::Subcommand;
use reqwest::Method;
use serde_json::{Value, json};

use super::ServerArgs;
use super::client::AdminClient;

#[derive(Subcommand)]
pub enum EndpointsCommand {
    /// Create an endpoint; prints it with its signing secret (shown this once).
    Create {
        /// Where deliveries are posted.
        url: String,
        /// Only this installation's events.
        #[arg(long)]
        installation: Option<String>,
        /// Only this driver's events.
        #[arg(long)]
        driver: Option<String>,
        /// Only events of this type (repeat for several).
        #[arg(long = "type")]
        types: Vec<String>,
        /// Deliveries per second at most.
        #[arg(long)]
        rate_limit: Option<i64>,
        #[arg(long)]
        description: Option<String>,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// List endpoints with their backlog and circuit.
    List {
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Show one endpoint.
    Show {
        id: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Stop sending to an endpoint (its events wait).
    Disable {
        id: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Send to an endpoint again.
    Enable {
        id: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// A new signing secret (printed once); the old one signs beside it for the grace.
    RotateSecret {
        id: String,
        /// Seconds the old secret still signs (default one day, at most seven).
        #[arg(long)]
        grace: Option<i64>,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Delete an endpoint and its outbox.
    Delete {
        id: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Delivery attempts, newest first.
    Attempts {
        id: String,
        /// Only this event's.
        #[arg(long)]
        event: Option<String>,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Deliveries in log order, optionally by status (pending, delivered, dead).
    Deliveries {
        id: String,
        #[arg(long)]
        status: Option<String>,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Send again: one event (`--event`), or everything received since a time (`--since`).
    Replay {
        id: String,
        #[arg(long, conflicts_with = "since")]
        event: Option<String>,
        /// RFC 3339, e.g. 2026-12-01T00:00:00Z.
        #[arg(long)]
        since: Option<String>,
        #[command(flatten)]
        server: ServerArgs,
    },
}

impl EndpointsCommand {
    pub async fn run(self) -> anyhow::Result<()> {
        let (server, method, path, body): (ServerArgs, Method, String, Option<Value>) = match self {
            EndpointsCommand::Create {
                url,
                installation,
                driver,
                types,
                rate_limit,
                description,
                server,
            } => {
                let body = json!({
                    "url": url,
                    "installation_id": installation,
                    "driver_id": driver,
                    "event_types": (!types.is_empty()).then_some(types),
                    "rate_limit_per_sec": rate_limit,
                    "description": description,
                });
                (server, Method::POST, "/v1/endpoints".into(), Some(body))
            }
            EndpointsCommand::List { server } => {
                (server, Method::GET, "/v1/endpoints".into(), None)
            }
            EndpointsCommand::Show { id, server } => {
                (server, Method::GET, format!("/v1/endpoints/{id}"), None)
            }
            EndpointsCommand::Disable { id, server } => {
                let body = json!({"disabled": true});
                (
                    server,
                    Method::PATCH,
                    format!("/v1/endpoints/{id}"),
                    Some(body),
                )
            }
            EndpointsCommand::Enable { id, server } => {
                let body = json!({"disabled": false});
                (
                    server,
                    Method::PATCH,
                    format!("/v1/endpoints/{id}"),
                    Some(body),
                )
            }
            EndpointsCommand::RotateSecret { id, grace, server } => {
                let body = json!({"rotate_secret": {"grace_seconds": grace}});
                (
                    server,
                    Method::PATCH,
                    format!("/v1/endpoints/{id}"),
                    Some(body),
                )
            }
            EndpointsCommand::Delete { id, server } => {
                (server, Method::DELETE, format!("/v1/endpoints/{id}"), None)
            }
            EndpointsCommand::Attempts { id, event, server } => {
                let mut path = format!("/v1/endpoints/{id}/attempts");
                if let Some(e) = event {
                    path.push_str(&format!("?event_id={e}"));
                }
                (server, Method::GET, path, None)
            }
            EndpointsCommand::Deliveries { id, status, server } => {
                let mut path = format!("/v1/endpoints/{id}/deliveries");
                if let Some(s) = status {
                    path.push_str(&format!("?status={s}"));
                }
                (server, Method::GET, path, None)
            }
            EndpointsCommand::Replay {
                id,
                event,
                since,
                server,
            } => match (event, since) {
                (Some(e), None) => (
                    server,
                    Method::POST,
                    format!("/v1/endpoints/{id}/deliveries/{e}/replay"),
                    None,
                ),
                (None, Some(since)) => (
                    server,
                    Method::POST,
                    format!("/v1/endpoints/{id}/replay"),
                    Some(json!({"since": since})),
                ),
                _ => bail!("name an event (--event) or a time (--since)"),
            },
        };
        let answer = AdminClient::new(&server)?.call(method, &path, body).await?;
        if !answer.is_null() {
            super::print_json(&answer);
        }
        Ok(())
    }
}

/// `sluice sinks`: the NATS sink's backlog and failures.
pub async fn sinks(server: ServerArgs) -> anyhow::Result<()> {
    let answer = AdminClient::new(&server)?
        .call(Method::GET, "/v1/sinks", None)
        .await?;
    super::print_json(&answer);
    Ok(())
}
