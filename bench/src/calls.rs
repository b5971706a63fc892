//! Per call: the Stripe webhook path inside the sandbox (a fresh store and instance per
//! delivery, `receive`) against the same driver code compiled natively, in one run.
//!
//! Every row handles the same signed `charge.succeeded` delivery (the example payload),
//! with the clock pinned to the signature's timestamp and secrets in memory (no database).
//! Prints a table of medians and ratios to the native baseline.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use hmac::{Hmac, Mac};
use sluice::capabilities::secrets::SecretValue;
use sluice::capabilities::{CapabilityConfig, Clock, DataSource, FixedData};
use sluice::runtime::{LoadedDriver, Runtime};
use sluice::wit::types::{CallContext, IncomingRequest};
use sluice_driver_stripe::{events, normalize, settings, signature};
use subtle::ConstantTimeEq;

const SECRET: &str = "whsec_bench_secret";
const SIGNED_AT: u64 = 1_748_465_448;
/// Each row runs until this many iterations or this much time, whichever comes first.
const MAX_ITERATIONS: usize = 5_000;
const MAX_TIME: Duration = Duration::from_secs(10);
const WARMUP: usize = 50;

fn native_hmac(key: &[u8], message: &[u8]) -> Vec<u8> {
    let mut mac =
        <Hmac<sha2::Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(message);
    mac.finalize().into_bytes().to_vec()
}

/// The driver's webhook path compiled natively (as its `receive`: verify, parse once, raw
/// event, records), with the host's HMAC done in-process.
fn native_delivery(body: &[u8], header: &str) -> anyhow::Result<usize> {
    let settings = settings::parse("{}").map_err(anyhow::Error::msg)?;
    signature::verify(
        Some(header),
        body,
        SIGNED_AT as i64,
        Some(settings.tolerance_seconds),
        |message, candidates| {
            let expected = native_hmac(SECRET.as_bytes(), message);
            Ok::<_, std::convert::Infallible>(
                candidates
                    .iter()
                    .fold(false, |found, c| bool::from(expected.ct_eq(c)) | found),
            )
        },
    )
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let event: serde_json::Value = serde_json::from_slice(body)?;
    let raw = events::raw_event_from(&event, body.to_vec()).map_err(anyhow::Error::msg)?;
    let records = normalize::normalize_event(&event).map_err(|e| anyhow::anyhow!("{e:?}"))?;
    std::hint::black_box(raw);
    Ok(records.len())
}

/// The same delivery in the sandbox: fresh store and instance, one `receive` call.
async fn sandbox_delivery(
    runtime: &Runtime,
    driver: &LoadedDriver,
    request: &IncomingRequest,
    secrets: &DataSource,
) -> anyhow::Result<usize> {
    let scope = driver.scope(
        &sluice_store::InstallationId::parse("inst_bench")?,
        secrets.clone(),
    );
    let ctx = CallContext {
        installation_id: "inst_bench".into(),
        settings: "{}".into(),
    };
    let mut session = runtime.session(driver, scope).await?;
    let outcome = session.receive(&ctx, request).await?;
    session.finish();
    outcome
        .events
        .iter()
        .map(|e| e.records.as_ref().map(Vec::len))
        .sum::<Result<usize, _>>()
        .map_err(|e| anyhow::anyhow!("{e:?}"))
}

/// Only the fixed cost: a fresh store and instance, no export call.
async fn sandbox_instantiate(
    runtime: &Runtime,
    driver: &LoadedDriver,
    secrets: &DataSource,
) -> anyhow::Result<usize> {
    let scope = driver.scope(
        &sluice_store::InstallationId::parse("inst_bench")?,
        secrets.clone(),
    );
    runtime.session(driver, scope).await?.finish();
    Ok(0)
}

struct Row {
    name: &'static str,
    samples: Vec<Duration>,
}

impl Row {
    fn percentile(&self, p: f64) -> Duration {
        let mut s = self.samples.clone();
        s.sort();
        s[((s.len() - 1) as f64 * p).round() as usize]
    }
}

async fn measure<F, Fut>(name: &'static str, mut f: F) -> anyhow::Result<Row>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<usize>>,
{
    for _ in 0..WARMUP {
        f().await.with_context(|| format!("{name}: warm-up"))?;
    }
    let started = Instant::now();
    // `SLUICE_BENCH_ITERATIONS` raises the count, for profiling a row.
    let iterations = std::env::var("SLUICE_BENCH_ITERATIONS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(MAX_ITERATIONS);
    let mut samples = Vec::with_capacity(iterations);
    while samples.len() < iterations && started.elapsed() < MAX_TIME {
        let t = Instant::now();
        std::hint::black_box(f().await?);
        samples.push(t.elapsed());
    }
    Ok(Row { name, samples })
}

fn micros(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1e6)
}

/// Run the per-call rows and print their table.
pub async fn run(root: &Path, drivers: &Path) -> anyhow::Result<()> {
    let wasm = drivers.join("stripe.wasm");
    let bytes = std::fs::read(&wasm).with_context(|| {
        format!(
            "reading {} (run `cargo xtask build-drivers`)",
            wasm.display()
        )
    })?;
    let body = std::fs::read(root.join("examples/stripe/charge.succeeded.json"))?;
    let v1 = hex::encode(native_hmac(
        SECRET.as_bytes(),
        &signature::signed_message(SIGNED_AT as i64, &body),
    ));
    let header = format!("t={SIGNED_AT},v1={v1}");

    let runtime = Runtime::new(
        CapabilityConfig {
            clock: Clock::Pinned(Duration::from_secs(SIGNED_AT)),
            ..CapabilityConfig::new(Vec::new())
        },
        None,
    )?;
    let driver = runtime.load_driver(&bytes).await?;
    let request = IncomingRequest {
        method: "POST".into(),
        path: "/webhooks/inst_bench".into(),
        query: String::new(),
        headers: vec![("stripe-signature".into(), header.clone())],
        body: body.clone(),
    };
    let secrets = DataSource::Fixed(Arc::new(FixedData {
        secrets: HashMap::from([(
            "webhook_secret".to_string(),
            SecretValue::new(SECRET.as_bytes().to_vec()),
        )]),
        state: HashMap::new(),
        ..FixedData::default()
    }));
    if native_delivery(&body, &header)?
        != sandbox_delivery(&runtime, &driver, &request, &secrets).await?
    {
        bail!("native and sandbox paths disagree on the number of records");
    }

    let rows = [
        measure("native: verify + parse + normalize", || async {
            native_delivery(&body, &header)
        })
        .await?,
        measure("sandbox: fresh store + instantiate only", || {
            sandbox_instantiate(&runtime, &driver, &secrets)
        })
        .await?,
        measure(
            "sandbox: fresh store + receive (verify, raw event, records)",
            || sandbox_delivery(&runtime, &driver, &request, &secrets),
        )
        .await?,
    ];
    let baseline = rows[0].percentile(0.5).as_secs_f64();
    println!(
        "### One Stripe delivery per call: {} byte charge.succeeded, {} cores",
        body.len(),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!();
    println!("| path | iterations | median µs | p99 µs | median / native |");
    println!("|---|---:|---:|---:|---:|");
    for row in &rows {
        let median = row.percentile(0.5);
        println!(
            "| {} | {} | {} | {} | {:.1}x |",
            row.name,
            row.samples.len(),
            micros(median),
            micros(row.percentile(0.99)),
            median.as_secs_f64() / baseline
        );
    }
    Ok(())
}
