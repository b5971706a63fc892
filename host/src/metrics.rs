//! Prometheus metrics (`GET /metrics`): every name and label is declared here (the store's
//! commit metrics are recorded by `sluice-store` through the same `metrics` facade, and
//! described here). The reference for operators is `docs/admin-api.md` ("Metrics").
//!
//! Labels are bounded: drivers and their versions (loaded by the operator), exports,
//! outcomes, refusal reasons, sink ids (endpoints are operator-created). Installation ids
//! are unbounded, so only the `sluice_installation_*` families carry them, and only for the
//! first `[server] metrics_installation_series` live installations a node records (the rest
//! share [`OTHER_INSTALLATIONS`]). Never an event id, nor anything a stranger chooses (a
//! webhook URL's driver or installation id before it is found). The process installs one
//! recorder ([`install`]); without it (tests that build a router in process) every
//! `record_*` is a no-op.

use std::collections::HashSet;
use std::sync::{OnceLock, RwLock};
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use metrics_util::MetricKindMask;

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// The `installation` label of every installation past the cap.
pub const OTHER_INSTALLATIONS: &str = "_other";

/// How many installations get series of their own (see [`set_installation_series`]).
static INSTALLATION_CAP: OnceLock<usize> = OnceLock::new();

/// The installations that have series of their own, in the order first recorded.
static LABELLED: RwLock<Option<HashSet<String>>> = RwLock::new(None);

/// Give the first `cap` installations a node records series of their own (once, before
/// [`install`]; later calls are ignored). Without a call, the default of 100 applies.
pub fn set_installation_series(cap: usize) {
    let _ = INSTALLATION_CAP.set(cap);
}

/// The `installation` label of `id`: its own while there is room, then `_other`. `None`
/// when per-installation series are off or nothing records them.
fn installation_label(id: &str) -> Option<String> {
    let cap = *INSTALLATION_CAP.get_or_init(|| 100);
    if cap == 0 || HANDLE.get().is_none_or(Option::is_none) {
        return None;
    }
    if LABELLED
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .as_ref()
        .is_some_and(|set| set.contains(id))
    {
        return Some(id.to_owned());
    }
    let mut labelled = LABELLED.write().unwrap_or_else(|p| p.into_inner());
    let set = labelled.get_or_insert_with(HashSet::new);
    if set.contains(id) || set.len() < cap {
        set.insert(id.to_owned());
        Some(id.to_owned())
    } else {
        Some(OTHER_INSTALLATIONS.to_owned())
    }
}

/// Buckets for call and commit durations, seconds: 100 µs to 10 s.
const SECONDS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// Buckets for poll lag, seconds: 10 ms (a tick) to an hour (a node that was down).
const LAG_SECONDS: &[f64] = &[
    0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0,
];

/// Buckets for memory, bytes: 64 KiB to 4 GiB in powers of two (64 MiB, the default
/// limit, is one of them).
const BYTES: &[f64] = &[
    65536.0,
    131072.0,
    262144.0,
    524288.0,
    1048576.0,
    2097152.0,
    4194304.0,
    8388608.0,
    16777216.0,
    33554432.0,
    67108864.0,
    134217728.0,
    268435456.0,
    536870912.0,
    1073741824.0,
    2147483648.0,
    4294967296.0,
];

/// Buckets for deliveries per commit: 1 to the writer's batch limit (256).
const BATCH: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];

/// How often the outbox gauges are refreshed (by the node holding each sink's lease).
pub const GAUGE_REFRESH: Duration = Duration::from_secs(5);

/// Gauges not refreshed for this long are dropped from the exposition: a node that lost a
/// sink's lease stops reporting its backlog (the new holder reports it).
const GAUGE_IDLE: Duration = Duration::from_secs(15);

/// Install the process-wide recorder (once; later calls return the same handle).
pub fn install() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .idle_timeout(MetricKindMask::GAUGE, Some(GAUGE_IDLE))
                .set_buckets_for_metric(
                    Matcher::Full("sluice_poll_lag_seconds".into()),
                    LAG_SECONDS,
                )
                .and_then(|b| b.set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS))
                .and_then(|b| b.set_buckets_for_metric(Matcher::Suffix("_bytes".into()), BYTES))
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full("sluice_commit_batch_size".into()),
                        BATCH,
                    )
                })
                .ok()?;
            match builder.install_recorder() {
                Ok(handle) => {
                    describe();
                    Some(handle)
                }
                Err(e) => {
                    tracing::warn!(error = %e, "metrics recorder not installed");
                    None
                }
            }
        })
        .as_ref()
}

/// The text exposition of every metric, or `None` without a recorder.
pub fn render() -> Option<String> {
    HANDLE.get()?.as_ref().map(PrometheusHandle::render)
}

fn describe() {
    use metrics::Unit;
    metrics::describe_counter!(
        "sluice_driver_calls_total",
        "Driver calls by driver, version, export (instantiate for the component's start) and outcome: ok, driver_error (the driver returned its own error), trap, out_of_memory (a trap after a memory growth was refused), timeout, output_too_large"
    );
    metrics::describe_histogram!(
        "sluice_driver_call_duration_seconds",
        Unit::Seconds,
        "Wall time of one driver call (export or instantiation)"
    );
    metrics::describe_histogram!(
        "sluice_driver_memory_peak_bytes",
        Unit::Bytes,
        "Most linear memory one driver instance held (one session: a webhook delivery, a poll page, a refresh...)"
    );
    metrics::describe_counter!(
        "sluice_webhooks_total",
        "Webhook requests by outcome: accepted or rejected"
    );
    metrics::describe_counter!(
        "sluice_webhooks_rejected_total",
        "Webhook requests refused, by reason: signature, unknown_installation, unroutable, policy (all four answered 401 alike), malformed, oversized, body_timeout, not_ready, driver_unavailable, driver_failed, overloaded, store_unavailable, storage_error"
    );
    metrics::describe_counter!(
        "sluice_installation_webhooks_total",
        "Webhook requests of a live installation by outcome: accepted, rejected (by its driver, its state or the policy; not those refused before the installation was found); the first [server] metrics_installation_series installations have their own installation label, the rest share _other"
    );
    metrics::describe_counter!(
        "sluice_installation_polls_total",
        "Polls of an installation (scheduled and operator's) by outcome: ok, rate_limited (the provider asked to wait), failed; installation label as for sluice_installation_webhooks_total"
    );
    metrics::describe_counter!(
        "sluice_webhook_events_total",
        "Raw events of accepted webhooks: stored or duplicate"
    );
    metrics::describe_histogram!(
        "sluice_commit_batch_size",
        "Deliveries (webhooks, poll pages) committed by one group-commit transaction"
    );
    metrics::describe_histogram!(
        "sluice_commit_duration_seconds",
        Unit::Seconds,
        "Wall time of one group-commit transaction, by outcome (ok, error)"
    );
    metrics::describe_histogram!(
        "sluice_poll_lag_seconds",
        Unit::Seconds,
        "How late a scheduled poll started after it was due, by driver"
    );
    metrics::describe_counter!(
        "sluice_dead_letters_total",
        "Raw events whose normalization failed on every attempt (now dead letters), by driver and version"
    );
    metrics::describe_counter!(
        "sluice_token_refreshes_total",
        "Token refreshes that called the driver, by driver, version and outcome: refreshed, failed (retried after a backoff), needs_reauth"
    );
    metrics::describe_counter!(
        "sluice_delivery_attempts_total",
        "Outbound webhook attempts by endpoint and outcome (delivered, retry, dead: the delivery's last attempt failed)"
    );
    metrics::describe_gauge!(
        "sluice_outbox_pending",
        "Events waiting for a sink (an endpoint id, or nats): pending in its outbox and past its position in the log; reported by the node holding its lease"
    );
    metrics::describe_gauge!(
        "sluice_outbox_dead",
        "Dead deliveries kept in an endpoint's outbox (replayable)"
    );
    metrics::describe_gauge!(
        "sluice_outbox_oldest_pending_age_seconds",
        Unit::Seconds,
        "Age of the oldest event waiting for a sink (0 when none)"
    );
    metrics::describe_counter!(
        "sluice_nats_published_total",
        "Events JetStream acknowledged"
    );
    metrics::describe_counter!(
        "sluice_driver_activations_total",
        "Driver versions this node switched to, by driver, version and reason: upload, directory, activate, rollback, sync (another node's change)"
    );
    metrics::describe_counter!(
        "sluice_driver_refusals_total",
        "Driver components refused at load, by source: upload, directory"
    );
}

/// This node switched `driver` to `version`.
pub fn record_activation(driver: &str, version: &str, reason: &'static str) {
    metrics::counter!(
        "sluice_driver_activations_total",
        &[
            ("driver", driver.to_owned()),
            ("version", version.to_owned()),
            ("reason", reason.to_owned())
        ]
    )
    .increment(1);
}

/// A component that did not load (`upload` or `directory`).
pub fn record_refusal(source: &'static str) {
    metrics::counter!("sluice_driver_refusals_total", "source" => source).increment(1);
}

/// One driver export call.
pub fn record_call(
    driver: &str,
    version: &str,
    export: &'static str,
    outcome: &'static str,
    took: Duration,
) {
    let labels = [
        ("driver", driver.to_owned()),
        ("version", version.to_owned()),
        ("export", export.to_owned()),
    ];
    metrics::counter!(
        "sluice_driver_calls_total",
        &[
            labels[0].clone(),
            labels[1].clone(),
            labels[2].clone(),
            ("outcome", outcome.to_owned()),
        ]
    )
    .increment(1);
    metrics::histogram!("sluice_driver_call_duration_seconds", &labels).record(took.as_secs_f64());
}

/// An accepted webhook request: raw events `stored` and `duplicates`.
pub fn record_webhook_accepted(stored: u64, duplicates: u64) {
    metrics::counter!("sluice_webhooks_total", "outcome" => "accepted").increment(1);
    if stored > 0 {
        metrics::counter!("sluice_webhook_events_total", "result" => "stored").increment(stored);
    }
    if duplicates > 0 {
        metrics::counter!("sluice_webhook_events_total", "result" => "duplicate")
            .increment(duplicates);
    }
}

/// A refused webhook request, by reason (one of those `describe` lists).
pub fn record_webhook_rejected(reason: &'static str) {
    metrics::counter!("sluice_webhooks_total", "outcome" => "rejected").increment(1);
    metrics::counter!("sluice_webhooks_rejected_total", "reason" => reason).increment(1);
}

/// A webhook request of the live installation `id`: `accepted` or `rejected`.
pub fn record_installation_webhook(id: &str, outcome: &'static str) {
    count_for_installation("sluice_installation_webhooks_total", id, outcome);
}

/// A poll of the installation `id`: `ok`, `rate_limited` or `failed`.
pub fn record_installation_poll(id: &str, outcome: &'static str) {
    count_for_installation("sluice_installation_polls_total", id, outcome);
}

/// One more in a `sluice_installation_*` family, under the installation's label.
fn count_for_installation(family: &'static str, id: &str, outcome: &'static str) {
    if let Some(installation) = installation_label(id) {
        metrics::counter!(family, "installation" => installation, "outcome" => outcome)
            .increment(1);
    }
}

/// The most memory one session's instance held.
pub fn record_memory_peak(driver: &str, version: &str, bytes: usize) {
    metrics::histogram!(
        "sluice_driver_memory_peak_bytes",
        &[
            ("driver", driver.to_owned()),
            ("version", version.to_owned())
        ]
    )
    .record(bytes as f64);
}

/// How late a scheduled poll of an installation of `driver` started.
pub fn record_poll_lag(driver: &str, lag: Duration) {
    metrics::histogram!("sluice_poll_lag_seconds", "driver" => driver.to_owned())
        .record(lag.as_secs_f64());
}

/// A normalization of `raw` failed again and was recorded, with its next attempt at
/// `next`: none left makes a `failed` event a dead letter (a replay of one already dead
/// that fails again is no new dead letter).
pub fn record_dead_letter(raw: &sluice_store::RawEvent, next: Option<i64>) {
    if next.is_some() || raw.status != sluice_store::RawEventStatus::Failed {
        return;
    }
    metrics::counter!(
        "sluice_dead_letters_total",
        &[
            ("driver", raw.driver_id.to_string()),
            ("version", raw.driver_version.clone())
        ]
    )
    .increment(1);
}

/// A token refresh that called the driver: `refreshed`, `failed` or `needs_reauth`.
pub fn record_refresh(driver: &str, version: &str, outcome: &'static str) {
    metrics::counter!(
        "sluice_token_refreshes_total",
        &[
            ("driver", driver.to_owned()),
            ("version", version.to_owned()),
            ("outcome", outcome.to_owned())
        ]
    )
    .increment(1);
}

/// What waits for a sink (an endpoint id or `nats`): `dead` only for endpoints.
pub fn record_outbox(sink: &str, pending: i64, dead: Option<i64>, oldest: Duration) {
    let label = [("sink", sink.to_owned())];
    metrics::gauge!("sluice_outbox_pending", &label).set(pending as f64);
    if let Some(dead) = dead {
        metrics::gauge!("sluice_outbox_dead", &label).set(dead as f64);
    }
    metrics::gauge!("sluice_outbox_oldest_pending_age_seconds", &label).set(oldest.as_secs_f64());
}

/// One outbound webhook attempt.
pub fn record_attempt(endpoint: &str, outcome: &'static str) {
    metrics::counter!(
        "sluice_delivery_attempts_total",
        &[
            ("endpoint", endpoint.to_owned()),
            ("outcome", outcome.to_owned())
        ]
    )
    .increment(1);
}

/// Events JetStream acknowledged.
pub fn record_published(n: u64) {
    metrics::counter!("sluice_nats_published_total").increment(n);
}
