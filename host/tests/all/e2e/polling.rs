//! Scheduled polling through the real binary, against a fake of Stripe's `GET /v1/events`
//! (newest first, `starting_after`, `created[gte]`, the bearer key checked): every event
//! once, also when a webhook delivered it; `429` with `Retry-After` and `5xx` defer and
//! back off; the cursor survives a restart; pause and resume; and with two nodes on one
//! PostgreSQL database, one poll at a time, taken over when a node dies.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use reqwest::Method;
use serde_json::{Value, json};
use sluice_testkit::{Backend, Sluice, both_backends, stripe_charge_variant};

both_backends!(scheduled_polls_store_each_event_once => sqlite_scheduled_polls_store_each_event_once, postgres_scheduled_polls_store_each_event_once);

const KEY: &str = "sk_test_polling_e2e_key";

/// An answer to give instead of the next page.
#[derive(Clone, Copy)]
enum Scripted {
    /// An error status, with a `Retry-After` when given.
    Error(u16, Option<&'static str>),
    /// `200` with a body that is not a page.
    Malformed,
    /// `200`, no events, `has_more: true`.
    EmptyWithMore,
}

#[derive(Clone, Default)]
struct Events {
    /// Told when a page has been answered (for a kill right after it).
    answered: Arc<Mutex<Option<tokio::sync::mpsc::UnboundedSender<()>>>>,
    /// Newest first, as Stripe lists them.
    events: Arc<Mutex<Vec<Value>>>,
    requests: Arc<Mutex<Vec<HashMap<String, String>>>>,
    in_flight: Arc<AtomicUsize>,
    max_in_flight: Arc<AtomicUsize>,
    /// Answers to give instead of a page.
    script: Arc<Mutex<VecDeque<Scripted>>>,
}

impl Events {
    /// Add `n` charge events after the ones there are, one second apart.
    fn add(&self, n: usize) {
        let mut events = self.events.lock().unwrap();
        for _ in 0..n {
            let i = events.len();
            let mut event: Value = serde_json::from_slice(&stripe_charge_variant(
                &format!("evt_poll_{i:04}"),
                &format!("ch_poll_{i:04}"),
                "usd",
                1000 + i as i64,
            ))
            .unwrap();
            event["created"] = json!(1_700_000_000 + i as i64);
            events.insert(0, event);
        }
    }

    /// Add `n` events older than every one there is (data a live pass never saw).
    fn add_late(&self, n: usize) {
        let mut events = self.events.lock().unwrap();
        for i in 0..n {
            let mut event: Value = serde_json::from_slice(&stripe_charge_variant(
                &format!("evt_late_{i:04}"),
                &format!("ch_late_{i:04}"),
                "usd",
                500 + i as i64,
            ))
            .unwrap();
            event["created"] = json!(1_699_990_000 + i as i64);
            events.push(event);
        }
    }

    fn requests(&self) -> usize {
        self.requests.lock().unwrap().len()
    }
}

async fn list(
    State(fake): State<Events>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    fake.requests.lock().unwrap().push(query.clone());
    let now = fake.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    fake.max_in_flight.fetch_max(now, Ordering::SeqCst);
    // Long enough that two polls of one installation at once would overlap here.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let answer = answer(&fake, &headers, &query);
    fake.in_flight.fetch_sub(1, Ordering::SeqCst);
    if let Some(tell) = fake.answered.lock().unwrap().as_ref() {
        let _ = tell.send(());
    }
    answer
}

fn stripe_error(status: StatusCode, kind: &str, message: &str) -> Response {
    (
        status,
        json!({"error": {"type": kind, "message": message}}).to_string(),
    )
        .into_response()
}

fn answer(fake: &Events, headers: &HeaderMap, query: &HashMap<String, String>) -> Response {
    let bearer = headers.get("authorization").and_then(|v| v.to_str().ok());
    if bearer != Some(format!("Bearer {KEY}").as_str()) {
        return stripe_error(
            StatusCode::UNAUTHORIZED,
            "invalid_request_error",
            "Invalid API Key provided",
        );
    }
    let scripted = fake.script.lock().unwrap().pop_front();
    if let Some(Scripted::Malformed) = scripted {
        return "<html>502 Bad Gateway</html>".into_response();
    }
    if let Some(Scripted::EmptyWithMore) = scripted {
        return json!({"object": "list", "url": "/v1/events", "has_more": true, "data": []})
            .to_string()
            .into_response();
    }
    if let Some(Scripted::Error(status, retry_after)) = scripted {
        let mut response = stripe_error(
            StatusCode::from_u16(status).unwrap(),
            "api_error",
            "scripted failure",
        );
        if let Some(seconds) = retry_after {
            response
                .headers_mut()
                .insert("retry-after", seconds.parse().unwrap());
        }
        return response;
    }
    let events = fake.events.lock().unwrap();
    let gte: i64 = query
        .get("created[gte]")
        .and_then(|v| v.parse().ok())
        .unwrap_or(i64::MIN);
    let mut matching = events
        .iter()
        .filter(|e| e["created"].as_i64().unwrap() >= gte);
    let mut page: Vec<Value> = match query.get("starting_after") {
        Some(after) => matching
            .by_ref()
            .skip_while(|e| e["id"] != after.as_str())
            .skip(1)
            .cloned()
            .collect(),
        None => matching.cloned().collect(),
    };
    let limit: usize = query
        .get("limit")
        .and_then(|l| l.parse().ok())
        .unwrap_or(10);
    let has_more = page.len() > limit;
    page.truncate(limit);
    json!({"object": "list", "url": "/v1/events", "has_more": has_more, "data": page})
        .to_string()
        .into_response()
}

async fn fake() -> (Events, String) {
    let fake = Events::default();
    let base = sluice_testkit::fake::serve(
        axum::Router::new()
            .route("/v1/events", get(list))
            .with_state(fake.clone()),
    )
    .await;
    (fake, base)
}

const ENV: [(&str, &str); 4] = [
    ("SLUICE_ALLOW_HOSTS", "http://127.0.0.1:*"),
    ("SLUICE_SCHEDULER_MIN_POLL_INTERVAL_SECS", "1"),
    ("SLUICE_SCHEDULER_TICK_MS", "100"),
    ("SLUICE_SCHEDULER_LEASE_SECS", "3"),
];

async fn installation(sluice: &Sluice, base: &str) -> String {
    let inst = sluice
        .create_installation("stripe", json!({"api_base": base, "poll_interval": 1}))
        .await;
    assert_eq!(inst["polling"]["interval_seconds"], 1, "{inst}");
    let id = inst["installation_id"].as_str().unwrap().to_string();
    sluice
        .put_secret(&id, "webhook_secret", "whsec_polling_e2e_secret")
        .await;
    sluice.put_secret(&id, "api_key", KEY).await;
    id
}

async fn polling(sluice: &Sluice, id: &str) -> Value {
    let resp = sluice
        .admin(Method::GET, &format!("/v1/installations/{id}"), None)
        .await;
    resp.expect_status(200);
    resp.json["polling"].clone()
}

/// Wait until `check` holds, at most `within`.
async fn eventually<F, Fut>(within: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let deadline = Instant::now() + within;
    loop {
        match check().await {
            Ok(()) => return,
            Err(state) if Instant::now() > deadline => panic!("{what} did not happen: {state}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

async fn stored(sluice: &Sluice, id: &str, n: usize) {
    eventually(
        Duration::from_secs(30),
        &format!("{n} events stored"),
        || async {
            let ids = sluice.provider_event_ids(id).await;
            let unique: std::collections::HashSet<_> = ids.iter().collect();
            assert_eq!(unique.len(), ids.len(), "an event stored twice: {ids:?}");
            if ids.len() == n {
                Ok(())
            } else {
                Err(format!("{} stored", ids.len()))
            }
        },
    )
    .await;
}

async fn scheduled_polls_store_each_event_once(backend: Backend) {
    let (fake, base) = fake().await;
    fake.add(250);
    let Some(mut sluice) = Sluice::start_with_env(backend, &ENV).await else {
        return;
    };
    let id = installation(&sluice, &base).await;
    // One of them also arrives as a webhook: stored once all the same.
    let webhook = fake.events.lock().unwrap()[10].to_string().into_bytes();
    sluice
        .post_stripe(&id, "whsec_polling_e2e_secret", &webhook)
        .await
        .expect_status(200);
    stored(&sluice, &id, 250).await;
    let status = polling(&sluice, &id).await;
    assert_eq!(
        (
            status["consecutive_failures"].as_i64(),
            status["last_error"].as_str()
        ),
        (Some(0), None),
        "{status}"
    );
    assert!(status["last_poll_at"].is_string(), "{status}");

    // New events are picked up from the cursor, not from the start.
    fake.add(5);
    stored(&sluice, &id, 255).await;
    let last = fake.requests.lock().unwrap().last().cloned().unwrap();
    assert!(
        last.contains_key("created[gte]"),
        "the pass resumes at its watermark: {last:?}"
    );

    // A rate limit defers the installation by its Retry-After.
    fake.script
        .lock()
        .unwrap()
        .push_back(Scripted::Error(429, Some("3")));
    eventually(Duration::from_secs(10), "the 429 answered", || async {
        if fake.script.lock().unwrap().is_empty() {
            Ok(())
        } else {
            Err("pending".into())
        }
    })
    .await;
    let asked = Instant::now();
    let before = fake.requests();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(fake.requests(), before, "no poll during Retry-After");
    eventually(
        Duration::from_secs(10),
        "a poll after Retry-After",
        || async {
            if fake.requests() > before {
                Ok(())
            } else {
                Err("none".into())
            }
        },
    )
    .await;
    assert!(
        asked.elapsed() >= Duration::from_millis(2500),
        "{:?}",
        asked.elapsed()
    );

    // Server errors back off and show in the status; a success clears them.
    fake.script
        .lock()
        .unwrap()
        .extend([Scripted::Error(503, None), Scripted::Error(503, None)]);
    eventually(Duration::from_secs(15), "two failures recorded", || async {
        let s = polling(&sluice, &id).await;
        if s["consecutive_failures"] == 2 {
            Ok(())
        } else {
            Err(s.to_string())
        }
    })
    .await;
    let s = polling(&sluice, &id).await;
    assert!(s["last_error"].as_str().unwrap().contains("503"), "{s}");
    eventually(Duration::from_secs(20), "recovery", || async {
        let s = polling(&sluice, &id).await;
        if s["consecutive_failures"] == 0 {
            Ok(())
        } else {
            Err(s.to_string())
        }
    })
    .await;

    // A malformed page is a failure like a 5xx (nothing stored from it); an empty page
    // that says `has_more` ends the pass. Neither loses an event.
    fake.script.lock().unwrap().push_back(Scripted::Malformed);
    eventually(
        Duration::from_secs(15),
        "the malformed page recorded",
        || async {
            let s = polling(&sluice, &id).await;
            match s["last_error"].as_str() {
                Some(e) if e.contains("not a JSON object") => Ok(()),
                _ => Err(s.to_string()),
            }
        },
    )
    .await;
    fake.script
        .lock()
        .unwrap()
        .push_back(Scripted::EmptyWithMore);
    fake.add(2);
    stored(&sluice, &id, 257).await;
    let s = polling(&sluice, &id).await;
    assert_eq!(s["consecutive_failures"], 0, "{s}");

    // The cursor survives a restart: the first poll after it resumes at the watermark.
    sluice.restart().await;
    let since_restart = fake.requests();
    fake.add(3);
    stored(&sluice, &id, 260).await;
    let first = fake.requests.lock().unwrap()[since_restart].clone();
    assert!(first.contains_key("created[gte]"), "{first:?}");

    // Paused: no polls; resumed: one at once.
    let resp = sluice
        .admin(Method::POST, &format!("/v1/installations/{id}/pause"), None)
        .await;
    resp.expect_status(204);
    assert_eq!(polling(&sluice, &id).await["paused"], true);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let paused_at = fake.requests();
    tokio::time::sleep(Duration::from_millis(2000)).await;
    assert_eq!(fake.requests(), paused_at, "polled while paused");
    sluice
        .admin(
            Method::POST,
            &format!("/v1/installations/{id}/resume"),
            None,
        )
        .await
        .expect_status(204);
    eventually(Duration::from_secs(5), "a poll after resume", || async {
        if fake.requests() > paused_at {
            Ok(())
        } else {
            Err("none".into())
        }
    })
    .await;
    // One installation was never polled twice at once.
    assert_eq!(fake.max_in_flight.load(Ordering::SeqCst), 1);

    // An installation that does not poll cannot be paused.
    let (plain, _) = sluice.stripe_installation().await;
    let resp = sluice
        .admin(
            Method::POST,
            &format!("/v1/installations/{plain}/pause"),
            None,
        )
        .await;
    resp.expect_status(409);
    assert_eq!(resp.error_code(), Some("not_polled"));
}

/// Two nodes on one database: one poll of the installation at a time, and when one node
/// dies the other keeps polling.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_poll_each_installation_once_at_a_time() {
    let (fake, base) = fake().await;
    fake.add(120);
    let Some(mut a) = Sluice::start_with_env(Backend::Postgres, &ENV).await else {
        return;
    };
    let shared = a.database_url().to_string();
    let mut env = ENV.to_vec();
    env.push(("SLUICE_DATABASE_URL", shared.as_str()));
    let Some(b) = Sluice::start_with_env(Backend::Postgres, &env).await else {
        return;
    };
    let id = installation(&a, &base).await;
    stored(&b, &id, 120).await;
    // A few more polling rounds on both nodes.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        fake.max_in_flight.load(Ordering::SeqCst),
        1,
        "two polls of one installation at once"
    );

    // Events that exist only after A died can only have been fetched by B. (A request
    // count taken at the kill proves nothing: one of B's may be in flight across it.)
    a.kill();
    fake.add(4);
    stored(&b, &id, 124).await;
    assert_eq!(fake.max_in_flight.load(Ordering::SeqCst), 1);
}

both_backends!(a_poll_killed_before_its_commit_loses_nothing => sqlite_a_poll_killed_before_its_commit_loses_nothing, postgres_a_poll_killed_before_its_commit_loses_nothing);

/// SIGKILL as a page's answer leaves the fake, before the host can have committed it:
/// after the restart the same page is fetched again from the committed cursor, and every
/// event is stored exactly once.
async fn a_poll_killed_before_its_commit_loses_nothing(backend: Backend) {
    let (fake, base) = fake().await;
    fake.add(30);
    let Some(mut sluice) = Sluice::start_with_env(backend, &ENV).await else {
        return;
    };
    let (tell, mut answered) = tokio::sync::mpsc::unbounded_channel();
    *fake.answered.lock().unwrap() = Some(tell);
    let id = installation(&sluice, &base).await;
    tokio::time::timeout(Duration::from_secs(10), answered.recv())
        .await
        .expect("no poll")
        .unwrap();
    sluice.kill();
    *fake.answered.lock().unwrap() = None;
    sluice.start_again().await;
    stored(&sluice, &id, 30).await;
    fake.add(2);
    stored(&sluice, &id, 32).await;
}

both_backends!(a_backfill_runs_beside_the_live_cursor => sqlite_a_backfill_runs_beside_the_live_cursor, postgres_a_backfill_runs_beside_the_live_cursor);

/// A backfill from a past time finds what the live cursor never will, stores nothing twice,
/// and leaves the live cursor where it was.
async fn a_backfill_runs_beside_the_live_cursor(backend: Backend) {
    let (fake, base) = fake().await;
    fake.add(20);
    let Some(sluice) = Sluice::start_with_env(backend, &ENV).await else {
        return;
    };
    let inst = sluice
        .create_installation("stripe", json!({"api_base": base}))
        .await;
    let id = inst["installation_id"].as_str().unwrap().to_string();
    sluice
        .put_secret(&id, "webhook_secret", "whsec_polling_e2e_secret")
        .await;
    sluice.put_secret(&id, "api_key", KEY).await;
    let poll_path = format!("/v1/installations/{id}/poll");
    let poll = || sluice.admin(Method::POST, &poll_path, None);
    let resp = poll().await;
    assert_eq!(resp.json["polled"]["stored"], 20, "{}", resp.text);

    fake.add_late(5);
    let resp = poll().await;
    assert_eq!(
        resp.json["polled"]["stored"], 0,
        "the live cursor never sees them: {}",
        resp.text
    );

    let backfill_path = format!("/v1/installations/{id}/backfill");
    let backfill = |since: &str| {
        sluice.admin(
            Method::POST,
            &backfill_path,
            Some(json!({ "since": since })),
        )
    };
    let resp = backfill("2023-11-14T00:00:00Z").await;
    resp.expect_status(200);
    let done = &resp.json["backfilled"];
    assert_eq!(
        (
            done["stored"].as_u64(),
            done["duplicates"].as_u64(),
            done["has_more"].as_bool()
        ),
        (Some(5), Some(20), Some(false)),
        "{}",
        resp.text
    );
    assert_eq!(
        fake.requests
            .lock()
            .unwrap()
            .last()
            .unwrap()
            .get("created[gte]")
            .map(String::as_str),
        Some("1699920000")
    );
    // The live cursor did not move: the next poll resumes at its own watermark.
    poll().await.expect_status(200);
    let last = fake.requests.lock().unwrap().last().cloned().unwrap();
    assert_eq!(
        last.get("created[gte]").map(String::as_str),
        Some("1700000019"),
        "{last:?}"
    );
    assert_eq!(sluice.provider_event_ids(&id).await.len(), 25);

    backfill("not a time").await.expect_status(400);
    let resp = backfill("2999-01-01T00:00:00Z").await;
    assert_eq!(
        (resp.status.as_u16(), resp.error_code()),
        (422, Some("invalid_since"))
    );
    let webhook_only = sluice.create_installation("faulty", json!({})).await;
    let resp = sluice
        .admin(
            Method::POST,
            &format!(
                "/v1/installations/{}/backfill",
                webhook_only["installation_id"].as_str().unwrap()
            ),
            Some(json!({"since": "2024-01-01T00:00:00Z"})),
        )
        .await;
    assert_eq!(
        (resp.status.as_u16(), resp.error_code()),
        (409, Some("not_ready")),
        "{}",
        resp.text
    );
}
