//! The plan of one batch, shared by both backends: which raw events to insert, and each
//! delivery's answer once the database has said which installations are live and which
//! raw events it inserted.

use std::collections::{HashMap, HashSet};

use sha2::{Digest, Sha256};

use super::{CommitOutcome, Delivery, IngestedEvent, NewEvent, NormalizeOutcome, WritesApply};
use crate::{InstallationId, StoreError};

/// The deduplication key of a raw event: (installation, provider event id).
pub(super) type Key<'a> = (&'a str, &'a str);

/// The second deduplication key of a raw event within its installation: the SHA-256 of
/// its type and its payload as the provider sent it. A provider that signs only the body
/// (Shopify) leaves its event id unsigned, so a captured delivery replayed under a new id
/// is recognised by its content. Two events of one type with byte-identical payloads are
/// the same event; the type is in the key because a provider may send one body under
/// several types (an order created already paid is both `orders/create` and `orders/paid`).
pub(super) fn content_key(event: &IngestedEvent) -> [u8; 32] {
    let mut hash = Sha256::new();
    hash.update((event.event_type.len() as u64).to_be_bytes());
    hash.update(event.event_type.as_bytes());
    hash.update(&event.payload);
    hash.finalize().into()
}

/// A raw event to insert, and the delivery it belongs to.
pub(super) struct RawRow<'a> {
    /// Index of its delivery in the batch.
    pub delivery: usize,
    pub d: &'a Delivery,
    pub event: &'a IngestedEvent,
    /// Its [`content_key`].
    pub content: [u8; 32],
}

impl<'a> RawRow<'a> {
    pub fn key(&self) -> Key<'a> {
        (
            self.d.installation_id.as_str(),
            self.event.provider_event_id.as_str(),
        )
    }

    /// The stored status and failure reason.
    pub fn status(&self) -> (&'static str, Option<&'a str>) {
        match &self.event.outcome {
            NormalizeOutcome::Normalized(_) => ("normalized", None),
            NormalizeOutcome::Failed { reason } => ("failed", Some(reason.as_str())),
        }
    }
}

/// One batch of deliveries, planned.
pub(super) struct Batch<'a> {
    pub deliveries: &'a [&'a Delivery],
    /// The first occurrence in the batch of each key, in delivery order.
    pub rows: Vec<RawRow<'a>>,
    /// Per delivery, its events that repeat an earlier one of the batch.
    repeated: Vec<usize>,
}

impl<'a> Batch<'a> {
    pub fn new(deliveries: &'a [&'a Delivery]) -> Self {
        let mut claimed = HashSet::new();
        let mut claimed_content = HashSet::new();
        let mut rows = Vec::new();
        let mut repeated = vec![0; deliveries.len()];
        for (index, d) in deliveries.iter().enumerate() {
            for event in &d.events {
                let row = RawRow {
                    delivery: index,
                    d,
                    event,
                    content: content_key(event),
                };
                let content = (row.d.installation_id.as_str(), row.content);
                if !claimed.contains(&row.key()) && claimed_content.insert(content) {
                    claimed.insert(row.key());
                    rows.push(row);
                } else {
                    repeated[index] += 1;
                }
            }
        }
        Batch {
            deliveries,
            rows,
            repeated,
        }
    }

    /// The distinct installations of the batch.
    pub fn installation_ids(&self) -> Vec<&'a str> {
        let mut ids: Vec<&str> = self
            .deliveries
            .iter()
            .map(|d| d.installation_id.as_str())
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// The rows to insert, in key order: concurrent batches holding the same keys then
    /// take their unique-index entries in the same order, so one waits for the other
    /// instead of the two deadlocking. Rows of installations not in `live` are left out.
    pub fn rows_in_key_order(&self, live: Option<&HashSet<String>>) -> Vec<&RawRow<'a>> {
        let mut rows: Vec<&RawRow<'a>> = self
            .rows
            .iter()
            .filter(|r| live.is_none_or(|live| live.contains(r.d.installation_id.as_str())))
            .collect();
        rows.sort_unstable_by_key(|r| r.key());
        rows
    }

    /// The normalized events of the inserted raw events, in delivery order (the order of
    /// the event log), with their raw event's row id.
    pub fn new_events(
        &self,
        inserted: &HashMap<Key<'a>, i64>,
    ) -> Vec<(i64, &'a InstallationId, &'a NewEvent)> {
        let mut events = Vec::new();
        for row in &self.rows {
            if let (Some(&raw_id), NormalizeOutcome::Normalized(list)) =
                (inserted.get(&row.key()), &row.event.outcome)
            {
                events.extend(list.iter().map(|e| (raw_id, &row.d.installation_id, e)));
            }
        }
        events
    }

    /// Each delivery's answer.
    pub fn outcomes(
        &self,
        live: &HashSet<String>,
        inserted: &HashMap<Key<'a>, i64>,
    ) -> Vec<Result<CommitOutcome, StoreError>> {
        let mut outcomes: Vec<Result<CommitOutcome, StoreError>> = self
            .deliveries
            .iter()
            .zip(&self.repeated)
            .map(|(d, &repeated)| {
                if live.contains(d.installation_id.as_str()) {
                    Ok(CommitOutcome {
                        duplicates: repeated,
                        ..CommitOutcome::default()
                    })
                } else {
                    Err(StoreError::NotFound)
                }
            })
            .collect();
        for row in &self.rows {
            let Ok(outcome) = &mut outcomes[row.delivery] else {
                continue;
            };
            if inserted.contains_key(&row.key()) {
                outcome.stored += 1;
                if let NormalizeOutcome::Normalized(list) = &row.event.outcome {
                    outcome.events += list.len();
                }
            } else {
                outcome.duplicates += 1;
            }
        }
        outcomes
    }

    /// The deliveries whose writes apply: live ones, except a redelivery (every event a
    /// duplicate) whose writes apply only [`WritesApply::UnlessDuplicate`].
    pub fn writes_to_apply<'b>(
        &'b self,
        outcomes: &'b [Result<CommitOutcome, StoreError>],
    ) -> impl Iterator<Item = &'a Delivery> + 'b {
        self.deliveries
            .iter()
            .zip(outcomes)
            .filter_map(|(d, outcome)| {
                let outcome = outcome.as_ref().ok()?;
                let redelivery = !d.events.is_empty() && outcome.stored == 0;
                let skip = redelivery && d.writes_apply == WritesApply::UnlessDuplicate;
                (!skip && !d.writes.is_empty()).then_some(*d)
            })
    }
}
