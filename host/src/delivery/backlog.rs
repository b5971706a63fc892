//! The outbox gauges: what waits for each sink (endpoint or NATS), from the same store
//! queries `GET /v1/endpoints` and `GET /v1/sinks` show, refreshed every
//! [`GAUGE_REFRESH`] by the node holding the sink's lease — never per scrape, so
//! Prometheus adds no load on the database, and one node reports each sink. A node that
//! loses a lease stops refreshing that sink's gauges, and the exporter drops them.

use std::sync::Arc;
use std::time::Duration;

use sluice_store::{Backlog, SinkState, StoreError};
use tokio::sync::watch;

use super::{Deliverer, nats, now_ms};
use crate::metrics::GAUGE_REFRESH;

/// Refresh the gauges every [`GAUGE_REFRESH`] until `stopped`.
pub(super) async fn export(deliverer: Arc<Deliverer>, mut stopped: watch::Receiver<bool>) {
    loop {
        if let Err(e) = refresh(&deliverer).await {
            tracing::debug!(error = %e, "refreshing the outbox gauges failed; retrying later");
        }
        tokio::select! {
            _ = tokio::time::sleep(GAUGE_REFRESH) => {}
            _ = stopped.changed() => return,
        }
    }
}

async fn refresh(d: &Deliverer) -> Result<(), StoreError> {
    let store = &d.store;
    let now = now_ms();
    let held = |state: &Option<SinkState>| {
        state
            .as_ref()
            .and_then(|s| s.lease.as_ref())
            .is_some_and(|(owner, until)| *owner == d.node && *until > now)
    };
    for endpoint in store.list_endpoints().await? {
        let id = endpoint.id.as_str();
        if endpoint.disabled || !held(&store.sink_state(id).await?) {
            continue;
        }
        let backlog = store.endpoint_backlog(&endpoint).await?;
        crate::metrics::record_outbox(id, backlog.pending, Some(backlog.dead), age(&backlog));
    }
    if d.config.nats.url().is_some() && held(&store.sink_state(nats::SINK_ID).await?) {
        let backlog = store.log_backlog(nats::SINK_ID).await?;
        crate::metrics::record_outbox(nats::SINK_ID, backlog.pending, None, age(&backlog));
    }
    Ok(())
}

/// How long the oldest waiting event has waited (zero when none does).
fn age(backlog: &Backlog) -> Duration {
    backlog
        .oldest_received_at
        .as_deref()
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map_or(Duration::ZERO, |t| {
            Duration::from_millis(u64::try_from(now_ms() - t.timestamp_millis()).unwrap_or(0))
        })
}
