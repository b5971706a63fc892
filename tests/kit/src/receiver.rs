//! A Processing Engine's webhook receiver on loopback: `tests/peers/webhook-receiver.mjs`,
//! which verifies every request with the official Standard Webhooks library (npm
//! `standardwebhooks`) and records what it accepted.

use std::process::Child;

use serde_json::{Value, json};

/// The running receiver; killed when dropped.
pub struct WebhookReceiver {
    child: Child,
    /// Where deliveries go.
    pub url: String,
    control: String,
    client: reqwest::Client,
}

impl WebhookReceiver {
    /// Start it. `None` when Node or the peers are missing outside CI (see
    /// [`crate::require`]).
    pub fn start() -> Option<Self> {
        let (child, addresses) = crate::peer::start("webhook-receiver.mjs", &[])?;
        Some(Self {
            child,
            url: addresses["url"].as_str().expect("url").to_string(),
            control: addresses["control"].as_str().expect("control").to_string(),
            client: reqwest::Client::new(),
        })
    }

    /// Every request must verify with each of `secrets` from now on.
    pub async fn set_secrets(&self, secrets: &[&str]) {
        self.post("/secrets", json!({ "secrets": secrets })).await;
    }

    /// Answer the next `count` verified requests with `status`.
    pub async fn fail_next(&self, count: usize, status: u16) {
        self.post("/fail", json!({ "count": count, "status": status }))
            .await;
    }

    /// `{"deliveries": [{"id", "installation", "type", "content_type", "signatures"}…],
    /// "rejected": n, "failed": n, "last_rejection": text}`.
    pub async fn received(&self) -> Value {
        self.client
            .get(format!("{}/received", self.control))
            .send()
            .await
            .expect("receiver stats")
            .json()
            .await
            .expect("receiver stats JSON")
    }

    /// The ids of the deliveries accepted so far, in arrival order.
    pub async fn ids(&self) -> Vec<String> {
        self.received().await["deliveries"]
            .as_array()
            .expect("deliveries")
            .iter()
            .map(|d| d["id"].as_str().expect("id").to_string())
            .collect()
    }

    async fn post(&self, path: &str, body: Value) {
        let response = self
            .client
            .post(format!("{}{path}", self.control))
            .json(&body)
            .send()
            .await
            .expect("receiver control");
        assert!(response.status().is_success(), "receiver control {path}");
    }
}

impl Drop for WebhookReceiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
