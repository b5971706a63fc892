//! The webhook pipeline: verify → handle → normalize in one sandbox instance, then commit
//! raw events, normalized events and driver state in one transaction.
//!
//! Nothing is written before the driver has finished, so a trap, a timeout or a refusal
//! leaves no trace, and the provider (which gets a non-2xx) retries.

use std::sync::Arc;

use rand::Rng;
use serde_json::{Value, json};
use sluice_store::{Delivery, IngestedEvent, Installation, NewEvent, NormalizeOutcome, Store};

use crate::canonical;
use crate::capabilities::{SecretSource, StateSource};
use crate::runtime::types::{CallContext, DriverError, IncomingRequest, RawEvent};
use crate::runtime::{CallError, LoadedDriver, Runtime, Session};

/// Why a delivery was not accepted, by what the provider should be told.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    /// The driver refused the signature, token or timestamp (`401`).
    #[error("{0}")]
    Unauthorized(String),
    /// The payload cannot be understood (`400`).
    #[error("{0}")]
    BadRequest(String),
    /// No sandbox slot free (`503`).
    #[error("every sandbox slot is busy")]
    Overloaded,
    /// The installation cannot take deliveries yet, e.g. its signing secret is not set
    /// (`503`: the provider retries, and succeeds once the operator has fixed it).
    #[error("{0}")]
    NotReady(String),
    /// The driver trapped, timed out or misbehaved (`500`, provider retries).
    #[error("{0}")]
    DriverFailed(String),
    /// The commit failed (`500`, provider retries).
    #[error("storage: {0}")]
    Storage(#[from] sluice_store::StoreError),
}

impl From<CallError> for DeliveryError {
    fn from(e: CallError) -> Self {
        match e {
            CallError::Overloaded => DeliveryError::Overloaded,
            CallError::Driver(DriverError::Unauthorized(m)) => DeliveryError::Unauthorized(m),
            CallError::Driver(DriverError::BadRequest(m)) => DeliveryError::BadRequest(m),
            CallError::Driver(DriverError::InvalidSettings(m)) => DeliveryError::NotReady(m),
            other => DeliveryError::DriverFailed(other.to_string()),
        }
    }
}

/// What an accepted delivery produced.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Accepted {
    /// Raw events newly stored.
    pub accepted: usize,
    /// Raw events already stored by an earlier delivery.
    pub duplicates: usize,
    /// The reply the driver asked for instead of the default one.
    #[serde(skip)]
    pub reply: Option<crate::runtime::ingest::WebhookReply>,
}

/// One normalized raw event, ready for the store.
pub struct Processed {
    pub raw: RawEvent,
    pub outcome: Result<Vec<canonical::Rendered>, String>,
}

/// Run verify → handle → normalize for one request. Shared by the server and
/// `sluice driver test`.
pub async fn process(
    session: &mut Session,
    ctx: &CallContext,
    request: &IncomingRequest,
) -> Result<(Vec<Processed>, Option<crate::runtime::ingest::WebhookReply>), CallError> {
    session.verify_webhook(ctx, request).await?;
    let outcome = session.handle_webhook(ctx, request).await?;
    let mut processed = Vec::with_capacity(outcome.events.len());
    for raw in outcome.events {
        let result = match session.normalize(ctx, &raw).await? {
            Ok(records) => records
                .iter()
                .map(|r| canonical::render(r, &raw.event_type))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| e.to_string()),
            Err(e) => Err(crate::runtime::describe_driver_error(&e)),
        };
        if let Ok(rendered) = &result {
            let size = rendered
                .iter()
                .map(|r| canonical::approx_json_size(&r.data))
                .sum();
            session.charge_output(size)?;
        }
        processed.push(Processed {
            raw,
            outcome: result,
        });
    }
    Ok((processed, outcome.reply))
}

/// Deliver one webhook request to an installation and commit what it produced.
pub async fn deliver(
    runtime: &Runtime,
    store: &Store,
    driver: &Arc<LoadedDriver>,
    installation: &Installation,
    request: IncomingRequest,
) -> Result<Accepted, DeliveryError> {
    let id = installation.id.as_str();
    let scope = driver.scope(
        id,
        SecretSource::Store {
            store: store.clone(),
            installation: installation.id.clone(),
        },
        StateSource::Store {
            store: store.clone(),
            installation: installation.id.clone(),
        },
    );
    let ctx = CallContext {
        installation_id: id.to_string(),
        settings: installation.settings.to_string(),
    };
    let mut session = runtime
        .session(driver, scope, runtime.limits().webhook_timeout())
        .await?;
    let (processed, reply) = process(&mut session, &ctx, &request).await?;
    // Release the sandbox slot before waiting on the database.
    let writes = session.finish();

    if processed.is_empty() && writes.state.is_empty() && writes.secrets.is_empty() {
        // Acknowledged, nothing to keep (e.g. a topic the installation does not store).
        return Ok(Accepted {
            accepted: 0,
            duplicates: 0,
            reply,
        });
    }
    let received_at =
        canonical::rfc3339(&runtime.capabilities().clock.now_datetime()).unwrap_or_default();
    let events = processed
        .into_iter()
        .map(|p| ingested(p, installation, &driver.info, &received_at))
        .collect();
    let outcome = store
        .commit_delivery(Delivery {
            installation_id: installation.id.clone(),
            driver_id: driver.info.id.clone(),
            driver_version: driver.info.version.clone(),
            received_at,
            events,
            state_writes: writes.state,
            secret_writes: writes.secrets,
        })
        .await?;
    Ok(Accepted {
        accepted: outcome.stored,
        duplicates: outcome.duplicates,
        reply,
    })
}

/// Wrap rendered records in CloudEvents and pair them with their raw event.
fn ingested(
    p: Processed,
    installation: &Installation,
    info: &crate::runtime::DriverInfo,
    received_at: &str,
) -> IngestedEvent {
    let time = p
        .raw
        .occurred_at
        .as_ref()
        .and_then(|t| canonical::rfc3339(t).ok())
        .unwrap_or_else(|| received_at.to_string());
    let outcome = match p.outcome {
        Ok(rendered) => NormalizeOutcome::Normalized(
            rendered
                .into_iter()
                .map(|r| {
                    let event_id = new_event_id();
                    let cloud_event = cloud_event(&event_id, &r, &p.raw, installation, info, &time);
                    NewEvent {
                        event_id,
                        event_type: r.event_type,
                        subject: r.subject,
                        time: time.clone(),
                        cloud_event,
                    }
                })
                .collect(),
        ),
        Err(reason) => {
            tracing::warn!(installation = %installation.id, provider_event_id = %p.raw.provider_event_id, %reason, "normalization failed; kept as dead letter");
            NormalizeOutcome::Failed { reason }
        }
    };
    IngestedEvent {
        provider_event_id: p.raw.provider_event_id,
        event_type: p.raw.event_type,
        account_key: p.raw.account_key,
        payload: p.raw.payload,
        outcome,
    }
}

fn cloud_event(
    id: &str,
    r: &canonical::Rendered,
    raw: &RawEvent,
    installation: &Installation,
    info: &crate::runtime::DriverInfo,
    time: &str,
) -> Value {
    json!({
        "specversion": "1.0",
        "id": id,
        "source": format!("/sluice/installations/{}", installation.id),
        "type": r.event_type,
        "subject": r.subject,
        "time": time,
        "datacontenttype": "application/json",
        "sluiceinstallation": installation.id.as_str(),
        "sluicedriver": info.id,
        "sluicedriverversion": info.version,
        "sluiceprovidereventid": raw.provider_event_id,
        "sluiceprovidereventtype": raw.event_type,
        "data": r.data,
    })
}

/// `evt_` and 26 random base32 characters (130 bits).
fn new_event_id() -> String {
    const ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";
    let mut rng = rand::thread_rng();
    let suffix: String = (0..26)
        .map(|_| ALPHABET[rng.gen_range(0..32)] as char)
        .collect();
    format!("evt_{suffix}")
}
