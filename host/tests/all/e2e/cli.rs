//! The quickstart, as a newcomer types it: the `sluice` operator commands against a running
//! server, from creating an installation to reading the normalized event.

use std::process::Output;

use serde_json::Value;
use sluice_testkit::{Backend, Sluice, both_backends, fixture, random_hex};

both_backends!(quickstart_through_the_cli => sqlite_quickstart_through_the_cli, postgres_quickstart_through_the_cli);

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
