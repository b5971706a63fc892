//! Prometheus metrics (`GET /metrics`): every name and label is declared here.
//!
//! Labels are bounded: drivers and their versions, exports, outcomes, refusal reasons,
//! endpoint ids (operator-created). Never an installation id or an event id, which are
//! unbounded. The process installs one recorder ([`install`]); without it (tests that
//! build a router in process) every `record_*` is a no-op.

use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Buckets for call and commit durations, seconds: 100 µs to 10 s.
const SECONDS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// Install the process-wide recorder (once; later calls return the same handle).
pub fn install() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS)
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
    metrics::describe_counter!(
        "sluice_driver_calls_total",
        "Driver export calls (after instantiation) by driver, version, export and outcome: ok (the call returned, with a value or the driver's own error), trap, timeout, output_too_large"
    );
    metrics::describe_histogram!(
        "sluice_driver_call_duration_seconds",
        metrics::Unit::Seconds,
        "Wall time of one driver export call"
    );
    metrics::describe_counter!(
        "sluice_webhooks_total",
        "Webhook requests by outcome (accepted, or the refusal's reason)"
    );
    metrics::describe_counter!(
        "sluice_webhook_events_total",
        "Raw events of accepted webhooks: stored or duplicate"
    );
    metrics::describe_counter!(
        "sluice_delivery_attempts_total",
        "Outbound webhook attempts by endpoint and outcome (delivered, retry, dead)"
    );
    metrics::describe_counter!(
        "sluice_nats_published_total",
        "Events JetStream acknowledged"
    );
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

/// One webhook request: `outcome` is `accepted` or the refusal's reason.
pub fn record_webhook(outcome: &'static str, stored: u64, duplicates: u64) {
    metrics::counter!("sluice_webhooks_total", "outcome" => outcome).increment(1);
    if stored > 0 {
        metrics::counter!("sluice_webhook_events_total", "result" => "stored").increment(stored);
    }
    if duplicates > 0 {
        metrics::counter!("sluice_webhook_events_total", "result" => "duplicate")
            .increment(duplicates);
    }
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
