//! Hostile drivers beside a healthy installation: while the faulty driver loops in
//! `route-key`, recurses without end, returns a 16 MiB error, sends requests until its
//! budget stops it, floods the log, tries to reach the machine, returns 100,000 events
//! aliasing one buffer and floods the resource table, a Stripe installation
//! keeps receiving webhooks — every one of them accepted, promptly — and each hostile call
//! is contained with a logged reason.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde_json::json;
use sluice_testkit::neighbour::Neighbour;
use sluice_testkit::{Backend, Sluice};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Slowest acceptable Stripe delivery beside the hostile calls (a debug build on a busy
/// 2-core machine; the healthy path normally takes a few milliseconds).
const HEALTHY_P99: Duration = Duration::from_secs(2);

fn body(id: &str) -> Vec<u8> {
    format!(r#"{{"id":"{id}"}}"#).into_bytes()
}

/// A loopback server answering every request `200 {}`, counting them.
async fn counting_fake() -> (String, Arc<std::sync::atomic::AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let count = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = count.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                loop {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) if buf[..n].windows(4).any(|w| w == b"\r\n\r\n") => {
                            seen.fetch_add(1, Ordering::SeqCst);
                            let reply = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}";
                            if stream.write_all(reply).await.is_err() {
                                return;
                            }
                        }
                        Ok(_) => {}
                    }
                }
            });
        }
    });
    (format!("http://{addr}/x"), count)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_drivers_are_contained_while_stripe_keeps_working() {
    let (url, requests) = counting_fake().await;
    let Some(sluice) = Sluice::start_with_env(
        Backend::Sqlite,
        &[("SLUICE_ALLOW_HOSTS", "http://127.0.0.1:*")],
    )
    .await
    else {
        return;
    };
    let sluice = Arc::new(sluice);
    // The healthy installation's traffic, all along.
    let neighbour = Neighbour::start(sluice.clone()).await;

    let create = |mode: &str| {
        let sluice = sluice.clone();
        let settings = json!({"mode": mode, "url": url});
        async move {
            let inst = sluice.create_installation("faulty", settings).await;
            inst["installation_id"].as_str().unwrap().to_string()
        }
    };
    // Each hostile call, and what must be in the log about it.
    let cases: [(&str, u16, &str); 7] = [
        ("recurse", 500, "the driver trapped"),
        ("huge-error", 500, "bytes in all)"),
        ("many-requests", 500, "LimitExceeded"),
        ("log-flood", 200, ""),
        (
            "escape",
            500,
            r#"escape: {"vars":0,"args":0,"file":"error","dir":"error","socket":"error","dns":"error"}"#,
        ),
        // Stopped while lifting, before the host allocates for the copies.
        ("aliased-output", 500, "driver output stopped while lifting"),
        ("resource-flood", 500, "resource table has no free keys"),
    ];
    for (mode, status, reason) in cases {
        let inst = create(mode).await;
        let before = sluice.log().len();
        let resp = sluice
            .post_webhook(&inst, &[], body(&format!("evt_{mode}")))
            .await;
        assert_eq!(resp.status.as_u16(), status, "{mode}: {}", resp.text);
        let log = sluice.log();
        let log = log.get(before..).unwrap_or_default();
        assert!(
            log.contains(reason),
            "{mode}: no {reason:?} in the log:\n{log}"
        );
        match mode {
            "huge-error" => {
                // 16 MiB of driver text never reaches the log or the answer whole.
                assert!(log.len() < 64 * 1024, "{mode}: {} bytes of log", log.len());
                assert!(resp.text.len() < 1024, "{}", resp.text.len());
            }
            "many-requests" => {
                // The budget (16 a call) stopped it; nothing more reached the fake.
                assert!(log.contains("sent 16, then"), "{log}");
                assert_eq!(requests.load(Ordering::SeqCst), 16);
            }
            "log-flood" => {
                // 10,000 × 4 KiB asked for; the call's log budget (64 KiB) let 16 through.
                let lines = log.lines().filter(|l| l.contains("LLLL")).count();
                assert_eq!(lines, 16, "{lines} driver lines logged");
            }
            _ => {}
        }
        if status != 200 {
            assert!(
                sluice.events(&inst).await.is_empty(),
                "{mode} stored events"
            );
        }
    }

    // `route-key` looping on the app-level URL: cut off at the deadline.
    let started = Instant::now();
    let resp = sluice
        .post_webhook_to(
            "/webhooks/drivers/faulty",
            &[("x-faulty-route", "loop")],
            body("evt_route_loop"),
        )
        .await;
    assert_eq!(resp.status.as_u16(), 500, "{}", resp.text);
    assert!(started.elapsed() < Duration::from_secs(10));

    let stripe = neighbour.installation.clone();
    let report = neighbour.finish().await;
    assert!(
        report.failures.is_empty(),
        "healthy deliveries failed: {:?}",
        report.failures
    );
    assert!(
        report.latencies.len() >= 20,
        "only {} healthy deliveries",
        report.latencies.len()
    );
    let p99 = report.p99().unwrap();
    assert!(
        p99 < HEALTHY_P99,
        "healthy p99 {p99:?} over {} deliveries",
        report.latencies.len()
    );
    assert_eq!(sluice.events(&stripe).await.len(), report.latencies.len());
}
