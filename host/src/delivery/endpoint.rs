//! Signed outbound webhooks: one worker per endpoint this node holds the lease of.
//!
//! A worker takes the events the endpoint receives from the log into its outbox, then
//! sends what is due: for each installation only the oldest pending event (so each
//! installation's events arrive in order), several installations at once, paced by the
//! endpoint's rate limit. Each request is a CloudEvent signed per Standard Webhooks
//! (`webhook-id` = the event id). A `2xx` delivers it; anything else is retried after the
//! next wait of the retry schedule (with jitter) and, after the last, the delivery is dead
//! with the endpoint's last answer. Failures in a row open the endpoint's circuit: nothing
//! is sent until it has been open for a while, then one probe decides.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice_store::{Attempt, AttemptOutcome, DueDelivery, EndpointId, StoreError};
use tokio::sync::{Mutex, watch};

use super::standard_webhooks::{SigningKey, signature_header};
use super::{Deliverer, jittered, ms, now_ms, wait_for_work};
use crate::net::{GlobalOnlyResolver, OriginPattern, is_non_global_literal};

/// Events read from the log per step.
const PAGE: i64 = 500;
/// The most of an endpoint's answer kept with an attempt.
const MAX_ANSWER: usize = 1024;

/// The HTTP clients deliveries go through, and the policy on where they may go: public
/// addresses (also after DNS), or an origin the operator granted in `allow_hosts`.
pub struct Clients {
    public: reqwest::Client,
    granted: reqwest::Client,
    grants: Arc<[OriginPattern]>,
}

impl Clients {
    pub fn new(grants: Vec<OriginPattern>, timeout: Duration) -> reqwest::Result<Self> {
        let grants: Arc<[OriginPattern]> = grants.into();
        let client = |resolver: GlobalOnlyResolver| {
            reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .no_proxy()
                .timeout(timeout)
                .connect_timeout(timeout.min(Duration::from_secs(10)))
                .dns_resolver(Arc::new(resolver))
                .user_agent(concat!("sluice/", env!("CARGO_PKG_VERSION")))
                .build()
        };
        Ok(Self {
            public: client(GlobalOnlyResolver::strict())?,
            granted: client(GlobalOnlyResolver::trusting(grants.clone()))?,
            grants,
        })
    }

    /// The URL, if an endpoint may post to it.
    pub fn check(&self, text: &str) -> Result<url::Url, String> {
        let url = url::Url::parse(text).map_err(|e| format!("not a URL: {e}"))?;
        if url.scheme() != "https" && url.scheme() != "http" {
            return Err("the URL must be http or https".into());
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err("the URL must not carry credentials".into());
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err("the URL needs a host".into());
        }
        if !self.granted(&url) && is_non_global_literal(&url) {
            return Err(format!(
                "{} is not a public address; private destinations need an operator grant (allow_hosts)",
                crate::net::host_of(&url)
            ));
        }
        Ok(url)
    }

    fn granted(&self, url: &url::Url) -> bool {
        self.grants.iter().any(|g| g.matches(url))
    }

    fn for_url(&self, url: &url::Url) -> &reqwest::Client {
        if self.granted(url) {
            &self.granted
        } else {
            &self.public
        }
    }
}

/// Paces an endpoint's sends to at most its rate limit, across rounds.
struct Pacer {
    next: Mutex<Instant>,
}

impl Pacer {
    fn new() -> Self {
        Self {
            next: Mutex::new(Instant::now()),
        }
    }

    /// Waits for the next slot at `per_sec` (no wait without a limit).
    async fn wait(&self, per_sec: Option<i64>) {
        let Some(every) = per_sec
            .filter(|n| *n > 0)
            .map(|n| Duration::from_secs_f64(1.0 / n as f64))
        else {
            return;
        };
        let at = {
            let mut next = self.next.lock().await;
            let at = (*next).max(Instant::now());
            *next = at + every;
            at
        };
        tokio::time::sleep_until(at.into()).await;
    }
}

/// What one attempt came to.
struct Sent {
    status: Option<u16>,
    error: Option<String>,
    answer: Option<String>,
}

/// Delivers to one endpoint while this node holds its lease.
pub struct Worker {
    deliverer: Arc<Deliverer>,
    id: EndpointId,
    pacer: Pacer,
}

impl Worker {
    pub fn new(deliverer: Arc<Deliverer>, id: EndpointId) -> Self {
        Self {
            deliverer,
            id,
            pacer: Pacer::new(),
        }
    }

    pub async fn run(self, mut stopped: watch::Receiver<bool>) {
        let store = &self.deliverer.store;
        let mut commits = store.committed_events();
        let mut nudges = self.deliverer.nudge.subscribe();
        loop {
            commits.borrow_and_update();
            nudges.borrow_and_update();
            let next = match self.step().await {
                Ok(Some(next)) => next,
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(endpoint = %self.id, error = %e, "delivery step failed");
                    now_ms() + 1_000
                }
            };
            let at = next.min(now_ms() + ms(self.deliverer.config.tick()));
            if wait_for_work(at, &mut commits, &mut nudges, &mut stopped).await {
                break;
            }
        }
        let _ = store
            .release_sink(self.id.as_str(), &self.deliverer.node)
            .await;
    }

    /// One round: renew the lease, take new events in, send what is due. When to look
    /// again (Unix ms), or `None` when this node should stop delivering to the endpoint.
    async fn step(&self) -> Result<Option<i64>, StoreError> {
        let d = &self.deliverer;
        let store = &d.store;
        let now = now_ms();
        if !store
            .claim_sink(self.id.as_str(), &d.node, now, now + ms(d.config.lease()))
            .await?
        {
            return Ok(None);
        }
        let Some(endpoint) = store.endpoint(&self.id).await? else {
            return Ok(None);
        };
        if endpoint.disabled {
            return Ok(None);
        }
        let Some(state) = store.sink_state(self.id.as_str()).await? else {
            return Ok(None);
        };
        // Take what the log holds for it into the outbox.
        let page = store.log_page(state.cursor, PAGE).await?;
        let more_in_log = page.len() as i64 == PAGE;
        if let Some(last) = page.last() {
            let matching: Vec<_> = page.iter().filter(|e| endpoint.filter.matches(e)).collect();
            if !store
                .enqueue_deliveries(
                    &self.id,
                    &d.node,
                    &matching,
                    last.cursor,
                    now,
                    now_ms() + ms(d.config.lease()),
                )
                .await?
            {
                return Ok(None);
            }
        }
        // The circuit: open, nothing is sent; open past its time, one probe.
        let circuit_open = state.consecutive_failures >= d.config.circuit_failure_threshold;
        if let Some(until) = state.circuit_open_until.filter(|u| *u > now) {
            return Ok(Some(until));
        }
        // A round's sends end inside the lease: its pacing fits in what the lease leaves
        // after one attempt's timeout and a second (config checks that this is positive).
        let pacing_ms = (ms(d.config.lease()) - ms(d.config.timeout()) - 1_000).max(0);
        let paced = endpoint
            .rate_limit_per_sec
            .map_or(i64::MAX, |rate| (rate * pacing_ms / 1000).max(1));
        let limit = if circuit_open {
            1
        } else {
            (d.config.max_in_flight as i64).min(paced)
        };
        let due = store.due_deliveries(&self.id, now, limit).await?;
        // Renewed right before sending, unless taking events in just did.
        if !due.is_empty() && page.is_empty() {
            let now = now_ms();
            if !store
                .claim_sink(self.id.as_str(), &d.node, now, now + ms(d.config.lease()))
                .await?
            {
                return Ok(None);
            }
        }
        let sent_any = !due.is_empty();
        if sent_any {
            let url = d
                .client
                .check(&endpoint.url)
                .map_err(StoreError::InvalidInput);
            let keys = store.endpoint_signing_keys(&self.id, now).await?;
            let mut signing = vec![SigningKey::from_bytes(keys.current.expose().to_vec())];
            if let Some(previous) = &keys.previous {
                signing.push(SigningKey::from_bytes(previous.expose().to_vec()));
            }
            let rate = endpoint.rate_limit_per_sec;
            let (pacer, url, signing) = (&self.pacer, &url, &signing);
            let sends = due.iter().map(|delivery| async move {
                pacer.wait(rate).await;
                let started = now_ms();
                let clock = Instant::now();
                let sent = match url {
                    Ok(url) => self.send(url, signing, delivery).await,
                    Err(e) => Sent {
                        status: None,
                        error: Some(format!("the endpoint URL is refused: {e}")),
                        answer: None,
                    },
                };
                (delivery, started, ms(clock.elapsed()), sent)
            });
            let results = futures_util::future::join_all(sends).await;
            let mut failures = state.consecutive_failures;
            let mut last_error = state.last_error.clone();
            for (delivery, at, duration_ms, sent) in results {
                let ok = sent.error.is_none();
                let attempt_no = delivery.attempts + 1;
                let outcome = if ok {
                    AttemptOutcome::Delivered
                } else if let Some(wait) = d.retry_schedule.get(delivery.attempts as usize) {
                    AttemptOutcome::RetryAt(now_ms() + jittered(ms(*wait)))
                } else {
                    AttemptOutcome::Dead
                };
                if outcome == AttemptOutcome::Dead {
                    tracing::warn!(endpoint = %self.id, event = %delivery.event.id,
                        attempts = attempt_no, error = sent.error.as_deref().unwrap_or(""),
                        "delivery is dead after its last attempt");
                }
                if ok {
                    failures = 0;
                    last_error = None;
                } else {
                    failures += 1;
                    last_error = sent.error.clone();
                }
                let attempt = Attempt {
                    event_id: delivery.event.id.to_string(),
                    attempt: attempt_no,
                    at,
                    duration_ms,
                    status: sent.status.map(i64::from),
                    error: sent.error,
                    response: sent.answer,
                };
                crate::metrics::record_attempt(
                    self.id.as_str(),
                    match outcome {
                        AttemptOutcome::Delivered => "delivered",
                        AttemptOutcome::RetryAt(_) => "retry",
                        AttemptOutcome::Dead => "dead",
                    },
                );
                store.record_attempt(&self.id, &attempt, outcome).await?;
            }
            let open_until = (failures >= d.config.circuit_failure_threshold).then(|| {
                let times = (failures - d.config.circuit_failure_threshold).clamp(0, 20) as u32;
                let open = d.config.circuit_open().saturating_mul(1 << times);
                now_ms() + ms(open.min(d.config.circuit_open_max()))
            });
            if open_until.is_some() && state.circuit_open_until.is_none() {
                tracing::warn!(endpoint = %self.id, failures, "endpoint circuit opened");
            }
            if failures != state.consecutive_failures || last_error != state.last_error {
                store
                    .set_sink_health(
                        self.id.as_str(),
                        failures,
                        last_error.as_deref(),
                        open_until,
                    )
                    .await?;
            }
        }
        if more_in_log || sent_any {
            return Ok(Some(now_ms()));
        }
        let next_due = store.next_delivery_due(&self.id).await?;
        Ok(Some(next_due.unwrap_or(i64::MAX)))
    }

    /// One signed POST of the event.
    async fn send(&self, url: &url::Url, keys: &[SigningKey], delivery: &DueDelivery) -> Sent {
        let body = crate::output::cloud_event(&delivery.event);
        let id = delivery.event.id.as_str();
        let timestamp = now_ms() / 1000;
        let key_refs: Vec<&SigningKey> = keys.iter().collect();
        let signature = signature_header(&key_refs, id, timestamp, body.as_bytes());
        let request = self
            .deliverer
            .client
            .for_url(url)
            .post(url.clone())
            .header("content-type", "application/cloudevents+json")
            .header("webhook-id", id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(body);
        match request.send().await {
            Ok(mut response) => {
                let status = response.status();
                let mut answer = Vec::new();
                while answer.len() < MAX_ANSWER {
                    match response.chunk().await {
                        Ok(Some(chunk)) => answer.extend_from_slice(&chunk),
                        _ => break,
                    }
                }
                answer.truncate(MAX_ANSWER);
                let answer =
                    (!answer.is_empty()).then(|| String::from_utf8_lossy(&answer).into_owned());
                Sent {
                    status: Some(status.as_u16()),
                    error: (!status.is_success())
                        .then(|| format!("the endpoint answered {status}")),
                    answer,
                }
            }
            Err(e) => Sent {
                status: None,
                error: Some(describe(&e)),
                answer: None,
            },
        }
    }
}

/// A transport failure in a line, without the URL's query (reqwest includes the URL).
fn describe(e: &reqwest::Error) -> String {
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else {
        "request failed"
    };
    let mut source: Option<&dyn std::error::Error> = std::error::Error::source(e);
    let mut detail = String::new();
    while let Some(s) = source {
        detail = s.to_string();
        source = s.source();
    }
    if detail.is_empty() {
        what.to_string()
    } else {
        format!("{what}: {detail}")
    }
}
