//! A driver that loops in `poll` is stopped at its deadline, as in every other export, and
//! the runtime's next call to it works.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use sluice::limits::SandboxConfig;
use sluice::runtime::CallError;
use sluice::wit::types::CallContext;

use super::harness;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poll_that_never_returns_is_cut_off_at_its_deadline() {
    let limits = SandboxConfig {
        webhook_timeout_ms: 300,
        ..SandboxConfig::default()
    };
    let (runtime, driver) = harness::load_test_driver_with("faulty", limits).await;
    let poll = |mode: &str| {
        let scope =
            harness::fixed_scope(&driver, "inst_faulty_poll", HashMap::new(), HashMap::new());
        let ctx = CallContext {
            installation_id: "inst_faulty_poll".into(),
            settings: format!(r#"{{"mode":"{mode}"}}"#),
        };
        let runtime = &runtime;
        let driver = &driver;
        async move {
            let mut session = runtime.session(driver, scope).await?;
            session.poll(&ctx, None).await
        }
    };
    let started = Instant::now();
    let looped = poll("loop").await;
    let elapsed = started.elapsed();
    assert!(matches!(looped, Err(CallError::Timeout)), "{looped:?}");
    assert!(elapsed >= Duration::from_millis(300), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
    // The next call runs in a fresh instance and answers as the driver does.
    let next = poll("ok").await;
    assert!(
        matches!(&next, Err(CallError::Driver(e)) if sluice::runtime::describe_driver_error(e).contains("webhook-only")),
        "{next:?}"
    );
}
