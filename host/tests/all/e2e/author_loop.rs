//! The driver author's loop: `sluice driver test FILE --fixtures DIR [--update]` on the
//! bundled drivers' shipped fixtures (`drivers/<name>/fixtures/`), a snapshot changed by
//! hand, unreadable fixtures, and `sluice driver new` built for wasm32-wasip2 and run on its
//! own fixture.
//!
//! The shipped snapshots are checked against the expectations the other suites take from the
//! providers' documentation (`corpus/expected/`, the Stripe .NET and Shopify official
//! vectors, Hotmart's documented postback and sales history), so a snapshot cannot silently
//! record a wrong value.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sluice_testkit::fixtures::fixtures_dir;
use sluice_testkit::paths::{scaffold_target, workspace_root};
use sluice_testkit::{TempDir, bundled_driver, require, sluice_cli};

/// The longest a scaffolded crate's build may take (a first build compiles its
/// dependencies; later ones reuse the shared target directory).
const SCAFFOLD_BUILD_TIMEOUT: Duration = Duration::from_secs(900);

fn fixtures_of(driver: &str) -> PathBuf {
    workspace_root()
        .join("drivers")
        .join(driver)
        .join("fixtures")
}

/// `sluice driver test <component> --fixtures <dir> [extra]`, from a scratch directory.
fn driver_test(component: &Path, dir: &Path, extra: &[&str]) -> (Option<i32>, String) {
    driver_test_with(component, dir, extra, None)
}

/// [`driver_test`], with this `sluice.toml` in the working directory.
fn driver_test_with(
    component: &Path,
    dir: &Path,
    extra: &[&str],
    config: Option<&str>,
) -> (Option<i32>, String) {
    let scratch = TempDir::new("sluice-author-loop");
    if let Some(config) = config {
        std::fs::write(scratch.path().join("sluice.toml"), config).unwrap();
    }
    let out = sluice_cli(scratch.path())
        .args(["driver", "test"])
        .arg(component)
        .arg("--fixtures")
        .arg(dir)
        .args(extra)
        .output()
        .expect("running sluice driver test");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    (out.status.code(), format!("{stdout}\n--- stderr\n{stderr}"))
}

fn read_json(path: &Path) -> Value {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The fixture names in `dir`, sorted.
fn fixture_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().to_string_lossy().into_owned();
            name.strip_suffix(".request.json")
                .or_else(|| name.strip_suffix(".poll.json"))
                .map(str::to_string)
        })
        .collect();
    names.sort();
    names
}

#[test]
fn every_bundled_drivers_fixtures_pass() {
    for driver in ["stripe", "shopify", "hotmart"] {
        let dir = fixtures_of(driver);
        let names = fixture_names(&dir);
        assert!(names.len() >= 3, "{driver}: {names:?}");
        let (code, out) = driver_test(&bundled_driver(driver), &dir, &[]);
        assert_eq!(code, Some(0), "{driver}:\n{out}");
        let summary = format!(
            "{n} fixture(s): {n} passed, 0 snapshot(s) written, 0 failed",
            n = names.len()
        );
        assert!(
            out.contains(&summary),
            "{driver}: expected {summary:?}:\n{out}"
        );
        for name in &names {
            assert!(
                out.contains(&format!("ok      {name} (")),
                "{driver}/{name}:\n{out}"
            );
        }
    }
    // At least one poll served from recorded responses.
    assert!(
        fixture_names(&fixtures_of("hotmart")).contains(&"sales_history_first_poll".to_string())
    );
}

/// The records of every event of a snapshot, in order (their `data`).
fn records(snapshot: &Value) -> Vec<Value> {
    let events = snapshot["events"].as_array().cloned().unwrap_or_else(|| {
        snapshot["pages"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|p| p["events"].as_array().cloned().unwrap_or_default())
            .collect()
    });
    events
        .iter()
        .flat_map(|e| e["records"].as_array().cloned().unwrap_or_default())
        .map(|r| r["data"].clone())
        .collect()
}

#[test]
fn shipped_snapshots_agree_with_the_provider_expectations() {
    // Fixtures built from the corpus: the records its hand-checked expectation lists.
    let mut corpus_checked = 0;
    for driver in ["stripe", "shopify", "hotmart"] {
        let dir = fixtures_of(driver);
        for name in fixture_names(&dir) {
            let fixture = dir.join(format!("{name}.request.json"));
            if !fixture.exists() {
                continue;
            }
            let Some(body) = read_json(&fixture)["body_file"]
                .as_str()
                .map(str::to_string)
            else {
                continue;
            };
            let Some(corpus_file) = body.split("/corpus/").nth(1) else {
                continue;
            };
            let expected = read_json(&fixtures_dir().join("corpus/expected").join(corpus_file));
            let snapshot = read_json(&dir.join(format!("{name}.snapshot.json")));
            if let Err(e) = super::corpus::check(&records(&snapshot), &expected) {
                panic!("{driver}/{name} differs from corpus/expected/{corpus_file}: {e}");
            }
            corpus_checked += 1;
        }
    }
    assert!(
        corpus_checked >= 7,
        "{corpus_checked} corpus fixtures checked"
    );

    // stripe-dotnet's EventUtilityTest: the event and its customer (stripe_fixtures.rs).
    let dotnet = read_json(&fixtures_of("stripe").join("dotnet_customer_created.snapshot.json"));
    let event = &dotnet["events"][0];
    assert_eq!(
        (&event["provider_event_id"], &event["event_type"]),
        (&json!("evt_123"), &json!("customer.created"))
    );
    let customer = &event["records"][0]["data"];
    assert_eq!(
        (
            &customer["kind"],
            &customer["external_id"],
            &customer["email"]
        ),
        (
            &json!("customer"),
            &json!("cus_123"),
            &json!("test@stripe.com")
        )
    );
    // RejectOutdatedTimestamp: 400 s after signing, refused.
    let outdated =
        read_json(&fixtures_of("stripe").join("dotnet_outdated_timestamp.snapshot.json"));
    assert_eq!(
        (&outdated["ok"], &outdated["error"]["code"]),
        (&json!(false), &json!("unauthorized"))
    );

    // shopify-app-js's validation vector: id, domain, topic (shopify_fixtures.rs).
    let official =
        read_json(&fixtures_of("shopify").join("official_products_create.snapshot.json"));
    let event = &official["events"][0];
    assert_eq!(event["provider_event_id"], "123456789");
    assert_eq!(event["account_key"], "shop1.myshopify.io");
    assert_eq!(event["records"][0]["type"], "unmapped.products/create");

    // Hotmart's test postback: the payment field by field (hotmart_fixtures.rs).
    let approved = read_json(&fixtures_of("hotmart").join("purchase_approved.snapshot.json"));
    assert_eq!(
        approved["events"][0]["records"][1]["data"],
        super::hotmart_fixtures::purchase_approved_payment()
    );
    let refused = read_json(&fixtures_of("hotmart").join("wrong_hottok.snapshot.json"));
    assert_eq!(refused["error"]["code"], "unauthorized");

    // Hotmart's documented sales history, polled (runtime/hotmart_sales_fixture.rs): the
    // token request, then the page; the first item's payment.
    let polled = read_json(&fixtures_of("hotmart").join("sales_history_first_poll.snapshot.json"));
    let requests: Vec<(&Value, &Value)> = polled["requests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (&r["method"], &r["status"]))
        .collect();
    assert_eq!(
        requests,
        vec![(&json!("POST"), &json!(200)), (&json!("GET"), &json!(200))]
    );
    assert_eq!(polled["captured_secrets"], json!(["access_token"]));
    let page = &polled["pages"][0];
    assert_eq!(
        page["has_more"], true,
        "the documented page has a next_page_token"
    );
    let first = &page["events"][0];
    assert!(
        first["provider_event_id"]
            .as_str()
            .unwrap()
            .contains("HP12455690122399")
    );
    let payment = first["records"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["data"]["kind"] == "payment")
        .expect("a payment record");
    assert_eq!(payment["type"], "payment.pending");
    assert_eq!(
        payment["data"]["amount"],
        json!({"amount_minor": 23576, "currency": "USD"})
    );
    assert_eq!(
        payment["data"]["fee"],
        json!({"amount_minor": 3675, "currency": "EUR"})
    );
    assert_eq!(payment["data"]["status_raw"], "UNDER_ANALISYS");
    assert_eq!(payment["data"]["created_at"], "2021-06-06T03:00:00Z");
    // The 429 poll: a wait of the provider's Retry-After, as the host takes it.
    let limited =
        read_json(&fixtures_of("hotmart").join("sales_history_rate_limited.snapshot.json"));
    assert_eq!(
        (&limited["ok"], &limited["retry_after_ms"]),
        (&json!(true), &json!(30_000))
    );
}

/// A poll snapshot's pages: each page's provider event ids and its parsed next cursor.
fn walked(snapshot: &Value) -> Vec<(Vec<String>, bool, Value)> {
    assert_eq!(snapshot["ok"], true, "{snapshot:#}");
    snapshot["pages"]
        .as_array()
        .expect("pages")
        .iter()
        .map(|page| {
            let ids = page["events"]
                .as_array()
                .expect("events")
                .iter()
                .map(|e| e["provider_event_id"].as_str().expect("id").to_string())
                .collect();
            let cursor = serde_json::from_str(page["next_cursor"].as_str().expect("cursor"))
                .expect("the cursor is JSON");
            (ids, page["has_more"] == true, cursor)
        })
        .collect()
}

/// The records of the polled event `id` in a poll snapshot (their `data`).
fn polled_records(snapshot: &Value, id: &str) -> Vec<Value> {
    let event = snapshot["pages"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|p| p["events"].as_array().cloned().unwrap_or_default())
        .find(|e| e["provider_event_id"] == id)
        .unwrap_or_else(|| panic!("no polled event {id}"));
    event["records"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| r["data"].clone())
        .collect()
}

#[test]
fn shipped_poll_snapshots_agree_with_the_provider_documents() {
    // Stripe lists newest first and pages with `starting_after` the page's oldest event;
    // each page comes out oldest first, and the pass's end starts the next one at the
    // newest `created` seen (the corpus files' own ids and timestamps).
    let stripe = read_json(&fixtures_of("stripe").join("events_first_poll.snapshot.json"));
    let events = [
        (
            "evt_1LCflrDu4p87RxPw3rxrRLSc",
            "charge.succeeded_2020-08-27_eur_no_customer.json",
        ),
        (
            "evt_3PBWUkRxqlZt79sD18BH2Rbr",
            "payment_intent.succeeded_2023-10-16_latest_charge_usd.json",
        ),
        (
            "evt_1PBXo9RxqlZt79sDnw7dd5cs",
            "invoice.paid_2023-10-16_usd.json",
        ),
        (
            "evt_000000000000000000000000",
            "charge.refunded_2020-08-27_sample.json",
        ),
    ];
    let id = |i: usize| events[i].0.to_string();
    assert_eq!(
        walked(&stripe),
        vec![
            (
                vec![id(0), id(1), id(2)],
                true,
                json!({"top": 1714549347, "after": id(0)})
            ),
            (vec![id(3)], false, json!({"since": 1714549347})),
        ]
    );
    // The same event polled normalizes as its webhook does (corpus/expected).
    for (id, corpus_file) in events {
        let expected = read_json(
            &fixtures_dir()
                .join("corpus/expected/stripe")
                .join(corpus_file),
        );
        if let Err(e) = super::corpus::check(&polled_records(&stripe, id), &expected) {
            panic!("stripe poll {id} differs from corpus/expected/stripe/{corpus_file}: {e}");
        }
    }

    // Shopify pages by the `Link` header's `page_info`; each order is an `orders/updated`
    // event `order:{id}:{updated_at}`, and the next pass starts at the newest `updated_at`.
    let shopify = read_json(&fixtures_of("shopify").join("orders_first_poll.snapshot.json"));
    let (hkd, docs) = (
        "order:6200360403244:2025-01-23T22:16:38-05:00",
        "order:450789469:2008-01-10T11:00:00-05:00",
    );
    assert_eq!(
        walked(&shopify),
        vec![
            (
                vec![hkd.to_string()],
                true,
                json!({"top": "2025-01-24T03:16:38Z", "page_info": "eyJsYXN0X2lkIjo2MjAwMzYwNDAzMjQ0fQ"})
            ),
            (
                vec![docs.to_string()],
                false,
                json!({"since": "2025-01-24T03:16:38Z"})
            ),
        ]
    );
    let expected =
        read_json(&fixtures_dir().join(
            "corpus/expected/shopify/orders_create_hkd_fixed_discounts_customer_2024-10.json",
        ));
    if let Err(e) = super::corpus::check(&polled_records(&shopify, hkd), &expected) {
        panic!("shopify poll {hkd} differs from its corpus expectation: {e}");
    }
    // Shopify's REST docs sample order #1001: USD 598.94, 199.00 an iPod before discounts.
    let order = &polled_records(&shopify, docs)[0];
    assert_eq!(order["kind"], "order");
    assert_eq!(order["external_id"], "450789469");
    assert_eq!(order["number"], "#1001");
    assert_eq!(
        order["total"],
        json!({"amount_minor": 59894, "currency": "USD"})
    );
    assert_eq!(
        order["line_items"][0]["unit_price"],
        json!({"amount_minor": 19900, "currency": "USD"})
    );
}

/// A copy of fixture `name` of `driver` in `into`, its files named absolutely so it runs
/// from there; with its snapshot unless `snapshot` is false.
fn copy_fixture(driver: &str, name: &str, kind: &str, into: &Path, snapshot: bool) -> Value {
    let dir = fixtures_of(driver);
    let mut fixture = read_json(&dir.join(format!("{name}.{kind}.json")));
    let absolute = |v: &mut Value| {
        if let Some(file) = v["body_file"].as_str() {
            v["body_file"] = dir.join(file).to_string_lossy().into_owned().into();
        }
    };
    absolute(&mut fixture);
    let responses = fixture.get_mut("responses").and_then(Value::as_array_mut);
    for response in responses.into_iter().flatten() {
        absolute(response);
    }
    std::fs::write(
        into.join(format!("{name}.{kind}.json")),
        fixture.to_string(),
    )
    .unwrap();
    if snapshot {
        let from = dir.join(format!("{name}.snapshot.json"));
        std::fs::copy(from, into.join(format!("{name}.snapshot.json"))).unwrap();
    }
    fixture
}

#[test]
fn a_changed_snapshot_fails_naming_the_field_and_update_restores_it() {
    let dir = TempDir::new("sluice-author-snapshot");
    copy_fixture(
        "stripe",
        "dotnet_customer_created",
        "request",
        dir.path(),
        true,
    );
    let snapshot = dir.path().join("dotnet_customer_created.snapshot.json");
    let original = std::fs::read_to_string(&snapshot).unwrap();
    let stripe = bundled_driver("stripe");
    let (code, out) = driver_test(&stripe, dir.path(), &[]);
    assert_eq!(code, Some(0), "{out}");

    // One field changed by hand.
    let mut changed: Value = serde_json::from_str(&original).unwrap();
    changed["events"][0]["records"][0]["data"]["email"] = json!("someone.else@example.com");
    std::fs::write(&snapshot, serde_json::to_string_pretty(&changed).unwrap()).unwrap();
    let (code, out) = driver_test(&stripe, dir.path(), &[]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("FAIL    dotnet_customer_created (webhook): 1 field(s) differ"),
        "{out}"
    );
    assert!(
        out.contains(
            "  /events/0/records/0/data/email: expected \"someone.else@example.com\", got \"test@stripe.com\""
        ),
        "{out}"
    );

    // --update writes this run's output back: the original snapshot, byte for byte.
    let (code, out) = driver_test(&stripe, dir.path(), &["--update"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("written dotnet_customer_created (webhook)"),
        "{out}"
    );
    assert_eq!(std::fs::read_to_string(&snapshot).unwrap(), original);
    let (code, out) = driver_test(&stripe, dir.path(), &[]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("1 fixture(s): 1 passed"), "{out}");
}

#[test]
fn fixtures_that_cannot_be_checked_fail_naming_the_file() {
    let hotmart = bundled_driver("hotmart");
    let case = |files: &[(&str, &str)]| {
        let dir = TempDir::new("sluice-author-broken");
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        let (code, out) = driver_test(&hotmart, dir.path(), &[]);
        assert_eq!(code, Some(1), "{out}");
        (dir, out)
    };
    let (dir, out) = case(&[("broken.request.json", r#"{"now": 1, "body_fle": "x.json"}"#)]);
    let path = dir.path().join("broken.request.json");
    assert!(
        out.contains(&format!(
            "ERROR   broken (webhook): {}: the fixture: unknown field `body_fle`",
            path.display()
        )),
        "{out}"
    );
    let (_dir, out) = case(&[("late.request.json", r#"{"body": "{}"}"#)]);
    assert!(out.contains("missing field `now`"), "{out}");
    let (_dir, out) = case(&[(
        "gone.request.json",
        r#"{"now": 1, "body_file": "nowhere.json"}"#,
    )]);
    assert!(
        out.contains("body_file") && out.contains("nowhere.json: cannot read it"),
        "{out}"
    );
    let (_dir, out) = case(&[("new.request.json", r#"{"now": 1, "body": "{}"}"#)]);
    assert!(
        out.contains("new.snapshot.json: no snapshot (run with --update"),
        "{out}"
    );
    let (_dir, out) = case(&[("notes.txt", "")]);
    assert!(out.contains("error: no fixtures in"), "{out}");

    // A poll whose page was not recorded: the request is named, nothing reached the network.
    let dir = TempDir::new("sluice-author-unrecorded");
    let mut fixture = copy_fixture(
        "hotmart",
        "sales_history_first_poll",
        "poll",
        dir.path(),
        true,
    );
    fixture["responses"].as_array_mut().unwrap().truncate(1);
    let path = dir.path().join("sales_history_first_poll.poll.json");
    std::fs::write(&path, fixture.to_string()).unwrap();
    let (code, out) = driver_test(&hotmart, dir.path(), &[]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("has no recorded response for: GET https://developers.hotmart.com/payments/api/v1/sales/history?start_date="),
        "{out}"
    );
    // --update does not write a snapshot for it either.
    let before = std::fs::read(dir.path().join("sales_history_first_poll.snapshot.json")).unwrap();
    let (code, _) = driver_test(&hotmart, dir.path(), &["--update"]);
    assert_eq!(code, Some(1));
    assert_eq!(
        std::fs::read(dir.path().join("sales_history_first_poll.snapshot.json")).unwrap(),
        before
    );
}

#[test]
fn a_replay_answers_declared_origins_the_policy_does_not_grant() {
    // No network is reached, so the operator's grants do not matter; the driver's own
    // declarations still do (an undeclared origin is refused as in a real call).
    let dir = TempDir::new("sluice-author-policy");
    copy_fixture(
        "hotmart",
        "sales_history_first_poll",
        "poll",
        dir.path(),
        true,
    );
    let no_grants = "[drivers.hotmart]\norigins = []\n";
    let (code, out) =
        driver_test_with(&bundled_driver("hotmart"), dir.path(), &[], Some(no_grants));
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("ok      sales_history_first_poll (poll)"),
        "{out}"
    );

    let path = dir.path().join("sales_history_first_poll.poll.json");
    let mut fixture = read_json(&path);
    fixture["settings"] = json!({"api_base": "https://sales.example.test"});
    fixture["responses"][1]["url"] =
        json!("https://sales.example.test/payments/api/v1/sales/history");
    std::fs::write(&path, fixture.to_string()).unwrap();
    let (code, out) = driver_test(&bundled_driver("hotmart"), dir.path(), &[]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("FAIL    sales_history_first_poll (poll)"),
        "{out}"
    );
    assert!(
        out.contains("https://sales.example.test is not a granted origin"),
        "{out}"
    );
}

/// Run `cmd` to completion, killing it after `timeout`.
fn run_bounded(cmd: &mut Command, timeout: Duration) -> Output {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting cargo");
    let started = Instant::now();
    loop {
        if child.try_wait().expect("waiting for cargo").is_some() {
            return child.wait_with_output().expect("reading cargo's output");
        }
        if started.elapsed() > timeout {
            let _ = child.kill();
            let out = child.wait_with_output().expect("reading cargo's output");
            panic!(
                "cargo build did not finish in {timeout:?}:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_scaffolded_driver_builds_and_passes_its_fixture() {
    let Some(cargo) = require::wasm_toolchain() else {
        return;
    };
    let scratch = TempDir::new("sluice-author-new");
    let crate_dir = scratch.path().join("acme_new");
    let out = sluice_cli(scratch.path())
        .args(["driver", "new", "acme_new", "--dir"])
        .arg(&crate_dir)
        .arg("--sdk")
        .arg(workspace_root().join("sdk"))
        .output()
        .expect("running sluice driver new");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let manifest = std::fs::read_to_string(crate_dir.join("Cargo.toml")).unwrap();
    let sdk = workspace_root().join("sdk").canonicalize().unwrap();
    assert!(
        manifest.contains(&format!("sluice-sdk = {{ path = \"{}\" }}", sdk.display())),
        "{manifest}"
    );
    assert!(
        manifest.contains("name = \"sluice-driver-acme_new\""),
        "{manifest}"
    );

    // Not a directory that exists and has files.
    let again = sluice_cli(scratch.path())
        .args(["driver", "new", "acme_new", "--dir"])
        .arg(&crate_dir)
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("exists and is not empty"));

    // Built as its author would, outside this workspace, into the shared target dir.
    let target = scaffold_target();
    let built = run_bounded(
        Command::new(&cargo)
            .current_dir(&crate_dir)
            .args(["build", "--target", "wasm32-wasip2", "--profile", "driver"])
            .env("CARGO_TARGET_DIR", &target)
            .env_remove("RUSTFLAGS")
            .env_remove("CARGO_ENCODED_RUSTFLAGS"),
        SCAFFOLD_BUILD_TIMEOUT,
    );
    assert!(
        built.status.success(),
        "cargo build failed:\n{}",
        String::from_utf8_lossy(&built.stderr)
    );
    let wasm = target.join("wasm32-wasip2/driver/sluice_driver_acme_new.wasm");
    let (code, out) = driver_test(&wasm, &crate_dir.join("fixtures"), &[]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("ok      payment_succeeded (webhook)"), "{out}");

    // The snapshot it passes says what the body says: 19.99 usd at 09:30+01:00.
    let snapshot = read_json(&crate_dir.join("fixtures/payment_succeeded.snapshot.json"));
    let payment = &snapshot["events"][0]["records"][0];
    assert_eq!(payment["type"], "payment.succeeded");
    assert_eq!(
        payment["data"]["amount"],
        json!({"amount_minor": 1999, "currency": "USD"})
    );
    assert_eq!(payment["data"]["created_at"], "2026-01-01T08:30:00Z");
    assert_eq!(snapshot["events"][0]["provider_event_id"], "evt_0001");
}

#[test]
fn driver_new_refuses_bad_ids_and_a_missing_sdk() {
    let scratch = TempDir::new("sluice-author-new-bad");
    let run = |args: &[&str]| {
        let out = sluice_cli(scratch.path()).args(args).output().unwrap();
        assert!(!out.status.success(), "{args:?}");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    assert!(run(&["driver", "new", "Bad Id"]).contains("is not a driver id"));
    let nowhere = scratch.path().join("no-sdk");
    let err = run(&["driver", "new", "fine", "--sdk", nowhere.to_str().unwrap()]);
    assert!(
        err.contains("no Sluice SDK at") && err.contains("--sdk"),
        "{err}"
    );
    assert!(
        !scratch.path().join("fine").exists(),
        "nothing is written on a refusal"
    );
}
