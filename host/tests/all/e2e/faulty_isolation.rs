//! A driver that traps, loops forever, floods the host or exhausts its memory fails only
//! its own call:
//! nothing is stored for it, and the Stripe installation beside it keeps working.

use std::time::{Duration, Instant};

use serde_json::json;
use sluice_testkit::{Backend, Sluice, both_backends, stripe_charge_variant};

both_backends!(faulty_calls_fail_alone => sqlite_faulty_calls_fail_alone, postgres_faulty_calls_fail_alone);
both_backends!(out_of_memory_fails_alone => sqlite_out_of_memory_fails_alone, postgres_out_of_memory_fails_alone);
both_backends!(faulty_refusals_and_failed_normalization => sqlite_faulty_refusals_and_failed_normalization, postgres_faulty_refusals_and_failed_normalization);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_policy_limits_one_driver_and_not_the_others() {
    policy_limits(Backend::Sqlite).await;
}

/// The host's default deadline is 2 s per delivery; allow generous slack on a busy machine.
const LOOP_BOUND: Duration = Duration::from_secs(10);

async fn faulty(sluice: &Sluice, mode: &str) -> String {
    let inst = sluice
        .create_installation("faulty", json!({"mode": mode}))
        .await;
    inst["installation_id"].as_str().unwrap().to_string()
}

fn body(id: &str) -> Vec<u8> {
    format!(r#"{{"id":"{id}","note":"faulty e2e"}}"#).into_bytes()
}

async fn faulty_calls_fail_alone(backend: Backend) {
    let Some(sluice) = Sluice::start(backend).await else {
        return;
    };
    let (stripe, secret) = sluice.stripe_installation().await;
    let trap = faulty(&sluice, "trap").await;
    let looping = faulty(&sluice, "loop").await;
    let huge = faulty(&sluice, "huge-output").await;
    let mut accepted = 0;

    let resp = sluice.post_webhook(&trap, &[], body("evt_trap")).await;
    resp.expect_status(500);
    assert_eq!(resp.error_code(), Some("driver_failed"), "{}", resp.text);

    let payload = stripe_charge_variant("evt_e2e_after_trap", "ch_e2e_after_trap", "usd", 100);
    sluice
        .post_stripe(&stripe, &secret, &payload)
        .await
        .expect_status(200);
    accepted += 1;

    // The loop runs while a Stripe delivery is handled beside it: the Stripe delivery
    // completes while the looping call is still running, not after the loop is cut off.
    let started = Instant::now();
    let (looped, during) = tokio::join!(
        async {
            let resp = sluice.post_webhook(&looping, &[], body("evt_loop")).await;
            (resp, Instant::now())
        },
        async {
            // Start once the loop is under way.
            tokio::time::sleep(Duration::from_millis(200)).await;
            let payload =
                stripe_charge_variant("evt_e2e_during_loop", "ch_e2e_during_loop", "usd", 200);
            let resp = sluice.post_stripe(&stripe, &secret, &payload).await;
            (resp, Instant::now())
        }
    );
    let ((looped, loop_done), (during, during_done)) = (looped, during);
    let elapsed = loop_done - started;
    looped.expect_status(500);
    assert_eq!(
        looped.error_code(),
        Some("driver_failed"),
        "{}",
        looped.text
    );
    assert!(
        elapsed < LOOP_BOUND,
        "the looping driver held the request for {elapsed:?}"
    );
    during.expect_status(200);
    assert!(
        during_done < loop_done,
        "the Stripe delivery finished {:?} after the loop was cut off",
        during_done - loop_done
    );
    accepted += 1;
    assert!(
        sluice.log().contains("the driver exceeded its time budget"),
        "the loop was not stopped by the deadline"
    );

    // 10,000 events of 1 KiB: over the 8 MiB output cap, and refused while the host lifts
    // the result, before it has allocated twice the cap for it.
    let resp = sluice.post_webhook(&huge, &[], body("evt_huge")).await;
    resp.expect_status(500);
    assert_eq!(resp.error_code(), Some("driver_failed"), "{}", resp.text);
    let log = sluice.log();
    assert!(
        log.contains("the driver returned too much output (limit 8388608 bytes)"),
        "the huge output was not refused by the output cap"
    );
    assert!(
        log.contains("driver output stopped while lifting"),
        "the huge output was copied into the host before it was refused"
    );

    // And afterwards.
    let payload = stripe_charge_variant("evt_e2e_after_all", "ch_e2e_after_all", "usd", 300);
    sluice
        .post_stripe(&stripe, &secret, &payload)
        .await
        .expect_status(200);
    accepted += 1;

    for inst in [&trap, &looping, &huge] {
        let events = sluice.events(inst).await;
        assert!(events.is_empty(), "{inst} stored {events:#?}");
    }
    assert_eq!(sluice.events(&stripe).await.len(), accepted);
    sluice
        .admin(reqwest::Method::GET, "/readyz", None)
        .await
        .expect_status(200);
}

/// `oom` allocates and touches 200 MiB; the host caps a driver's memory at 64 MiB.
async fn out_of_memory_fails_alone(backend: Backend) {
    let Some(sluice) = Sluice::start(backend).await else {
        return;
    };
    let (stripe, secret) = sluice.stripe_installation().await;
    let oom = faulty(&sluice, "oom").await;

    let resp = sluice.post_webhook(&oom, &[], body("evt_oom")).await;
    resp.expect_status(500);
    assert_eq!(resp.error_code(), Some("driver_failed"), "{}", resp.text);
    // The limit stopped it (the allocation failed and the guest aborted), not the
    // driver's own report of having touched it all. The reason is in the log; whoever
    // posted the webhook gets a generic answer.
    let log = sluice.log();
    assert!(log.contains("trapped"), "{log}");
    assert!(
        !log.contains("allocated and read"),
        "the driver used 200 MiB: {log}"
    );
    assert!(!resp.text.contains("trapped"), "{}", resp.text);
    assert!(sluice.events(&oom).await.is_empty());

    let payload = stripe_charge_variant("evt_e2e_after_oom", "ch_e2e_after_oom", "usd", 100);
    sluice
        .post_stripe(&stripe, &secret, &payload)
        .await
        .expect_status(200);
    assert_eq!(sluice.events(&stripe).await.len(), 1);
}

async fn faulty_refusals_and_failed_normalization(backend: Backend) {
    let Some(sluice) = Sluice::start(backend).await else {
        return;
    };

    // Control: in `ok` mode the faulty driver works, so the failures above are its modes.
    let ok = faulty(&sluice, "ok").await;
    let resp = sluice.post_webhook(&ok, &[], body("evt_ok")).await;
    resp.expect_status(200);
    assert_eq!(resp.json, json!({"accepted": 1, "duplicates": 0}));
    let events = sluice.events(&ok).await;
    assert_eq!(events.len(), 1, "{events:#?}");
    assert_eq!(events[0]["sluiceprovidereventid"], "evt_ok");
    assert_eq!(events[0]["sluicedriver"], "faulty");
    assert_eq!(events[0]["type"], "unmapped.faulty.event");
    // No `id` in the body: the driver calls it a bad request.
    let resp = sluice
        .post_webhook(&ok, &[], br#"{"note":"no id"}"#.to_vec())
        .await;
    resp.expect_status(400);
    assert_eq!(resp.error_code(), Some("bad_request"), "{}", resp.text);

    let bad = faulty(&sluice, "bad-request").await;
    let resp = sluice.post_webhook(&bad, &[], body("evt_bad")).await;
    resp.expect_status(400);
    assert_eq!(resp.error_code(), Some("bad_request"), "{}", resp.text);

    let unauthorized = faulty(&sluice, "unauthorized").await;
    let resp = sluice
        .post_webhook(&unauthorized, &[], body("evt_unauth"))
        .await;
    resp.expect_status(401);
    assert_eq!(resp.error_code(), Some("unauthorized"), "{}", resp.text);

    // A normalization error keeps the raw event (state `failed`) and acknowledges the
    // delivery, but no normalized event is published.
    let failing = faulty(&sluice, "normalize-error").await;
    let resp = sluice.post_webhook(&failing, &[], body("evt_norm")).await;
    resp.expect_status(200);
    // The raw event was kept: the same delivery again is a duplicate, not a new event.
    let resp = sluice.post_webhook(&failing, &[], body("evt_norm")).await;
    resp.expect_status(200);
    assert_eq!(resp.json["duplicates"], 1, "{}", resp.text);

    for inst in [&bad, &unauthorized, &failing] {
        let events = sluice.events(inst).await;
        assert!(events.is_empty(), "{inst} published {events:#?}");
    }
    assert_eq!(sluice.events(&ok).await.len(), 1);
}

/// `[drivers.faulty]` limits: a 300 ms deadline, one instance at a time, 8 MiB of memory.
/// Its loops are cut at its own deadline, a second one waits for its one slot and is
/// refused (`503 overloaded`), and Stripe, under the `[sandbox]` values, is served all
/// along. The sandbox's deadline is set a hundred times longer than faulty's, so which of
/// the two cut a loop is plain however loaded the machine is.
async fn policy_limits(backend: Backend) {
    let Some(mut sluice) = Sluice::start(backend).await else {
        return;
    };
    std::fs::write(
        sluice.dir().join("sluice.toml"),
        "[sandbox]\nwebhook_timeout_ms = 30000\n\n[drivers.faulty]\ntimeout_ms = 300\nmax_concurrent_instances = 1\nmax_memory_bytes = 8388608\n",
    )
    .unwrap();
    sluice.restart().await;
    let faulty_limits = &sluice.driver_info("faulty").await["limits"];
    assert_eq!(faulty_limits["timeout_ms"], 300);
    assert_eq!(faulty_limits["max_concurrent_instances"], 1);
    assert_eq!(faulty_limits["max_memory_bytes"], 8_388_608);
    let stripe_limits = &sluice.driver_info("stripe").await["limits"];
    assert_eq!(stripe_limits["timeout_ms"], 30_000);
    assert_eq!(stripe_limits["max_concurrent_instances"], 48);

    let (stripe, secret) = sluice.stripe_installation().await;
    let looping = faulty(&sluice, "loop").await;
    let ok = faulty(&sluice, "ok").await;
    // Still enough memory for an ordinary call.
    sluice
        .post_webhook(&ok, &[], body("evt_small"))
        .await
        .expect_status(200);

    let started = Instant::now();
    let resp = sluice.post_webhook(&looping, &[], body("evt_loop_1")).await;
    let took = started.elapsed();
    resp.expect_status(500);
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_secs(15),
        "cut after {took:?}, not at its own 300 ms deadline (the sandbox's is 30 s)"
    );

    // Six loops at once: one runs, the others wait for faulty's one slot. Each holds it
    // for 300 ms and a call waits at most 1 s, so the last ones are refused.
    let (a, b, c, d, e, f, stripe_resp) = tokio::join!(
        sluice.post_webhook(&looping, &[], body("evt_loop_2")),
        sluice.post_webhook(&looping, &[], body("evt_loop_3")),
        sluice.post_webhook(&looping, &[], body("evt_loop_4")),
        sluice.post_webhook(&looping, &[], body("evt_loop_5")),
        sluice.post_webhook(&looping, &[], body("evt_loop_6")),
        sluice.post_webhook(&looping, &[], body("evt_loop_7")),
        async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let payload =
                stripe_charge_variant("evt_e2e_beside_limits", "ch_e2e_beside_limits", "usd", 100);
            sluice.post_stripe(&stripe, &secret, &payload).await
        }
    );
    stripe_resp.expect_status(200);
    let statuses: Vec<u16> = [a, b, c, d, e, f]
        .iter()
        .map(|r| r.status.as_u16())
        .collect();
    assert!(
        statuses.iter().all(|s| *s == 500 || *s == 503),
        "{statuses:?}"
    );
    assert!(statuses.contains(&500), "{statuses:?}");
    assert!(
        statuses.contains(&503),
        "none waited for the driver's one slot: {statuses:?}"
    );
    assert_eq!(sluice.events(&stripe).await.len(), 1);
    assert!(sluice.events(&looping).await.is_empty());
}
