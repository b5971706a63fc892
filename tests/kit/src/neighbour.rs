//! A healthy Stripe installation beside whatever a test does to the server: one signed
//! delivery every 20 ms until [`Neighbour::finish`], each answer and latency recorded, so a
//! test can say that every one was accepted and how fast.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;

use crate::Sluice;

/// The neighbour's traffic, running.
pub struct Neighbour {
    /// Its installation.
    pub installation: String,
    stop: Arc<AtomicBool>,
    task: JoinHandle<Report>,
}

/// What the neighbour saw.
pub struct Report {
    /// Every delivery's latency, in order.
    pub latencies: Vec<Duration>,
    /// `status body` of every delivery not answered `200`.
    pub failures: Vec<String>,
}

impl Report {
    /// The 99th percentile latency (`None` without deliveries).
    pub fn p99(&self) -> Option<Duration> {
        let mut sorted = self.latencies.clone();
        sorted.sort();
        let at = (sorted.len() * 99).div_ceil(100).checked_sub(1)?;
        sorted.get(at).copied()
    }
}

impl Neighbour {
    /// Creates a Stripe installation on `sluice` and starts its traffic.
    pub async fn start(sluice: Arc<Sluice>) -> Self {
        let (installation, secret) = sluice.stripe_installation().await;
        let stop = Arc::new(AtomicBool::new(false));
        let task = {
            let (stop, installation) = (stop.clone(), installation.clone());
            tokio::spawn(async move {
                let mut report = Report {
                    latencies: Vec::new(),
                    failures: Vec::new(),
                };
                let mut n = 0;
                while !stop.load(Ordering::SeqCst) {
                    n += 1;
                    let payload = crate::stripe_charge_variant(
                        &format!("evt_neighbour_{n}"),
                        &format!("ch_neighbour_{n}"),
                        "usd",
                        100 + n,
                    );
                    let started = Instant::now();
                    let resp = sluice.post_stripe(&installation, &secret, &payload).await;
                    report.latencies.push(started.elapsed());
                    if resp.status.as_u16() != 200 {
                        report
                            .failures
                            .push(format!("{} {}", resp.status, resp.text));
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                report
            })
        };
        Self {
            installation,
            stop,
            task,
        }
    }

    /// Stops the traffic and reports it.
    pub async fn finish(self) -> Report {
        self.stop.store(true, Ordering::SeqCst);
        self.task.await.expect("the neighbour's task panicked")
    }
}
