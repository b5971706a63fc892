//! A real `sluice serve` as a child process on a free loopback port, with its own data
//! dir, database and drivers dir, and HTTP helpers to talk to it; plus `sluice driver test`
//! runs and the CLI.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::paths::{bundled_driver, compile_cache, sluice_bin, test_driver};
use crate::random_hex;

/// How long `sluice serve` may take to answer `GET /healthz`.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// Per-request timeout of the test client (well above the host's own deadlines).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The storage backend a scenario runs against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A directory removed on drop (kept, with its path printed, when the test panicked).
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub fn new(prefix: &str) -> Self {
        let path = std::env::temp_dir().join(format!("{prefix}-{}", random_hex()));
        std::fs::create_dir_all(&path)
            .unwrap_or_else(|e| panic!("creating {}: {e}", path.display()));
        Self { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("test files kept in {}", self.path.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// The suite's master key (hex), given to every server and CLI run the kit starts.
pub const TEST_MASTER_KEY: &str =
    "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0";

/// A `sluice` command for a CLI run: no inherited `SLUICE_*` variables, working and data
/// directories inside `dir`, no stdin. Add the arguments and run it.
pub fn sluice_cli(dir: &Path) -> Command {
    let mut cmd = Command::new(sluice_bin());
    scrub_sluice_env(&mut cmd);
    cmd.env("SLUICE_DATA_DIR", dir.join("data"))
        .env("SLUICE_MASTER_KEY", TEST_MASTER_KEY)
        .env("SLUICE_CACHE_DIR", compile_cache())
        .current_dir(dir)
        .stdin(Stdio::null());
    cmd
}

/// One run of `sluice driver test`.
#[derive(Debug, Default)]
pub struct DriverTest<'a> {
    pub driver: PathBuf,
    pub body: &'a [u8],
    pub headers: Vec<(&'a str, &'a str)>,
    pub secrets: Vec<(&'a str, &'a str)>,
    pub settings: Option<String>,
    pub now: Option<i64>,
}

/// What `sluice driver test` printed and how it exited.
#[derive(Debug)]
pub struct DriverTestOutput {
    pub exit_code: Option<i32>,
    pub json: Value,
    pub stderr: String,
}

impl DriverTestOutput {
    pub fn ok(&self) -> bool {
        self.json["ok"] == Value::Bool(true)
    }

    /// `error.code` of a refusal (`None` on success).
    pub fn error_code(&self) -> Option<&str> {
        self.json["error"]["code"].as_str()
    }
}

impl DriverTest<'_> {
    pub fn run(&self) -> DriverTestOutput {
        let dir = TempDir::new("sluice-driver-test");
        let body_file = dir.path().join("body");
        std::fs::write(&body_file, self.body).expect("writing body");
        let mut cmd = sluice_cli(dir.path());
        cmd.args(["driver", "test", "--driver"])
            .arg(&self.driver)
            .arg("--body")
            .arg(&body_file);
        for (name, value) in &self.headers {
            cmd.arg("--header").arg(format!("{name}: {value}"));
        }
        for (name, value) in &self.secrets {
            cmd.arg("--secret").arg(format!("{name}={value}"));
        }
        if let Some(settings) = &self.settings {
            cmd.args(["--settings", settings]);
        }
        if let Some(now) = self.now {
            cmd.args(["--now", &now.to_string()]);
        }
        let out = cmd.output().expect("running sluice driver test");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        let json = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
            panic!(
                "`sluice driver test` did not print one JSON object ({e}); exit {:?}\nstdout:\n{stdout}\nstderr:\n{stderr}",
                out.status.code()
            )
        });
        DriverTestOutput {
            exit_code: out.status.code(),
            json,
            stderr,
        }
    }
}

// ---------------------------------------------------------------------------------------
// `sluice serve`
// ---------------------------------------------------------------------------------------

/// An HTTP answer: status, raw text and (when it parses) JSON.
#[derive(Debug)]
pub struct Response {
    pub status: StatusCode,
    pub text: String,
    pub json: Value,
}

impl Response {
    /// `error.code` of an error answer.
    pub fn error_code(&self) -> Option<&str> {
        self.json["error"]["code"].as_str()
    }

    /// Panics with the whole answer unless the status is `expected`.
    #[track_caller]
    pub fn expect_status(&self, expected: u16) -> &Self {
        assert_eq!(
            self.status.as_u16(),
            expected,
            "unexpected status; body: {}",
            self.text
        );
        self
    }
}

struct PgDatabase {
    admin_url: String,
    name: String,
}

impl PgDatabase {
    fn create(admin_url: &str) -> Result<Self> {
        let name = format!("sluice_e2e_{}", random_hex());
        psql(admin_url, &format!("CREATE DATABASE {name}"))?;
        Ok(Self {
            admin_url: admin_url.to_string(),
            name,
        })
    }

    fn url(&self) -> String {
        with_database(&self.admin_url, &self.name)
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        if let Err(e) = psql(
            &self.admin_url,
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        ) {
            eprintln!("could not drop test database {}: {e:#}", self.name);
        }
    }
}

fn psql(url: &str, sql: &str) -> Result<()> {
    let out = Command::new("psql")
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", url, "-c", sql])
        .stdin(Stdio::null())
        .output()
        .context("running psql (is the PostgreSQL client installed?)")?;
    if !out.status.success() {
        bail!(
            "psql `{sql}` failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// `url` with its database (the path) replaced by `database`, keeping any query.
fn with_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let authority = base.find("://").map_or(0, |i| i + 3);
    let path = base[authority..]
        .find('/')
        .map_or(base.len(), |i| authority + i);
    let mut out = format!("{}/{database}", &base[..path]);
    if let Some(query) = query {
        out.push('?');
        out.push_str(query);
    }
    out
}

/// Removes every inherited `SLUICE_*` variable (test plumbing such as `SLUICE_BIN`, and any
/// operator setting like `SLUICE_MASTER_KEY` or `SLUICE_MAX_BODY_BYTES`) from a child.
fn scrub_sluice_env(cmd: &mut Command) {
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("SLUICE_") {
            cmd.env_remove(key);
        }
    }
}

pub(crate) fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("binding 127.0.0.1:0");
    listener.local_addr().expect("local address").port()
}

/// A running `sluice serve` with its own data dir, database and drivers dir
/// (copies of the bundled `stripe` and the test-only `faulty` drivers).
pub struct Sluice {
    child: Option<Child>,
    /// `http://127.0.0.1:<port>`
    pub base_url: String,
    pub admin_token: String,
    pub backend: Backend,
    client: reqwest::Client,
    log_path: PathBuf,
    database_url: String,
    env: Vec<(String, String)>,
    /// Every secret value this server was given (admin token, master key, installation
    /// secrets): none may appear in a response body or in its log.
    secrets: std::sync::Mutex<Vec<String>>,
    // Dropped after the child is killed (field order matters for the database).
    _pg: Option<PgDatabase>,
    dir: TempDir,
}

impl Sluice {
    /// Starts a server on `backend`. `None` for Postgres when no server is configured
    /// outside CI (the scenario is skipped and counted; in CI it fails instead).
    pub async fn start(backend: Backend) -> Option<Self> {
        Self::start_with_env(backend, &[]).await
    }

    /// Like [`Sluice::start`], with extra environment variables for the server.
    pub async fn start_with_env(backend: Backend, env: &[(&str, &str)]) -> Option<Self> {
        Self::start_with(backend, env, &[]).await
    }

    /// Like [`Sluice::start_with_env`], with extra files (`name`, bytes) written into the
    /// drivers dir beside `stripe.wasm` and `faulty.wasm` before the server starts.
    pub async fn start_with(
        backend: Backend,
        env: &[(&str, &str)],
        extra_drivers: &[(&str, &[u8])],
    ) -> Option<Self> {
        let pg_admin_url = match backend {
            Backend::Sqlite => None,
            Backend::Postgres => Some(crate::require::postgres_url()?),
        };

        let dir = TempDir::new("sluice-e2e");
        let drivers_dir = dir.path().join("drivers");
        std::fs::create_dir_all(&drivers_dir).expect("creating drivers dir");
        for (name, from) in [
            ("stripe", bundled_driver("stripe")),
            ("faulty", test_driver("faulty")),
        ] {
            std::fs::copy(&from, drivers_dir.join(format!("{name}.wasm")))
                .unwrap_or_else(|e| panic!("copying {}: {e}", from.display()));
        }
        // The bundled drivers' default policies, as `cargo xtask build-drivers` leaves them
        // beside the components (whichever of the drivers a test writes below).
        for name in ["stripe", "shopify", "hotmart"] {
            let from = bundled_driver("stripe").with_file_name(format!("{name}.policy.toml"));
            if from.is_file() {
                std::fs::copy(&from, drivers_dir.join(format!("{name}.policy.toml")))
                    .unwrap_or_else(|e| panic!("copying {}: {e}", from.display()));
            }
        }
        for (name, bytes) in extra_drivers {
            std::fs::write(drivers_dir.join(name), bytes)
                .unwrap_or_else(|e| panic!("writing driver file {name}: {e}"));
        }

        let pg = pg_admin_url.map(|url| {
            PgDatabase::create(&url).unwrap_or_else(|e| panic!("creating a test database: {e:#}"))
        });
        let database_url = match &pg {
            Some(pg) => pg.url(),
            None => format!("sqlite://{}", dir.path().join("sluice.db").display()),
        };

        let client = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .build()
            .expect("building HTTP client");
        let mut sluice = Self {
            child: None,
            base_url: String::new(),
            admin_token: format!("test-token-{}", random_hex()),
            backend,
            client,
            log_path: dir.path().join("sluice.log"),
            database_url,
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            secrets: Default::default(),
            _pg: pg,
            dir,
        };
        sluice.remember_secret(&sluice.admin_token.clone());
        sluice.remember_secret(TEST_MASTER_KEY);
        for (key, value) in env {
            if *key == "SLUICE_MASTER_KEY" || *key == "SLUICE_ADMIN_TOKEN" {
                sluice.remember_secret(value);
            }
        }
        sluice.spawn();
        sluice.wait_ready().await;
        Some(sluice)
    }

    /// The database the server uses.
    pub fn database_url(&self) -> &str {
        &self.database_url
    }

    /// Use another database URL from the next [`Sluice::restart`] on (e.g. through a
    /// [`crate::fake::TcpProxy`]).
    pub fn set_database_url(&mut self, url: String) {
        self.database_url = url;
    }

    /// The server's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Kill the server with SIGKILL (no shutdown at all) and wait for it.
    pub fn kill(&mut self) {
        self.stop();
    }

    /// Send SIGTERM and wait up to `within` for the process to exit; its exit status, or
    /// `None` if it was still running (then it is killed).
    pub async fn terminate(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let _ = child.kill();
        let _ = child.wait();
        None
    }

    /// Start the server again after [`Sluice::kill`] or [`Sluice::terminate`].
    pub async fn start_again(&mut self) {
        self.spawn();
        self.wait_ready().await;
    }

    /// Stops the server and starts it again on a new port, with the same data dir,
    /// database, drivers dir, admin token and environment. Its output is appended to
    /// the same log.
    pub async fn restart(&mut self) {
        self.stop();
        self.spawn();
        self.wait_ready().await;
    }

    /// Starts `sluice serve` on a free port; output goes to the end of the log.
    fn spawn(&mut self) {
        let listen = format!("127.0.0.1:{}", free_port());
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .expect("opening log file");
        let log_err = log.try_clone().expect("cloning log file handle");

        let mut cmd = Command::new(sluice_bin());
        // Only what the test sets, nothing inherited from the caller's environment or a
        // `sluice.toml`. One master key for the whole suite, so every server can use the
        // shared compile cache (its entries are authenticated with a key derived from it);
        // a test sets `SLUICE_MASTER_KEY` to "" to have the key file made instead.
        scrub_sluice_env(&mut cmd);
        cmd.arg("serve")
            .env("SLUICE_MASTER_KEY", TEST_MASTER_KEY)
            .env("SLUICE_LISTEN", &listen)
            .env("SLUICE_DATABASE_URL", &self.database_url)
            .env("SLUICE_DRIVERS_DIR", self.drivers_dir())
            .env("SLUICE_DATA_DIR", self.data_dir())
            .env("SLUICE_ADMIN_TOKEN", &self.admin_token)
            .env("SLUICE_CACHE_DIR", compile_cache())
            // Sluice's own crates at trace, so the secrets sweep sees everything they log.
            .env("SLUICE_LOG", "info,sluice=trace,sluice_store=trace")
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err);
        for (key, value) in &self.env {
            cmd.env(key, value);
        }
        self.child = Some(cmd.spawn().expect("starting sluice serve"));
        self.base_url = format!("http://{listen}");
    }

    /// Polls `GET /healthz` until it answers 200 (bounded by `READY_TIMEOUT`).
    async fn wait_ready(&mut self) {
        let deadline = Instant::now() + READY_TIMEOUT;
        let url = format!("{}/healthz", self.base_url);
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!(
                    "sluice serve exited with {status} before it was ready; its output:\n{}",
                    self.log()
                );
            }
            if let Ok(resp) = self
                .client
                .get(&url)
                .timeout(Duration::from_secs(2))
                .send()
                .await
                && resp.status() == StatusCode::OK
            {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "sluice serve did not answer GET /healthz within {READY_TIMEOUT:?}; its output:\n{}",
                    self.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Everything the server printed on stdout and stderr so far.
    pub fn log(&self) -> String {
        std::fs::read(&self.log_path)
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .unwrap_or_default()
    }

    /// Stops the server (kill and wait); the log stays readable.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The server's temporary directory (data dir, drivers dir, log, SQLite file).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The server's `SLUICE_DATA_DIR` (master key, compiled-code `cache/`).
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The server's `SLUICE_DRIVERS_DIR`.
    pub fn drivers_dir(&self) -> PathBuf {
        self.dir.path().join("drivers")
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Response {
        let resp = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("HTTP request failed: {e}; server output:\n{}", self.log()));
        let status = resp.status();
        let text = resp.text().await.expect("reading response body");
        if let Some(secret) = self.leaked_in(&text) {
            panic!("a response body holds the secret {secret:?}: {text}");
        }
        let json = serde_json::from_str(&text).unwrap_or(Value::Null);
        Response { status, text, json }
    }

    /// Record a secret value the server was given, for the sweep of responses and the log.
    /// Values too short to be told apart from ordinary text are not tracked.
    pub fn remember_secret(&self, value: &str) {
        if value.len() >= 8 {
            let mut secrets = self.secrets.lock().unwrap_or_else(|e| e.into_inner());
            if !secrets.iter().any(|s| s == value) {
                secrets.push(value.to_string());
            }
        }
    }

    /// The first remembered secret that `text` contains.
    fn leaked_in(&self, text: &str) -> Option<String> {
        let secrets = self.secrets.lock().unwrap_or_else(|e| e.into_inner());
        secrets.iter().find(|s| text.contains(s.as_str())).cloned()
    }

    /// An admin API call with the right bearer token. `body` is sent as JSON.
    pub async fn admin(&self, method: Method, path: &str, body: Option<Value>) -> Response {
        let token = self.admin_token.clone();
        self.admin_as(Some(&token), method, path, body).await
    }

    /// An admin API call with the given bearer token (or none).
    pub async fn admin_as(
        &self,
        token: Option<&str>,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Response {
        let authorization = token.map(|t| format!("Bearer {t}"));
        self.admin_with_authorization(authorization.as_deref(), method, path, body)
            .await
    }

    /// An admin API call with this `Authorization` header value (or none).
    pub async fn admin_with_authorization(
        &self,
        authorization: Option<&str>,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Response {
        if path.contains("/secrets/")
            && let Some(value) = body.as_ref().and_then(|b| b["value"].as_str())
        {
            self.remember_secret(value);
        }
        let mut request = self.client.request(method, self.url(path));
        if let Some(value) = authorization {
            request = request.header("authorization", value);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        self.send(request).await
    }

    /// `POST /webhooks/{installation}` with the raw body and headers.
    pub async fn post_webhook(
        &self,
        installation: &str,
        headers: &[(&str, &str)],
        body: impl Into<Vec<u8>>,
    ) -> Response {
        self.post_webhook_to(&format!("/webhooks/{installation}"), headers, body)
            .await
    }

    /// `POST` of a raw JSON body with headers to any path (an app-level webhook URL).
    pub async fn post_webhook_to(
        &self,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Vec<u8>>,
    ) -> Response {
        let mut request = self
            .client
            .post(self.url(path))
            .header("content-type", "application/json");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        self.send(request.body(body.into())).await
    }

    /// `POST /v1/drivers?{query}` with a component's bytes as `application/wasm`.
    pub async fn upload_driver(&self, query: &str, bytes: &[u8]) -> Response {
        let request = self
            .client
            .post(self.url(&format!("/v1/drivers?{query}")))
            .bearer_auth(&self.admin_token)
            .header("content-type", "application/wasm")
            .body(bytes.to_vec());
        self.send(request).await
    }

    /// Creates an installation and returns its JSON (asserts `201`).
    pub async fn create_installation(&self, driver_id: &str, settings: Value) -> Value {
        let resp = self
            .admin(
                Method::POST,
                "/v1/installations",
                Some(json!({"driver_id": driver_id, "settings": settings})),
            )
            .await;
        resp.expect_status(201);
        assert!(
            resp.json["installation_id"].is_string(),
            "no installation_id in {}",
            resp.text
        );
        resp.json
    }

    /// Sets an installation secret (asserts `204`).
    pub async fn put_secret(&self, installation: &str, name: &str, value: &str) {
        self.admin(
            Method::PUT,
            &format!("/v1/installations/{installation}/secrets/{name}"),
            Some(json!({"value": value})),
        )
        .await
        .expect_status(204);
    }

    /// Every event of one installation, in commit order (follows `next_cursor`).
    /// The provider event ids of an installation's events, in cursor order.
    pub async fn provider_event_ids(&self, installation: &str) -> Vec<String> {
        self.events(installation)
            .await
            .iter()
            .map(|e| {
                e["sluiceprovidereventid"]
                    .as_str()
                    .unwrap_or_else(|| panic!("no sluiceprovidereventid in {e}"))
                    .to_string()
            })
            .collect()
    }

    /// A loaded driver's `GET /v1/drivers` entry (panics when it is not loaded).
    pub async fn driver_info(&self, id: &str) -> Value {
        let resp = self.admin(Method::GET, "/v1/drivers", None).await;
        resp.expect_status(200);
        resp.json["drivers"]
            .as_array()
            .and_then(|drivers| drivers.iter().find(|d| d["id"] == id))
            .cloned()
            .unwrap_or_else(|| panic!("driver {id:?} is not loaded: {}", resp.text))
    }

    pub async fn events(&self, installation: &str) -> Vec<Value> {
        let mut events = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let mut path = format!("/v1/events?installation_id={installation}&limit=1000");
            if let Some(after) = &after {
                path.push_str(&format!("&after={after}"));
            }
            let resp = self.admin(Method::GET, &path, None).await;
            resp.expect_status(200);
            let page = resp.json["events"]
                .as_array()
                .unwrap_or_else(|| panic!("no events array in {}", resp.text))
                .clone();
            if page.is_empty() {
                return events;
            }
            events.extend(page);
            let next = resp.json["next_cursor"]
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| panic!("no next_cursor in {}", resp.text));
            after = Some(next);
        }
    }

    /// Runs a `sluice` CLI command against this server (admin token and URL in its
    /// environment), with `stdin` piped in when given; asserts it exits 0.
    pub fn cli(&self, args: &[&str], stdin: Option<&str>) -> std::process::Output {
        use std::io::Write;
        let mut cmd = sluice_cli(self.dir());
        cmd.args(args)
            .env("SLUICE_SERVER", self.url(""))
            .env("SLUICE_ADMIN_TOKEN", &self.admin_token)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if stdin.is_some() {
            cmd.stdin(Stdio::piped());
        }
        let mut child = cmd.spawn().expect("running sluice");
        if let Some(input) = stdin {
            child
                .stdin
                .take()
                .expect("piped stdin")
                .write_all(input.as_bytes())
                .expect("writing stdin");
        }
        let out = child.wait_with_output().expect("waiting for sluice");
        assert!(
            out.status.success(),
            "sluice {args:?} failed: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// A Stripe installation with a fresh `webhook_secret`; returns (installation id, secret).
    pub async fn stripe_installation(&self) -> (String, String) {
        let inst = self.create_installation("stripe", json!({})).await;
        let id = inst["installation_id"].as_str().unwrap().to_string();
        let secret = format!("whsec_{}{}", random_hex(), random_hex());
        self.put_secret(&id, "webhook_secret", &secret).await;
        (id, secret)
    }

    /// Posts `payload` to a Stripe installation, signed now with `secret` (natively; tests
    /// of the signature itself use the official library, [`crate::sign::stripe_signature`]).
    pub async fn post_stripe(&self, installation: &str, secret: &str, payload: &[u8]) -> Response {
        let signature = crate::sign::stripe_header(payload, secret, crate::unix_now());
        self.post_webhook(
            installation,
            &[("stripe-signature", signature.as_str())],
            payload.to_vec(),
        )
        .await
    }
}

impl Drop for Sluice {
    fn drop(&mut self) {
        self.stop();
        if !std::thread::panicking() {
            // The sweep: whatever the test did, the server's own output never shows a
            // secret it was given (the log is at trace for Sluice's own crates).
            if let Some(secret) = self.leaked_in(&self.log()) {
                panic!(
                    "the server log holds the secret {secret:?} (kept in {})",
                    self.dir.path().display()
                );
            }
        }
        if std::thread::panicking() {
            let log = self.log();
            let lines: Vec<&str> = log.lines().collect();
            let tail = &lines[lines.len().saturating_sub(200)..];
            eprintln!(
                "---- sluice serve output ({:?}, last {} lines) ----\n{}\n---- end ----",
                self.backend,
                tail.len(),
                tail.join("\n")
            );
        }
    }
}

#[cfg(test)]
mod unit {
    use super::with_database;

    #[test]
    fn replaces_the_database_of_a_url() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/test", "x"),
            "postgres://postgres@127.0.0.1:5432/x"
        );
        assert_eq!(
            with_database("postgres://u:p@h/test?sslmode=disable", "x"),
            "postgres://u:p@h/x?sslmode=disable"
        );
        assert_eq!(
            with_database("postgres://h:5432", "x"),
            "postgres://h:5432/x"
        );
    }
}
