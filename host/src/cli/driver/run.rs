//! One run of a driver on given inputs, with no server and no database: a webhook delivery
//! (verify → handle → normalize, as the pipeline runs it) or a walk of poll pages, printed
//! as one JSON document. Shared by `sluice driver test` and its `--fixtures` mode.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde_json::{Value, json};
use sluice_store::{InstallationId, StateWrite, Writes};

use crate::capabilities::recorded::RecordedHttp;
use crate::capabilities::secrets::SecretValue;
use crate::capabilities::{Clock, DataSource, FixedData};
use crate::pipeline::{self, Received};
use crate::runtime::{CallError, LoadedDriver, Runtime};
use crate::scheduler::{self, CURSOR_KEY};
use crate::wit::types::{CallContext, DriverError, IncomingRequest};

/// The installation every run acts for.
pub const INSTALLATION: &str = "inst_driver_test";

/// What a run starts from.
pub struct Inputs {
    pub settings: Value,
    pub secrets: HashMap<String, Vec<u8>>,
    pub state: HashMap<String, Vec<u8>>,
    /// Recorded answers for outbound requests; `None`: the network, as configured.
    pub http: Option<Arc<RecordedHttp>>,
    /// The clock of the run's calls; `None`: the runtime's.
    pub clock: Option<Clock>,
}

/// A loaded driver and the runtime it runs in.
pub struct Harness {
    pub runtime: Runtime,
    pub driver: Arc<LoadedDriver>,
}

/// What a run's calls wrote, accumulated over its sessions.
#[derive(Default)]
struct Written {
    /// Driver state as the run left it: `None` for a deleted key.
    state: BTreeMap<String, Option<Vec<u8>>>,
    /// Names of the secrets the host captured (never their values).
    captured: Vec<String>,
}

impl Written {
    fn absorb(&mut self, writes: Writes, inputs: &mut Inputs) {
        for write in writes.state {
            match write {
                StateWrite::Set { key, value } => {
                    inputs.state.insert(key.clone(), value.clone());
                    self.state.insert(key, Some(value));
                }
                StateWrite::Delete { key } => {
                    inputs.state.remove(&key);
                    self.state.insert(key, None);
                }
            }
        }
        for (name, value) in writes.secrets {
            inputs.secrets.insert(name.clone(), value.expose().to_vec());
            if !self.captured.contains(&name) {
                self.captured.push(name);
            }
        }
    }

    /// Add what was written (and the requests made) to `out`, when there is any.
    fn report(&self, out: &mut Value, http: Option<&RecordedHttp>) {
        if !self.state.is_empty() {
            out["state"] = self
                .state
                .iter()
                .map(|(k, v)| (k.clone(), v.as_deref().map_or(Value::Null, state_text)))
                .collect::<serde_json::Map<_, _>>()
                .into();
        }
        if !self.captured.is_empty() {
            out["captured_secrets"] = self.captured.clone().into();
        }
        if let Some(http) = http {
            out["requests"] = http
                .exchanges()
                .into_iter()
                .map(|e| json!({"method": e.method, "url": e.url, "status": e.status}))
                .collect();
        }
    }
}

/// A state value as text, or `{"hex": …}` when it is not UTF-8.
fn state_text(value: &[u8]) -> Value {
    match std::str::from_utf8(value) {
        Ok(text) => text.into(),
        Err(_) => json!({"hex": hex::encode(value)}),
    }
}

impl Inputs {
    fn data(&self) -> DataSource {
        DataSource::Fixed(Arc::new(FixedData {
            secrets: self
                .secrets
                .iter()
                .map(|(k, v)| (k.clone(), SecretValue::new(v.clone())))
                .collect(),
            state: self.state.clone(),
            http: self.http.clone(),
            clock: self.clock.clone(),
        }))
    }

    fn context(&self) -> CallContext {
        CallContext {
            installation_id: INSTALLATION.into(),
            settings: self.settings.to_string(),
        }
    }
}

impl Harness {
    /// `Some(refusal)` when the settings do not match the driver's schema.
    fn check_settings(&self, settings: &Value) -> Option<Value> {
        self.driver.validate_settings(settings).err().map(|violations| {
            json!({"ok": false, "error": {"code": "invalid_settings", "message": "settings do not match the schema", "details": violations}})
        })
    }

    fn installation() -> InstallationId {
        // A constant that satisfies the id rules.
        InstallationId::parse(INSTALLATION).unwrap_or_else(|_| unreachable!())
    }

    /// One webhook delivery.
    pub async fn webhook(&self, mut inputs: Inputs, request: IncomingRequest) -> Value {
        if let Some(refused) = self.check_settings(&inputs.settings) {
            return refused;
        }
        let scope = self.driver.scope(&Self::installation(), inputs.data());
        let ctx = inputs.context();
        let result = async {
            let mut session = self.runtime.session(&self.driver, scope).await?;
            let received = pipeline::process(&mut session, &ctx, &request).await?;
            Ok::<_, CallError>((received, session.finish()))
        }
        .await;
        let mut written = Written::default();
        let mut out = match result {
            Ok((received, writes)) => {
                written.absorb(writes, &mut inputs);
                let mut out = json!({"ok": true, "reply": received.reply.as_ref().map(|r| json!({
                    "status": r.status,
                    "content_type": r.content_type,
                    "body": String::from_utf8_lossy(&r.body),
                }))});
                out["events"] = events(&received);
                if let Some(reason) = received.revoked {
                    out["revokes_authorization"] = reason.into();
                }
                out
            }
            Err(e) => refusal(&e),
        };
        written.report(&mut out, inputs.http.as_deref());
        out
    }

    /// Poll from `cursor`, page after page while the driver says `has_more`, at most
    /// `max_pages`; each page in a session of its own, the state and captured secrets of one
    /// page there for the next, as the pipeline does.
    pub async fn poll(
        &self,
        mut inputs: Inputs,
        mut cursor: Option<String>,
        max_pages: usize,
    ) -> Value {
        if let Some(refused) = self.check_settings(&inputs.settings) {
            return refused;
        }
        let ctx = inputs.context();
        let mut written = Written::default();
        let mut pages = Vec::new();
        let mut failure = None;
        for _ in 0..max_pages {
            if let Some(c) = &cursor {
                inputs
                    .state
                    .insert(CURSOR_KEY.into(), c.clone().into_bytes());
            }
            let scope = self.driver.scope(&Self::installation(), inputs.data());
            let result = async {
                let mut session = self.runtime.session(&self.driver, scope).await?;
                let page = scheduler::poll_page(&mut session, &ctx, cursor.as_deref()).await?;
                let meta = (page.next_cursor, page.has_more, page.retry_after_ms);
                let received = pipeline::render_outcome(&mut session, page.outcome)?;
                Ok::<_, CallError>((received, meta, session.finish()))
            }
            .await;
            let (received, (next_cursor, has_more, retry_after_ms), writes) = match result {
                Ok(page) => page,
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            };
            written.absorb(writes, &mut inputs);
            pages.push(json!({
                "cursor": cursor,
                "events": events(&received),
                "next_cursor": next_cursor,
                "has_more": has_more,
                "retry_after_ms": retry_after_ms,
            }));
            if next_cursor.is_some() {
                cursor = next_cursor;
            }
            if !has_more || retry_after_ms.is_some() {
                break;
            }
        }
        let mut out = match &failure {
            None => json!({"ok": true}),
            // As the pipeline takes it: not a failure, a wait before the next poll.
            Some(CallError::Driver(DriverError::RateLimited(r))) => json!({
                "ok": true,
                "retry_after_ms": r.retry_after_ms,
                "rate_limited": r.message,
            }),
            Some(e) => refusal(e),
        };
        out["pages"] = pages.into();
        written.report(&mut out, inputs.http.as_deref());
        out
    }
}

/// The events of a delivery or page, as printed.
fn events(received: &Received) -> Value {
    received
        .processed
        .iter()
        .map(|p| {
            let occurred_at = p
                .raw
                .occurred_at
                .as_ref()
                .and_then(|t| crate::canonical::rfc3339(t).ok());
            let mut event = json!({
                "provider_event_id": p.raw.provider_event_id,
                "event_type": p.raw.event_type,
                "account_key": p.raw.account_key,
                "occurred_at": occurred_at,
                "api_version": p.raw.api_version,
            });
            match &p.outcome {
                Ok(records) => {
                    event["records"] = records
                        .iter()
                        .map(
                            |r| json!({"type": r.event_type, "subject": r.subject, "data": r.data}),
                        )
                        .collect()
                }
                Err(reason) => event["error"] = reason.clone().into(),
            }
            event
        })
        .collect()
}

fn refusal(e: &CallError) -> Value {
    json!({"ok": false, "error": {"code": error_code(e), "message": e.to_string()}})
}

fn error_code(e: &CallError) -> &'static str {
    match e {
        CallError::Driver(DriverError::Unauthorized(_)) => "unauthorized",
        CallError::Driver(DriverError::BadRequest(_)) => "bad_request",
        CallError::Driver(_) => "driver_error",
        CallError::Timeout => "timeout",
        CallError::Trap(_) => "trap",
        CallError::OutputTooLarge(_) => "output_too_large",
        CallError::InvalidOutput(_) => "invalid_output",
        CallError::Overloaded => "overloaded",
    }
}
