//! A NATS server with JetStream of a test's own (`nats-server -js` on a free loopback port,
//! its store in a temporary directory), for tests that stop and restart it. Tests that do
//! not use the machine's server at `SLUICE_TEST_NATS_URL` ([`crate::require::nats_url`]).

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::server::TempDir;

/// The running server; killed when dropped.
pub struct NatsServer {
    child: Option<Child>,
    port: u16,
    dir: TempDir,
}

impl NatsServer {
    /// Start one. `None` when `nats-server` is missing outside CI.
    pub fn start() -> Option<Self> {
        if Command::new("nats-server")
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .map(|s| !s.success())
            .unwrap_or(true)
        {
            return crate::require::missing(
                crate::require::Requirement::Nats,
                "`nats-server --version` failed",
            );
        }
        let port = crate::server::free_port();
        let mut server = Self {
            child: None,
            port,
            dir: TempDir::new("sluice-nats"),
        };
        server.start_again();
        Some(server)
    }

    /// `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Stop it gracefully (SIGTERM: JetStream flushes its store) and wait for it.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let _ = child.wait();
        }
    }

    /// Start it again on the same port and store, and wait until it accepts connections.
    pub fn start_again(&mut self) {
        let log = std::fs::File::create(self.dir.path().join("nats.log")).expect("nats log");
        let child = Command::new("nats-server")
            .args([
                "-js",
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-sd",
            ])
            .arg(self.dir.path().join("store"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting nats-server");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "nats-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
