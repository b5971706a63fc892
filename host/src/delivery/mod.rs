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
//! Defaults live in `config` (`[delivery]`).

mod backlog;
pub mod endpoint;
pub mod nats;
pub mod standard_webhooks;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use sluice_store::{EndpointId, Store};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::net::OriginPattern;

/// The waits after failed attempts unless configured: 8 attempts over about 28 hours.
pub const DEFAULT_RETRY_SCHEDULE: &str = "5s,5m,30m,2h,5h,10h,10h";

/// How deliveries are made; defaults in `config` (`[delivery]`).
#[derive(Debug, Clone)]
pub struct DeliveryOptions {
    /// The wait after each failed attempt, in order: an event is tried once more than
    /// there are entries, then dead.
    pub retry_schedule: Vec<Duration>,
    /// The longest one attempt may take, connection included.
    pub timeout: Duration,
    /// How long a node's claim on a consumer lasts; renewed while it works.
    pub lease: Duration,
    /// How often a node looks for consumers to claim.
    pub tick: Duration,
    /// Installations of one endpoint delivered to at once (each in order).
    pub max_in_flight: usize,
    /// Failed attempts in a row that open an endpoint's circuit.
    pub circuit_threshold: i64,
    /// How long a circuit first stays open; doubled each time a probe fails.
    pub circuit_open: Duration,
    /// The longest a circuit stays open before a probe.
    pub circuit_open_max: Duration,
    /// How long delivered deliveries and attempts are kept.
    pub retention: Duration,
    /// The NATS JetStream sink, when configured.
    pub nats: Option<nats::NatsOptions>,
}

impl Default for DeliveryOptions {
    fn default() -> Self {
        Self {
            retry_schedule: parse_schedule(DEFAULT_RETRY_SCHEDULE).unwrap_or_default(),
            timeout: Duration::from_secs(15),
            lease: Duration::from_secs(30),
            tick: Duration::from_secs(1),
            max_in_flight: 8,
            circuit_threshold: 5,
            circuit_open: Duration::from_secs(30),
            circuit_open_max: Duration::from_secs(600),
            retention: Duration::from_secs(7 * 24 * 3600),
            nats: None,
        }
    }
}

/// Parse a retry schedule: durations separated by commas, each a number and a unit (`ms`,
/// `s`, `m`, `h`, `d`), e.g. `5s,5m,30m,2h`.
pub fn parse_schedule(text: &str) -> Result<Vec<Duration>, String> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(parse_duration)
        .collect()
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("{text:?} needs a unit (ms, s, m, h, d)"))?;
    let (number, unit) = text.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} must start with a whole number"))?;
    let ms = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(format!("{text:?}: the unit must be ms, s, m, h or d")),
    };
    n.checked_mul(ms)
        .map(Duration::from_millis)
        .ok_or_else(|| format!("{text:?} is too long"))
}

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
    options: DeliveryOptions,
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
        options: DeliveryOptions,
        grants: Vec<OriginPattern>,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            client: endpoint::Clients::new(grants, options.timeout)?,
            node: format!("node_{}", hex::encode(rand::random::<[u8; 12]>())),
            nudge: watch::Sender::new(0),
            store,
            options,
        })
    }

    /// The options in force.
    pub fn options(&self) -> &DeliveryOptions {
        &self.options
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
        let nats = self.options.nats.clone().map(|options| {
            let worker = nats::NatsSink::new(self.clone(), options);
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
                    .prune_deliveries(now - ms(self.options.retention))
                    .await
                {
                    Ok(n) if n > 0 => tracing::info!(rows = n, "pruned old deliveries"),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "pruning old deliveries failed"),
                }
            }
            tokio::select! {
                _ = &mut until => break,
                _ = tokio::time::sleep(self.options.tick) => {}
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
            let until = now + ms(self.options.lease);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules() {
        assert_eq!(
            parse_schedule("5s, 5m,30m,2h,1d,250ms").unwrap(),
            [5, 300, 1800, 7200, 86400]
                .map(Duration::from_secs)
                .into_iter()
                .chain([Duration::from_millis(250)])
                .collect::<Vec<_>>()
        );
        assert_eq!(parse_schedule("").unwrap(), Vec::<Duration>::new());
        for bad in ["5", "s", "5 s", "5w", "-5s", "99999999999999999999d"] {
            assert!(parse_schedule(bad).is_err(), "{bad}");
        }
    }
}
