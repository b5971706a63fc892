//! The quickstart, as a newcomer types it: the `sluice` operator commands against a running
//! server, from creating an installation to reading the normalized event.

use std::process::Output;

use serde_json::Value;
use sluice_testkit::{Backend, Sluice, both_backends, fixture, random_hex};

both_backends!(quickstart_through_the_cli => sqlite_quickstart_through_the_cli, postgres_quickstart_through_the_cli);

/// `sluice config print`: the configuration `serve` would run with, each value beside the
/// layer it came from (the file, a variable, an earlier name of one, a flag), secrets
/// redacted; a misspelt variable stops it with the variable named.
#[test]
fn config_print_shows_each_value_and_its_source() {
    let dir = sluice_testkit::TempDir::new("sluice-config-print");
    std::fs::write(
        dir.path().join("sluice.toml"),
        "[store]\ntimeout_ms = 9\n\n[delivery.nats]\nurl = \"nats://sluice:hunter2@127.0.0.1:4222\"\n",
    )
    .unwrap();
    let out = sluice_testkit::server::sluice_cli(dir.path())
        .args(["config", "print", "--listen", "127.0.0.1:9"])
        .env("SLUICE_SCHEDULER_TICK_MS", "750")
        .env("SLUICE_DB_TIMEOUT_MS", "5")
        .env("SLUICE_ADMIN_TOKEN", "sk_admin_not_for_printing")
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stderr}");
    // The line of `key` in the table `[table]` (`""`: the top of the file).
    let line = |table: &str, key: &str| {
        let mut current = String::new();
        for l in stdout.lines() {
            if let Some(name) = l.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                current = name.to_string();
            } else if current == table && l.starts_with(&format!("{key} = ")) {
                return l.to_string();
            }
        }
        panic!("no [{table}] {key} in:\n{stdout}")
    };
    // The environment is above the file, and an earlier name of a variable still counts
    // (with a warning).
    assert!(
        line("store", "timeout_ms").starts_with("timeout_ms = 5 "),
        "{stdout}"
    );
    assert!(
        line("store", "timeout_ms").ends_with("# SLUICE_DB_TIMEOUT_MS"),
        "{stdout}"
    );
    assert!(
        stderr.contains("SLUICE_DB_TIMEOUT_MS is a deprecated name of SLUICE_STORE_TIMEOUT_MS"),
        "{stderr}"
    );
    assert!(
        line("scheduler", "tick_ms").starts_with("tick_ms = 750 "),
        "{stdout}"
    );
    assert!(
        line("", "listen").starts_with("listen = \"127.0.0.1:9\""),
        "{stdout}"
    );
    assert!(line("", "listen").ends_with("# --listen"), "{stdout}");
    assert!(
        line("delivery.nats", "url").ends_with("# sluice.toml"),
        "{stdout}"
    );
    assert!(line("", "admin_token").contains("[redacted]"), "{stdout}");
    // Untouched values say so.
    assert!(
        line("server", "commit_timeout_ms").ends_with("# default"),
        "{stdout}"
    );
    for secret in ["hunter2", "sk_admin_not_for_printing"] {
        assert!(!stdout.contains(secret), "{secret} printed:\n{stdout}");
    }
    // What it prints is a configuration file `serve` would read.
    let reparsed: toml::Table = toml::from_str(&stdout).unwrap();
    assert_eq!(reparsed["scheduler"]["tick_ms"].as_integer(), Some(750));

    let typo = sluice_testkit::server::sluice_cli(dir.path())
        .args(["config", "print"])
        .env("SLUICE_STORE_TIMEOUT", "5")
        .output()
        .unwrap();
    assert!(!typo.status.success());
    let stderr = String::from_utf8_lossy(&typo.stderr);
    assert!(
        stderr.contains("SLUICE_STORE_TIMEOUT (no key of [store])"),
        "{stderr}"
    );
}

fn run(sluice: &Sluice, args: &[&str], stdin: Option<&str>) -> Output {
    sluice.cli(args, stdin)
}

fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

async fn quickstart_through_the_cli(backend: Backend) {
    let Some(sluice) = Sluice::start(backend).await else {
        return;
    };
    let created = json(&run(
        &sluice,
        &[
            "installations",
            "create",
            "--driver",
            "stripe",
            "--id",
            "inst_cli",
        ],
        None,
    ));
    assert_eq!(created["installation_id"], "inst_cli");
    assert_eq!(
        created["secrets_missing"],
        serde_json::json!(["webhook_secret"])
    );

    let secret = format!("whsec_{}", random_hex());
    // From stdin, as the README recommends (keeps it out of shell history).
    run(
        &sluice,
        &["secrets", "set", "inst_cli", "webhook_secret"],
        Some(&format!("{secret}\n")),
    );

    let payload = fixture("stripe/stripe_event_charge_succeeded.json");
    let payload = payload.to_str().unwrap();
    let send = [
        "webhook",
        "send",
        "--installation",
        "inst_cli",
        "--secret",
        &secret,
        "--file",
        payload,
    ];
    let sent = run(&sluice, &send, None);
    assert!(String::from_utf8_lossy(&sent.stdout).contains(r#"{"accepted":1,"duplicates":0}"#));
    let again = run(&sluice, &send, None);
    assert!(String::from_utf8_lossy(&again.stdout).contains(r#""duplicates":1"#));

    let listed = json(&run(&sluice, &["installations", "list"], None));
    assert_eq!(
        listed["installations"][0]["secrets"],
        serde_json::json!(["webhook_secret"])
    );
    let events = json(&run(
        &sluice,
        &["events", "list", "--installation", "inst_cli"],
        None,
    ));
    let events = events["events"].as_array().unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["type"], "payment.succeeded");
    assert_eq!(events[0]["data"]["amount"]["amount_minor"], 100);

    run(&sluice, &["installations", "delete", "inst_cli"], None);
    let listed = json(&run(&sluice, &["installations", "list"], None));
    assert_eq!(listed["installations"], serde_json::json!([]));
}
