//! `GET /v1/events`: the normalized events in commit order, filtered by installation,
//! driver and type, paged by an opaque cursor — and, with `wait`, a long-poll that answers
//! as soon as an event after the cursor is committed.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use sluice_store::{Cursor, DriverId, EventFilter, InstallationId};

use super::error::{ErrorBody, Unavailable};
use super::{ApiError, AppState};

/// The longest `wait` a reader may ask for.
pub const MAX_WAIT: Duration = Duration::from_secs(30);

// The numbers are read as text so that a bad one is our `400`, not the extractor's.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// Only this installation's events.
    installation_id: Option<String>,
    /// Only events of this driver's installations.
    driver_id: Option<String>,
    /// Only this CloudEvent type, exactly (`payment.succeeded`).
    #[serde(rename = "type")]
    event_type: Option<String>,
    /// The `next_cursor` of the previous page; absent: from the beginning.
    after: Option<String>,
    /// Events per page.
    #[param(value_type = Option<i64>, minimum = 1, maximum = 1000, default = 100)]
    limit: Option<String>,
    /// Seconds to wait for an event after the cursor when there is none yet (long-poll;
    /// decimals allowed).
    #[param(value_type = Option<f64>, minimum = 0, maximum = 30, default = 0)]
    wait: Option<String>,
}

/// A page of events.
#[derive(utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // a schema only: the body is spliced from stored JSON
pub(super) struct EventPage {
    events: Vec<CloudEvent>,
    /// Pass back as `after`; the same cursor when the page is empty.
    #[schema(example = "42")]
    next_cursor: String,
}

/// A normalized event as a CloudEvent 1.0 (`crate::output::cloud_event`).
#[derive(utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // a schema only
struct CloudEvent {
    /// `1.0`
    specversion: String,
    /// `evt_` and 26 Crockford base32 characters, ordered by creation time.
    id: String,
    /// `/sluice/installations/{installation_id}`
    source: String,
    /// `<kind>.<status>`, `<kind>.<change>` or `unmapped.<provider event type>`.
    #[serde(rename = "type")]
    event_type: String,
    #[schema(required = true)]
    subject: Option<String>,
    /// RFC 3339 UTC.
    time: String,
    /// `application/json`
    datacontenttype: String,
    sluiceinstallation: String,
    sluicedriver: String,
    sluicedriverversion: String,
    sluiceprovidereventid: String,
    sluiceprovidereventtype: String,
    /// The stored raw event's id, as a string.
    sluicerawevent: String,
    /// The canonical record (`docs/canonical-schema.md`).
    #[schema(value_type = Object)]
    data: serde_json::Value,
}

/// `wait`: seconds (decimals allowed), at most [`MAX_WAIT`].
fn parse_wait(text: Option<&str>) -> Result<Duration, ApiError> {
    let Some(text) = text.filter(|t| !t.is_empty()) else {
        return Ok(Duration::ZERO);
    };
    text.parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && (0.0..=MAX_WAIT.as_secs_f64()).contains(s))
        .map(Duration::from_secs_f64)
        .ok_or_else(|| ApiError::bad_request("wait must be a number of seconds from 0 to 30"))
}

/// `GET /v1/events`: the normalized events in commit order, filtered, paged by cursor, and
/// with `wait` a long-poll.
#[utoipa::path(
    get,
    path = "/v1/events",
    tag = "events",
    params(EventsQuery),
    responses(
        (status = 200, description = "A page of events in commit order", body = EventPage),
        (status = 400, description = "`bad_request`: a bad `installation_id`, `driver_id`, `after`, `limit` or `wait`", body = ErrorBody),
        (status = 503, response = Unavailable),
    )
)]
pub async fn list_events(
    State(state): State<Arc<AppState>>,
    Query(query): Query<EventsQuery>,
) -> Result<Response, ApiError> {
    let installation = match &query.installation_id {
        Some(id) => Some(
            InstallationId::parse(id).map_err(|_| ApiError::bad_request("bad installation_id"))?,
        ),
        None => None,
    };
    let driver = match &query.driver_id {
        Some(d) => Some(DriverId::parse(d).map_err(|_| ApiError::bad_request("bad driver_id"))?),
        None => None,
    };
    let after = match query.after.as_deref() {
        None | Some("") => Cursor::START,
        Some(a) => Cursor::parse(a).ok_or_else(|| {
            ApiError::bad_request("after must be a cursor returned as next_cursor")
        })?,
    };
    let limit = super::error::parse_page_limit(query.limit.as_deref())?;
    let wait = parse_wait(query.wait.as_deref())?;
    let filter = EventFilter {
        installation: installation.as_ref(),
        driver: driver.as_ref(),
        event_type: query.event_type.as_deref(),
    };
    let store = &state.services.store;
    let deadline = tokio::time::Instant::now() + wait;
    // Subscribed before the first read, so a commit between the read and the wait wakes it.
    let mut commits = store.committed_events();
    let events = loop {
        commits.borrow_and_update();
        let events = store.list_events_matching(&filter, after, limit).await?;
        let now = tokio::time::Instant::now();
        if !events.is_empty() || now >= deadline {
            break events;
        }
        let nap = (deadline - now).min(state.long_poll_recheck);
        if let Ok(Err(_closed)) = tokio::time::timeout(nap, commits.changed()).await {
            // The store is closing: nothing more will be committed here.
            tokio::time::sleep(nap).await;
        }
    };
    let next = events.last().map_or(after, |e| e.cursor);
    // Records are stored as JSON text: the envelope is spliced around them, not re-parsed.
    let mut out =
        String::with_capacity(events.iter().map(|e| e.data.len() + 600).sum::<usize>() + 64);
    out.push_str("{\"events\":[");
    for (i, e) in events.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&crate::output::cloud_event(e));
    }
    out.push_str(&format!("],\"next_cursor\":\"{next}\"}}"));
    Ok(([("content-type", "application/json")], out).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits() {
        assert_eq!(parse_wait(None).unwrap(), Duration::ZERO);
        assert_eq!(
            parse_wait(Some("2.5")).unwrap(),
            Duration::from_millis(2500)
        );
        assert_eq!(parse_wait(Some("30")).unwrap(), MAX_WAIT);
        for bad in ["31", "-1", "NaN", "inf", "soon"] {
            assert!(parse_wait(Some(bad)).is_err(), "{bad}");
        }
    }
}
