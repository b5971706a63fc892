//! Delivery to the Processing Engine: signed outbound webhooks verified by the official
//! `standardwebhooks` library, retries, dead deliveries and replays, the circuit breaker,
//! secret rotation, the outbound policy on endpoint URLs, the NATS JetStream sink against
//! a real `nats-server`, and crashes (SIGKILL, NATS restarted) that lose nothing.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};
use sluice_testkit::nats::NatsServer;
use sluice_testkit::receiver::WebhookReceiver;
use sluice_testkit::{Backend, Sluice, both_backends, random_hex, stripe_charge_variant};

/// Short waits so retries happen within a test.
const FAST: [(&str, &str); 4] = [
    ("SLUICE_ALLOW_HOSTS", "http://127.0.0.1:*"),
    (
        "SLUICE_DELIVERY_RETRY_SCHEDULE",
        "200ms,200ms,200ms,200ms,200ms",
    ),
    ("SLUICE_DELIVERY_TICK_MS", "100"),
    ("SLUICE_DELIVERY_CIRCUIT_FAILURE_THRESHOLD", "100"),
];

async fn create_endpoint(sluice: &Sluice, body: Value) -> (String, String) {
    let resp = sluice
        .admin(Method::POST, "/v1/endpoints", Some(body))
        .await;
    resp.expect_status(201);
    let secret = resp.json["secret"]
        .as_str()
        .expect("secret shown once")
        .to_string();
    assert!(secret.starts_with("whsec_"), "{secret}");
    // From here on, no response and no log line may show it.
    sluice.remember_secret(&secret);
    (resp.json["id"].as_str().unwrap().to_string(), secret)
}

/// Posts `n` distinct charge events to the installation; their provider ids.
async fn post_charges(sluice: &Sluice, inst: &str, secret: &str, n: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for _ in 0..n {
        let id = format!("evt_{}", random_hex());
        let payload = stripe_charge_variant(&id, &format!("ch_{}", random_hex()), "usd", 1234);
        sluice
            .post_stripe(inst, secret, &payload)
            .await
            .expect_status(200);
        ids.push(id);
    }
    ids
}

/// The CloudEvent ids of the installation's events, in log order.
async fn event_ids(sluice: &Sluice, inst: &str) -> Vec<String> {
    sluice
        .events(inst)
        .await
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect()
}

/// Waits (up to 30 s) until `check` holds on the receiver's record.
async fn until_received(
    receiver: &WebhookReceiver,
    what: &str,
    check: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let received = receiver.received().await;
        if check(&received) {
            return received;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: the receiver has {received}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits (up to 30 s) until `check` holds on `GET path` (the host records an attempt only
/// after the receiver has answered it).
async fn until_admin(sluice: &Sluice, path: &str, check: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let resp = sluice.admin(Method::GET, path, None).await;
        resp.expect_status(200);
        if check(&resp.json) {
            return resp.json;
        }
        assert!(Instant::now() < deadline, "GET {path}: {}", resp.text);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn delivered(received: &Value) -> usize {
    received["deliveries"].as_array().map_or(0, Vec::len)
}

both_backends!(an_endpoint_that_fails_then_recovers_gets_every_event_in_order => sqlite_an_endpoint_that_fails_then_recovers_gets_every_event_in_order, postgres_an_endpoint_that_fails_then_recovers_gets_every_event_in_order);

/// Two installations, ten events each, an endpoint that answers `503` three times first
/// and one that only takes installation A's: every event arrives once, verified by the
/// official library, in log order per installation; the failures are attempts on record.
async fn an_endpoint_that_fails_then_recovers_gets_every_event_in_order(backend: Backend) {
    let (Some(all), Some(only_a)) = (WebhookReceiver::start(), WebhookReceiver::start()) else {
        return;
    };
    let Some(sluice) = Sluice::start_with_env(backend, &FAST).await else {
        return;
    };
    let (a, a_secret) = sluice.stripe_installation().await;
    let (b, b_secret) = sluice.stripe_installation().await;
    let (endpoint, secret) = create_endpoint(&sluice, json!({"url": all.url})).await;
    let (_, secret_a) =
        create_endpoint(&sluice, json!({"url": only_a.url, "installation_id": a})).await;
    all.set_secrets(&[&secret]).await;
    only_a.set_secrets(&[&secret_a]).await;
    all.fail_next(3, 503).await;

    // The secret is not shown again.
    let shown = sluice
        .admin(Method::GET, &format!("/v1/endpoints/{endpoint}"), None)
        .await;
    shown.expect_status(200);
    assert!(shown.json.get("secret").is_none(), "{}", shown.text);

    for _ in 0..5 {
        post_charges(&sluice, &a, &a_secret, 2).await;
        post_charges(&sluice, &b, &b_secret, 2).await;
    }
    let (log_a, log_b) = (event_ids(&sluice, &a).await, event_ids(&sluice, &b).await);
    assert_eq!((log_a.len(), log_b.len()), (10, 10));

    let received = until_received(&all, "all 20 events", |r| delivered(r) >= 20).await;
    assert_eq!(received["rejected"], 0, "{received}");
    assert_eq!(received["failed"], 3, "{received}");
    let by_installation = |received: &Value, inst: &str| -> Vec<String> {
        received["deliveries"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| d["installation"] == inst)
            .map(|d| d["id"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        by_installation(&received, &a),
        log_a,
        "A in log order, once each"
    );
    assert_eq!(
        by_installation(&received, &b),
        log_b,
        "B in log order, once each"
    );
    assert_eq!(delivered(&received), 20);
    let first = &received["deliveries"][0];
    assert_eq!(first["content_type"], "application/cloudevents+json");
    assert_eq!(first["signatures"], 1);

    let received = until_received(&only_a, "A's 10 events", |r| delivered(r) >= 10).await;
    assert_eq!(by_installation(&received, &a), log_a);
    assert_eq!(
        delivered(&received),
        10,
        "B's events are not for this endpoint"
    );

    // The three refusals are on record, with the endpoint's answer.
    let ok = |a: &Value| a["status"] == 200;
    let attempts = until_admin(
        &sluice,
        &format!("/v1/endpoints/{endpoint}/attempts?limit=1000"),
        |a| {
            a["attempts"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|a| ok(a))
                .count()
                == 20
        },
    )
    .await;
    let attempts = attempts["attempts"].as_array().unwrap().clone();
    let refused: Vec<&Value> = attempts.iter().filter(|a| a["status"] == 503).collect();
    assert_eq!(refused.len(), 3, "{attempts:?}");
    assert!(
        refused[0]["response"]
            .as_str()
            .unwrap()
            .contains("failing on purpose")
    );
    assert_eq!(attempts.iter().filter(|a| a["status"] == 200).count(), 20);

    let shown = until_admin(&sluice, &format!("/v1/endpoints/{endpoint}"), |e| {
        e["delivery"]["backlog"] == 0
    })
    .await;
    let status = &shown["delivery"];
    assert_eq!(status["dead"], 0, "{shown}");
    assert_eq!(status["consecutive_failures"], 0);
    assert_eq!(status["circuit"], "closed");
}

/// An endpoint that keeps failing: after two failures its circuit opens and nothing is
/// sent while it is open; one probe after it, which fails too and is the last attempt of
/// the schedule, so the delivery is dead with the endpoint's answer. Replayed by id once
/// the endpoint works, then again by time: the receiver sees the same `webhook-id`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_delivery_is_replayed_after_the_circuit_closes() {
    let Some(receiver) = WebhookReceiver::start() else {
        return;
    };
    let env = [
        ("SLUICE_ALLOW_HOSTS", "http://127.0.0.1:*"),
        ("SLUICE_DELIVERY_RETRY_SCHEDULE", "100ms,100ms"),
        ("SLUICE_DELIVERY_TICK_MS", "50"),
        ("SLUICE_DELIVERY_CIRCUIT_FAILURE_THRESHOLD", "2"),
        ("SLUICE_DELIVERY_CIRCUIT_OPEN_MS", "1500"),
    ];
    let Some(sluice) = Sluice::start_with_env(Backend::Sqlite, &env).await else {
        return;
    };
    let (inst, inst_secret) = sluice.stripe_installation().await;
    let (endpoint, secret) = create_endpoint(&sluice, json!({"url": receiver.url})).await;
    receiver.set_secrets(&[&secret]).await;
    receiver.fail_next(1000, 500).await;
    let started = Instant::now();
    post_charges(&sluice, &inst, &inst_secret, 1).await;
    let event = event_ids(&sluice, &inst).await.remove(0);

    let path = format!("/v1/endpoints/{endpoint}");
    let attempts_path = format!("{path}/attempts");
    let attempts = || {
        let (sluice, path) = (&sluice, &attempts_path);
        async move { sluice.admin(Method::GET, path, None).await.json["attempts"].clone() }
    };
    until_received(&receiver, "two failures", |r| r["failed"] == 2).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let shown = sluice.admin(Method::GET, &path, None).await;
    assert_eq!(shown.json["delivery"]["circuit"], "open", "{}", shown.text);
    assert_eq!(shown.json["delivery"]["consecutive_failures"], 2);
    assert!(
        shown.json["delivery"]["last_error"]
            .as_str()
            .unwrap()
            .contains("500")
    );
    assert_eq!(shown.json["delivery"]["backlog"], 1);
    // Open: nothing more is sent for a while, though a retry was due 100 ms later.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(attempts().await.as_array().unwrap().len(), 2);

    // The probe after it fails: that was the third and last attempt.
    let dead_path = format!("{path}/deliveries?status=dead");
    let deadline = Instant::now() + Duration::from_secs(20);
    let dead = loop {
        let dead = sluice.admin(Method::GET, &dead_path, None).await.json["deliveries"].clone();
        if dead.as_array().is_some_and(|d| !d.is_empty()) {
            break dead;
        }
        assert!(Instant::now() < deadline, "no dead delivery");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        started.elapsed() >= Duration::from_millis(1500),
        "the circuit held it back"
    );
    assert_eq!(dead[0]["event_id"], event.as_str());
    assert_eq!(dead[0]["attempts"], 3);
    assert_eq!(dead[0]["last_status"], 500);
    assert!(
        dead[0]["last_response"]
            .as_str()
            .unwrap()
            .contains("failing on purpose")
    );
    assert_eq!(attempts().await.as_array().unwrap().len(), 3);
    assert_eq!(receiver.received().await["failed"], 3);
    let shown = sluice.admin(Method::GET, &path, None).await;
    assert_eq!(shown.json["delivery"]["dead"], 1, "{}", shown.text);

    // The endpoint works again; the operator replays the event by id.
    receiver.fail_next(0, 500).await;
    let replay = sluice
        .admin(
            Method::POST,
            &format!("{path}/deliveries/{event}/replay"),
            None,
        )
        .await;
    replay.expect_status(200);
    let received = until_received(&receiver, "the replay", |r| delivered(r) == 1).await;
    assert_eq!(received["deliveries"][0]["id"], event.as_str());
    // The host records the probe's success after the receiver has answered it.
    let shown = until_admin(&sluice, &path, |e| {
        e["delivery"]["consecutive_failures"] == 0
    })
    .await;
    assert_eq!(shown["delivery"]["circuit"], "closed", "{shown}");
    assert_eq!(shown["delivery"]["dead"], 0);

    // Replay by time: the same event again, with the same webhook-id.
    let since = minutes_ago(1);
    let replay = sluice
        .admin(
            Method::POST,
            &format!("{path}/replay"),
            Some(json!({"since": since})),
        )
        .await;
    replay.expect_status(200);
    assert_eq!(replay.json["replayed"], 1, "{}", replay.text);
    let received = until_received(&receiver, "the second replay", |r| delivered(r) == 2).await;
    assert_eq!(received["deliveries"][1]["id"], event.as_str());

    // Bad replays.
    for (body, status) in [(json!({"since": "yesterday"}), 400), (json!({}), 400)] {
        sluice
            .admin(Method::POST, &format!("{path}/replay"), Some(body))
            .await
            .expect_status(status);
    }
    sluice
        .admin(
            Method::POST,
            &format!("{path}/deliveries/evt_01jz0000000000000000000000/replay"),
            None,
        )
        .await
        .expect_status(404);
}

/// An RFC 3339 time `minutes` ago, UTC.
fn minutes_ago(minutes: i64) -> String {
    (chrono::Utc::now() - chrono::Duration::minutes(minutes))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// A rotation with a grace period: deliveries carry a signature for the old and for the
/// new secret, each verified by the library; a rotation without grace drops the old one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_secret_signs_beside_the_new_one_during_its_grace() {
    let Some(receiver) = WebhookReceiver::start() else {
        return;
    };
    let Some(sluice) = Sluice::start_with_env(Backend::Sqlite, &FAST).await else {
        return;
    };
    let (inst, inst_secret) = sluice.stripe_installation().await;
    let (endpoint, old) = create_endpoint(&sluice, json!({"url": receiver.url})).await;
    let path = format!("/v1/endpoints/{endpoint}");
    let rotated = sluice
        .admin(
            Method::PATCH,
            &path,
            Some(json!({"rotate_secret": {"grace_seconds": 3600}})),
        )
        .await;
    rotated.expect_status(200);
    let new = rotated.json["secret"].as_str().unwrap().to_string();
    sluice.remember_secret(&new);
    assert_ne!(new, old);
    assert!(
        rotated.json["previous_secret_valid_until"].is_string(),
        "{}",
        rotated.text
    );
    receiver.set_secrets(&[&old, &new]).await;
    post_charges(&sluice, &inst, &inst_secret, 1).await;
    let received = until_received(&receiver, "a delivery", |r| delivered(r) == 1).await;
    assert_eq!(received["rejected"], 0, "{received}");
    assert_eq!(received["deliveries"][0]["signatures"], 2);

    // No grace: only the newest key signs, and the old one no longer verifies.
    let rotated = sluice
        .admin(
            Method::PATCH,
            &path,
            Some(json!({"rotate_secret": {"grace_seconds": 0}})),
        )
        .await;
    rotated.expect_status(200);
    let newest = rotated.json["secret"].as_str().unwrap().to_string();
    sluice.remember_secret(&newest);
    assert!(rotated.json["previous_secret_valid_until"].is_null());
    receiver.set_secrets(&[&newest]).await;
    post_charges(&sluice, &inst, &inst_secret, 1).await;
    let received = until_received(&receiver, "a second delivery", |r| delivered(r) == 2).await;
    assert_eq!(received["deliveries"][1]["signatures"], 1);
    assert_eq!(received["rejected"], 0);

    sluice
        .admin(
            Method::PATCH,
            &path,
            Some(json!({"rotate_secret": {"grace_seconds": 700000}})),
        )
        .await
        .expect_status(400);
    // Disabled: nothing is sent, events wait; enabled again, they arrive.
    sluice
        .admin(Method::PATCH, &path, Some(json!({"disabled": true})))
        .await
        .expect_status(200);
    post_charges(&sluice, &inst, &inst_secret, 1).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(delivered(&receiver.received().await), 2);
    let shown = sluice.admin(Method::GET, &path, None).await;
    assert_eq!(shown.json["disabled"], true);
    assert_eq!(shown.json["delivery"]["backlog"], 1, "{}", shown.text);
    sluice
        .admin(Method::PATCH, &path, Some(json!({"disabled": false})))
        .await
        .expect_status(200);
    until_received(&receiver, "the waiting event", |r| delivered(r) == 3).await;
}

/// An endpoint's rate limit holds across rounds: six events of one installation at 5 a
/// second arrive over at least a second (five gaps of 200 ms), in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoints_rate_limit_paces_its_deliveries() {
    let Some(receiver) = WebhookReceiver::start() else {
        return;
    };
    let Some(sluice) = Sluice::start_with_env(Backend::Sqlite, &FAST).await else {
        return;
    };
    let (inst, inst_secret) = sluice.stripe_installation().await;
    let (_, secret) = create_endpoint(
        &sluice,
        json!({"url": receiver.url, "rate_limit_per_sec": 5}),
    )
    .await;
    receiver.set_secrets(&[&secret]).await;
    post_charges(&sluice, &inst, &inst_secret, 6).await;
    let received = until_received(&receiver, "six events", |r| delivered(r) == 6).await;
    let at: Vec<i64> = received["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["at_ms"].as_i64().unwrap())
        .collect();
    let spread = at[5] - at[0];
    assert!(
        spread >= 950,
        "six deliveries within {spread} ms at 5/s: {at:?}"
    );
    assert_eq!(receiver.ids().await, event_ids(&sluice, &inst).await);
}

/// Endpoint URLs obey the outbound policy (no private destination without a grant), and
/// malformed endpoints are refused with their reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_are_validated_and_obey_the_outbound_policy() {
    let Some(sluice) = Sluice::start(Backend::Sqlite).await else {
        return;
    };
    let create = |body: Value| {
        let sluice = &sluice;
        async move {
            sluice
                .admin(Method::POST, "/v1/endpoints", Some(body))
                .await
        }
    };
    for url in [
        "http://127.0.0.1:9/hook",
        "http://10.1.2.3/hook",
        "http://[::1]/hook",
        "http://localhost/hook",
        "http://169.254.169.254/latest/meta-data",
        "ftp://example.com/hook",
        "https://user:pw@example.com/hook",
        "not a url",
    ] {
        let resp = create(json!({"url": url})).await;
        resp.expect_status(422);
        assert_eq!(
            resp.error_code(),
            Some("url_not_allowed"),
            "{url}: {}",
            resp.text
        );
    }
    for body in [
        json!({}),
        json!({"url": "https://example.com/hook", "colour": "blue"}),
        json!({"url": "https://example.com/hook", "event_types": []}),
        json!({"url": "https://example.com/hook", "rate_limit_per_sec": 0}),
        json!({"url": "https://example.com/hook", "installation_id": "bad id!"}),
    ] {
        create(body).await.expect_status(400);
    }
    let resp = create(json!({"url": "https://example.com/hook", "driver_id": "nope"})).await;
    resp.expect_status(422);
    assert_eq!(resp.error_code(), Some("unknown_driver"));

    let resp = create(json!({
        "url": "https://example.com/hook", "driver_id": "stripe",
        "event_types": ["payment.succeeded"], "rate_limit_per_sec": 5, "disabled": true,
        "description": "the engine",
    }))
    .await;
    resp.expect_status(201);
    let id = resp.json["id"].as_str().unwrap().to_string();
    assert!(id.starts_with("ep_"), "{id}");
    assert_eq!(resp.json["event_types"], json!(["payment.succeeded"]));
    assert_eq!(resp.json["rate_limit_per_sec"], 5);
    assert_eq!(resp.json["driver_id"], "stripe");
    let path = format!("/v1/endpoints/{id}");
    let patched = sluice
        .admin(
            Method::PATCH,
            &path,
            Some(json!({"event_types": null, "description": null})),
        )
        .await;
    patched.expect_status(200);
    assert_eq!(patched.json["event_types"], Value::Null);
    assert_eq!(patched.json["description"], Value::Null);
    assert_eq!(patched.json["driver_id"], "stripe", "untouched fields stay");
    sluice
        .admin(
            Method::PATCH,
            &path,
            Some(json!({"url": "http://192.168.0.1/"})),
        )
        .await
        .expect_status(422);
    let list = sluice.admin(Method::GET, "/v1/endpoints", None).await;
    assert_eq!(list.json["endpoints"].as_array().unwrap().len(), 1);
    sluice
        .admin(Method::DELETE, &path, None)
        .await
        .expect_status(204);
    sluice
        .admin(Method::GET, &path, None)
        .await
        .expect_status(404);
    sluice
        .admin(Method::DELETE, &path, None)
        .await
        .expect_status(404);
    sluice
        .admin(Method::GET, "/v1/endpoints/ep_nope", None)
        .await
        .expect_status(404);
}

/// `sluice endpoints …`: create (the secret printed once), list, rotate, replay checks,
/// delete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_manages_endpoints() {
    let Some(sluice) = Sluice::start(Backend::Sqlite).await else {
        return;
    };
    let json_of = |out: std::process::Output| -> Value {
        serde_json::from_slice(&out.stdout).expect("the CLI prints JSON")
    };
    let created = json_of(sluice.cli(
        &[
            "endpoints",
            "create",
            "https://engine.example.com/hook",
            "--driver",
            "stripe",
            "--type",
            "payment.succeeded",
            "--type",
            "payment.refunded",
            "--rate-limit",
            "20",
        ],
        None,
    ));
    let secret = created["secret"].as_str().unwrap().to_string();
    sluice.remember_secret(&secret);
    assert!(secret.starts_with("whsec_"));
    assert_eq!(
        created["event_types"],
        json!(["payment.succeeded", "payment.refunded"])
    );
    assert_eq!(created["rate_limit_per_sec"], 20);
    let id = created["id"].as_str().unwrap().to_string();
    let listed = json_of(sluice.cli(&["endpoints", "list"], None));
    assert_eq!(listed["endpoints"][0]["id"], id.as_str());
    assert!(listed["endpoints"][0].get("secret").is_none());
    let rotated = json_of(sluice.cli(&["endpoints", "rotate-secret", &id, "--grace", "60"], None));
    let new = rotated["secret"].as_str().unwrap().to_string();
    sluice.remember_secret(&new);
    assert_ne!(new, secret);
    let disabled = json_of(sluice.cli(&["endpoints", "disable", &id], None));
    assert_eq!(disabled["disabled"], true);
    let attempts = json_of(sluice.cli(&["endpoints", "attempts", &id], None));
    assert_eq!(attempts["attempts"], json!([]));
    let sinks = json_of(sluice.cli(&["sinks"], None));
    assert_eq!(sinks["sinks"], json!([]), "no NATS configured");
    sluice.cli(&["endpoints", "delete", &id], None);
    let listed = json_of(sluice.cli(&["endpoints", "list"], None));
    assert_eq!(listed["endpoints"], json!([]));
}

/// Every message of the stream: (subject, `Nats-Msg-Id`, CloudEvent id).
async fn stream_messages(url: &str, stream: &str) -> Vec<(String, String, String)> {
    let client = async_nats::connect(url).await.expect("connecting to NATS");
    let js = async_nats::jetstream::new(client);
    let Ok(mut stream) = js.get_stream(stream).await else {
        return Vec::new();
    };
    let state = stream.info().await.expect("stream info").state.clone();
    let mut out = Vec::new();
    if state.messages == 0 {
        return out;
    }
    for seq in state.first_sequence..=state.last_sequence {
        let m = stream.get_raw_message(seq).await.expect("a stream message");
        let event: Value = serde_json::from_slice(&m.payload).expect("a CloudEvent");
        let msg_id = m.headers.get("Nats-Msg-Id").map(|v| v.as_str().to_string());
        out.push((
            m.subject.to_string(),
            msg_id.unwrap_or_default(),
            event["id"].as_str().unwrap_or_default().to_string(),
        ));
    }
    out
}

async fn until_stream_has(url: &str, stream: &str, n: usize) -> Vec<(String, String, String)> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let messages = stream_messages(url, stream).await;
        if messages.len() >= n {
            return messages;
        }
        assert!(
            Instant::now() < deadline,
            "the stream has {} of {n}",
            messages.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

both_backends!(every_event_reaches_the_stream_once => sqlite_every_event_reaches_the_stream_once, postgres_every_event_reaches_the_stream_once);

/// Against the machine's NATS server: every event is in the stream once, on its
/// installation's subject, with `Nats-Msg-Id` = its id; the sink's backlog drains to 0.
async fn every_event_reaches_the_stream_once(backend: Backend) {
    let Some(nats_url) = sluice_testkit::require::nats_url() else {
        return;
    };
    let tag = random_hex();
    let stream = format!("TEST_{tag}");
    let prefix = format!("test{tag}.events");
    let env = [
        ("SLUICE_DELIVERY_NATS_URL", nats_url.as_str()),
        ("SLUICE_DELIVERY_NATS_STREAM", stream.as_str()),
        ("SLUICE_DELIVERY_NATS_SUBJECT_PREFIX", prefix.as_str()),
        ("SLUICE_DELIVERY_TICK_MS", "100"),
    ];
    let Some(sluice) = Sluice::start_with_env(backend, &env).await else {
        return;
    };
    let (a, a_secret) = sluice.stripe_installation().await;
    let (b, b_secret) = sluice.stripe_installation().await;
    post_charges(&sluice, &a, &a_secret, 10).await;
    post_charges(&sluice, &b, &b_secret, 10).await;
    let mut expected: Vec<String> = event_ids(&sluice, &a).await;
    expected.extend(event_ids(&sluice, &b).await);

    let messages = until_stream_has(&nats_url, &stream, 20).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let messages_after = stream_messages(&nats_url, &stream).await;
    assert_eq!(messages_after.len(), 20, "nothing more arrives");
    let ids: Vec<String> = messages.iter().map(|m| m.2.clone()).collect();
    assert_eq!(ids, expected, "log order, once each");
    for (subject, msg_id, id) in &messages {
        assert_eq!(msg_id, id, "Nats-Msg-Id is the event id");
        let inst = if subject.ends_with(&a) { &a } else { &b };
        assert_eq!(subject, &format!("{prefix}.stripe.{inst}"));
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let sinks = sluice.admin(Method::GET, "/v1/sinks", None).await;
        let sink = &sinks.json["sinks"][0];
        assert_eq!(sink["stream"], stream.as_str(), "{}", sinks.text);
        if sink["delivery"]["backlog"] == 0 {
            assert_eq!(sink["delivery"]["consecutive_failures"], 0);
            break;
        }
        assert!(Instant::now() < deadline, "{}", sinks.text);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let client = async_nats::connect(&nats_url).await.unwrap();
    let _ = async_nats::jetstream::new(client)
        .delete_stream(&stream)
        .await;
}

/// NATS stopped mid-stream and started again, then the host SIGKILLed while it delivers
/// and started again: the stream holds every event exactly once, and the webhook receiver
/// has every event, a redelivered one under the same `webhook-id`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_restarts_and_a_killed_host_lose_nothing() {
    let (Some(mut nats), Some(receiver)) = (NatsServer::start(), WebhookReceiver::start()) else {
        return;
    };
    let nats_url = nats.url();
    let env = [
        ("SLUICE_DELIVERY_NATS_URL", nats_url.as_str()),
        ("SLUICE_ALLOW_HOSTS", "http://127.0.0.1:*"),
        ("SLUICE_DELIVERY_TICK_MS", "100"),
        (
            "SLUICE_DELIVERY_RETRY_SCHEDULE",
            "200ms,200ms,200ms,200ms,200ms,200ms",
        ),
        ("SLUICE_DELIVERY_CIRCUIT_FAILURE_THRESHOLD", "100"),
        // The restarted process is another node: it takes the endpoint and the sink over
        // once the dead one's leases expire, so short leases (and attempts that fit in one).
        ("SLUICE_DELIVERY_LEASE_SECS", "3"),
        ("SLUICE_DELIVERY_TIMEOUT_MS", "1500"),
    ];
    let Some(mut sluice) = Sluice::start_with_env(Backend::Sqlite, &env).await else {
        return;
    };
    let (inst, inst_secret) = sluice.stripe_installation().await;
    let (_, secret) = create_endpoint(&sluice, json!({"url": receiver.url})).await;
    receiver.set_secrets(&[&secret]).await;

    post_charges(&sluice, &inst, &inst_secret, 10).await;
    until_stream_has(&nats_url, "SLUICE_EVENTS", 10).await;

    // NATS goes away: webhooks are still taken; the sink says it is failing.
    nats.stop();
    post_charges(&sluice, &inst, &inst_secret, 10).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let sinks = sluice.admin(Method::GET, "/v1/sinks", None).await;
        let status = &sinks.json["sinks"][0]["delivery"];
        if status["consecutive_failures"].as_i64().unwrap_or(0) > 0 {
            assert_eq!(status["backlog"], 10, "{}", sinks.text);
            assert!(status["last_error"].is_string());
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the sink never failed: {}",
            sinks.text
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    nats.start_again();
    until_stream_has(&nats_url, "SLUICE_EVENTS", 20).await;

    // SIGKILL while deliveries are in flight: the receiver is slowed by failures so some
    // are mid-schedule when the host dies.
    receiver.fail_next(5, 503).await;
    post_charges(&sluice, &inst, &inst_secret, 10).await;
    tokio::time::sleep(Duration::from_millis(150)).await;
    sluice.kill();
    sluice.start_again().await;
    let expected: BTreeSet<String> = event_ids(&sluice, &inst).await.into_iter().collect();
    assert_eq!(expected.len(), 30);

    let messages = until_stream_has(&nats_url, "SLUICE_EVENTS", 30).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let messages = if messages.len() == 30 {
        stream_messages(&nats_url, "SLUICE_EVENTS").await
    } else {
        messages
    };
    let in_stream: Vec<String> = messages.iter().map(|m| m.1.clone()).collect();
    assert_eq!(
        in_stream.len(),
        30,
        "exactly once in the stream: {in_stream:?}"
    );
    assert_eq!(in_stream.iter().cloned().collect::<BTreeSet<_>>(), expected);

    let received = until_received(&receiver, "every event", |r| {
        let ids: BTreeSet<String> = r["deliveries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["id"].as_str().unwrap().to_string())
            .collect();
        ids == expected
    })
    .await;
    assert_eq!(received["rejected"], 0, "{received}");
    // At least once: a delivery the host sent but had not recorded when it died comes
    // again, under the same id (deduplicated above by id).
    let mut counts: HashMap<String, usize> = HashMap::new();
    for d in received["deliveries"].as_array().unwrap() {
        *counts
            .entry(d["id"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    assert!(counts.values().all(|n| *n <= 2), "{counts:?}");
}

/// Two nodes on one PostgreSQL database, one endpoint: one node at a time holds it, so no
/// event is sent twice; when that node dies, the other takes over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_deliver_each_event_once() {
    let Some(receiver) = WebhookReceiver::start() else {
        return;
    };
    let mut env = FAST.to_vec();
    env.push(("SLUICE_DELIVERY_LEASE_SECS", "3"));
    env.push(("SLUICE_DELIVERY_TIMEOUT_MS", "1500"));
    let Some(mut a) = Sluice::start_with_env(Backend::Postgres, &env).await else {
        return;
    };
    let shared = a.database_url().to_string();
    env.push(("SLUICE_DATABASE_URL", shared.as_str()));
    let Some(b) = Sluice::start_with_env(Backend::Postgres, &env).await else {
        return;
    };
    let (inst, inst_secret) = a.stripe_installation().await;
    let (_, secret) = create_endpoint(&a, json!({"url": receiver.url})).await;
    b.remember_secret(&secret);
    receiver.set_secrets(&[&secret]).await;
    // Deliveries through both nodes.
    for _ in 0..10 {
        post_charges(&a, &inst, &inst_secret, 1).await;
        post_charges(&b, &inst, &inst_secret, 1).await;
    }
    let received = until_received(&receiver, "20 events", |r| delivered(r) >= 20).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let ids = receiver.ids().await;
    assert_eq!(
        ids,
        event_ids(&a, &inst).await,
        "once each, in order: {received}"
    );

    // Whichever node held the endpoint, events committed after A dies reach it through B.
    a.kill();
    post_charges(&b, &inst, &inst_secret, 3).await;
    until_received(&receiver, "23 events", |r| delivered(r) >= 23).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let ids = receiver.ids().await;
    assert_eq!(ids.len(), 23, "{ids:?}");
    assert_eq!(ids, event_ids(&b, &inst).await);
}
