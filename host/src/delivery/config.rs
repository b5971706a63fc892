//! The `[delivery]` section and its `[delivery.nats]` table: how outbound webhooks are
//! retried, leased and paced, and where the JetStream sink publishes.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use sluice_store::StoredEvent;

/// Delivery to the Processing Engine (`[delivery]`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DeliveryConfig {
    /// The wait after each failed attempt of an outbound webhook: an event is tried once
    /// more than there are waits, then its delivery is dead. Each wait gets ±10 % jitter.
    /// Durations with a unit (`ms`, `s`, `m`, `h`, `d`), comma-separated. Default
    /// `5s,5m,30m,2h,5h,10h,10h` (8 attempts over about 28 hours).
    pub retry_schedule: String,
    /// The longest one attempt may take, ms. Default 15000.
    pub timeout_ms: u64,
    /// How long a node's claim on an endpoint (or the NATS sink) lasts, seconds; a dead
    /// node's are taken over once it has passed. Default 30.
    pub lease_secs: u64,
    /// How often a node looks for endpoints to claim, and the longest a worker sleeps
    /// before looking at its outbox again, ms. Default 1000.
    pub tick_ms: u64,
    /// Installations of one endpoint delivered to at once (each in order). Default 8.
    pub max_in_flight: usize,
    /// Failed attempts in a row that open an endpoint's circuit. Default 5.
    pub circuit_failure_threshold: i64,
    /// How long an open circuit first waits before one probe, ms; doubled after each
    /// failed probe. Default 30000.
    pub circuit_open_ms: u64,
    /// The longest an open circuit waits, ms. Default 600000.
    pub circuit_open_max_ms: u64,
    /// Days delivered deliveries and attempts are kept. Default 7.
    pub retention_days: u64,
    /// The NATS JetStream sink; off unless `url` is set.
    pub nats: NatsConfig,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        Self {
            retry_schedule: "5s,5m,30m,2h,5h,10h,10h".into(),
            timeout_ms: 15_000,
            lease_secs: 30,
            tick_ms: 1_000,
            max_in_flight: 8,
            circuit_failure_threshold: 5,
            circuit_open_ms: 30_000,
            circuit_open_max_ms: 600_000,
            retention_days: 7,
            nats: NatsConfig::default(),
        }
    }
}

impl DeliveryConfig {
    /// Check what the types cannot; `Err` names the key.
    pub fn validate(&self) -> Result<(), String> {
        self.schedule()?;
        if self.timeout_ms == 0 || self.tick_ms == 0 || self.lease_secs == 0 {
            return Err("[delivery] timeout_ms, tick_ms and lease_secs must be positive".into());
        }
        if self.lease_secs.saturating_mul(1000) <= self.timeout_ms.saturating_add(1000) {
            return Err(format!(
                "[delivery] lease_secs ({} s) must exceed timeout_ms ({} ms) by more than a second: a node's sends must end inside its lease, or another node may send them again",
                self.lease_secs, self.timeout_ms
            ));
        }
        if self.circuit_failure_threshold < 1 || self.max_in_flight == 0 {
            return Err(
                "[delivery] circuit_failure_threshold and max_in_flight must be at least 1".into(),
            );
        }
        self.nats.validate()
    }

    /// The retry schedule, parsed.
    pub fn schedule(&self) -> Result<Vec<Duration>, String> {
        parse_schedule(&self.retry_schedule).map_err(|e| format!("[delivery] retry_schedule: {e}"))
    }

    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }

    pub fn lease(&self) -> Duration {
        Duration::from_secs(self.lease_secs)
    }

    pub fn tick(&self) -> Duration {
        Duration::from_millis(self.tick_ms)
    }

    pub fn circuit_open(&self) -> Duration {
        Duration::from_millis(self.circuit_open_ms)
    }

    /// The longest wait of an open circuit (never shorter than its first).
    pub fn circuit_open_max(&self) -> Duration {
        Duration::from_millis(self.circuit_open_max_ms.max(self.circuit_open_ms))
    }

    /// How long delivered deliveries are kept (a day at least).
    pub fn retention(&self) -> Duration {
        Duration::from_secs(self.retention_days.max(1) * 86_400)
    }
}

/// The NATS JetStream sink (`[delivery.nats]`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NatsConfig {
    /// `nats://host:port`; unset: no sink.
    pub url: Option<String>,
    /// The stream, created if missing. Default `SLUICE_EVENTS`.
    pub stream: String,
    /// Subjects are `{subject_prefix}.{driver}.{installation}`. Default `sluice.events`.
    pub subject_prefix: String,
    /// Retention of a stream this host creates, days. Default 7.
    pub max_age_days: u64,
    /// How long a stream this host creates remembers message ids (duplicates dropped),
    /// seconds. Default 120.
    pub duplicate_window_secs: u64,
}

impl Default for NatsConfig {
    fn default() -> Self {
        Self {
            url: None,
            stream: "SLUICE_EVENTS".into(),
            subject_prefix: "sluice.events".into(),
            max_age_days: 7,
            duplicate_window_secs: 120,
        }
    }
}

impl NatsConfig {
    /// The sink's URL, when it is on (an empty one is off).
    pub fn url(&self) -> Option<&str> {
        self.url.as_deref().map(str::trim).filter(|u| !u.is_empty())
    }

    fn validate(&self) -> Result<(), String> {
        if self.url().is_none() {
            return Ok(());
        }
        let token_ok = |t: &str| {
            !t.is_empty()
                && t.split('.').all(|part| {
                    !part.is_empty()
                        && part
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
                })
        };
        if !token_ok(&self.subject_prefix) {
            return Err("[delivery.nats] subject_prefix must be dot-separated tokens of letters, digits, `_` and `-`".into());
        }
        if !token_ok(&self.stream) || self.stream.contains('.') {
            return Err("[delivery.nats] stream must be letters, digits, `_` and `-`".into());
        }
        Ok(())
    }

    /// How long the stream keeps messages (when this host creates it).
    pub fn max_age(&self) -> Duration {
        Duration::from_secs(self.max_age_days.max(1) * 86_400)
    }

    /// How long the stream remembers message ids (when this host creates it).
    pub fn duplicate_window(&self) -> Duration {
        Duration::from_secs(self.duplicate_window_secs.max(1))
    }

    /// The subject of `event`.
    pub fn subject(&self, event: &StoredEvent) -> String {
        format!(
            "{}.{}.{}",
            self.subject_prefix, event.driver_id, event.installation_id
        )
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

    #[test]
    fn the_default_schedule_is_eight_attempts_over_about_28_hours() {
        let schedule = DeliveryConfig::default().schedule().unwrap();
        assert_eq!(schedule.len(), 7);
        let total: Duration = schedule.iter().sum();
        assert_eq!(
            total.as_secs(),
            5 + 300 + 1800 + 7200 + 18000 + 36000 + 36000
        );
    }

    #[test]
    fn a_lease_must_outlast_an_attempt() {
        let config = DeliveryConfig {
            lease_secs: 15,
            timeout_ms: 15_000,
            ..DeliveryConfig::default()
        };
        assert!(config.validate().unwrap_err().contains("lease_secs"));
        assert!(DeliveryConfig::default().validate().is_ok());
    }
}
