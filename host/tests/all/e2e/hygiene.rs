//! Data hygiene: what the host keeps on disk is for its owner only, and the admin API
//! refuses values that would weaken a secret.

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::json;
use sluice_testkit::{Backend, Sluice, TempDir, both_backends, sluice_cli};

both_backends!(empty_secrets_are_refused => sqlite_empty_secrets_are_refused, postgres_empty_secrets_are_refused);

async fn empty_secrets_are_refused(backend: Backend) {
    let Some(sluice) = Sluice::start(backend).await else {
        return;
    };
    let inst = sluice.create_installation("stripe", json!({})).await;
    let id = inst["installation_id"].as_str().unwrap();
    let resp = sluice
        .admin(
            Method::PUT,
            &format!("/v1/installations/{id}/secrets/webhook_secret"),
            Some(json!({"value": ""})),
        )
        .await;
    resp.expect_status(422);
    assert_eq!(resp.error_code(), Some("empty_secret"), "{}", resp.text);
    let inst = sluice
        .admin(Method::GET, &format!("/v1/installations/{id}"), None)
        .await;
    assert_eq!(inst.json["secrets"], json!([]), "{}", inst.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_data_directory_is_the_owners_alone() {
    // No key in the environment: the server makes the key file.
    let Some(mut sluice) =
        Sluice::start_with_env(Backend::Sqlite, &[("SLUICE_MASTER_KEY", "")]).await
    else {
        return;
    };
    let mode = |p: &std::path::Path| {
        std::fs::metadata(p)
            .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
            .permissions()
            .mode()
            & 0o777
    };
    let data = sluice.data_dir();
    assert_eq!(mode(&data), 0o700, "data directory");
    assert_eq!(mode(&data.join("master.key")), 0o600, "master.key");
    sluice.stop();

    // A key file group or others can read is refused at start, with what to do about it.
    std::fs::set_permissions(
        data.join("master.key"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let mut serve = sluice_cli(sluice.dir());
    serve
        .arg("serve")
        .env("SLUICE_DATA_DIR", &data)
        .env("SLUICE_DATABASE_URL", sluice.database_url())
        .env("SLUICE_LISTEN", "127.0.0.1:0")
        .env("SLUICE_DRIVERS_DIR", sluice.drivers_dir())
        .env("SLUICE_ADMIN_TOKEN", "t")
        .env("SLUICE_MASTER_KEY", "")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    let mut child = serve.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("sluice serve started on a master key others can read");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(!status.success());
    assert!(stderr.contains("has mode 644"), "{stderr}");
    assert!(stderr.contains("chmod 600"), "{stderr}");

    // A data directory it creates is 0700, parents included.
    let fresh = TempDir::new("hygiene");
    let nested = fresh.path().join("a/b/data");
    sluice_store::create_private_dir(&nested).unwrap();
    assert_eq!(mode(&nested), 0o700);
    assert_eq!(mode(&fresh.path().join("a/b")), 0o700);
}

/// `[drivers.faulty] installations`: only the ids it names may use the driver — new ones
/// are refused at creation, and deliveries to one created before the policy changed are
/// refused too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_policy_decides_which_installations_may_use_a_driver() {
    let Some(mut sluice) = Sluice::start(Backend::Sqlite).await else {
        return;
    };
    let create = |id: &'static str| json!({"installation_id": id, "driver_id": "faulty", "settings": {"mode": "ok"}});
    sluice
        .admin(
            Method::POST,
            "/v1/installations",
            Some(create("inst_early")),
        )
        .await
        .expect_status(201);
    std::fs::write(
        sluice.dir().join("sluice.toml"),
        "[drivers.faulty]\ninstallations = [\"inst_allowed_*\"]\n",
    )
    .unwrap();
    sluice.restart().await;

    let refused = sluice
        .admin(
            Method::POST,
            "/v1/installations",
            Some(create("inst_other")),
        )
        .await;
    refused.expect_status(422);
    assert_eq!(
        refused.error_code(),
        Some("driver_not_permitted"),
        "{}",
        refused.text
    );
    sluice
        .admin(
            Method::POST,
            "/v1/installations",
            Some(create("inst_allowed_1")),
        )
        .await
        .expect_status(201);

    let body = |id: &str| format!(r#"{{"id":"{id}"}}"#).into_bytes();
    sluice
        .post_webhook("inst_allowed_1", &[], body("evt_allowed"))
        .await
        .expect_status(200);
    let early = sluice
        .post_webhook("inst_early", &[], body("evt_early"))
        .await;
    early.expect_status(401);
    assert!(sluice.events("inst_early").await.is_empty());
    assert_eq!(sluice.events("inst_allowed_1").await.len(), 1);
    // Other drivers are not affected: a Stripe installation with a generated id works.
    let (stripe, secret) = sluice.stripe_installation().await;
    sluice
        .post_stripe(&stripe, &secret, &sluice_testkit::stripe_charge_payload())
        .await
        .expect_status(200);
}

/// `SLUICE_LOG_FORMAT=json`: every line the server writes is one JSON object with a level
/// and fields, and the line about an accepted webhook names its installation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_parse_line_by_line() {
    let Some(mut sluice) =
        Sluice::start_with_env(Backend::Sqlite, &[("SLUICE_LOG_FORMAT", "json")]).await
    else {
        return;
    };
    let (inst, secret) = sluice.stripe_installation().await;
    sluice
        .post_stripe(&inst, &secret, &sluice_testkit::stripe_charge_payload())
        .await
        .expect_status(200);
    // A driver that traps: the host's line about it names the call.
    let trap = sluice
        .create_installation("faulty", json!({"mode": "trap"}))
        .await;
    let trap = trap["installation_id"].as_str().unwrap().to_string();
    sluice
        .post_webhook(&trap, &[], br#"{"id":"evt_trap"}"#.to_vec())
        .await
        .expect_status(500);
    let faulty = sluice.driver_info("faulty").await;
    sluice.terminate(Duration::from_secs(15)).await;
    let log = sluice.log();
    let mut delivered = None;
    let mut trapped = None;
    let mut lines = 0;
    for line in log.lines().filter(|l| !l.trim().is_empty()) {
        let value: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("a log line that is not JSON ({e}): {line}"));
        assert!(value["level"].is_string(), "{line}");
        assert!(value["fields"].is_object(), "{line}");
        assert!(value["timestamp"].is_string(), "{line}");
        if value["fields"]["message"] == "webhook delivered" {
            delivered = Some(value);
        } else if value["fields"]["message"] == "driver trapped" {
            trapped = Some(value);
        }
        lines += 1;
    }
    assert!(lines > 5, "{log}");
    let delivered = delivered.expect("a line about the accepted webhook");
    assert_eq!(delivered["level"], "INFO");
    assert_eq!(
        delivered["fields"]["installation"],
        inst.as_str(),
        "{delivered}"
    );

    let trapped = trapped.expect("a line about the trap");
    let span = &trapped["span"];
    assert_eq!(span["name"], "driver_call", "{trapped}");
    assert_eq!(span["driver"], "faulty");
    assert_eq!(span["version"], faulty["version"]);
    assert_eq!(span["installation"], trap.as_str());

    // An unknown format is refused at start, with the variable named.
    let mut child = sluice_cli(sluice.dir())
        .arg("serve")
        .env("SLUICE_LOG_FORMAT", "xml")
        .env("SLUICE_DATA_DIR", sluice.data_dir())
        .env("SLUICE_LISTEN", "127.0.0.1:0")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("`sluice serve` with SLUICE_LOG_FORMAT=xml did not exit");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(!status.success());
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(stderr.contains("SLUICE_LOG_FORMAT"), "{stderr}");
}

/// `GET /readyz` names the loaded drivers; a host with none is not ready.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_reflects_the_database_and_the_drivers() {
    let Some(mut sluice) = Sluice::start(Backend::Sqlite).await else {
        return;
    };
    let client = reqwest::Client::new();
    let ready = client.get(sluice.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    let body: serde_json::Value = ready.json().await.unwrap();
    assert_eq!(body["status"], "ready");
    assert_eq!(body["database"], "ok");
    let mut ids: Vec<&str> = body["drivers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap())
        .collect();
    ids.sort_unstable();
    assert_eq!(ids, ["faulty", "stripe"]);

    // Versions are kept in the database: with the directory emptied they still load.
    for entry in std::fs::read_dir(sluice.drivers_dir()).unwrap() {
        std::fs::remove_file(entry.unwrap().path()).unwrap();
    }
    sluice.restart().await;
    let ready = client.get(sluice.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    // A new database and an empty directory: no driver at all.
    let fresh = format!("sqlite://{}", sluice.dir().join("fresh.db").display());
    sluice.set_database_url(fresh);
    sluice.restart().await;
    let ready = client.get(sluice.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    assert!(ready.headers().contains_key("retry-after"));
    assert!(ready.text().await.unwrap().contains("no driver is loaded"));
}
