//! The `sluice` command line. `serve` runs the server; the operator commands talk to a
//! running server's admin API; `driver` and `webhook` are driver-author tools.

mod client;
mod driver;
mod drivers;
mod endpoints;
pub mod logging;
mod serve;
mod webhook;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "sluice",
    version,
    about = "Sandboxed WebAssembly host for provider integration drivers"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server: webhooks, admin API, drivers.
    Serve(serve::ServeArgs),
    /// The configuration `serve` would run with.
    #[command(subcommand)]
    Config(serve::ConfigCommand),
    /// Create, list and delete installations.
    #[command(subcommand)]
    Installations(client::InstallationsCommand),
    /// Set and rotate installation secrets (write-only).
    #[command(subcommand)]
    Secrets(client::SecretsCommand),
    /// Read normalized events; list and replay dead letters.
    #[command(subcommand)]
    Events(client::EventsCommand),
    /// Outbound webhook endpoints: create, inspect, rotate secrets, replay.
    #[command(subcommand)]
    Endpoints(endpoints::EndpointsCommand),
    /// The NATS JetStream sink's backlog and failures.
    Sinks {
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Sign a payload the way the provider would and send it.
    #[command(subcommand)]
    Webhook(webhook::WebhookCommand),
    /// Inspect and test driver components locally, without a server.
    #[command(subcommand)]
    Driver(driver::DriverCommand),
    /// A running host's drivers: upload (with a canary), versions, activate, rollback,
    /// remove, pin; `inspect FILE` works without a host.
    #[command(subcommand)]
    Drivers(drivers::DriversCommand),
}

/// Where the admin API is and how to authenticate to it.
#[derive(Args, Clone)]
pub struct ServerArgs {
    /// Base URL of a running `sluice serve`.
    #[arg(long, env = "SLUICE_SERVER", default_value = "http://127.0.0.1:8080")]
    pub server: String,
    /// Admin token. Default: `<data dir>/admin.token`, written by `sluice serve`.
    #[arg(long, env = "SLUICE_ADMIN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Data directory of the local server, to find its admin token.
    #[arg(long, env = "SLUICE_DATA_DIR", default_value = "sluice-data")]
    pub data_dir: PathBuf,
}

/// Print a JSON document on stdout. A closed pipe (`sluice events list | head`) is not an
/// error worth a panic: the reader has what it wanted.
pub(crate) fn print_json(value: &impl serde::Serialize) {
    use std::io::Write;
    let text = serde_json::to_string_pretty(value).unwrap_or_default();
    let _ = writeln!(std::io::stdout().lock(), "{text}");
}

/// Run the command line; errors are printed with their context chain.
pub fn main() -> ExitCode {
    main_with(crate::node::Extensions::default())
}

/// [`main`] for a program that embeds the host: `serve` runs with `extensions`.
pub fn main_with(extensions: crate::node::Extensions) -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve(args) => serve::run(args, extensions)
                .await
                .map(|()| ExitCode::SUCCESS),
            Command::Config(cmd) => cmd.run().map(|()| ExitCode::SUCCESS),
            Command::Installations(cmd) => cmd.run().await.map(|()| ExitCode::SUCCESS),
            Command::Secrets(cmd) => cmd.run().await.map(|()| ExitCode::SUCCESS),
            Command::Events(cmd) => cmd.run().await.map(|()| ExitCode::SUCCESS),
            Command::Endpoints(cmd) => cmd.run().await.map(|()| ExitCode::SUCCESS),
            Command::Sinks { server } => endpoints::sinks(server).await.map(|()| ExitCode::SUCCESS),
            Command::Webhook(cmd) => cmd.run().await,
            Command::Driver(cmd) => cmd.run().await,
            Command::Drivers(cmd) => cmd.run().await,
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
