//! The canary: before a new version of a driver is switched on, the last N raw events its
//! installations received go through the new version and the active one side by side,
//! and the normalized output is compared record by record, field by field.
//!
//! Nothing is stored and no installation is touched: both runs are `normalize` calls on
//! the stored payloads, with each installation's settings (a driver that enriches records
//! may make its usual read requests).

use std::collections::HashMap;
use std::sync::Arc;

use serde::Serialize;
use serde_json::{Value, json};
use sluice_store::{Installation, InstallationId};

use super::CatalogError;
use crate::pipeline::{NormalizeFailed, normalize_stored};
use crate::runtime::{DriverInfo, LoadedDriver};
use crate::services::Services;

/// Most stored events one canary replays.
pub const MAX_CANARY_EVENTS: usize = 1000;

/// Longest a canary runs; the events not replayed by then are not counted.
const CANARY_BUDGET: std::time::Duration = std::time::Duration::from_secs(60);

/// One version in a report.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct VersionRef {
    pub version: String,
    pub sha256: String,
}

impl VersionRef {
    fn of(info: &DriverInfo) -> Self {
        Self {
            version: info.version.clone(),
            sha256: info.sha256.clone(),
        }
    }
}

/// What a canary found.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct CanaryReport {
    #[schema(value_type = String)]
    pub driver_id: sluice_store::DriverId,
    /// The active version (`None`: there was none to compare with).
    #[schema(required = true)]
    pub current: Option<VersionRef>,
    pub candidate: VersionRef,
    /// Stored events replayed through both.
    pub compared: usize,
    pub identical: usize,
    pub differing: usize,
    /// Events of installations deleted since (not replayed).
    pub skipped: usize,
    /// Stopped at the time budget (60 s) before every event was replayed; never counts as
    /// identical.
    pub incomplete: bool,
    /// Every event whose output differs, newest first.
    pub differences: Vec<EventComparison>,
}

impl CanaryReport {
    /// Whether something was compared, to the end, and nothing differed.
    pub fn identical(&self) -> bool {
        self.current.is_some() && self.compared > 0 && self.differing == 0 && !self.incomplete
    }

    pub(super) fn nothing_to_compare(candidate: &DriverInfo) -> Self {
        Self {
            driver_id: candidate.id.clone(),
            current: None,
            candidate: VersionRef::of(candidate),
            compared: 0,
            identical: 0,
            differing: 0,
            skipped: 0,
            incomplete: false,
            differences: Vec::new(),
        }
    }
}

/// One stored event whose output differs between the versions.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct EventComparison {
    pub raw_event_id: i64,
    pub installation_id: String,
    pub provider_event_id: String,
    pub event_type: String,
    /// Why the active version failed on it, if it did.
    #[schema(required = true)]
    pub current_error: Option<String>,
    /// Why the candidate failed on it, if it did.
    #[schema(required = true)]
    pub candidate_error: Option<String>,
    /// Field by field, when both produced records.
    pub changes: Vec<FieldChange>,
}

/// One field that differs: `record` is the index of the normalized record, `path` a JSON
/// pointer into it (`/type`, `/subject`, `/data/amount/value`); a side without the field
/// (or the record) is `null`.
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct FieldChange {
    pub record: usize,
    pub path: String,
    #[schema(required = true)]
    pub current: Option<Value>,
    #[schema(required = true)]
    pub candidate: Option<Value>,
}

/// Replay the last `limit` raw events of `current`'s driver through both versions.
pub(super) async fn run(
    services: &Services,
    current: &Arc<LoadedDriver>,
    candidate: &Arc<LoadedDriver>,
    limit: usize,
) -> Result<CanaryReport, CatalogError> {
    let limit = limit.min(MAX_CANARY_EVENTS);
    let raws = services
        .store
        .recent_raw_events(&current.info.id, i64::try_from(limit).unwrap_or(i64::MAX))
        .await?;
    let mut report = CanaryReport {
        current: Some(VersionRef::of(&current.info)),
        ..CanaryReport::nothing_to_compare(&candidate.info)
    };
    let mut installations: HashMap<InstallationId, Option<Installation>> = HashMap::new();
    let started = std::time::Instant::now();
    for raw in &raws {
        if started.elapsed() > CANARY_BUDGET {
            report.incomplete = true;
            break;
        }
        if !installations.contains_key(&raw.installation_id) {
            let found = services
                .store
                .get_installation(&raw.installation_id)
                .await?;
            installations.insert(raw.installation_id.clone(), found);
        }
        let Some(Some(installation)) = installations.get(&raw.installation_id) else {
            report.skipped += 1;
            continue;
        };
        let run = |driver: &Arc<LoadedDriver>| {
            normalize_stored(services, driver.clone(), installation, raw)
        };
        let (before, after) = (run(current).await, run(candidate).await);
        let flatten =
            |r: Result<Result<Vec<crate::canonical::Rendered>, NormalizeFailed>, _>| match r {
                Ok(Ok(records)) => Ok(records),
                Ok(Err(failed)) => Err(failed),
                Err(e) => Err(NormalizeFailed {
                    reason: format!("{e}"),
                    by_driver: false,
                }),
            };
        let (before, after) = (flatten(before), flatten(after));
        report.compared += 1;
        let mut comparison = EventComparison {
            raw_event_id: raw.id,
            installation_id: raw.installation_id.to_string(),
            provider_event_id: raw.provider_event_id.clone(),
            event_type: raw.event_type.clone(),
            current_error: None,
            candidate_error: None,
            changes: Vec::new(),
        };
        let same = match (before, after) {
            (Ok(before), Ok(after)) => {
                let as_json = |records: Vec<crate::canonical::Rendered>| -> Vec<Value> {
                    records
                        .into_iter()
                        .map(
                            |r| json!({"type": r.event_type, "subject": r.subject, "data": r.data}),
                        )
                        .collect()
                };
                comparison.changes = diff_records(&as_json(before), &as_json(after));
                comparison.changes.is_empty()
            }
            // The same answer of the driver's own is the same behaviour; a host failure (a
            // trap, the deadline, no slot) on both sides says nothing, so it is no match.
            (Err(a), Err(b)) if a == b && a.by_driver => true,
            (before, after) => {
                comparison.current_error = before.err().map(|f| f.reason);
                comparison.candidate_error = after.err().map(|f| f.reason);
                false
            }
        };
        if same {
            report.identical += 1;
        } else {
            report.differing += 1;
            report.differences.push(comparison);
        }
    }
    Ok(report)
}

/// Record by record, then field by field.
fn diff_records(current: &[Value], candidate: &[Value]) -> Vec<FieldChange> {
    let mut changes = Vec::new();
    for record in 0..current.len().max(candidate.len()) {
        match (current.get(record), candidate.get(record)) {
            (Some(a), Some(b)) => diff_value(record, String::new(), a, b, &mut changes),
            (a, b) => changes.push(FieldChange {
                record,
                path: String::new(),
                current: a.cloned(),
                candidate: b.cloned(),
            }),
        }
    }
    changes
}

fn diff_value(record: usize, path: String, a: &Value, b: &Value, out: &mut Vec<FieldChange>) {
    match (a, b) {
        (Value::Object(a), Value::Object(b)) => {
            let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
            keys.sort();
            keys.dedup();
            for key in keys {
                let path = format!("{path}/{}", key.replace('~', "~0").replace('/', "~1"));
                match (a.get(key), b.get(key)) {
                    (Some(x), Some(y)) => diff_value(record, path, x, y, out),
                    (x, y) => out.push(FieldChange {
                        record,
                        path,
                        current: x.cloned(),
                        candidate: y.cloned(),
                    }),
                }
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            for i in 0..a.len().max(b.len()) {
                let path = format!("{path}/{i}");
                match (a.get(i), b.get(i)) {
                    (Some(x), Some(y)) => diff_value(record, path, x, y, out),
                    (x, y) => out.push(FieldChange {
                        record,
                        path,
                        current: x.cloned(),
                        candidate: y.cloned(),
                    }),
                }
            }
        }
        (a, b) if a == b => {}
        (a, b) => out.push(FieldChange {
            record,
            path,
            current: Some(a.clone()),
            candidate: Some(b.clone()),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn differences_are_field_by_field_json_pointers() {
        let a = [
            json!({"type": "payment.succeeded", "data": {"amount": {"value": "10.00", "currency": "USD"}, "tags": ["a"], "a/b": 1}}),
        ];
        let b = [
            json!({"type": "payment.succeeded", "data": {"amount": {"value": "10.00", "currency": "BRL"}, "tags": ["a", "b"], "a/b": 2}}),
        ];
        let changes = diff_records(&a, &b);
        let paths: Vec<_> = changes.iter().map(|c| c.path.as_str()).collect();
        assert_eq!(
            paths,
            ["/data/a~1b", "/data/amount/currency", "/data/tags/1"]
        );
        assert_eq!(changes[1].current, Some(json!("USD")));
        assert_eq!(changes[1].candidate, Some(json!("BRL")));
        assert_eq!(changes[2].current, None);
        // A record only one side produced is one change at the record's root.
        let extra = diff_records(&a, &[a[0].clone(), json!({"type": "x"})]);
        assert_eq!(extra.len(), 1);
        assert_eq!((extra[0].record, extra[0].path.as_str()), (1, ""));
        assert!(diff_records(&a, &a).is_empty());
    }
}
