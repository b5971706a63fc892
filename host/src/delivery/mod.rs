//! Delivery to the Processing Engine beyond `GET /v1/events`: signed outbound webhooks
//! ([`endpoint`]) and a NATS JetStream stream ([`nats`]).
//!
//! Both read the event log, which is the outbox: events are committed with their
//! delivery, in commit order, so the ingestion path writes nothing more for them. Each
//! consumer (every endpoint, the NATS sink) keeps a committed position in the log and a
//! lease in the store; whichever node holds the lease drains it, and a dead node's
//! consumers are taken over when its leases expire. A crash between sending and
//! recording sends the event again with the same id (`webhook-id`, `Nats-Msg-Id`):
//! at-least-once on the wire, exactly-once by id.
//!
//! [`Deliverer::run`] is the node's loop: it claims the consumers it can and runs one
//! worker per consumer it holds, and keeps the outbox gauges of those ([`backlog`]).
//! Its configuration is the `[delivery]` section ([`DeliveryConfig`]).

mod backlog;
mod config;
pub mod endpoint;
pub mod nats;
pub mod standard_webhooks;

pub use config::{DeliveryConfig, NatsConfig, parse_schedule};

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use sluice_store::{EndpointId, Store};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::net::OriginPattern;

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

pub(crate) fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// `ms` scaled by a random factor in 0.9..1.1, so retries of many events spread out.
pub(crate) fn jittered(ms: i64) -> i64 {
    (ms as f64 * (0.9 + rand::random::<f64>() * 0.2)) as i64
}

/// The node's delivery: shared by the server (which creates endpoints and replays) and
/// the loop that delivers.
pub struct Deliverer {
    store: Store,
    config: DeliveryConfig,
    /// `config.retry_schedule`, parsed.
    retry_schedule: Vec<Duration>,
    client: endpoint::Clients,
    /// This node's name in consumer leases.
    node: String,
    /// Bumped when there may be something to send at once (an endpoint created, a
    /// replay): workers look again without waiting for their next turn.
    nudge: watch::Sender<u64>,
}

impl Deliverer {
    /// Delivery for `store`; `grants` are the operator's `allow_hosts`, the only private
    /// destinations an endpoint may name.
    pub fn new(
        store: Store,
        config: DeliveryConfig,
        grants: Vec<OriginPattern>,
    ) -> anyhow::Result<Self> {
        config.validate().map_err(anyhow::Error::msg)?;
        Ok(Self {
            client: endpoint::Clients::new(grants, config.timeout())?,
            node: format!("node_{}", hex::encode(rand::random::<[u8; 12]>())),
            nudge: watch::Sender::new(0),
            retry_schedule: config.schedule().map_err(anyhow::Error::msg)?,
            store,
            config,
        })
    }

    /// The configuration in force.
    pub fn config(&self) -> &DeliveryConfig {
        &self.config
    }

    /// Whether an endpoint may post to `url`: `Err` says why not.
    pub fn check_url(&self, url: &str) -> Result<url::Url, String> {
        self.client.check(url)
    }

    /// Wake the workers: something may be due at once.
    pub fn nudge(&self) {
        self.nudge.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Deliver until `until` resolves: claim endpoints (and the NATS sink) and run a worker
    /// for each one held; at the end, wait for the workers and give their leases up.
    pub async fn run(self: Arc<Self>, until: impl std::future::Future<Output = ()>) {
        let (stop, stopped) = watch::channel(false);
        let mut workers: HashMap<EndpointId, JoinHandle<()>> = HashMap::new();
        let nats = self.config.nats.url().is_some().then(|| {
            let worker = nats::NatsSink::new(self.clone(), self.config.nats.clone());
            tokio::spawn(worker.run(stopped.clone()))
        });
        let gauges = tokio::spawn(backlog::export(self.clone(), stopped.clone()));
        let mut pruned_at = 0;
        tokio::pin!(until);
        loop {
            workers.retain(|_, handle| !handle.is_finished());
            if let Err(e) = self.claim_endpoints(&mut workers, &stopped).await {
                tracing::warn!(error = %e, "looking for endpoints to deliver to failed");
            }
            let now = now_ms();
            if now - pruned_at > 3_600_000 {
                pruned_at = now;
                match self
                    .store
                    .prune_deliveries(now - ms(self.config.retention()))
                    .await
                {
                    Ok(n) if n > 0 => tracing::info!(rows = n, "pruned old deliveries"),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "pruning old deliveries failed"),
                }
            }
            tokio::select! {
                _ = &mut until => break,
                _ = tokio::time::sleep(self.config.tick()) => {}
            }
        }
        let _ = stop.send(true);
        for (_, handle) in workers {
            let _ = handle.await;
        }
        if let Some(handle) = nats {
            let _ = handle.await;
        }
        let _ = gauges.await;
    }

    /// Start a worker for each enabled endpoint whose lease this node can take.
    async fn claim_endpoints(
        self: &Arc<Self>,
        workers: &mut HashMap<EndpointId, JoinHandle<()>>,
        stopped: &watch::Receiver<bool>,
    ) -> Result<(), sluice_store::StoreError> {
        for endpoint in self.store.list_endpoints().await? {
            if endpoint.disabled || workers.contains_key(&endpoint.id) {
                continue;
            }
            let now = now_ms();
            let until = now + ms(self.config.lease());
            if !self
                .store
                .claim_sink(endpoint.id.as_str(), &self.node, now, until)
                .await?
            {
                continue;
            }
            tracing::debug!(endpoint = %endpoint.id, "delivering to endpoint");
            let worker = endpoint::Worker::new(self.clone(), endpoint.id.clone());
            workers.insert(endpoint.id, tokio::spawn(worker.run(stopped.clone())));
        }
        Ok(())
    }
}

/// Sleep until `at` (Unix ms), a commit or a nudge wakes the worker, or it is stopped;
/// `true` when stopped.
pub(crate) async fn wait_for_work(
    at: i64,
    commits: &mut watch::Receiver<u64>,
    nudges: &mut watch::Receiver<u64>,
    stopped: &mut watch::Receiver<bool>,
) -> bool {
    let nap = Duration::from_millis(u64::try_from(at - now_ms()).unwrap_or(0));
    tokio::select! {
        _ = tokio::time::sleep(nap) => {}
        _ = commits.changed() => {}
        _ = nudges.changed() => {}
        _ = stopped.changed() => {}
    }
    *stopped.borrow()
}
