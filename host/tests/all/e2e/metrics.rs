//! `GET /metrics`: every family moves by exactly what the test caused — webhooks accepted
//! and rejected by reason, driver calls by outcome (traps, timeouts, out of memory), memory
//! peaks, group commits, outbound deliveries and the outbox gauges, dead letters, token
//! refreshes, poll lag — read through a parser of the exposition format.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use axum::routing::{get, post};
use reqwest::Method;
use serde_json::json;
use sluice_testkit::paths::driver_wasm;
use sluice_testkit::prometheus::{Exposition, scrape};
use sluice_testkit::{
    Backend, Sluice, both_backends, random_hex, stripe_charge_payload, stripe_charge_variant,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The driver's memory limit (`[sandbox] max_memory_bytes`, default): a histogram bucket.
const MEMORY_LIMIT: &str = "67108864";

/// Every family the host declares, with its type.
const FAMILIES: &[(&str, &str)] = &[
    ("sluice_driver_calls_total", "counter"),
    ("sluice_driver_call_duration_seconds", "histogram"),
    ("sluice_driver_memory_peak_bytes", "histogram"),
    ("sluice_webhooks_total", "counter"),
    ("sluice_webhooks_rejected_total", "counter"),
    ("sluice_webhook_events_total", "counter"),
    ("sluice_installation_webhooks_total", "counter"),
    ("sluice_installation_polls_total", "counter"),
    ("sluice_commit_batch_size", "histogram"),
    ("sluice_commit_duration_seconds", "histogram"),
    ("sluice_poll_lag_seconds", "histogram"),
    ("sluice_dead_letters_total", "counter"),
    ("sluice_token_refreshes_total", "counter"),
    ("sluice_delivery_attempts_total", "counter"),
    ("sluice_outbox_pending", "gauge"),
    ("sluice_outbox_dead", "gauge"),
    ("sluice_outbox_oldest_pending_age_seconds", "gauge"),
    ("sluice_nats_published_total", "counter"),
    ("sluice_driver_activations_total", "counter"),
    ("sluice_driver_refusals_total", "counter"),
];

/// Every sample belongs to a declared family with HELP text and the declared type.
fn assert_declared(e: &Exposition) {
    for sample in &e.samples {
        let family = e
            .family_of(&sample.name)
            .unwrap_or_else(|| panic!("{} has no TYPE", sample.name));
        let declared = FAMILIES
            .iter()
            .find(|(name, _)| *name == family)
            .unwrap_or_else(|| panic!("{family} is not in the metrics reference"));
        assert_eq!(e.kind(family), Some(declared.1), "{family}");
        assert!(
            e.help(family).is_some_and(|h| !h.is_empty()),
            "{family} has no HELP"
        );
    }
}

/// Scrape until `check` holds (at most `within`), then return that scrape.
async fn scrape_until(
    sluice: &Sluice,
    within: Duration,
    what: &str,
    check: impl Fn(&Exposition) -> bool,
) -> Exposition {
    let deadline = Instant::now() + within;
    loop {
        let e = scrape(sluice).await;
        if check(&e) {
            return e;
        }
        assert!(Instant::now() < deadline, "{what}: {:#?}", e.samples);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn faulty(sluice: &Sluice, mode: &str) -> String {
    let inst = sluice
        .create_installation("faulty", json!({"mode": mode}))
        .await;
    inst["installation_id"].as_str().unwrap().to_string()
}

fn body(id: &str) -> Vec<u8> {
    format!(r#"{{"id":"{id}","note":"metrics e2e"}}"#).into_bytes()
}

/// A webhook whose body never arrives in full: answered `408` after the body timeout.
async fn trickled_webhook(sluice: &Sluice, installation: &str) -> String {
    let addr = sluice.base_url.trim_start_matches("http://").to_string();
    let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "POST /webhooks/{installation} HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{{\"id\":"
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let mut answer = vec![0u8; 512];
    let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut answer))
        .await
        .expect("no answer to a trickled body")
        .unwrap();
    String::from_utf8_lossy(&answer[..n]).into_owned()
}

both_backends!(webhooks_driver_calls_memory_and_commits => sqlite_webhooks_driver_calls_memory_and_commits, postgres_webhooks_driver_calls_memory_and_commits);

async fn webhooks_driver_calls_memory_and_commits(backend: Backend) {
    let env = [
        ("SLUICE_MAX_BODY_BYTES", "16384"),
        ("SLUICE_SERVER_BODY_TIMEOUT_MS", "500"),
    ];
    let Some(sluice) = Sluice::start_with_env(backend, &env).await else {
        return;
    };
    // Behind the admin token.
    let anonymous = reqwest::get(sluice.url("/metrics")).await.unwrap();
    assert_eq!(anonymous.status(), 401);

    let (inst, secret) = sluice.stripe_installation().await;
    let payload = stripe_charge_payload();
    for _ in 0..2 {
        sluice
            .post_stripe(&inst, &secret, &payload)
            .await
            .expect_status(200);
    }
    sluice
        .post_stripe(&inst, "whsec_not_the_secret", &payload)
        .await
        .expect_status(401);
    // An unknown installation and an app-level delivery naming no account are answered
    // like a bad signature, but counted apart: the counters are the operator's.
    sluice
        .post_webhook("inst_nobody_here", &[], b"{}".to_vec())
        .await
        .expect_status(401);
    sluice
        .post_webhook("drivers/stripe", &[], payload.clone())
        .await
        .expect_status(401);
    sluice
        .post_webhook(&inst, &[], vec![b' '; 16385])
        .await
        .expect_status(413);
    let answer = trickled_webhook(&sluice, &inst).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");

    let refusing = faulty(&sluice, "bad-request").await;
    sluice
        .post_webhook(&refusing, &[], body("evt_bad"))
        .await
        .expect_status(400);
    for mode in ["trap", "loop", "oom", "huge-output"] {
        let inst = faulty(&sluice, mode).await;
        sluice
            .post_webhook(&inst, &[], body(&format!("evt_{mode}")))
            .await
            .expect_status(500);
    }

    let e = scrape(&sluice).await;
    assert_declared(&e);
    let webhooks = |outcome| e.value("sluice_webhooks_total", &[("outcome", outcome)]);
    assert_eq!(webhooks("accepted"), Some(2.0), "{:#?}", e.samples);
    assert_eq!(webhooks("rejected"), Some(10.0));
    let rejected: Vec<(String, f64)> = e
        .matching("sluice_webhooks_rejected_total", &[])
        .map(|s| (s.labels["reason"].clone(), s.value))
        .collect();
    let mut rejected = rejected;
    rejected.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        rejected,
        [
            ("body_timeout".to_string(), 1.0),
            ("driver_failed".to_string(), 4.0),
            ("malformed".to_string(), 1.0),
            ("oversized".to_string(), 1.0),
            ("signature".to_string(), 1.0),
            ("unknown_installation".to_string(), 1.0),
            ("unroutable".to_string(), 1.0),
        ]
    );
    let events = |result| e.value("sluice_webhook_events_total", &[("result", result)]);
    assert_eq!(events("stored"), Some(1.0));
    assert_eq!(events("duplicate"), Some(1.0));

    // Driver calls by outcome: the faulty driver's four receive calls, one each.
    let faulty_version = sluice.driver_info("faulty").await["version"]
        .as_str()
        .unwrap()
        .to_string();
    let faulty_calls: Vec<(String, String, f64)> = e
        .matching(
            "sluice_driver_calls_total",
            &[("driver", "faulty"), ("version", &faulty_version)],
        )
        .map(|s| {
            (
                s.labels["export"].clone(),
                s.labels["outcome"].clone(),
                s.value,
            )
        })
        .collect();
    let mut faulty_calls = faulty_calls;
    faulty_calls.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    let call = |export: &str, outcome: &str, n: f64| (export.to_string(), outcome.to_string(), n);
    assert_eq!(
        faulty_calls,
        [
            call("instantiate", "ok", 5.0),
            call("receive", "driver_error", 1.0),
            call("receive", "out_of_memory", 1.0),
            call("receive", "output_too_large", 1.0),
            call("receive", "timeout", 1.0),
            call("receive", "trap", 1.0),
        ]
    );
    let stripe_version = sluice.driver_info("stripe").await["version"]
        .as_str()
        .unwrap()
        .to_string();
    let stripe = |export: &'static str, outcome: &'static str| {
        e.value(
            "sluice_driver_calls_total",
            &[
                ("driver", "stripe"),
                ("version", &stripe_version),
                ("export", export),
                ("outcome", outcome),
            ],
        )
    };
    // Two deliveries verified and normalized in one `receive` each (the duplicate too:
    // only the commit knows), one refused by the driver, and the app-level delivery asked
    // for its account (none matched); nothing else ran.
    assert_eq!(stripe("receive", "ok"), Some(2.0));
    assert_eq!(stripe("receive", "driver_error"), Some(1.0));
    assert_eq!(stripe("route_key", "ok"), Some(1.0));
    assert_eq!(stripe("instantiate", "ok"), Some(4.0));
    assert_eq!(
        e.sum("sluice_driver_calls_total", &[("driver", "stripe")]),
        8.0
    );
    assert_eq!(
        e.value(
            "sluice_driver_call_duration_seconds_count",
            &[
                ("driver", "stripe"),
                ("version", &stripe_version),
                ("export", "receive")
            ]
        ),
        Some(3.0)
    );

    // One memory peak per session. Drivers start with 4 MiB of linear memory
    // (`.cargo/config.toml`), which the refusing, trapping, looping and out-of-memory
    // calls never grew (the refused growth is not counted); the huge output grew it
    // (10,000 events of 1 KiB), though not past the limit.
    let faulty_labels = [("driver", "faulty"), ("version", faulty_version.as_str())];
    let peaks_up_to = |le| {
        let mut labels = faulty_labels.to_vec();
        labels.push(("le", le));
        e.value("sluice_driver_memory_peak_bytes_bucket", &labels)
    };
    assert_eq!(
        e.value("sluice_driver_memory_peak_bytes_count", &faulty_labels),
        Some(5.0)
    );
    assert_eq!(peaks_up_to("2097152"), Some(0.0));
    assert_eq!(peaks_up_to("4194304"), Some(4.0));
    assert_eq!(peaks_up_to("8388608"), Some(4.0));
    assert_eq!(peaks_up_to(MEMORY_LIMIT), Some(5.0));
    let huge = e
        .value("sluice_driver_memory_peak_bytes_sum", &faulty_labels)
        .unwrap()
        - 4.0 * 4194304.0;
    assert!(huge > 10_000.0 * 1024.0 && huge <= 67108864.0, "{huge}");

    // Two commits (the new delivery and the duplicate), one delivery each; nothing
    // refused reached the writer.
    assert_eq!(e.value("sluice_commit_batch_size_count", &[]), Some(2.0));
    assert_eq!(e.value("sluice_commit_batch_size_sum", &[]), Some(2.0));
    assert_eq!(
        e.value("sluice_commit_batch_size_bucket", &[("le", "1")]),
        Some(2.0)
    );
    assert_eq!(
        e.value("sluice_commit_duration_seconds_count", &[("outcome", "ok")]),
        Some(2.0)
    );
    assert_eq!(e.sum("sluice_commit_duration_seconds_count", &[]), 2.0);

    // Per installation, for live ones only: the URL of no installation makes no series.
    let of = |installation: &str, outcome| {
        e.value(
            "sluice_installation_webhooks_total",
            &[("installation", installation), ("outcome", outcome)],
        )
    };
    assert_eq!(of(&inst, "accepted"), Some(2.0));
    assert_eq!(of(&inst, "rejected"), Some(1.0));
    assert_eq!(of(&refusing, "rejected"), Some(1.0));
    assert_eq!(of(&refusing, "accepted"), None);
    assert_eq!(
        e.sum(
            "sluice_installation_webhooks_total",
            &[("outcome", "rejected")]
        ),
        6.0,
        "the stripe installation's forgery, the refusing one and the four failing ones"
    );
    // Installation ids are unbounded: no other family has them as a label.
    for s in &e.samples {
        if s.name.starts_with("sluice_installation_") {
            assert_ne!(s.labels["installation"], "inst_nobody_here", "{s:?}");
            continue;
        }
        assert!(s.labels.values().all(|v| !v.starts_with("inst_")), "{s:?}");
    }
}

/// Past `[server] metrics_installation_series`, installations share one series.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn installation_series_are_bounded() {
    let env = [("SLUICE_SERVER_METRICS_INSTALLATION_SERIES", "2")];
    let Some(sluice) = Sluice::start_with_env(Backend::Sqlite, &env).await else {
        return;
    };
    let payload = stripe_charge_payload();
    let mut ids = Vec::new();
    for _ in 0..4 {
        let (inst, secret) = sluice.stripe_installation().await;
        sluice
            .post_stripe(&inst, &secret, &payload)
            .await
            .expect_status(200);
        ids.push(inst);
    }
    let e = scrape(&sluice).await;
    assert_declared(&e);
    let accepted = |installation: &str| {
        e.value(
            "sluice_installation_webhooks_total",
            &[("installation", installation), ("outcome", "accepted")],
        )
    };
    assert_eq!(accepted(&ids[0]), Some(1.0));
    assert_eq!(accepted(&ids[1]), Some(1.0));
    assert_eq!(accepted(&ids[2]), None);
    assert_eq!(accepted(&ids[3]), None);
    assert_eq!(accepted("_other"), Some(2.0), "{:#?}", e.samples);
    assert_eq!(
        e.matching("sluice_installation_webhooks_total", &[])
            .count(),
        3
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_deliveries_and_the_outbox_gauges() {
    // Every attempt fails: two attempts an event, and the circuit opens after the second
    // event's last, so the three after it wait.
    let answered = Arc::new(AtomicUsize::new(0));
    let hook = {
        let answered = answered.clone();
        sluice_testkit::fake::serve(axum::Router::new().route(
            "/hook",
            post(move || {
                answered.fetch_add(1, Ordering::SeqCst);
                async { StatusCode::INTERNAL_SERVER_ERROR }
            }),
        ))
        .await
    };
    let env = [
        ("SLUICE_ALLOW_HOSTS", "http://127.0.0.1:*"),
        ("SLUICE_DELIVERY_RETRY_SCHEDULE", "100ms"),
        ("SLUICE_DELIVERY_TICK_MS", "100"),
        ("SLUICE_DELIVERY_CIRCUIT_FAILURE_THRESHOLD", "4"),
        ("SLUICE_DELIVERY_CIRCUIT_OPEN_MS", "600000"),
    ];
    let Some(sluice) = Sluice::start_with_env(Backend::Sqlite, &env).await else {
        return;
    };
    let (inst, secret) = sluice.stripe_installation().await;
    let resp = sluice
        .admin(
            Method::POST,
            "/v1/endpoints",
            Some(json!({"url": format!("{hook}/hook")})),
        )
        .await;
    resp.expect_status(201);
    let endpoint = resp.json["id"].as_str().unwrap().to_string();
    sluice.remember_secret(resp.json["secret"].as_str().unwrap());
    for n in 0..5 {
        let payload = stripe_charge_variant(
            &format!("evt_{}", random_hex()),
            &format!("ch_metrics_{n}"),
            "usd",
            100,
        );
        sluice
            .post_stripe(&inst, &secret, &payload)
            .await
            .expect_status(200);
    }
    assert_eq!(sluice.events(&inst).await.len(), 5);

    let sink = [("sink", endpoint.as_str())];
    let e = scrape_until(
        &sluice,
        Duration::from_secs(30),
        "two dead deliveries and three waiting",
        |e| {
            e.value("sluice_outbox_dead", &sink) == Some(2.0)
                && e.value("sluice_outbox_pending", &sink) == Some(3.0)
        },
    )
    .await;
    assert_declared(&e);
    let attempts = |outcome| {
        e.value(
            "sluice_delivery_attempts_total",
            &[("endpoint", endpoint.as_str()), ("outcome", outcome)],
        )
    };
    assert_eq!(attempts("retry"), Some(2.0));
    assert_eq!(attempts("dead"), Some(2.0));
    assert_eq!(attempts("delivered"), None);
    assert_eq!(answered.load(Ordering::SeqCst), 4);
    let age = e
        .value("sluice_outbox_oldest_pending_age_seconds", &sink)
        .unwrap();
    assert!(age > 0.0 && age < 120.0, "{age}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_refresh_failures_and_poll_lag() {
    // Stripe's event list, always empty; Hotmart's token endpoint, down and then refusing.
    let polls = Arc::new(AtomicUsize::new(0));
    let token_answers = Arc::new(std::sync::Mutex::new(vec![
        StatusCode::UNAUTHORIZED,
        StatusCode::SERVICE_UNAVAILABLE,
    ]));
    let base = {
        let (polls, token_answers) = (polls.clone(), token_answers.clone());
        sluice_testkit::fake::serve(
            axum::Router::new()
                .route(
                    "/v1/events",
                    get(move || {
                        polls.fetch_add(1, Ordering::SeqCst);
                        async {
                            json!({"object": "list", "url": "/v1/events", "has_more": false, "data": []})
                                .to_string()
                        }
                    }),
                )
                .route(
                    "/security/oauth/token",
                    post(move || {
                        let status = token_answers
                            .lock()
                            .unwrap()
                            .pop()
                            .unwrap_or(StatusCode::UNAUTHORIZED);
                        async move { (status, r#"{"error":"unavailable"}"#) }
                    }),
                ),
        )
        .await
    };
    let env = [
        ("SLUICE_ALLOW_HOSTS", "http://127.0.0.1:*"),
        ("SLUICE_RETRIES_MAX_ATTEMPTS", "2"),
        ("SLUICE_RETRIES_BASE_MS", "100"),
        ("SLUICE_SCHEDULER_MIN_POLL_INTERVAL_SECS", "1"),
        ("SLUICE_SCHEDULER_TICK_MS", "100"),
    ];
    let hotmart = driver_wasm("hotmart");
    let Some(sluice) = Sluice::start_with(
        Backend::Sqlite,
        &env,
        &[("hotmart.wasm", hotmart.as_slice())],
    )
    .await
    else {
        return;
    };

    // Dead letters: two events whose normalization fails twice.
    let failing = faulty(&sluice, "normalize-error").await;
    for n in 0..2 {
        sluice
            .post_webhook(&failing, &[], body(&format!("evt_dead_{n}")))
            .await
            .expect_status(200);
    }
    let faulty_version = sluice.driver_info("faulty").await["version"]
        .as_str()
        .unwrap()
        .to_string();
    let dead = [("driver", "faulty"), ("version", faulty_version.as_str())];
    scrape_until(&sluice, Duration::from_secs(20), "two dead letters", |e| {
        e.value("sluice_dead_letters_total", &dead) == Some(2.0)
    })
    .await;
    // A replay by hand that fails again makes no new dead letter.
    let letters = sluice
        .admin(
            Method::GET,
            &format!("/v1/dead-letters?installation_id={failing}"),
            None,
        )
        .await;
    let letters = letters.json["dead_letters"].as_array().unwrap().clone();
    assert!(letters.iter().all(|l| l["status"] == "dead"), "{letters:?}");
    let first = letters[0]["raw_event_id"].as_i64().unwrap();
    let replayed = sluice
        .admin(
            Method::POST,
            &format!("/v1/raw-events/{first}/replay"),
            None,
        )
        .await;
    replayed.expect_status(200);
    assert_eq!(replayed.json["replayed"]["normalized"], false);

    // Token refreshes: the provider is down (retried later), then refuses (re-authorize).
    let inst = sluice
        .create_installation("hotmart", json!({"api_base": base, "auth_base": base}))
        .await;
    let hotmart_id = inst["installation_id"].as_str().unwrap().to_string();
    for (name, value) in [
        ("hottok", "ysewXlAZI1iHdUFqC4ZcV1J5RLhiVe518471"),
        ("client_id", "client-id-123"),
        ("client_secret", "secret-456"),
    ] {
        sluice.put_secret(&hotmart_id, name, value).await;
    }
    let refresh = format!("/v1/installations/{hotmart_id}/refresh");
    let down = sluice.admin(Method::POST, &refresh, None).await;
    assert_eq!(down.status, 502, "{}", down.text);
    let refused = sluice.admin(Method::POST, &refresh, None).await;
    assert!(refused.status.as_u16() >= 400, "{}", refused.text);
    let installation = sluice
        .admin(
            Method::GET,
            &format!("/v1/installations/{hotmart_id}"),
            None,
        )
        .await;
    assert_eq!(installation.json["auth"]["status"], "needs_reauth");

    // Scheduled polls: each records its lag once, the operator's "poll now" none.
    let stripe = sluice
        .create_installation("stripe", json!({"api_base": base, "poll_interval": 1}))
        .await;
    let stripe_id = stripe["installation_id"].as_str().unwrap().to_string();
    sluice
        .put_secret(&stripe_id, "webhook_secret", "whsec_metrics_e2e")
        .await;
    sluice
        .put_secret(&stripe_id, "api_key", "sk_test_metrics")
        .await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while polls.load(Ordering::SeqCst) < 2 {
        assert!(Instant::now() < deadline, "no scheduled polls");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    sluice
        .admin(
            Method::POST,
            &format!("/v1/installations/{stripe_id}/pause"),
            None,
        )
        .await
        .expect_status(204);
    // A poll claimed before the pause finishes; then nothing more is polled.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let scheduled = polls.load(Ordering::SeqCst);
    sluice
        .admin(
            Method::POST,
            &format!("/v1/installations/{stripe_id}/poll"),
            None,
        )
        .await
        .expect_status(200);
    assert_eq!(polls.load(Ordering::SeqCst), scheduled + 1);

    let e = scrape(&sluice).await;
    assert_declared(&e);
    assert_eq!(e.value("sluice_dead_letters_total", &dead), Some(2.0));
    let hotmart_version = sluice.driver_info("hotmart").await["version"]
        .as_str()
        .unwrap()
        .to_string();
    let refreshes = |outcome| {
        e.value(
            "sluice_token_refreshes_total",
            &[
                ("driver", "hotmart"),
                ("version", hotmart_version.as_str()),
                ("outcome", outcome),
            ],
        )
    };
    assert_eq!(refreshes("failed"), Some(1.0), "{:#?}", e.samples);
    assert_eq!(refreshes("needs_reauth"), Some(1.0));
    assert_eq!(refreshes("refreshed"), None);
    let lag = [("driver", "stripe")];
    assert_eq!(
        e.value("sluice_poll_lag_seconds_count", &lag),
        Some(scheduled as f64),
        "{:#?}",
        e.samples
    );
    let mut all = lag.to_vec();
    all.push(("le", "+Inf"));
    assert_eq!(
        e.value("sluice_poll_lag_seconds_bucket", &all),
        Some(scheduled as f64)
    );
    let total = e.value("sluice_poll_lag_seconds_sum", &lag).unwrap();
    assert!(
        (0.0..scheduled as f64 * 5.0).contains(&total),
        "lag {total} s"
    );
    // Every poll, the operator's too, per installation.
    assert_eq!(
        e.value(
            "sluice_installation_polls_total",
            &[("installation", &stripe_id), ("outcome", "ok")]
        ),
        Some(scheduled as f64 + 1.0),
        "{:#?}",
        e.samples
    );
}
