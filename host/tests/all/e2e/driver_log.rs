//! `log.enabled` (since `sluice:driver@0.6.1`): a driver learns whether the host would keep
//! a message, from the operator's filter for driver messages and the call's log budget.

use serde_json::json;
use sluice_testkit::{Backend, Sluice};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_enabled_answers_from_the_filter_and_the_budget() {
    // Host lines at `info` and up, driver lines only at `warn` and up.
    let Some(sluice) = Sluice::start_with_env(
        Backend::Sqlite,
        &[("SLUICE_LOG", "info,sluice=trace,sluice::driver=warn")],
    )
    .await
    else {
        return;
    };
    let inst = sluice
        .create_installation("faulty", json!({"mode": "log-enabled"}))
        .await;
    let id = inst["installation_id"].as_str().expect("installation id");

    let resp = sluice
        .post_webhook(id, &[], br#"{"id":"evt_log_enabled"}"#.to_vec())
        .await;
    resp.expect_status(200);
    // Trace, debug, info, warn, error: the filter's answer, then none once the driver has
    // logged the 100 messages a call may (filtered ones count too).
    assert_eq!(
        resp.json,
        json!({
            "before": [false, false, false, true, true],
            "spent": [false, false, false, false, false],
        }),
        "{}",
        resp.text
    );
    assert_eq!(sluice.provider_event_ids(id).await, ["evt_log_enabled"]);
    // The 100 trace messages were dropped by the filter.
    assert!(
        !sluice.log().contains("spending the log budget"),
        "a filtered driver message was logged"
    );
}
