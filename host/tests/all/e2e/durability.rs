//! The write path under stress: clients that vanish, a process killed with SIGKILL, a
//! database that is locked or down, slow clients, parallel duplicates, and a SIGTERM with
//! deliveries in flight. Whatever happens, a `2xx` means stored exactly once, and the host
//! recovers by itself.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice_testkit::fake::TcpProxy;
use sluice_testkit::{
    Backend, Sluice, both_backends, random_hex, stripe_charge_variant, stripe_header, unix_now,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

both_backends!(abandoned_requests_leave_nothing_behind => sqlite_abandoned_requests_leave_nothing_behind, postgres_abandoned_requests_leave_nothing_behind);
both_backends!(sigkill_under_load_loses_no_acknowledged_delivery => sqlite_sigkill_under_load_loses_no_acknowledged_delivery, postgres_sigkill_under_load_loses_no_acknowledged_delivery);
both_backends!(parallel_duplicates_store_once => sqlite_parallel_duplicates_store_once, postgres_parallel_duplicates_store_once);
both_backends!(sigterm_drains_deliveries_in_flight => sqlite_sigterm_drains_deliveries_in_flight, postgres_sigterm_drains_deliveries_in_flight);

/// A Stripe delivery, as raw request parts.
fn event(id: &str) -> Vec<u8> {
    stripe_charge_variant(id, &format!("ch_{id}"), "usd", 100)
}

/// The provider event ids of every stored event of an installation, with their counts.
async fn stored(sluice: &Sluice, installation: &str) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for id in sluice.provider_event_ids(installation).await {
        *counts.entry(id).or_default() += 1;
    }
    counts
}

/// POST a signed delivery with its own client and timeout; `Some(body)` on a `200`.
async fn post(
    client: &reqwest::Client,
    url: &str,
    secret: &str,
    body: Vec<u8>,
) -> Result<Option<String>, reqwest::Error> {
    let signature = stripe_header(&body, secret, unix_now());
    let response = client
        .post(url)
        .header("stripe-signature", signature)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await?;
    if response.status() == 200 {
        Ok(Some(response.text().await?))
    } else {
        Ok(None)
    }
}

/// Clients that give up mid-flight (while their delivery is in the sandbox or waiting for
/// its commit) leave no lock, transaction or connection behind: a fresh delivery then
/// succeeds promptly, every time, and every event stored is stored once.
async fn abandoned_requests_leave_nothing_behind(backend: Backend) {
    let Some(sluice) = Sluice::start(backend).await else {
        return;
    };
    let (inst, secret) = sluice.stripe_installation().await;
    let url = sluice.url(&format!("/webhooks/{inst}"));
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(3))
        .build()
        .unwrap();
    // Bounds a hang (a wedged write lock) without racing the machine's load.
    let patient = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let mut ids = Vec::new();
    for round in 0..3 {
        let tasks: Vec<_> = (0..100)
            .map(|i| {
                let id = format!("evt_abandon_{round}_{i}_{}", random_hex());
                ids.push(id.clone());
                let (client, url, secret) = (impatient.clone(), url.clone(), secret.clone());
                tokio::spawn(async move { post(&client, &url, &secret, event(&id)).await })
            })
            .collect();
        for task in tasks {
            let _ = task.await.unwrap();
        }
        // Right after the stampede of abandoned requests, a fresh delivery goes through. A
        // connection left holding the write lock would make it wait out the commit timeout
        // and answer 503, so its being accepted is the evidence; how fast is the
        // benchmark's to say.
        let fresh = format!("evt_fresh_{round}_{}", random_hex());
        let answer = post(&patient, &url, &secret, event(&fresh)).await.unwrap();
        assert_eq!(
            answer.as_deref(),
            Some(r#"{"accepted":1,"duplicates":0}"#),
            "round {round}"
        );
        ids.push(fresh);
    }
    // Redeliver everything: each is either stored now or a duplicate; all end up once.
    for id in &ids {
        let answer = post(&patient, &url, &secret, event(id)).await.unwrap();
        assert!(answer.is_some(), "{id} was not accepted on redelivery");
    }
    let counts = stored(&sluice, &inst).await;
    assert_eq!(counts.len(), ids.len());
    assert!(counts.values().all(|&n| n == 1), "{counts:?}");
}

/// SIGKILL under load, twenty times: after each restart every delivery that got a `200`
/// is stored exactly once, and redelivering one is a duplicate.
async fn sigkill_under_load_loses_no_acknowledged_delivery(backend: Backend) {
    let Some(mut sluice) = Sluice::start(backend).await else {
        return;
    };
    let (inst, secret) = sluice.stripe_installation().await;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let mut acknowledged: HashSet<String> = HashSet::new();
    for round in 0..20 {
        let url = sluice.url(&format!("/webhooks/{inst}"));
        let acked = Arc::new(std::sync::Mutex::new(Vec::new()));
        let senders: Vec<_> = (0..8)
            .map(|sender| {
                let (client, url, secret, acked) =
                    (client.clone(), url.clone(), secret.clone(), acked.clone());
                tokio::spawn(async move {
                    for n in 0.. {
                        let id = format!("evt_kill_{round}_{sender}_{n}");
                        match post(&client, &url, &secret, event(&id)).await {
                            Ok(Some(_)) => acked.lock().unwrap().push(id),
                            Ok(None) => {}
                            Err(_) => break, // the server is gone
                        }
                    }
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(150 + 37 * (round % 7))).await;
        sluice.kill();
        for sender in senders {
            sender.await.unwrap();
        }
        acknowledged.extend(acked.lock().unwrap().drain(..));
        sluice.start_again().await;
    }
    assert!(
        acknowledged.len() > 100,
        "only {} deliveries were acknowledged: the load did not reach the server",
        acknowledged.len()
    );
    let counts = stored(&sluice, &inst).await;
    let missing: Vec<_> = acknowledged
        .iter()
        .filter(|id| !counts.contains_key(*id))
        .collect();
    assert!(missing.is_empty(), "acknowledged but lost: {missing:?}");
    assert!(
        counts.values().all(|&n| n == 1),
        "stored twice: {:?}",
        counts.iter().filter(|(_, n)| **n > 1).collect::<Vec<_>>()
    );
    let again = acknowledged.iter().next().unwrap();
    let url = sluice.url(&format!("/webhooks/{inst}"));
    let answer = post(&client, &url, &secret, event(again)).await.unwrap();
    assert_eq!(answer.as_deref(), Some(r#"{"accepted":0,"duplicates":1}"#));
}

/// Thirty copies of one event at once: one is stored, twenty-nine are duplicates.
async fn parallel_duplicates_store_once(backend: Backend) {
    let Some(sluice) = Sluice::start(backend).await else {
        return;
    };
    let (inst, secret) = sluice.stripe_installation().await;
    let url = sluice.url(&format!("/webhooks/{inst}"));
    let client = reqwest::Client::new();
    let tasks: Vec<_> = (0..30)
        .map(|_| {
            let (client, url, secret) = (client.clone(), url.clone(), secret.clone());
            tokio::spawn(async move { post(&client, &url, &secret, event("evt_same")).await })
        })
        .collect();
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(task.await.unwrap().unwrap().expect("every copy gets a 200"));
    }
    let first = answers
        .iter()
        .filter(|a| *a == r#"{"accepted":1,"duplicates":0}"#)
        .count();
    let duplicates = answers
        .iter()
        .filter(|a| *a == r#"{"accepted":0,"duplicates":1}"#)
        .count();
    assert_eq!((first, duplicates), (1, 29), "{answers:?}");
    assert_eq!(stored(&sluice, &inst).await.get("evt_same"), Some(&1));
}

/// SIGTERM with deliveries in flight: each one that was accepted is answered and stored,
/// and the process exits within its grace period.
async fn sigterm_drains_deliveries_in_flight(backend: Backend) {
    let Some(mut sluice) = Sluice::start(backend).await else {
        return;
    };
    let (inst, secret) = sluice.stripe_installation().await;
    let url = sluice.url(&format!("/webhooks/{inst}"));
    let client = reqwest::Client::new();
    let tasks: Vec<_> = (0..40)
        .map(|i| {
            let (client, url, secret) = (client.clone(), url.clone(), secret.clone());
            tokio::spawn(async move {
                let id = format!("evt_term_{i}");
                (post(&client, &url, &secret, event(&id)).await, id)
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(30)).await;
    let status = sluice.terminate(Duration::from_secs(15)).await;
    assert!(
        status.is_some_and(|s| s.success()),
        "sluice did not exit cleanly after SIGTERM: {status:?}"
    );
    let mut answered = Vec::new();
    for task in tasks {
        let (result, id) = task.await.unwrap();
        // Otherwise it was refused before it was accepted (the listener was closed): the
        // provider retries.
        if let Ok(Some(_)) = result {
            answered.push(id);
        }
    }
    sluice.start_again().await;
    let counts = stored(&sluice, &inst).await;
    for id in &answered {
        assert_eq!(
            counts.get(id),
            Some(&1),
            "{id} was answered 200 but not stored once"
        );
    }
}

/// SQLite locked by another process: deliveries get `503` with `Retry-After` and nothing is
/// stored; once the lock is gone, the same delivery is accepted as new, without a restart.
/// The lock is held until the test lets it go, so an answer at all means the host gave up
/// by its own timeouts; the client's much longer one only bounds a hang.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locked_sqlite_answers_503_then_recovers() {
    let env = [
        ("SLUICE_STORE_TIMEOUT_MS", "300"),
        ("SLUICE_SERVER_COMMIT_TIMEOUT_MS", "1000"),
    ];
    let sluice = Sluice::start_with_env(Backend::Sqlite, &env).await.unwrap();
    let (inst, secret) = sluice.stripe_installation().await;
    let url = sluice.url(&format!("/webhooks/{inst}"));
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();

    let mut lock = sqlx::SqliteConnection::connect(sluice.database_url())
        .await
        .expect("opening the database from the test");
    sqlx::query("BEGIN EXCLUSIVE")
        .execute(&mut lock)
        .await
        .unwrap();
    let body = event("evt_locked");
    let response = client
        .post(&url)
        .header(
            "stripe-signature",
            stripe_header(&body, &secret, unix_now()),
        )
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    assert_eq!(
        response
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap()),
        Some("5")
    );
    sqlx::query("ROLLBACK").execute(&mut lock).await.unwrap();
    drop(lock);

    let answer = post(&client, &url, &secret, body).await.unwrap();
    assert_eq!(answer.as_deref(), Some(r#"{"accepted":1,"duplicates":0}"#));
}

/// PostgreSQL going away (every connection cut, new ones refused): `503` with `Retry-After`
/// on webhooks and on `/readyz`, never a hang or a `2xx`; when it is back the host recovers
/// by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_down_answers_503_then_recovers() {
    let env = [
        ("SLUICE_STORE_TIMEOUT_MS", "500"),
        ("SLUICE_SERVER_COMMIT_TIMEOUT_MS", "1500"),
        ("SLUICE_SERVER_INSTALLATION_CACHE_TTL_MS", "60000"),
    ];
    let Some(mut sluice) = Sluice::start_with_env(Backend::Postgres, &env).await else {
        return;
    };
    let direct = url::Url::parse(sluice.database_url()).unwrap();
    let target = format!(
        "{}:{}",
        direct.host_str().unwrap(),
        direct.port().unwrap_or(5432)
    );
    let proxy = TcpProxy::start(
        tokio::net::lookup_host(&target)
            .await
            .unwrap()
            .next()
            .unwrap(),
    )
    .await;
    let mut through = direct.clone();
    through.set_host(Some("127.0.0.1")).unwrap();
    through.set_port(Some(proxy.addr.port())).unwrap();
    sluice.set_database_url(through.to_string());
    sluice.restart().await;

    let (inst, secret) = sluice.stripe_installation().await;
    let url = sluice.url(&format!("/webhooks/{inst}"));
    // The database stays unreachable until the test brings it back: an answer at all is
    // the host giving up by its own timeouts; the client's long one only bounds a hang.
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let answer = post(&client, &url, &secret, event("evt_before"))
        .await
        .unwrap();
    assert!(answer.is_some());

    proxy.down();
    let body = event("evt_during");
    let response = client
        .post(&url)
        .header(
            "stripe-signature",
            stripe_header(&body, &secret, unix_now()),
        )
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503, "{}", response.text().await.unwrap());
    let ready = client.get(sluice.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    assert!(ready.headers().contains_key("retry-after"));

    proxy.up();
    let deadline = Instant::now() + Duration::from_secs(15);
    let answer = loop {
        if let Some(answer) = post(&client, &url, &secret, body.clone()).await.unwrap() {
            break answer;
        }
        assert!(Instant::now() < deadline, "no recovery within 15 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // Accepted as new: nothing of it was stored while the database was away.
    assert_eq!(answer, r#"{"accepted":1,"duplicates":0}"#);
    let ready = client.get(sluice.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
}

/// Read until the peer closes; how long that took.
async fn closed_within(stream: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout(limit, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Some(started.elapsed()),
            Ok(Ok(_)) => continue, // an error answer before the close
            Err(_) => return None,
        }
    }
}

/// Clients that trickle their headers or body, or keep a connection idle, are cut off
/// after the timeouts, while other deliveries are served meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_are_cut_off() {
    let env = [
        ("SLUICE_SERVER_HEADER_TIMEOUT_MS", "400"),
        ("SLUICE_SERVER_BODY_TIMEOUT_MS", "400"),
    ];
    let sluice = Sluice::start_with_env(Backend::Sqlite, &env).await.unwrap();
    let (inst, secret) = sluice.stripe_installation().await;
    let addr = sluice.base_url.trim_start_matches("http://").to_string();

    // Headers, one byte every 100 ms.
    let header_trickle = {
        let addr = addr.clone();
        tokio::spawn(async move {
            let mut s = TcpStream::connect(&addr).await.unwrap();
            let head = b"POST /webhooks/x HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n";
            let started = Instant::now();
            for b in head {
                if s.write_all(&[*b]).await.is_err() {
                    return Some(started.elapsed());
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                if started.elapsed() > Duration::from_secs(5) {
                    return None;
                }
            }
            closed_within(&mut s, Duration::from_secs(5)).await
        })
    };
    // A body, one byte every 100 ms.
    let body_trickle = {
        let addr = addr.clone();
        let inst = inst.clone();
        tokio::spawn(async move {
            let mut s = TcpStream::connect(&addr).await.unwrap();
            let head =
                format!("POST /webhooks/{inst} HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\n");
            s.write_all(head.as_bytes()).await.unwrap();
            let started = Instant::now();
            let mut answer = Vec::new();
            for _ in 0..100 {
                if s.write_all(b"{").await.is_err() {
                    break;
                }
                let mut buf = [0u8; 512];
                if let Ok(Ok(n)) =
                    tokio::time::timeout(Duration::from_millis(100), s.read(&mut buf)).await
                {
                    answer.extend_from_slice(&buf[..n]);
                    if n == 0 || !answer.is_empty() {
                        break;
                    }
                }
            }
            (
                started.elapsed(),
                String::from_utf8_lossy(&answer).into_owned(),
            )
        })
    };
    // Meanwhile, a real delivery.
    let during = sluice
        .post_stripe(&inst, &secret, &event("evt_meanwhile"))
        .await;
    during.expect_status(200);

    let header_cut = header_trickle.await.unwrap();
    assert!(
        header_cut.is_some_and(|t| t < Duration::from_secs(2)),
        "a client trickling its headers was not cut off: {header_cut:?}"
    );
    let (body_time, body_answer) = body_trickle.await.unwrap();
    assert!(
        body_time < Duration::from_secs(2),
        "body trickle lasted {body_time:?}"
    );
    assert!(
        body_answer.starts_with("HTTP/1.1 408"),
        "answer to a trickled body: {body_answer:?}"
    );

    // An idle keep-alive connection is closed after the header timeout too.
    let mut idle = TcpStream::connect(&addr).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 512];
    let n = idle.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    let idle_cut = closed_within(&mut idle, Duration::from_secs(3)).await;
    assert!(
        idle_cut.is_some_and(|t| t < Duration::from_secs(2)),
        "an idle keep-alive connection stayed open: {idle_cut:?}"
    );
    assert_eq!(stored(&sluice, &inst).await.len(), 1);
}

use sqlx::Connection as _;
