//! A real OAuth 2.0 authorization server on loopback: `tests/peers/oauth-server.mjs`, the
//! npm package `oauth2-mock-server` with required PKCE, rotating and revocable refresh
//! tokens, and a control endpoint for what the tests count.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use serde_json::Value;

/// The running server; killed when dropped.
pub struct OAuthServer {
    child: Child,
    /// The issuer URL: `/authorize` and `/token` are under it.
    pub issuer: String,
    control: String,
    client: reqwest::Client,
}

impl OAuthServer {
    /// Start it with extra arguments (`--expires-in`, `--grant-scope`). `None` when Node or
    /// the peers are missing outside CI (see [`crate::require`]).
    pub fn start(args: &[&str]) -> Option<Self> {
        crate::require::node()?;
        let peers = crate::paths::workspace_root().join("tests/peers");
        let mut child = Command::new("node")
            .arg(peers.join("oauth-server.mjs"))
            .args(args)
            .current_dir(&peers)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting tests/peers/oauth-server.mjs");
        let mut line = String::new();
        let stdout = child.stdout.take().expect("piped stdout");
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("reading the OAuth server's address");
        let addresses: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("the OAuth server printed {line:?}: {e}"));
        Some(Self {
            child,
            issuer: addresses["issuer"].as_str().expect("issuer").to_string(),
            control: addresses["control"].as_str().expect("control").to_string(),
            client: reqwest::Client::new(),
        })
    }

    /// Token requests so far: `{"authorization_code": n, "refresh_token": n, "refused": n,
    /// "last_refused": error}`.
    pub async fn stats(&self) -> Value {
        self.client
            .get(format!("{}/stats", self.control))
            .send()
            .await
            .expect("OAuth server stats")
            .json()
            .await
            .expect("stats JSON")
    }

    /// Every refresh token issued so far stops working (`invalid_grant`).
    pub async fn revoke_refresh_tokens(&self) {
        self.client
            .post(format!("{}/revoke-refresh-tokens", self.control))
            .send()
            .await
            .expect("revoking refresh tokens");
    }
}

impl Drop for OAuthServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
