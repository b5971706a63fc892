//! A real OAuth 2.0 authorization server on loopback: `tests/peers/oauth-server.mjs`, the
//! npm package `oauth2-mock-server` with required PKCE, rotating and revocable refresh
//! tokens, and a control endpoint for what the tests count.

use std::process::Child;

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
        let (child, addresses) = crate::peer::start("oauth-server.mjs", args)?;
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
