//! The HTTP benchmark: real servers on loopback, the same pre-signed Stripe deliveries, one
//! table of accepted deliveries per second and latencies, with ratios.
//!
//! Rows, all in one run on this machine:
//! - the wire limit: `GET /healthz` on the same `sluice serve`;
//! - `sluice serve` on SQLite and on PostgreSQL, the Stripe driver in the sandbox;
//! - the same server with the Stripe driver compiled natively (the `sluice-native` binary);
//! - what a user would write instead: one Node process with the official `stripe` library's
//!   `constructEvent` and a `pg` insert (`bench/peer/server.js`).
//!
//! Then p50/p99 at a fixed 1,000 requests/s on SQLite, and resident memory and latency with
//! 100,000 installations.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};

use crate::load::{self, Expect, Outcome};

const SECRET: &str = "whsec_bench_0123456789abcdef0123456789abcdef";
const MASTER_KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
const TOKEN: &str = "bench-admin-token-0123456789";
const INSTALLATION: &str = "inst_bench";
/// Keep-alive connections of the closed-loop rows (as `wrk -c32`).
const CONNECTIONS: usize = 32;
/// Each closed-loop row runs this long (or until its requests run out).
const ROW_TIME: Duration = Duration::from_secs(10);
/// Requests prepared for a closed-loop row (~1.3 KB each): an upper bound on its count.
const ROW_REQUESTS: usize = 250_000;
const FIXED_RATE: u32 = 1_000;
const FIXED_TIME: Duration = Duration::from_secs(10);
const MANY_INSTALLATIONS: usize = 100_000;

/// Where things are.
pub struct Setup {
    pub root: PathBuf,
    pub sluice: PathBuf,
    /// `sluice-native`: the same server with the Stripe driver compiled in.
    pub sluice_native: PathBuf,
    pub drivers: PathBuf,
    pub postgres: Option<String>,
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn free_addr() -> anyhow::Result<SocketAddr> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

/// A Stripe `charge.succeeded` event of about 1 KB with a unique id.
pub fn stripe_event(n: usize) -> Vec<u8> {
    format!(
        r#"{{"id":"evt_bench_{n:012}","object":"event","api_version":"2025-04-30.basil","created":1748465448,"type":"charge.succeeded","livemode":false,"pending_webhooks":1,"request":{{"id":"req_bench_{n:012}","idempotency_key":null}},"data":{{"object":{{"id":"ch_bench_{n:012}","object":"charge","amount":2000,"amount_captured":2000,"amount_refunded":0,"balance_transaction":"txn_3RTqw0RMEOaIvYpU1gvuA0Uj","billing_details":{{"address":{{"city":"Paris","country":"FR","line1":"1 rue de Rivoli","line2":null,"postal_code":"75001","state":null}},"email":"jenny@example.com","name":"Jenny Rosen","phone":null}},"captured":true,"created":1748465448,"currency":"eur","customer":"cus_SOXp7yQbNnLX5w","description":"Order 1001","failure_code":null,"failure_message":null,"metadata":{{"order_id":"1001"}},"paid":true,"payment_intent":"pi_bench_{n:012}","payment_method":"pm_1RTqw0RMEOaIvYpUKdgyHQkE","payment_method_details":{{"card":{{"brand":"visa","last4":"4242","exp_month":8,"exp_year":2027}},"type":"card"}},"receipt_email":null,"refunded":false,"status":"succeeded"}}}}}}"#
    )
    .into_bytes()
}

fn stripe_header(body: &[u8], secret: &str, t: i64) -> String {
    let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(secret.as_bytes())
        .expect("HMAC takes any key length");
    mac.update(format!("{t}.").as_bytes());
    mac.update(body);
    format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes()))
}

/// `count` signed deliveries to `installation(i)`, unique event ids from `first`.
fn deliveries(
    count: usize,
    first: usize,
    installation: impl Fn(usize) -> String,
) -> Arc<Vec<Vec<u8>>> {
    signed(count, first, SECRET, installation)
}

fn signed(
    count: usize,
    first: usize,
    secret: &str,
    installation: impl Fn(usize) -> String,
) -> Arc<Vec<Vec<u8>>> {
    let t = now();
    Arc::new(
        (0..count)
            .map(|i| {
                let body = stripe_event(first + i);
                let mut request = format!(
                    "POST /webhooks/{} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\nstripe-signature: {}\r\ncontent-length: {}\r\n\r\n",
                    installation(i),
                    stripe_header(&body, secret, t),
                    body.len()
                )
                .into_bytes();
                request.extend_from_slice(&body);
                request
            })
            .collect(),
    )
}

fn health_requests(count: usize) -> Arc<Vec<Vec<u8>>> {
    let request = b"GET /healthz HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n".to_vec();
    Arc::new(vec![request; count])
}

/// A server process under test.
struct Server {
    child: Child,
    addr: SocketAddr,
    _dir: TempDir,
}

impl Server {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The first few error lines of the server's log, to explain a row's errors.
    fn log_errors(&self) -> Vec<String> {
        std::fs::read_to_string(self._dir.0.join("sluice.log"))
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("ERROR"))
            .take(3)
            .map(str::to_string)
            .collect()
    }

    /// Resident memory, KiB.
    fn rss_kib(&self) -> anyhow::Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .context("no VmRSS")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> anyhow::Result<Self> {
        let path = std::env::temp_dir().join(format!("sluice-bench-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path)?;
        Ok(Self(path))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

async fn wait_ready(addr: SocketAddr, child: &mut Child) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let url = format!("http://{addr}/healthz");
    loop {
        if let Some(status) = child.try_wait()? {
            bail!("the server exited with {status} before it was ready");
        }
        if reqwest::get(&url)
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("the server did not answer {url} within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn admin(
    addr: SocketAddr,
    method: reqwest::Method,
    path: &str,
    body: Value,
) -> anyhow::Result<()> {
    let response = reqwest::Client::new()
        .request(method, format!("http://{addr}{path}"))
        .bearer_auth(TOKEN)
        .json(&body)
        .send()
        .await?;
    if !response.status().is_success() {
        bail!("{path}: {} {}", response.status(), response.text().await?);
    }
    Ok(())
}

/// Start `sluice serve` on `database` ("sqlite" for a file in its data dir), with the
/// Stripe installation the deliveries go to.
async fn start_sluice(
    setup: &Setup,
    name: &str,
    database: Option<&str>,
    native: bool,
) -> anyhow::Result<Server> {
    let dir = TempDir::new(name)?;
    let addr = free_addr()?;
    let mut command = Command::new(if native {
        &setup.sluice_native
    } else {
        &setup.sluice
    });
    command
        .arg("serve")
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("SLUICE_LISTEN", addr.to_string())
        .env("SLUICE_DATA_DIR", dir.0.join("data"))
        .env("SLUICE_DRIVERS_DIR", &setup.drivers)
        .env("SLUICE_ADMIN_TOKEN", TOKEN)
        .env("SLUICE_MASTER_KEY", MASTER_KEY)
        .env("SLUICE_LOG", "warn")
        .stdin(Stdio::null());
    // The log is written to stdout: both streams go to the file `log_errors` reads (until
    // 12-02 stdout went nowhere, so the errors of failed rows were never seen).
    let log = std::fs::File::create(dir.0.join("sluice.log"))?;
    command.stdout(log.try_clone()?).stderr(log);
    if let Some(url) = database {
        command.env("SLUICE_DATABASE_URL", url);
    }
    let mut child = command.spawn().context("starting sluice serve")?;
    wait_ready(addr, &mut child).await?;
    let server = Server {
        child,
        addr,
        _dir: dir,
    };
    admin(
        addr,
        reqwest::Method::POST,
        "/v1/installations",
        json!({"installation_id": INSTALLATION, "driver_id": "stripe"}),
    )
    .await
    .ok(); // already there when the database was prepared beforehand
    if let Err(e) = admin(
        addr,
        reqwest::Method::PUT,
        &format!("/v1/installations/{INSTALLATION}/secrets/webhook_secret"),
        json!({"value": SECRET}),
    )
    .await
    {
        // The log goes with the server's directory: say what it said first.
        return Err(e.context(format!("server log: {:?}", server.log_errors())));
    }
    Ok(server)
}

fn psql(admin_url: &str, sql: &str) -> anyhow::Result<()> {
    let status = Command::new("psql")
        .args([
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-d",
            admin_url,
            "-c",
            sql,
        ])
        .stdin(Stdio::null())
        .status()
        .context("running psql")?;
    if !status.success() {
        bail!("psql `{sql}` failed");
    }
    Ok(())
}

/// A PostgreSQL database for one row, dropped afterwards.
struct PgDatabase {
    admin: String,
    name: String,
}

impl PgDatabase {
    fn create(admin: &str, name: &str) -> anyhow::Result<Self> {
        psql(
            admin,
            &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
        )?;
        psql(admin, &format!("CREATE DATABASE {name}"))?;
        Ok(Self {
            admin: admin.to_string(),
            name: name.to_string(),
        })
    }

    fn url(&self) -> String {
        let base = self.admin.split('?').next().unwrap_or(&self.admin);
        let cut = base
            .rfind('/')
            .filter(|&i| i > base.find("://").map_or(0, |j| j + 2));
        let prefix = cut.map_or(base, |i| &base[..i]);
        format!("{prefix}/{}", self.name)
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let _ = psql(
            &self.admin,
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        );
    }
}

async fn start_node(setup: &Setup, database: &str) -> anyhow::Result<Server> {
    let peer = setup.root.join("bench/peer");
    let dir = TempDir::new("node")?;
    let addr = free_addr()?;
    let mut child = Command::new("node")
        .arg(peer.join("server.js"))
        .env("PORT", addr.port().to_string())
        .env("DATABASE_URL", database)
        .env("WEBHOOK_SECRET", SECRET)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.0.join("node.log"))?)
        .spawn()
        .context("starting node bench/peer/server.js")?;
    wait_ready(addr, &mut child).await?;
    Ok(Server {
        child,
        addr,
        _dir: dir,
    })
}

/// One table row.
struct Row {
    name: String,
    outcome: Outcome,
}

fn run_closed(
    addr: SocketAddr,
    requests: Arc<Vec<Vec<u8>>>,
    expect: Expect,
) -> anyhow::Result<Outcome> {
    // The load generator gets one thread of its own; the server has the machine's cores.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(load::closed_loop(
        addr,
        requests,
        CONNECTIONS,
        ROW_TIME,
        expect,
    ))
}

fn run_fixed(addr: SocketAddr, requests: Arc<Vec<Vec<u8>>>) -> anyhow::Result<Outcome> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(load::fixed_rate(
        addr,
        requests,
        FIXED_RATE,
        FIXED_TIME,
        Expect::Stored,
    ))
}

/// Prepare a SQLite database with `count` Stripe installations `inst_many_{i}` sharing the
/// bench's webhook secret, written directly in one transaction.
async fn many_installations(path: &Path, count: usize) -> anyhow::Result<()> {
    let key = sluice_store::MasterKey::parse(MASTER_KEY)?;
    let cipher = sluice_store::SecretCipher::new(key);
    let store =
        sluice_store::Store::connect(&format!("sqlite://{}", path.display()), cipher.clone())
            .await?;
    let mut tx = store.pool().begin().await?;
    let created = "2026-01-01T00:00:00Z";
    for i in 0..count {
        let id = sluice_store::InstallationId::parse(&format!("inst_many_{i}"))?;
        sqlx::query("INSERT INTO installations (id, driver_id, settings, account_key, created_at) VALUES ($1, 'stripe', '{}', NULL, $2)")
            .bind(id.as_str())
            .bind(created)
            .execute(&mut *tx)
            .await?;
        sqlx::query("INSERT INTO secrets (installation_id, name, ciphertext, updated_at) VALUES ($1, 'webhook_secret', $2, $3)")
            .bind(id.as_str())
            .bind(cipher.encrypt(&id, "webhook_secret", SECRET.as_bytes())?)
            .bind(created)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    store.close().await;
    Ok(())
}

/// Flush what earlier rows left in the page cache and let the disk go quiet, so a
/// fixed-rate row measures its own commits' fsyncs, not the writeback of the burst before
/// it (on this machine's disk that writeback stalls an fsync for up to ~100 ms).
fn settle_disk() {
    let _ = Command::new("sync").status();
    std::thread::sleep(Duration::from_secs(2));
}

fn ms(v: f64) -> String {
    format!("{v:.2}")
}

/// Only the closed-loop Stripe load, against a running server.
pub fn load_only(
    addr: SocketAddr,
    installation: &str,
    secret: &str,
    fixed: bool,
) -> anyhow::Result<()> {
    // Event ids from the clock, so runs against the same database do not repeat.
    let first = (now() as usize % 1_000_000) * 1_000_000;
    let o = if fixed {
        run_fixed(
            addr,
            signed(20_000, first, secret, |_| installation.to_string()),
        )?
    } else {
        run_closed(
            addr,
            signed(ROW_REQUESTS, first, secret, |_| installation.to_string()),
            Expect::Stored,
        )?
    };
    println!(
        "{:.0} accepted/s, p50 {} ms, p99 {} ms, p99.9 {} ms, {} errors {:?}",
        o.accepted_per_second(),
        ms(o.quantile_ms(0.5)),
        ms(o.quantile_ms(0.99)),
        ms(o.quantile_ms(0.999)),
        o.errors,
        o.first_error
    );
    Ok(())
}

/// Run every row and print the tables (markdown).
pub fn run(setup: &Setup) -> anyhow::Result<()> {
    // Servers are started and prepared on this runtime; each load runs on one of its own.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let pg = setup
        .postgres
        .clone()
        .context("the HTTP bench needs PostgreSQL: set SLUICE_BENCH_POSTGRES_URL (e.g. postgres://postgres@127.0.0.1:5432/postgres)")?;
    let mut rows = Vec::new();

    // SQLite: wire limit, deliveries, then the fixed rate.
    let sqlite = rt.block_on(start_sluice(setup, "sqlite", None, false))?;
    let warm = deliveries(2_000, 10_000_000, |_| INSTALLATION.into());
    run_closed(sqlite.addr, warm, Expect::Stored)?;
    rows.push(Row {
        name: "`GET /healthz` on the same `sluice serve` (wire limit)".into(),
        outcome: run_closed(sqlite.addr, health_requests(2_000_000), Expect::Any2xx)?,
    });
    rows.push(Row {
        name: "Sluice, SQLite (driver in the sandbox)".into(),
        outcome: run_closed(
            sqlite.addr,
            deliveries(ROW_REQUESTS, 0, |_| INSTALLATION.into()),
            Expect::Stored,
        )?,
    });
    settle_disk();
    let fixed_one = run_fixed(
        sqlite.addr,
        deliveries(20_000, 20_000_000, |_| INSTALLATION.into()),
    )?;
    let rss_one = sqlite.rss_kib()?;
    drop(sqlite);

    // PostgreSQL.
    let pg_sluice = PgDatabase::create(&pg, "sluice_bench")?;
    let server = rt.block_on(start_sluice(
        setup,
        "postgres",
        Some(&pg_sluice.url()),
        false,
    ))?;
    run_closed(
        server.addr,
        deliveries(2_000, 10_000_000, |_| INSTALLATION.into()),
        Expect::Stored,
    )?;
    rows.push(Row {
        name: "Sluice, PostgreSQL (driver in the sandbox)".into(),
        outcome: run_closed(
            server.addr,
            deliveries(ROW_REQUESTS, 0, |_| INSTALLATION.into()),
            Expect::Stored,
        )?,
    });
    drop(server);
    drop(pg_sluice);

    // The same server with the driver compiled natively.
    let native = rt.block_on(start_sluice(setup, "native", None, true))?;
    run_closed(
        native.addr,
        deliveries(2_000, 10_000_000, |_| INSTALLATION.into()),
        Expect::Stored,
    )?;
    rows.push(Row {
        name: "Sluice, SQLite, Stripe driver compiled natively (bench-only build)".into(),
        outcome: run_closed(
            native.addr,
            deliveries(ROW_REQUESTS, 0, |_| INSTALLATION.into()),
            Expect::Stored,
        )?,
    });
    drop(native);

    // The Node peer.
    let pg_node = PgDatabase::create(&pg, "sluice_bench_node")?;
    let node = rt.block_on(start_node(setup, &pg_node.url()))?;
    run_closed(
        node.addr,
        deliveries(2_000, 10_000_000, |_| INSTALLATION.into()),
        Expect::Stored,
    )?;
    let node_row = Row {
        name: "Node: official `stripe` `constructEvent` + `pg` insert (`bench/peer`)".into(),
        outcome: run_closed(
            node.addr,
            deliveries(ROW_REQUESTS, 0, |_| INSTALLATION.into()),
            Expect::Stored,
        )?,
    };
    drop(node);
    drop(pg_node);
    let node_rate = node_row.outcome.accepted_per_second();
    rows.push(node_row);

    // 100,000 installations on SQLite: every one warmed once, then the fixed rate spread
    // over all of them.
    let dir = TempDir::new("many")?;
    let db = dir.0.join("many.db");
    rt.block_on(many_installations(&db, MANY_INSTALLATIONS))?;
    let db_url = format!("sqlite://{}", db.display());
    let many = rt.block_on(start_sluice(setup, "many-server", Some(&db_url), false))?;
    let warm_all = deliveries(MANY_INSTALLATIONS, 30_000_000, |i| format!("inst_many_{i}"));
    let warmed = run_closed(many.addr, warm_all, Expect::Stored)?;
    let spread = deliveries(20_000, 40_000_000, |i| {
        format!("inst_many_{}", (i * 7919) % MANY_INSTALLATIONS)
    });
    settle_disk();
    let fixed_many = run_fixed(many.addr, spread)?;
    let rss_many = many.rss_kib()?;
    if warmed.errors + fixed_many.errors > 0 {
        for line in many.log_errors() {
            println!("many-installations server log: {line}");
        }
    }
    drop(many);

    println!(
        "### Stripe deliveries over HTTP ({} cores, {CONNECTIONS} keep-alive connections, {}s a row)",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        ROW_TIME.as_secs()
    );
    println!();
    println!("| server, same run | accepted/s | p50 ms | p99 ms | p99.9 ms | errors | vs Node |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for row in &rows {
        let o = &row.outcome;
        println!(
            "| {} | {:.0} | {} | {} | {} | {} | {:.2}x |",
            row.name,
            o.accepted_per_second(),
            ms(o.quantile_ms(0.5)),
            ms(o.quantile_ms(0.99)),
            ms(o.quantile_ms(0.999)),
            o.errors,
            o.accepted_per_second() / node_rate
        );
    }
    println!();
    println!(
        "### Fixed {FIXED_RATE} requests/s, SQLite, {}s",
        FIXED_TIME.as_secs()
    );
    println!();
    println!("| installations | p50 ms | p99 ms | p99.9 ms | errors | resident memory |");
    println!("|---:|---:|---:|---:|---:|---:|");
    for (n, o, rss) in [
        (1, &fixed_one, rss_one),
        (MANY_INSTALLATIONS, &fixed_many, rss_many),
    ] {
        println!(
            "| {n} | {} | {} | {} | {} | {:.0} MiB |",
            ms(o.quantile_ms(0.5)),
            ms(o.quantile_ms(0.99)),
            ms(o.quantile_ms(0.999)),
            o.errors,
            rss as f64 / 1024.0
        );
    }
    println!();
    for (name, o) in rows.iter().map(|r| (r.name.as_str(), &r.outcome)).chain([
        ("fixed rate, 1 installation", &fixed_one),
        ("fixed rate, 100k", &fixed_many),
        ("warming 100k", &warmed),
    ]) {
        if let Some(e) = &o.first_error {
            println!("First error of \"{name}\": {e}");
        }
    }
    println!(
        "Warming {MANY_INSTALLATIONS} installations (one delivery each, first sight of each): {:.0} accepted/s, p99 {} ms, {} errors.",
        warmed.accepted_per_second(),
        ms(warmed.quantile_ms(0.99)),
        warmed.errors
    );
    Ok(())
}
