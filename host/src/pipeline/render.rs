//! Rendering what a driver call produced: each raw event with its canonical records (or
//! the reason it has none), charged to the call's output cap, and paired for the store.
//! Shared by webhooks, polls and `sluice driver test`.

use sluice_store::{EventId, IngestedEvent, InstallationId, NewEvent, NormalizeOutcome};

use crate::canonical;
use crate::runtime::{CallError, Session};
use crate::wit::ingest::{WebhookOutcome, WebhookReply};
use crate::wit::types::{CallContext, IncomingRequest, RawEvent};

/// One normalized raw event, ready for the store.
pub struct Processed {
    pub raw: RawEvent,
    pub outcome: Result<Vec<canonical::Rendered>, String>,
}

/// What one webhook delivery made, rendered.
pub struct Received {
    pub processed: Vec<Processed>,
    pub reply: Option<WebhookReply>,
    /// The delivery revokes the installation's authorization, for this reason.
    pub revoked: Option<String>,
}

/// Run one webhook request through the driver (`receive`: verify, raw events, records)
/// and render its records. Shared by the pipeline and `sluice driver test`.
pub async fn process(
    session: &mut Session,
    ctx: &CallContext,
    request: &IncomingRequest,
) -> Result<Received, CallError> {
    let outcome = session.receive(ctx, request).await?;
    render(outcome, |bytes| session.charge_output(bytes))
}

/// Render what a poll page (or a delivery) produced, charged to `session`'s output cap.
pub fn render_outcome(
    session: &mut Session,
    outcome: WebhookOutcome,
) -> Result<Received, CallError> {
    render(outcome, |bytes| session.charge_output(bytes))
}

/// Render what a delivery produced, charging the rendered size with `charge`.
pub fn render(
    outcome: WebhookOutcome,
    mut charge: impl FnMut(usize) -> Result<(), CallError>,
) -> Result<Received, CallError> {
    let mut processed = Vec::with_capacity(outcome.events.len());
    if let Some(reply) = &outcome.reply {
        check_reply(reply)?;
    }
    for event in outcome.events {
        let raw = event.raw;
        check_raw(&raw)?;
        let result = match event.records {
            Ok(records) => records
                .iter()
                .map(|r| canonical::render(r, &raw.event_type))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| e.to_string()),
            Err(e) => Err(crate::runtime::describe_driver_error(&e)),
        };
        // Everything the call produced counts against its output cap, error texts
        // included, and a stored or logged error text is bounded.
        let result = result.map_err(|reason| crate::text::bounded_error(&reason));
        charge(match &result {
            Ok(rendered) => rendered
                .iter()
                .map(|r| canonical::approx_json_size(&r.data))
                .sum(),
            Err(reason) => reason.len(),
        })?;
        processed.push(Processed {
            raw,
            outcome: result,
        });
    }
    if let Some(reply) = &outcome.reply {
        charge(reply.body.len() + reply.content_type.len())?;
    }
    let revoked = outcome.revoked.map(|r| crate::text::bounded_error(&r));
    Ok(Received {
        processed,
        reply: outcome.reply,
        revoked,
    })
}

/// Most bytes of a raw event's provider event id and account key; of its type; of its API
/// version. They are keys and labels, stored and shown as they are: past these a driver is
/// wrong, and the call fails rather than cut an id into another one.
pub const MAX_EVENT_ID: usize = 512;
pub const MAX_EVENT_TYPE: usize = 256;
pub const MAX_API_VERSION: usize = 64;

/// Whether a raw event's identifying texts can be kept as they are.
fn check_raw(raw: &RawEvent) -> Result<(), CallError> {
    let mut fields = vec![
        (
            "provider-event-id",
            raw.provider_event_id.as_str(),
            MAX_EVENT_ID,
        ),
        ("event-type", raw.event_type.as_str(), MAX_EVENT_TYPE),
    ];
    if let Some(key) = &raw.account_key {
        fields.push(("account-key", key.as_str(), MAX_EVENT_ID));
    }
    if let Some(version) = &raw.api_version {
        fields.push(("api-version", version.as_str(), MAX_API_VERSION));
    }
    if raw.provider_event_id.is_empty() {
        return Err(CallError::InvalidOutput(
            "a raw event has an empty provider-event-id".into(),
        ));
    }
    for (name, text, max) in fields {
        if text.len() > max {
            return Err(CallError::InvalidOutput(format!(
                "a raw event's {name} is {} bytes; at most {max}",
                text.len()
            )));
        }
        if text.chars().any(char::is_control) {
            return Err(CallError::InvalidOutput(format!(
                "a raw event's {name} holds a control character"
            )));
        }
    }
    Ok(())
}

/// Whether the host can answer the provider with the driver's reply: a final status
/// (`200`–`599`: no `1xx`, whose answer would leave the connection in another protocol) and
/// a content type that is a header value.
fn check_reply(reply: &WebhookReply) -> Result<(), CallError> {
    if !(200..=599).contains(&reply.status) {
        return Err(CallError::InvalidOutput(format!(
            "a reply's status must be 200 to 599, not {}",
            reply.status
        )));
    }
    if reply.content_type.len() > 256
        || axum::http::HeaderValue::from_str(&reply.content_type).is_err()
    {
        return Err(CallError::InvalidOutput(
            "a reply's content-type is not a header value of at most 256 bytes".into(),
        ));
    }
    Ok(())
}

/// Pair a raw event with its normalized events (or its failure).
pub(crate) fn ingested(
    p: Processed,
    installation: &InstallationId,
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
                .map(|r| NewEvent {
                    event_id: EventId::generate(),
                    event_type: r.event_type,
                    subject: r.subject,
                    time: time.clone(),
                    data: r.data.to_string(),
                })
                .collect(),
        ),
        Err(reason) => {
            tracing::warn!(%installation, provider_event_id = %p.raw.provider_event_id, %reason, "normalization failed; kept as dead letter");
            NormalizeOutcome::Failed { reason }
        }
    };
    IngestedEvent {
        provider_event_id: p.raw.provider_event_id,
        event_type: p.raw.event_type,
        account_key: p.raw.account_key,
        payload: p.raw.payload,
        api_version: p.raw.api_version,
        outcome,
    }
}
