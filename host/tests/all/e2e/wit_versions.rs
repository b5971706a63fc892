//! Versions of the `sluice:driver` world: a driver built against the previous world (a
//! verbatim copy of the `0.6.0` WIT, `tests/drivers/previous-world/`) loads on this host,
//! is described with the version it was built against, and takes webhooks; drivers
//! claiming a world of another minor are refused with the reason.

use reqwest::Method;
use serde_json::json;
use sluice::wit::WIT_VERSION;
use sluice_testkit::{Backend, Sluice, TempDir, sluice_cli, test_driver};

/// The version `tests/drivers/previous-world/wit/` declares.
const PREVIOUS: &str = "0.6.0";
const TOKEN: &str = "tok_previous_3f9a1c";

fn read(name: &str) -> Vec<u8> {
    std::fs::read(test_driver(name)).unwrap_or_else(|e| panic!("reading {name}.wasm: {e}"))
}

/// The refusal a driver claiming `claimed` gets, as `load_driver` words it.
fn incompatible(claimed: &str) -> String {
    format!(
        "invalid metadata: wit-version \"{claimed}\" is not compatible with this host \
         ({WIT_VERSION}): it loads drivers built against 0.6.x"
    )
}

fn customer_created(event_id: &str) -> Vec<u8> {
    json!({
        "id": event_id,
        "type": "customer.created",
        "created": 1_700_000_000,
        "customer": {"id": "cus_prev_1", "email": "ada@example.com", "name": "Ada Lovelace"},
    })
    .to_string()
    .into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_previous_world_driver_loads_and_takes_webhooks() {
    let previous = read("previous-world");
    let claims_05 = read("previous-world-claims-0.5");
    let claims_07 = read("previous-world-claims-0.7");
    let Some(sluice) = Sluice::start_with(
        Backend::Sqlite,
        &[],
        &[
            ("previous-world.wasm", &previous),
            ("previous-world-claims-0.5.wasm", &claims_05),
            ("previous-world-claims-0.7.wasm", &claims_07),
        ],
    )
    .await
    else {
        return;
    };

    let info = sluice.driver_info("previous").await;
    assert_eq!(info["wit_version"], PREVIOUS, "{info:#}");
    assert_eq!(info["version"], "0.1.0", "{info:#}");

    let log = sluice.log();
    for (file, claimed) in [
        ("previous-world-claims-0.5.wasm", "0.5.3"),
        ("previous-world-claims-0.7.wasm", "0.7.0"),
    ] {
        let path = sluice.drivers_dir().join(file);
        let line = log
            .lines()
            .find(|l| l.contains("driver refused") && l.contains(&format!("{}:", path.display())))
            .unwrap_or_else(|| panic!("no refusal of {file} in the log:\n{log}"));
        assert!(line.contains(&incompatible(claimed)), "{line}");
    }

    let inst = sluice.create_installation("previous", json!({})).await;
    let id = inst["installation_id"].as_str().expect("installation id");
    sluice.put_secret(id, "webhook_token", TOKEN).await;

    let body = customer_created("evt_prev_1");
    for headers in [vec![], vec![("X-Previous-Token", "tok_previous_wrong")]] {
        let resp = sluice.post_webhook(id, &headers, body.clone()).await;
        resp.expect_status(401);
    }
    let resp = sluice
        .post_webhook(id, &[("X-Previous-Token", TOKEN)], body)
        .await;
    resp.expect_status(200);
    assert_eq!(resp.json["accepted"], 1, "{}", resp.text);

    let events = sluice.events(id).await;
    assert_eq!(events.len(), 1, "{events:?}");
    let event = &events[0];
    assert_eq!(event["type"], "customer.created", "{event:#}");
    assert_eq!(event["subject"], "cus_prev_1", "{event:#}");
    assert_eq!(event["sluiceprovidereventid"], "evt_prev_1", "{event:#}");
    assert_eq!(event["time"], "2023-11-14T22:13:20Z", "{event:#}");
    assert_eq!(event["data"]["kind"], "customer", "{event:#}");
    assert_eq!(event["data"]["email"], "ada@example.com", "{event:#}");
    assert_eq!(event["data"]["name"], "Ada Lovelace", "{event:#}");

    // Its `log@0.6.0` import reached the host's `log` (the line is tagged with the driver;
    // the field syntax is left alone, the log may be coloured).
    let log = sluice.log();
    assert!(
        log.lines().any(|l| l.contains("sluice::driver")
            && l.contains("event evt_prev_1 (customer.created) accepted")
            && l.contains("\"previous\"")),
        "no driver log line in:\n{log}"
    );

    let resp = sluice.admin(Method::GET, "/v1/drivers", None).await;
    let ids: Vec<&str> = resp.json["drivers"]
        .as_array()
        .expect("drivers")
        .iter()
        .filter_map(|d| d["id"].as_str())
        .collect();
    assert_eq!(ids, ["faulty", "previous", "stripe"], "{}", resp.text);
}

#[test]
fn inspect_shows_the_world_a_driver_was_built_against() {
    let dir = TempDir::new("sluice-inspect-wit");
    let out = sluice_cli(dir.path())
        .args(["driver", "inspect"])
        .arg(test_driver("previous-world"))
        .output()
        .expect("running sluice driver inspect");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let info: serde_json::Value = serde_json::from_slice(&out.stdout).expect("inspect prints JSON");
    assert_eq!(info["id"], "previous", "{info:#}");
    assert_eq!(info["wit_version"], PREVIOUS, "{info:#}");

    for (name, claimed) in [
        ("previous-world-claims-0.5", "0.5.3"),
        ("previous-world-claims-0.7", "0.7.0"),
    ] {
        let out = sluice_cli(dir.path())
            .args(["driver", "inspect"])
            .arg(test_driver(name))
            .output()
            .expect("running sluice driver inspect");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "inspect accepted {name}");
        assert!(out.stdout.is_empty(), "{name} printed metadata");
        assert!(stderr.contains(&incompatible(claimed)), "{name}: {stderr}");
    }
}
