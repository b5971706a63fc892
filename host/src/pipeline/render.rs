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
    for event in outcome.events {
        let raw = event.raw;
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
