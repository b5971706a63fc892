//! Hot-loading drivers on a running host: uploads swap the active version under load
//! without failing a request, broken uploads are refused while the previous version keeps
//! serving, every version is kept (rollback, activate, remove), a canary compares a new
//! version's output with the active one's before anything switches, pinned installations
//! stay on their version, the drivers directory is watched, and on PostgreSQL every node
//! follows an upload.
//!
//! The versions are builds of the `faulty` test driver: `faulty.wasm` (0.1.0),
//! `faulty-fixed.wasm` (0.1.1, the same output for an `ok` event) and `faulty-next.wasm`
//! (0.2.0, whose unmapped records say `reason: "not mapped by faulty 0.2.0"`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use sluice_testkit::prometheus::scrape;
use sluice_testkit::{Backend, Sluice, both_backends, test_driver};

both_backends!(swaps_under_load_fail_no_request => sqlite_swaps_under_load_fail_no_request, postgres_swaps_under_load_fail_no_request);
both_backends!(versions_are_kept_and_rolled_back => sqlite_versions_are_kept_and_rolled_back, postgres_versions_are_kept_and_rolled_back);

fn wasm(name: &str) -> Vec<u8> {
    std::fs::read(test_driver(name)).unwrap_or_else(|e| panic!("reading {name}: {e}"))
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

async fn faulty_installation(sluice: &Sluice) -> String {
    let inst = sluice
        .create_installation("faulty", json!({"mode": "ok"}))
        .await;
    inst["installation_id"]
        .as_str()
        .expect("installation_id")
        .to_string()
}

async fn post_event(sluice: &Sluice, inst: &str, id: &str) -> u16 {
    sluice
        .post_webhook(inst, &[], json!({ "id": id }).to_string())
        .await
        .status
        .as_u16()
}

/// The active version of `faulty` (`GET /v1/drivers/faulty`).
async fn active(sluice: &Sluice) -> (String, String) {
    let resp = sluice.admin(Method::GET, "/v1/drivers/faulty", None).await;
    resp.expect_status(200);
    let d = &resp.json["driver"];
    (
        d["version"].as_str().expect("version").to_string(),
        d["sha256"].as_str().expect("sha256").to_string(),
    )
}

/// How long a node may take to follow another's change in these tests: half the 60 s sync
/// interval they configure, so only the notification can have done it, and far above what
/// it takes even on a loaded machine.
const FOLLOW_WITHIN: Duration = Duration::from_secs(30);

/// Wait until `sluice` runs `version` of faulty (at most [`FOLLOW_WITHIN`]); how long it
/// took.
async fn until_active(node: &str, sluice: &Sluice, version: &str) -> Duration {
    let started = Instant::now();
    while active(sluice).await.0 != version {
        assert!(
            started.elapsed() < FOLLOW_WITHIN,
            "node {node}: {version} not active within {FOLLOW_WITHIN:?}: {}",
            sluice.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    started.elapsed()
}

/// Post events to `sluice` until one is accepted by `version` (at most [`FOLLOW_WITHIN`]);
/// how long it took.
async fn until_accepted_by(sluice: &Sluice, inst: &str, version: &str) -> Duration {
    let started = Instant::now();
    for n in 0.. {
        let id = format!("evt_{version}_{n}");
        assert_eq!(post_event(sluice, inst, &id).await, 200);
        let accepted_by = sluice
            .events(inst)
            .await
            .into_iter()
            .find(|e| e["sluiceprovidereventid"] == id.as_str())
            .map(|e| e["sluicedriverversion"].as_str().unwrap_or("").to_string());
        if accepted_by.as_deref() == Some(version) {
            break;
        }
        assert!(
            started.elapsed() < FOLLOW_WITHIN,
            "{inst} still accepted by {accepted_by:?}, not {version}, after {FOLLOW_WITHIN:?}: {}",
            sluice.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    started.elapsed()
}

/// Each event's `sluicedriverversion`: which version accepted it.
async fn versions_of_events(sluice: &Sluice, inst: &str) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for e in sluice.events(inst).await {
        let v = e["sluicedriverversion"]
            .as_str()
            .expect("sluicedriverversion");
        *counts.entry(v.to_string()).or_default() += 1;
    }
    counts
}

/// Four clients post events without pause while the active version is swapped twelve
/// times (three rounds of upload, rollback, activate, rollback): every request is
/// answered `200`, every accepted event is stored, and both versions accepted some.
async fn swaps_under_load_fail_no_request(backend: Backend) {
    let Some(sluice) = Sluice::start(backend).await else {
        return;
    };
    let sluice = Arc::new(sluice);
    let inst = faulty_installation(&sluice).await;
    let (fixed, original) = (wasm("faulty-fixed"), wasm("faulty"));
    let (fixed_sha, original_sha) = (sha256_hex(&fixed), sha256_hex(&original));

    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sent = Arc::new(AtomicUsize::new(0));
    let mut clients = Vec::new();
    for client in 0..4 {
        let (sluice, inst, stop, sent) = (sluice.clone(), inst.clone(), stop.clone(), sent.clone());
        clients.push(tokio::spawn(async move {
            let mut failures = Vec::new();
            // Bounded: at most 5,000 requests a client (the swaps take a few seconds).
            for n in 0..5000 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let status = post_event(&sluice, &inst, &format!("evt_{client}_{n}")).await;
                sent.fetch_add(1, Ordering::Relaxed);
                if status != 200 {
                    failures.push((n, status));
                }
            }
            failures
        }));
    }
    let wait_for_traffic = |after: usize| {
        let sent = sent.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(20);
            while sent.load(Ordering::Relaxed) < after + 300 && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    wait_for_traffic(0).await;
    // Three rounds in a row, each three swaps: an upload activates 0.1.1 (new the first
    // time, known after), a rollback goes back to 0.1.0, an activation to 0.1.1 again,
    // and a last rollback ends the round on 0.1.0.
    for round in 0..3 {
        let resp = sluice.upload_driver("", &fixed).await;
        resp.expect_status(if round == 0 { 201 } else { 200 });
        assert_eq!(resp.json["activated"], true, "{}", resp.text);
        assert_eq!(
            resp.json["replaced"],
            original_sha.as_str(),
            "{}",
            resp.text
        );
        wait_for_traffic(sent.load(Ordering::Relaxed)).await;
        let resp = sluice
            .admin(Method::POST, "/v1/drivers/faulty/rollback", None)
            .await;
        resp.expect_status(200);
        assert_eq!(resp.json["driver"]["sha256"], original_sha.as_str());
        wait_for_traffic(sent.load(Ordering::Relaxed)).await;
        let resp = sluice
            .admin(
                Method::POST,
                "/v1/drivers/faulty/activate",
                Some(json!({ "sha256": fixed_sha })),
            )
            .await;
        resp.expect_status(200);
        assert_eq!(resp.json["driver"]["version"], "0.1.1");
        wait_for_traffic(sent.load(Ordering::Relaxed)).await;
        sluice
            .admin(Method::POST, "/v1/drivers/faulty/rollback", None)
            .await
            .expect_status(200);
        wait_for_traffic(sent.load(Ordering::Relaxed)).await;
    }
    stop.store(true, Ordering::Relaxed);

    let mut failures = Vec::new();
    for client in clients {
        failures.extend(client.await.expect("client task"));
    }
    let total = sent.load(Ordering::Relaxed);
    assert!(
        failures.is_empty(),
        "{} of {total} requests failed: {failures:?}",
        failures.len()
    );
    let by_version = versions_of_events(&sluice, &inst).await;
    assert_eq!(by_version.values().sum::<usize>(), total, "{by_version:?}");
    assert!(
        by_version.get("0.1.0").is_some_and(|n| *n > 0)
            && by_version.get("0.1.1").is_some_and(|n| *n > 0),
        "both versions accepted events: {by_version:?}"
    );
    assert_eq!(active(&sluice).await, ("0.1.0".into(), original_sha));
    let metrics = scrape(&sluice).await;
    let activations = |reason: &str| {
        metrics.sum(
            "sluice_driver_activations_total",
            &[("driver", "faulty"), ("reason", reason)],
        )
    };
    assert_eq!(
        [
            activations("directory"),
            activations("upload"),
            activations("rollback"),
            activations("activate")
        ],
        [1.0, 3.0, 6.0, 3.0]
    );
    eprintln!("{total} requests across 12 swaps, none failed: {by_version:?}");
}

/// Upload, list, re-upload, rollback, activate, remove; refusals with their reasons;
/// the choice survives a restart; the CLI does the same.
async fn versions_are_kept_and_rolled_back(backend: Backend) {
    let Some(mut sluice) =
        Sluice::start_with_env(backend, &[("SLUICE_CATALOG_MAX_DRIVER_BYTES", "4000000")]).await
    else {
        return;
    };
    let inst = faulty_installation(&sluice).await;
    let (original, fixed) = (wasm("faulty"), wasm("faulty-fixed"));
    let (original_sha, fixed_sha) = (sha256_hex(&original), sha256_hex(&fixed));
    assert_eq!(
        active(&sluice).await,
        ("0.1.0".into(), original_sha.clone())
    );

    // Broken uploads: refused with the reason, nothing changes, the driver keeps serving.
    let garbage = vec![0x80u8; 4096];
    let resp = sluice.upload_driver("", &garbage).await;
    resp.expect_status(422);
    assert_eq!(resp.error_code(), Some("invalid_driver"), "{}", resp.text);
    assert!(resp.text.contains("not a valid component"), "{}", resp.text);
    let resp = sluice.upload_driver("", &wasm("faulty-bad-metadata")).await;
    resp.expect_status(422);
    assert!(
        resp.text.contains("invalid metadata") && resp.text.contains("Bad Id!"),
        "{}",
        resp.text
    );
    let resp = sluice
        .admin(Method::POST, "/v1/drivers", Some(json!({"not": "wasm"})))
        .await;
    resp.expect_status(415);
    let resp = sluice.upload_driver("", &vec![0u8; 4_000_001]).await;
    resp.expect_status(413);
    let resp = sluice
        .upload_driver("activate=false&activate_if_identical=true", &fixed)
        .await;
    resp.expect_status(400);
    let resp = sluice
        .upload_driver("activate_if_identical=true", &fixed)
        .await;
    resp.expect_status(400);
    // Without the token an upload is held to the ordinary body limit and refused.
    let stranger = reqwest::Client::new()
        .post(sluice.url("/v1/drivers"))
        .header("content-type", "application/wasm")
        .body(fixed.clone())
        .send()
        .await
        .expect("upload without a token");
    assert_eq!(stranger.status().as_u16(), 401);
    assert_eq!(active(&sluice).await.1, original_sha);
    assert_eq!(post_event(&sluice, &inst, "evt_after_refusals").await, 200);
    let refused = scrape(&sluice)
        .await
        .sum("sluice_driver_refusals_total", &[("source", "upload")]);
    assert_eq!(refused, 2.0, "the garbage and the invalid metadata");

    // Keep without activating, then the same bytes again: known, nothing new.
    let resp = sluice.upload_driver("activate=false", &fixed).await;
    resp.expect_status(201);
    assert_eq!(resp.json["activated"], false);
    assert_eq!(resp.json["new"], true);
    assert_eq!(resp.json["driver"]["sha256"], fixed_sha.as_str());
    let resp = sluice.upload_driver("activate=false", &fixed).await;
    resp.expect_status(200);
    assert_eq!(resp.json["new"], false);
    assert_eq!(active(&sluice).await.1, original_sha);

    let resp = sluice.admin(Method::GET, "/v1/drivers/faulty", None).await;
    resp.expect_status(200);
    let versions: Vec<(String, bool, String)> = resp.json["versions"]
        .as_array()
        .expect("versions")
        .iter()
        .map(|v| {
            (
                v["sha256"].as_str().expect("sha").to_string(),
                v["active"].as_bool().expect("active"),
                v["source"].as_str().expect("source").to_string(),
            )
        })
        .collect();
    let mut expected = vec![
        (original_sha.clone(), true, "directory".to_string()),
        (fixed_sha.clone(), false, "upload".to_string()),
    ];
    expected.sort();
    let mut got = versions.clone();
    got.sort();
    assert_eq!(got, expected, "{}", resp.text);
    let resp = sluice
        .admin(
            Method::GET,
            &format!("/v1/drivers/faulty/versions/{fixed_sha}"),
            None,
        )
        .await;
    resp.expect_status(200);
    assert_eq!(resp.json["version"], "0.1.1");
    assert_eq!(resp.json["size_bytes"], fixed.len());

    // Activate, then roll back and forth.
    let resp = sluice
        .admin(
            Method::POST,
            "/v1/drivers/faulty/activate",
            Some(json!({"sha256": fixed_sha})),
        )
        .await;
    resp.expect_status(200);
    assert_eq!(active(&sluice).await, ("0.1.1".into(), fixed_sha.clone()));
    sluice
        .admin(Method::POST, "/v1/drivers/faulty/rollback", None)
        .await
        .expect_status(200);
    assert_eq!(active(&sluice).await.1, original_sha);
    sluice
        .admin(Method::POST, "/v1/drivers/faulty/rollback", None)
        .await
        .expect_status(200);
    assert_eq!(active(&sluice).await.1, fixed_sha);
    let resp = sluice
        .admin(
            Method::POST,
            "/v1/drivers/faulty/activate",
            Some(json!({"sha256": "00"})),
        )
        .await;
    resp.expect_status(422);
    assert_eq!(resp.error_code(), Some("unknown_driver_version"));
    let resp = sluice
        .admin(
            Method::POST,
            "/v1/drivers/stripe/activate",
            Some(json!({"sha256": fixed_sha})),
        )
        .await;
    resp.expect_status(422);

    // The choice is kept: after a restart the uploaded version is still active, though
    // the directory still holds 0.1.0.
    sluice.restart().await;
    assert_eq!(active(&sluice).await, ("0.1.1".into(), fixed_sha.clone()));
    assert_eq!(post_event(&sluice, &inst, "evt_after_restart").await, 200);

    // Removal: never the active version; an inactive one goes, and rollback then has
    // nowhere to go.
    let resp = sluice
        .admin(
            Method::DELETE,
            &format!("/v1/drivers/faulty/versions/{fixed_sha}"),
            None,
        )
        .await;
    resp.expect_status(409);
    sluice
        .admin(
            Method::DELETE,
            &format!("/v1/drivers/faulty/versions/{original_sha}"),
            None,
        )
        .await
        .expect_status(204);
    let resp = sluice
        .admin(Method::POST, "/v1/drivers/faulty/rollback", None)
        .await;
    resp.expect_status(409);
    let resp = sluice.admin(Method::GET, "/v1/drivers/faulty", None).await;
    assert_eq!(
        resp.json["versions"].as_array().map(Vec::len),
        Some(1),
        "{}",
        resp.text
    );

    // The CLI: add (the file back), list, inspect a file without the host, rollback.
    let path = test_driver("faulty");
    let path = path.to_str().expect("utf-8 path");
    let out = sluice.cli(&["drivers", "add", path], None);
    let added: Value = serde_json::from_slice(&out.stdout).expect("add prints JSON");
    assert_eq!(added["driver"]["sha256"], original_sha.as_str());
    assert_eq!(active(&sluice).await.1, original_sha);
    let out = sluice.cli(&["drivers", "list", "faulty"], None);
    let listed: Value = serde_json::from_slice(&out.stdout).expect("list prints JSON");
    assert_eq!(listed["versions"].as_array().map(Vec::len), Some(2));
    let out = sluice.cli(&["drivers", "inspect", path], None);
    let inspected: Value = serde_json::from_slice(&out.stdout).expect("inspect prints JSON");
    assert_eq!(
        (
            &inspected["id"],
            &inspected["version"],
            &inspected["sha256"]
        ),
        (&json!("faulty"), &json!("0.1.0"), &json!(original_sha))
    );
    assert_eq!(inspected["size_bytes"], original.len());
    assert_eq!(inspected["wit_version"], "0.6.1");
    assert_eq!(inspected["auth_kind"], "none");
    assert_eq!(inspected["ingestion_modes"], json!(["webhook"]));
    assert_eq!(
        inspected["outbound_hosts"],
        json!(["https://api.example.com"])
    );
    assert_eq!(inspected["secrets"][0]["name"], "token");
    assert!(inspected["settings_schema"]["properties"]["mode"].is_object());
    sluice.cli(&["drivers", "rollback", "faulty"], None);
    assert_eq!(active(&sluice).await.1, fixed_sha);

    // A component of 3 MiB (over axum's own 2 MiB default, under the configured limit): a
    // custom section appended to a build is another valid component, another version.
    let big = with_custom_section(&fixed, 3 << 20);
    let resp = sluice.upload_driver("activate=false", &big).await;
    resp.expect_status(201);
    assert_eq!(
        resp.json["driver"]["size_bytes"],
        big.len(),
        "{}",
        &resp.text[..200.min(resp.text.len())]
    );
    assert_eq!(resp.json["driver"]["sha256"], sha256_hex(&big).as_str());
}

/// `component` with a custom section of `size` bytes appended (component-model binaries
/// allow custom sections between and after the others).
fn with_custom_section(component: &[u8], size: usize) -> Vec<u8> {
    fn leb(mut n: usize, out: &mut Vec<u8>) {
        loop {
            let byte = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }
    let name = b"sluice-test-padding";
    let mut content = Vec::new();
    leb(name.len(), &mut content);
    content.extend_from_slice(name);
    content.resize(content.len() + size, 0x5a);
    let mut out = component.to_vec();
    out.push(0);
    leb(content.len(), &mut out);
    out.extend_from_slice(&content);
    out
}

/// A canary replays the driver's stored events through the candidate and the active
/// version and reports, field by field, where they differ; `activate_if_identical`
/// switches only when nothing does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canary_reports_changed_fields_before_switching() {
    let Some(sluice) = Sluice::start(Backend::Sqlite).await else {
        return;
    };
    let inst = faulty_installation(&sluice).await;
    let original_sha = sha256_hex(&wasm("faulty"));
    // Nothing stored yet: nothing compared, so nothing is "identical" and nothing switches.
    let resp = sluice
        .upload_driver(
            "canary=10&activate_if_identical=true",
            &wasm("faulty-fixed"),
        )
        .await;
    resp.expect_status(201);
    assert_eq!(
        (&resp.json["canary"]["compared"], &resp.json["activated"]),
        (&json!(0), &json!(false)),
        "{}",
        resp.text
    );
    sluice
        .upload_driver("canary=0", &wasm("faulty-fixed"))
        .await
        .expect_status(400);
    for id in ["evt_c1", "evt_c2", "evt_c3"] {
        assert_eq!(post_event(&sluice, &inst, id).await, 200);
    }

    let resp = sluice
        .upload_driver("canary=10&activate_if_identical=true", &wasm("faulty-next"))
        .await;
    resp.expect_status(201);
    assert_eq!(resp.json["activated"], false, "{}", resp.text);
    let canary = &resp.json["canary"];
    assert_eq!(
        (
            &canary["compared"],
            &canary["identical"],
            &canary["differing"]
        ),
        (&json!(3), &json!(0), &json!(3)),
        "{}",
        resp.text
    );
    assert_eq!(canary["current"]["version"], "0.1.0");
    assert_eq!(canary["candidate"]["version"], "0.2.0");
    let differences = canary["differences"].as_array().expect("differences");
    // Newest first.
    let ids: Vec<&str> = differences
        .iter()
        .map(|d| d["provider_event_id"].as_str().expect("id"))
        .collect();
    assert_eq!(ids, ["evt_c3", "evt_c2", "evt_c1"]);
    for d in differences {
        assert_eq!(
            d["changes"],
            json!([{
                "record": 0,
                "path": "/data/reason",
                "current": null,
                "candidate": "not mapped by faulty 0.2.0",
            }]),
            "{}",
            resp.text
        );
    }
    assert_eq!(active(&sluice).await.1, original_sha, "nothing switched");

    // 0.1.1 normalizes these events exactly as 0.1.0 does: it is switched on (kept since
    // the first upload, so `200`).
    let resp = sluice
        .upload_driver(
            "canary=10&activate_if_identical=true",
            &wasm("faulty-fixed"),
        )
        .await;
    resp.expect_status(200);
    assert_eq!(
        (&resp.json["canary"]["identical"], &resp.json["activated"]),
        (&json!(3), &json!(true)),
        "{}",
        resp.text
    );
    assert_eq!(active(&sluice).await.0, "0.1.1");

    // The CLI prints the differences field by field.
    let path = test_driver("faulty-next");
    let out = sluice.cli(
        &[
            "drivers",
            "add",
            path.to_str().expect("path"),
            "--canary",
            "2",
            "--activate-if-identical",
        ],
        None,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("canary: 2 stored events compared, 0 identical, 2 differ")
            && stderr.contains("record 0 /data/reason: null -> \"not mapped by faulty 0.2.0\""),
        "{stderr}"
    );
    assert_eq!(active(&sluice).await.0, "0.1.1");
}

/// A pinned installation stays on its version while the driver moves on; unpinned, it
/// follows; a pinned version cannot be removed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pinned_installations_stay_on_their_version() {
    let Some(sluice) = Sluice::start(Backend::Sqlite).await else {
        return;
    };
    let (pinned, follower) = (
        faulty_installation(&sluice).await,
        faulty_installation(&sluice).await,
    );
    let original_sha = sha256_hex(&wasm("faulty"));
    let resp = sluice
        .admin(
            Method::PUT,
            &format!("/v1/installations/{pinned}/driver-version"),
            Some(json!({ "sha256": original_sha })),
        )
        .await;
    resp.expect_status(200);
    assert_eq!(resp.json["pinned_driver_sha256"], original_sha.as_str());
    let resp = sluice
        .admin(
            Method::PUT,
            &format!("/v1/installations/{pinned}/driver-version"),
            Some(json!({ "sha256": "ab" })),
        )
        .await;
    resp.expect_status(422);
    assert_eq!(resp.error_code(), Some("unknown_driver_version"));
    // `sha256` must be said, so an empty object does not unpin by accident.
    let resp = sluice
        .admin(
            Method::PUT,
            &format!("/v1/installations/{pinned}/driver-version"),
            Some(json!({})),
        )
        .await;
    resp.expect_status(400);

    sluice
        .upload_driver("", &wasm("faulty-next"))
        .await
        .expect_status(201);
    assert_eq!(post_event(&sluice, &pinned, "evt_p1").await, 200);
    assert_eq!(post_event(&sluice, &follower, "evt_f1").await, 200);
    assert_eq!(
        versions_of_events(&sluice, &pinned).await,
        BTreeMap::from([("0.1.0".into(), 1)])
    );
    assert_eq!(
        versions_of_events(&sluice, &follower).await,
        BTreeMap::from([("0.2.0".into(), 1)])
    );
    let resp = sluice
        .admin(
            Method::DELETE,
            &format!("/v1/drivers/faulty/versions/{original_sha}"),
            None,
        )
        .await;
    resp.expect_status(409);
    assert!(resp.text.contains("pinned"), "{}", resp.text);

    let out = sluice.cli(&["drivers", "pin", &pinned, "--unpin"], None);
    let unpinned: Value = serde_json::from_slice(&out.stdout).expect("pin prints JSON");
    assert_eq!(unpinned["pinned_driver_sha256"], Value::Null);
    assert_eq!(post_event(&sluice, &pinned, "evt_p2").await, 200);
    assert_eq!(
        versions_of_events(&sluice, &pinned).await,
        BTreeMap::from([("0.1.0".into(), 1), ("0.2.0".into(), 1)])
    );
}

/// A file put into the watched directory is loaded and activated; a broken one is
/// refused in the log while the driver keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_drivers_directory_is_watched() {
    let Some(sluice) = Sluice::start_with_env(
        Backend::Sqlite,
        &[("SLUICE_CATALOG_WATCH_INTERVAL_MS", "100")],
    )
    .await
    else {
        return;
    };
    let inst = faulty_installation(&sluice).await;
    let dir = sluice.drivers_dir();
    std::fs::write(dir.join("broken.wasm.tmp"), b"\0asm\x0d\0\x01\0").expect("writing");
    std::fs::rename(dir.join("broken.wasm.tmp"), dir.join("broken.wasm")).expect("renaming");
    std::fs::write(dir.join("faulty.wasm.tmp"), wasm("faulty-next")).expect("writing");
    std::fs::rename(dir.join("faulty.wasm.tmp"), dir.join("faulty.wasm")).expect("renaming");
    let deadline = Instant::now() + Duration::from_secs(10);
    while active(&sluice).await.0 != "0.2.0" {
        assert!(
            Instant::now() < deadline,
            "0.2.0 not active: {}",
            sluice.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(post_event(&sluice, &inst, "evt_w1").await, 200);
    assert_eq!(
        versions_of_events(&sluice, &inst).await,
        BTreeMap::from([("0.2.0".into(), 1)])
    );
    let broken = dir.join("broken.wasm");
    let log = sluice.log();
    assert!(
        log.lines().any(|l| l.contains("driver refused")
            && l.contains(&format!("{}:", broken.display()))
            && l.contains("does not implement")),
        "{log}"
    );
    // Refused once per content, not at every scan.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let refusals = sluice.log().matches("broken.wasm:").count();
    assert_eq!(refusals, 1, "{}", sluice.log());

    // One file per driver id: a second file of `faulty` is refused while `faulty.wasm`
    // is there, and taken in (0.1.1, never kept before) once that file is gone.
    std::fs::remove_file(&broken).expect("removing");
    std::fs::write(dir.join("copy.wasm.tmp"), wasm("faulty-fixed")).expect("writing");
    std::fs::rename(dir.join("copy.wasm.tmp"), dir.join("faulty-copy.wasm")).expect("renaming");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !sluice.log().contains("is already given by another file") {
        assert!(Instant::now() < deadline, "no refusal: {}", sluice.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(active(&sluice).await.0, "0.2.0");
    std::fs::remove_file(dir.join("faulty.wasm")).expect("removing");
    while active(&sluice).await.0 != "0.1.1" {
        assert!(
            Instant::now() < deadline,
            "0.1.1 not active: {}",
            sluice.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// On PostgreSQL an upload to one node reaches the other at once (`LISTEN/NOTIFY`; the
/// periodic resync is set to a minute so it cannot be what did it), and so does a rollback
/// the other way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_nodes_follow_each_others_changes() {
    // A minute's periodic sync and installation cache: only the notification can make
    // another node follow within the test's seconds.
    let env = [
        ("SLUICE_CATALOG_SYNC_INTERVAL_MS", "60000"),
        ("SLUICE_SERVER_INSTALLATION_CACHE_TTL_MS", "60000"),
    ];
    let Some(a) = Sluice::start_with_env(Backend::Postgres, &env).await else {
        return;
    };
    let shared = a.database_url().to_string();
    let Some(b) = Sluice::start_with_env(
        Backend::Postgres,
        &[env[0], env[1], ("SLUICE_DATABASE_URL", shared.as_str())],
    )
    .await
    else {
        return;
    };
    let inst = faulty_installation(&a).await;
    a.upload_driver("", &wasm("faulty-next"))
        .await
        .expect_status(201);
    let took = until_active("B", &b, "0.2.0").await;
    eprintln!("node B switched {took:?} after the upload to A");
    assert_eq!(post_event(&b, &inst, "evt_n1").await, 200);
    assert_eq!(
        versions_of_events(&a, &inst).await,
        BTreeMap::from([("0.2.0".into(), 1)])
    );

    // A pin made on A holds on B, whose cache has the installation for another minute.
    let original_sha = sha256_hex(&wasm("faulty"));
    let path = format!("/v1/installations/{inst}/driver-version");
    a.admin(Method::PUT, &path, Some(json!({ "sha256": original_sha })))
        .await
        .expect_status(200);
    let took = until_accepted_by(&b, &inst, "0.1.0").await;
    eprintln!("node B followed the pin {took:?} after it was made on A");
    a.admin(Method::PUT, &path, Some(json!({ "sha256": null })))
        .await
        .expect_status(200);
    until_accepted_by(&b, &inst, "0.2.0").await;

    b.admin(Method::POST, "/v1/drivers/faulty/rollback", None)
        .await
        .expect_status(200);
    until_active("A", &a, "0.1.0").await;
    assert_eq!(post_event(&a, &inst, "evt_n2").await, 200);
}
