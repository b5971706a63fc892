//! The NATS JetStream sink: every normalized event, in log order, published to
//! `{subject_prefix}.{driver}.{installation}` on the stream (created if missing) with
//! `Nats-Msg-Id` = the event id.
//!
//! The sink's position in the log moves only past events JetStream acknowledged, so after
//! a NATS outage, a crash or a lost lease, publishing resumes from the last acknowledged
//! event. What was published but not yet recorded is published again with the same id,
//! and the stream's duplicate window drops it: exactly once in the stream, as long as the
//! host is back within the window (2 minutes by default).

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, stream};
use sluice_store::{Cursor, StoreError};
use tokio::sync::watch;

use super::{Deliverer, NatsConfig, ms, now_ms, wait_for_work};

/// The sink's id among the consumers in the store.
pub const SINK_ID: &str = "nats";

/// Events published per step (acknowledged together).
const BATCH: i64 = 256;

/// Why a step failed.
#[derive(Debug, thiserror::Error)]
enum SinkError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("NATS: {0}")]
    Nats(String),
}

/// Publishes the log to JetStream while this node holds the sink's lease.
pub struct NatsSink {
    deliverer: Arc<Deliverer>,
    config: NatsConfig,
}

impl NatsSink {
    /// The sink for `config`, whose `url` is set.
    pub fn new(deliverer: Arc<Deliverer>, config: NatsConfig) -> Self {
        Self { deliverer, config }
    }

    pub async fn run(self, mut stopped: watch::Receiver<bool>) {
        let store = &self.deliverer.store;
        let node = &self.deliverer.node;
        let mut commits = store.committed_events();
        let mut nudges = self.deliverer.nudge.subscribe();
        let mut context: Option<jetstream::Context> = None;
        let mut failures: i64 = 0;
        let mut holding = false;
        let mut registered = false;
        loop {
            commits.borrow_and_update();
            nudges.borrow_and_update();
            let result = self.step(&mut context, &mut holding, &mut registered).await;
            let next = match result {
                Ok(true) => {
                    if failures > 0 {
                        failures = 0;
                        let _ = store.set_sink_health(SINK_ID, 0, None, None).await;
                        tracing::info!("publishing to NATS again");
                    }
                    now_ms()
                }
                Ok(false) => now_ms() + ms(self.deliverer.config.tick()),
                Err(e) => {
                    failures += 1;
                    let message = e.to_string();
                    tracing::warn!(error = %message, failures, "publishing to NATS failed");
                    if let SinkError::Nats(_) = e {
                        let _ = store
                            .set_sink_health(SINK_ID, failures, Some(&message), None)
                            .await;
                    }
                    // 0.5 s doubling to 30 s: NATS may be restarting.
                    let backoff = 500_i64
                        .saturating_mul(1 << failures.clamp(0, 6))
                        .min(30_000);
                    now_ms() + backoff
                }
            };
            if wait_for_work(next, &mut commits, &mut nudges, &mut stopped).await {
                break;
            }
        }
        if holding {
            let _ = store.release_sink(SINK_ID, node).await;
        }
    }

    /// One batch: `true` when it published something (more may be waiting).
    async fn step(
        &self,
        context: &mut Option<jetstream::Context>,
        holding: &mut bool,
        registered: &mut bool,
    ) -> Result<bool, SinkError> {
        let d = &self.deliverer;
        let store = &d.store;
        let now = now_ms();
        if !*registered {
            store.ensure_sink(SINK_ID).await?;
            *registered = true;
        }
        *holding = store
            .claim_sink(SINK_ID, &d.node, now, now + ms(d.config.lease()))
            .await?;
        if !*holding {
            return Ok(false);
        }
        let Some(state) = store.sink_state(SINK_ID).await? else {
            return Ok(false);
        };
        let page = store.log_page(state.cursor, BATCH).await?;
        if page.is_empty() {
            return Ok(false);
        }
        let js = match context {
            Some(js) => js.clone(),
            None => {
                let js = self.connect().await?;
                *context = Some(js.clone());
                js
            }
        };
        // Published in order without waiting between them; acknowledged in order. The
        // position moves past the longest acknowledged run from the start.
        let mut acks = Vec::with_capacity(page.len());
        let mut failure = None;
        for event in &page {
            let mut headers = async_nats::HeaderMap::new();
            headers.insert("Nats-Msg-Id", event.id.as_str());
            headers.insert("Content-Type", "application/cloudevents+json");
            let body = crate::output::cloud_event(event);
            match js
                .publish_with_headers(self.config.subject(event), headers, body.into())
                .await
            {
                Ok(ack) => acks.push((event.cursor, ack)),
                Err(e) => {
                    failure = Some(e.to_string());
                    break;
                }
            }
        }
        let mut acknowledged: Option<Cursor> = None;
        for (cursor, ack) in acks {
            match ack.await {
                Ok(_) => {
                    acknowledged = Some(cursor);
                    crate::metrics::record_published(1);
                }
                Err(e) => {
                    failure.get_or_insert(e.to_string());
                    break;
                }
            }
        }
        if let Some(cursor) = acknowledged
            && !store.advance_sink(SINK_ID, &d.node, cursor).await?
        {
            *holding = false;
            return Ok(false);
        }
        match failure {
            Some(e) => {
                // Connect afresh next time, and make sure the stream still exists.
                *context = None;
                Err(SinkError::Nats(e))
            }
            None => Ok(true),
        }
    }

    /// Connect and make sure the stream exists.
    async fn connect(&self) -> Result<jetstream::Context, SinkError> {
        let o = &self.config;
        let url = o.url().unwrap_or_default();
        let shown = redacted(url);
        let client = async_nats::ConnectOptions::new()
            .name(concat!("sluice/", env!("CARGO_PKG_VERSION")))
            .connection_timeout(Duration::from_secs(5))
            .connect(url)
            .await
            .map_err(|e| SinkError::Nats(format!("connecting to {shown}: {e}")))?;
        let js = jetstream::new(client);
        let config = stream::Config {
            name: o.stream.clone(),
            subjects: vec![format!("{}.>", o.subject_prefix)],
            max_age: o.max_age(),
            duplicate_window: o.duplicate_window(),
            storage: stream::StorageType::File,
            ..Default::default()
        };
        js.get_or_create_stream(config)
            .await
            .map_err(|e| SinkError::Nats(format!("creating stream {}: {e}", o.stream)))?;
        tracing::info!(url = %shown, stream = %o.stream, "publishing events to NATS JetStream");
        Ok(js)
    }
}

/// The URL (or comma-separated URLs; the scheme may be left out, as the client allows)
/// without credentials (user, password or token), for logs and the API.
fn redacted(urls: &str) -> String {
    let one = |text: &str| {
        let text = text.trim();
        let full = if text.contains("://") {
            text.to_string()
        } else {
            format!("nats://{text}")
        };
        match url::Url::parse(&full) {
            Ok(mut u) if !u.username().is_empty() || u.password().is_some() => {
                let _ = u.set_username("");
                let _ = u.set_password(None);
                format!("{u} (credentials redacted)")
            }
            Ok(u) => u.to_string(),
            Err(_) => "the configured NATS URL".into(),
        }
    };
    urls.split(',').map(one).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    #[test]
    fn credentials_never_show() {
        assert_eq!(
            super::redacted("nats://alice:s3cret@127.0.0.1:4222"),
            "nats://127.0.0.1:4222 (credentials redacted)"
        );
        assert_eq!(
            super::redacted("nats://tok3n@nats.example.com"),
            "nats://nats.example.com (credentials redacted)"
        );
        assert_eq!(
            super::redacted("nats://127.0.0.1:4222"),
            "nats://127.0.0.1:4222"
        );
        assert_eq!(
            super::redacted("alice:s3cret@nats.example.com:4222"),
            "nats://nats.example.com:4222 (credentials redacted)"
        );
        let both = super::redacted("nats://a:pw1@n1:4222,nats://b:pw2@n2:4222");
        assert!(!both.contains("pw1") && !both.contains("pw2"), "{both}");
    }
}
